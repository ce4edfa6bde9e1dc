//! End-to-end loopback runs of the live harness against the mock server: every sent request
//! ends as exactly one row with the right status and reason, timestamps are ordered, open loop
//! never waits for slow responses, closed loop keeps its concurrency, stop and deadline write
//! valid partial run dirs. No wall-clock thresholds: only orderings and counts.

use crate::mock::Mock;
use live::loadgen::{FixedSchedule, RequestSource, stop_pair};
use live::run::{LiveRunOptions, ProgressMode, Target, live_run_with_source};
use sim::scenario::*;
use sim::trace::{RequestRow, RequestStatus, Source, read_run_dir};
use sim::workload::RequestSpec;
use sim::{GpuId, ModelId, RequestId, SimTime};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(crate) fn model(name: &str) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        served_name: name.to_string(),
        model_path: name.to_string(),
        num_layers: 2,
        hidden_size: 64,
        num_attention_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        intermediate_size: 128,
        vocab_size: 1000,
        tie_word_embeddings: false,
        weight_format: WeightFormat::Bf16,
        max_position_embeddings: 4096,
        kv_cache_dtype_bytes: 2,
    }
}

pub(crate) fn instance(name: &str, model: u32, port: u16) -> InstanceSpec {
    InstanceSpec {
        name: name.to_string(),
        model: ModelId(model),
        gpu: GpuId(0),
        port,
        engine: EngineConfig {
            preset: EnginePreset::VllmV1,
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            block_size: 16,
            gpu_memory_utilization: 0.9,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            max_model_len: 4096,
            kv_cache: KvCacheMode::Static,
            activation_reserve_bytes: 0,
            num_gpu_blocks_override: None,
            elastic: Default::default(),
            async_scheduling: false,
            scheduler_reserve_full_isl: false,
            quantization: None,
        },
        perf: PerfSpec::Roofline {
            mfu: 0.5,
            bandwidth_efficiency: 0.8,
            step_overhead_s: 0.001,
            overheads: Default::default(),
        },
        launch_command: None,
    }
}

/// A scenario whose models are named after mock behaviours.
pub(crate) fn scenario(
    models: &[&str],
    instances: Vec<InstanceSpec>,
    policy: RouterPolicy,
    drain_timeout_s: f64,
) -> Scenario {
    Scenario {
        name: "loopback".into(),
        variant: "default".into(),
        description: String::new(),
        seed: 7,
        gpus: vec![GpuSpec {
            name: "H100-80GB-SXM".into(),
            memory_bytes: 80 << 30,
            bf16_flops: 989e12,
            hbm_bytes_per_s: 3.35e12,
        }],
        models: models.iter().map(|m| model(m)).collect(),
        instances,
        router: RouterSpec {
            policy,
            poll_interval_s: 1.0,
            poll_offset_s: 0.0,
            score: LoadScore::RunningPlusWaiting,
            prefix: Default::default(),
        },
        workload: WorkloadSpec {
            phases: vec![PhaseSpec {
                name: "p".into(),
                duration_s: None,
                num_requests: None,
                arrival: ArrivalSpec::Poisson { rate: 10.0 },
                mix: vec![(ModelId(0), 1.0)],
                input_tokens: LengthDist::Fixed { value: 8 },
                output_tokens: LengthDist::Fixed { value: 4 },
                per_model_lengths: vec![],
            }],
            prefix: PrefixSpec { tokens: 0, groups: 0, fraction: 0.0 },
            prompt_token_id_range: (100, 1000),
        },
        slo: SloSpec::default(),
        output: OutputSpec {
            sample_interval_s: 0.25,
            tokens_csv: false,
            drain_timeout_s,
            max_samples: sim::scenario::DEFAULT_MAX_SAMPLES,
        },
        contention: Default::default(),
    }
}

pub(crate) fn req(id: u64, at_ms: u64, model: u32, out: u32) -> RequestSpec {
    RequestSpec {
        id: RequestId(id),
        phase: 0,
        arrival: SimTime(at_ms * 1_000_000),
        model: ModelId(model),
        num_prompt_tokens: 8,
        max_tokens: out,
        content: Default::default(),
    }
}

pub(crate) fn opts(target: Target, dir: &std::path::Path) -> LiveRunOptions {
    let mut o = LiveRunOptions::new(target, dir);
    o.progress = ProgressMode::Never;
    o.scrape_interval = None;
    // Never fired: tests must not depend on Ctrl-C.
    let (handle, signal) = stop_pair();
    std::mem::forget(handle);
    o.stop = Some(signal);
    o
}

fn row(rows: &[RequestRow], id: u64) -> &RequestRow {
    rows.iter().find(|r| r.id == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sent_request_ends_as_one_row_with_its_outcome() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["ok", "err500", "err400flat", "cut", "stall"];
    let sc = scenario(&names, vec![], RouterPolicy::RoundRobin, 60.0);
    let mut source = FixedSchedule::new(vec![
        req(0, 0, 4, 4),   // stall, sent first
        req(1, 50, 0, 4),  // ok, sent while 0 stalls
        req(2, 60, 0, 1),  // ok with one token: no TPOT
        req(3, 70, 1, 4),  // err500
        req(4, 80, 2, 4),  // err400flat
        req(5, 90, 3, 4),  // cut
        req(6, 100, 0, 6), // ok
    ]);
    let mut o = opts(Target::Lb(mock.url()), dir.path());
    o.per_request_timeout = Duration::from_secs(3);
    o.tokens_csv = Some(true);
    o.genai_perf_export = true;
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    assert_eq!((report.load.sent, report.load.ok, report.load.failed), (7, 3, 4));
    assert!(!report.load.interrupted && !report.load.deadline_reached && !report.load.unsent_requests);

    let run = read_run_dir(dir.path()).unwrap();
    assert_eq!(run.meta.source, Source::Live);
    assert_eq!(run.requests.len(), 7, "one row per request sent");
    assert_eq!(mock.stats.requests.load(Ordering::SeqCst), 7);
    let mut ids: Vec<u64> = run.requests.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..7).collect::<Vec<_>>());

    for id in [1, 2, 6] {
        let r = row(&run.requests, id);
        assert_eq!((r.status, r.error.as_str()), (RequestStatus::Ok, ""));
        assert_eq!(r.output_tokens, r.max_tokens, "usage.completion_tokens counted");
        let (first, end) = (r.first_token_s.unwrap(), r.end_s.unwrap());
        assert!(r.scheduled_s <= r.send_s + 0.002 && r.send_s <= first && first <= end, "{r:?}");
        assert!(r.ttft_s.unwrap() <= r.e2e_s.unwrap());
        assert_eq!(r.tpot_s.is_some(), r.output_tokens >= 2);
    }
    assert!(row(&run.requests, 6).itl_mean_s.is_some());

    let e500 = row(&run.requests, 3);
    assert_eq!(e500.status, RequestStatus::Error);
    assert!(e500.error.contains("HTTP 500") && e500.error.contains("engine died"), "{}", e500.error);
    assert_eq!((e500.first_token_s, e500.ttft_s), (None, None));
    let flat = row(&run.requests, 4);
    assert!(flat.error.contains("HTTP 400") && flat.error.contains("prompt too long"), "{}", flat.error);
    let cut = row(&run.requests, 5);
    assert_eq!((cut.status, cut.output_tokens), (RequestStatus::Error, 2));
    assert!(cut.error.contains("without [DONE]"), "{}", cut.error);
    let stall = row(&run.requests, 0);
    assert_eq!((stall.status, stall.output_tokens), (RequestStatus::Timeout, 1));
    assert!(stall.error.contains("per-request timeout"), "{}", stall.error);
    assert!(stall.first_token_s.is_some());

    // Open loop: requests scheduled after the stalled one were sent and finished while it hung.
    for id in [1, 2, 3, 4, 5, 6] {
        assert!(row(&run.requests, id).end_s.unwrap() < stall.end_s.unwrap());
    }

    assert_eq!((run.summary.overall.requests, run.summary.overall.ok), (7, 3));
    assert_eq!(run.summary.overall.error + run.summary.overall.timeout, 4);

    let tokens = std::fs::read_to_string(dir.path().join("tokens.csv")).unwrap();
    let chunk_rows = tokens.lines().count() - 1;
    assert_eq!(chunk_rows, 4 + 1 + 6 + 2 + 1, "one row per text chunk, failed requests included");

    let export: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("profile_export.json")).unwrap())
            .unwrap();
    let reqs = export["experiments"][0]["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 3, "ok requests only");
    for r in reqs {
        let ts = r["response_timestamps"].as_array().unwrap();
        assert_eq!(ts.len(), r["response_outputs"].as_array().unwrap().len());
        assert!(r["timestamp"].as_u64().unwrap() <= ts[0].as_u64().unwrap());
        let payload: serde_json::Value =
            serde_json::from_str(r["request_inputs"]["payload"].as_str().unwrap()).unwrap();
        // genai-perf joins `prompt` as strings: one string, one word per prompt token.
        assert_eq!(payload["prompt"][0].as_str().unwrap().split_whitespace().count(), 8);
        assert_eq!(payload["prompt"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_cancels_what_still_runs_after_the_grace_period_and_writes_a_partial_run() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(&["stall", "ok"], vec![], RouterPolicy::RoundRobin, 60.0);
    let mut source = FixedSchedule::new(vec![req(0, 0, 0, 4), req(1, 0, 0, 4), req(2, 3_600_000, 1, 4)]);
    let mut o = opts(Target::Lb(mock.url()), dir.path());
    let (handle, signal) = stop_pair();
    o.stop = Some(signal);
    o.grace = Duration::from_millis(100);
    let run = tokio::spawn(async move { live_run_with_source(&sc, &mut source, o).await });
    mock.wait_for_requests(2).await;
    handle.stop();
    let report = run.await.unwrap().unwrap();
    assert!(report.load.interrupted && report.load.unsent_requests);
    assert_eq!(report.load.sent, 2);
    let run = read_run_dir(dir.path()).unwrap();
    assert_eq!(run.requests.len(), 2);
    for r in &run.requests {
        assert_eq!(r.status, RequestStatus::Error);
        assert!(r.error.contains("interrupted"), "{}", r.error);
    }
    assert_eq!(run.summary.overall.requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_deadline_times_out_what_still_runs_and_sends_nothing_after_it() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(&["stall", "ok"], vec![], RouterPolicy::RoundRobin, 60.0);
    let mut source = FixedSchedule::new(vec![req(0, 0, 0, 4), req(1, 3_600_000, 1, 4)]);
    let mut o = opts(Target::Lb(mock.url()), dir.path());
    o.deadline = Some(Duration::from_millis(300));
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    assert!(report.load.deadline_reached && report.load.unsent_requests);
    let run = read_run_dir(dir.path()).unwrap();
    assert_eq!(run.requests.len(), 1);
    assert_eq!(run.requests[0].status, RequestStatus::Timeout);
    assert!(run.requests[0].error.contains("run deadline"), "{}", run.requests[0].error);
    assert!(mock.stats.requests.load(Ordering::SeqCst) <= 1, "nothing is sent after the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_ends_requests_still_running_after_the_last_send() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(&["stall"], vec![], RouterPolicy::RoundRobin, 0.2);
    let mut source = FixedSchedule::new(vec![req(0, 0, 0, 4)]);
    let o = opts(Target::Lb(mock.url()), dir.path());
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    assert!(!report.load.unsent_requests);
    let run = read_run_dir(dir.path()).unwrap();
    assert_eq!(run.requests[0].status, RequestStatus::Timeout);
    assert!(run.requests[0].error.contains("drain timeout"), "{}", run.requests[0].error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mode_routes_with_the_scenario_policy_and_scrapes_every_instance() {
    let (a, b) = (Mock::start().await, Mock::start().await);
    let dir = tempfile::tempdir().unwrap();
    let instances = vec![instance("ok#0", 0, a.port), instance("ok#1", 0, b.port)];
    let sc = scenario(&["ok", "orphan"], instances, RouterPolicy::RoundRobin, 60.0);
    let mut source = FixedSchedule::new(vec![
        req(0, 0, 0, 3),
        req(1, 10, 0, 3),
        req(2, 20, 0, 3),
        req(3, 30, 1, 3),
        req(4, 40, 0, 3),
    ]);
    let mut o = opts(Target::Direct("127.0.0.1".into()), dir.path());
    o.scrape_interval = Some(Duration::from_millis(50));
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    assert_eq!(report.load.sent, 5);
    let run = read_run_dir(dir.path()).unwrap();
    let inst: Vec<&str> = (0..5).map(|i| row(&run.requests, i).instance.as_str()).collect();
    assert_eq!(inst, vec!["ok#0", "ok#1", "ok#0", "", "ok#1"]);
    let orphan = row(&run.requests, 3);
    assert_eq!(orphan.status, RequestStatus::Rejected);
    assert!(orphan.error.contains("no instance serves model orphan"), "{}", orphan.error);
    assert_eq!((a.stats.requests.load(Ordering::SeqCst), b.stats.requests.load(Ordering::SeqCst)), (2, 2));

    for name in ["ok#0", "ok#1"] {
        let rows: Vec<_> = run.instances.iter().filter(|r| r.instance == name).collect();
        assert!(!rows.is_empty(), "no scrape of {name}");
        for r in rows {
            assert_eq!((r.num_requests_running, r.num_requests_waiting, r.num_preemptions_total), (2, 1, 4));
            assert_eq!((r.kv_cache_usage, r.model.as_str()), (0.5, "ok"));
        }
    }
    assert_eq!(report.scrape.unwrap().failures, 0);
    assert_eq!(run.summary.instances.iter().map(|i| i.requests).collect::<Vec<_>>(), vec![2, 2]);
}

/// A closed loop of `concurrency` requests in flight, `total` in all.
struct ClosedLoop {
    concurrency: u32,
    total: u64,
    next: u64,
    in_flight: u32,
    ready_at: SimTime,
}

impl RequestSource for ClosedLoop {
    fn peek_time(&mut self) -> Option<SimTime> {
        (self.next < self.total && self.in_flight < self.concurrency).then_some(self.ready_at)
    }
    fn pop(&mut self) -> Option<RequestSpec> {
        let t = self.peek_time()?;
        self.in_flight += 1;
        self.next += 1;
        let mut r = req(self.next - 1, 0, 0, 3);
        r.arrival = t;
        Some(r)
    }
    fn on_request_finished(&mut self, _id: RequestId, now: SimTime) {
        self.in_flight -= 1;
        self.ready_at = now;
    }
    fn is_exhausted(&self) -> bool {
        self.next >= self.total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_never_has_more_requests_in_flight_than_its_concurrency() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(&["ok"], vec![], RouterPolicy::RoundRobin, 60.0);
    let mut source = ClosedLoop { concurrency: 2, total: 8, next: 0, in_flight: 0, ready_at: SimTime::ZERO };
    let o = opts(Target::Lb(mock.url()), dir.path());
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    assert_eq!((report.load.sent, report.load.ok), (8, 8));
    assert!(mock.stats.max_active.load(Ordering::SeqCst) <= 2);
    let run = read_run_dir(dir.path()).unwrap();
    // Request k + 2 is released by a finish, so it is never sent before the earliest finish.
    let mut rows = run.requests.clone();
    rows.sort_by_key(|r| r.id);
    let first_end = rows[..2].iter().map(|r| r.end_s.unwrap()).fold(f64::INFINITY, f64::min);
    assert!(rows[2..].iter().all(|r| r.send_s >= first_end));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_fails_every_request_with_the_connection_error() {
    // Bind then drop a listener: its port is (almost surely) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(&["ok"], vec![], RouterPolicy::RoundRobin, 60.0);
    let mut source = FixedSchedule::new(vec![req(0, 0, 0, 3), req(1, 5, 0, 3)]);
    let o = opts(Target::Lb(format!("http://127.0.0.1:{port}")), dir.path());
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    assert_eq!((report.load.sent, report.load.failed), (2, 2));
    let run = read_run_dir(dir.path()).unwrap();
    for r in &run.requests {
        assert_eq!(r.status, RequestStatus::Error);
        assert!(r.error.contains("POST http://127.0.0.1"), "{}", r.error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_run_sends_exactly_the_stream_the_simulator_generates() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sc = scenario(&["ok"], vec![], RouterPolicy::RoundRobin, 60.0);
    sc.workload.phases[0].num_requests = Some(6);
    sc.workload.phases[0].arrival = ArrivalSpec::Poisson { rate: 50.0 };
    sc.workload.phases[0].input_tokens = LengthDist::Uniform { min: 4, max: 40 };
    sc.workload.phases[0].output_tokens = LengthDist::Uniform { min: 1, max: 5 };
    let base = std::path::Path::new(".");
    let planned = sim::workload::open_loop_requests(&sc.workload, 1, sc.seed, base).unwrap();
    let report = live::run::live_run(&sc, base, opts(Target::Lb(mock.url()), dir.path())).await.unwrap();
    assert_eq!((report.load.sent, report.load.ok), (6, 6));
    assert_eq!(report.workload_error, None);
    // Every live row's send lag is accounted for, in the summary and in summary.json.
    let lag = report.summary.send_lag.clone().expect("a live summary reports the send lag");
    assert_eq!(lag.requests, 6);
    assert!(lag.p50_s <= lag.p99_s && lag.p99_s <= lag.max_s && lag.p50_s >= 0.0, "{lag:?}");
    let run = read_run_dir(dir.path()).unwrap();
    let written = run.summary.send_lag.expect("summary.json carries the send lag");
    assert_eq!(written.requests, lag.requests);
    assert!((written.max_s - lag.max_s).abs() < 1e-9, "{written:?} vs {lag:?}");
    let mut rows = run.requests.clone();
    rows.sort_by_key(|r| r.id);
    assert_eq!(rows.len(), planned.len());
    for (r, p) in rows.iter().zip(&planned) {
        assert_eq!(r.id, p.id.0);
        assert_eq!(r.scheduled_s, p.arrival.as_secs_f64());
        assert_eq!(
            (r.prompt_tokens, r.max_tokens, r.output_tokens),
            (p.num_prompt_tokens, p.max_tokens, p.max_tokens)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_run_drives_a_closed_loop_phase_by_completions() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sc = scenario(&["ok"], vec![], RouterPolicy::RoundRobin, 60.0);
    sc.workload.phases[0].num_requests = Some(7);
    sc.workload.phases[0].arrival = ArrivalSpec::closed_loop(2);
    let report =
        live::run::live_run(&sc, std::path::Path::new("."), opts(Target::Lb(mock.url()), dir.path()))
            .await
            .unwrap();
    assert_eq!((report.load.sent, report.load.ok), (7, 7));
    assert!(mock.stats.max_active.load(Ordering::SeqCst) <= 2);
    assert_eq!(read_run_dir(dir.path()).unwrap().requests.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_client_waits_its_reissue_delay_before_sending_again() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sc = scenario(&["ok"], vec![], RouterPolicy::RoundRobin, 60.0);
    sc.workload.phases[0].num_requests = Some(3);
    sc.workload.phases[0].arrival =
        ArrivalSpec::ClosedLoop { concurrency: 1, reissue_delay_s: DelayDist::Fixed { value: 0.2 } };
    let report =
        live::run::live_run(&sc, std::path::Path::new("."), opts(Target::Lb(mock.url()), dir.path()))
            .await
            .unwrap();
    assert_eq!((report.load.sent, report.load.ok), (3, 3));
    let mut rows = read_run_dir(dir.path()).unwrap().requests;
    rows.sort_by_key(|r| r.id);
    // The simulator's generator schedules each send 0.2 s after the previous request ended.
    for w in rows.windows(2) {
        let end = w[0].end_s.unwrap();
        assert!(w[1].scheduled_s >= end + 0.2 - 1e-6, "{} < {} + 0.2", w[1].scheduled_s, end);
        assert!(w[1].send_s >= w[1].scheduled_s - 1e-6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_stop_skips_the_grace_period() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(&["stall"], vec![], RouterPolicy::RoundRobin, 60.0);
    let mut source = FixedSchedule::new(vec![req(0, 0, 0, 4)]);
    let mut o = opts(Target::Lb(mock.url()), dir.path());
    let (handle, signal) = stop_pair();
    o.stop = Some(signal);
    o.grace = Duration::from_secs(3600);
    let run = tokio::spawn(async move { live_run_with_source(&sc, &mut source, o).await });
    mock.wait_for_requests(1).await;
    handle.stop();
    handle.stop_now();
    let report = run.await.unwrap().unwrap();
    assert!(report.load.interrupted);
    let run = read_run_dir(dir.path()).unwrap();
    assert_eq!(run.requests.len(), 1);
    assert!(run.requests[0].error.contains("immediately"), "{}", run.requests[0].error);
}

/// Measures send lag (send - scheduled) at 400 req/s for 5 s, with /metrics scraped every second
/// (`MEASURE_SCRAPE=0` turns scraping off). A measurement, not a test: run it by hand with
/// `cargo test -p live --test it measure_send_lag -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints the send-lag distribution"]
async fn measure_send_lag() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    // MEASURE_BIG_METRICS=1: /metrics is a ~1 MB page (a vLLM with many histograms) on its own port.
    let metrics_port = if std::env::var("MEASURE_BIG_METRICS").as_deref() == Ok("1") {
        let mut page = String::from("vllm:num_requests_running{model_name=\"ok\"} 1\n");
        for i in 0..20_000 {
            page.push_str(&format!(
                "vllm:e2e_request_latency_seconds_bucket{{le=\"{i}.0\",model_name=\"ok\"}} {i}\n"
            ));
        }
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(move || std::future::ready(page.clone())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        port
    } else {
        mock.port
    };
    let sc = scenario(&["ok"], vec![instance("i0", 0, metrics_port)], RouterPolicy::RoundRobin, 60.0);
    let n: u64 = 2000;
    let mut source = FixedSchedule::new((0..n).map(|i| req(i, i * 5 / 2, 0, 4)).collect());
    let mut o = opts(Target::Lb(mock.url()), dir.path());
    if std::env::var("MEASURE_SCRAPE").as_deref() != Ok("0") {
        o.scrape_interval = Some(Duration::from_secs(1));
        o.scrape_host = Some("127.0.0.1".into());
    }
    o.tokens_csv = Some(true);
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    let run = read_run_dir(dir.path()).unwrap();
    let mut lags: Vec<f64> = run.requests.iter().map(|r| (r.send_s - r.scheduled_s) * 1e3).collect();
    lags.sort_by(f64::total_cmp);
    let p = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    println!(
        "sent {} ok {}: lag ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}; over 5 ms: {}; scrape {:?}",
        report.load.sent,
        report.load.ok,
        p(0.5),
        p(0.9),
        p(0.99),
        lags[lags.len() - 1],
        lags.iter().filter(|&&l| l > 5.0).count(),
        report.scrape.map(|s| s.rows)
    );
    let mut late: Vec<(f64, f64)> =
        run.requests.iter().map(|r| (r.scheduled_s, (r.send_s - r.scheduled_s) * 1e3)).collect();
    late.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("latest 15 (scheduled s, lag ms): {:?}", &late[..15.min(late.len())]);
}
