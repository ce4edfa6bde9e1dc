//! The simulator end to end: known answers for single requests, routing, overload, prefix
//! caching and herding; determinism and conservation as properties.

use proptest::prelude::*;
use sim::metrics::RunSummary;
use sim::observe::Observer;
use sim::runner::{simulate_summary, simulate_to_dir};
use sim::scenario::{Override, PerfSpec, Scenario, StepCoefficients, parse_scenario};
use sim::simulation::{SimOptions, simulate};
use sim::trace::{InstanceRow, RequestRow, RequestStatus};
use std::io;
use std::path::Path;

/// Collects rows in memory (shared by the integration tests).
#[derive(Default)]
pub struct Collect {
    pub requests: Vec<RequestRow>,
    pub samples: Vec<InstanceRow>,
}

impl Observer for Collect {
    fn on_request(&mut self, row: &RequestRow) -> io::Result<()> {
        self.requests.push(row.clone());
        Ok(())
    }
    fn on_instance_sample(&mut self, row: &InstanceRow) -> io::Result<()> {
        self.samples.push(row.clone());
        Ok(())
    }
}

/// Two 8B replicas on two H100s under a V1 engine, one open-loop phase.
const TWO_REPLICAS: &str = r#"
name = "sim-test"
seed = 7

[cluster]
gpu = "H100-80GB-SXM"
num_gpus = 2

[defaults.engine]
preset = "vllm-v1"
max_model_len = 8192

[[instances]]
model = "llama-3.1-8b"
gpu = 0

[[instances]]
model = "llama-3.1-8b"
gpu = 1

[router]
policy = "round_robin"

[[workload.phases]]
duration_s = 60
arrival = { process = "poisson", rate = 1.0 }
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 10 }

[output]
sample_interval_s = 0.5
"#;

fn scenarios(text: &str, sets: &[&str]) -> Vec<Scenario> {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    parse_scenario(text, Path::new("tests/sim-test.toml"), &overrides).unwrap().variants
}

fn scenario(text: &str, sets: &[&str]) -> Scenario {
    scenarios(text, sets).remove(0)
}

/// Step time = 5 ms + 0.1 ms per prefill token + 1 ms per decoding sequence.
fn linear() -> StepCoefficients {
    StepCoefficients {
        fixed_s: 0.005,
        per_prefill_token_s: 1e-4,
        per_decode_seq_s: 1e-3,
        per_kv_token_s: 0.0,
        per_prefill_attn_pair_s: 0.0,
    }
}

fn with_linear_profile(mut s: Scenario) -> Scenario {
    for i in &mut s.instances {
        i.perf = PerfSpec::Profile {
            path: "test".into(),
            coefficients: linear(),
            overheads: Default::default(),
            fit: None,
        };
    }
    s
}

fn run(s: &Scenario) -> Collect {
    let mut c = Collect::default();
    simulate(s, Path::new("."), &mut c, SimOptions::default()).unwrap();
    c
}

fn summary(s: &Scenario) -> RunSummary {
    simulate_summary(s, Path::new("."), SimOptions::default()).unwrap().summary
}

#[track_caller]
fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn a_request_alone_has_ttft_of_its_prefill_step_and_tpot_of_a_decode_step() {
    let s = with_linear_profile(scenario(TWO_REPLICAS, &["workload.phases.0.num_requests=1"]));
    let c = run(&s);
    assert_eq!(c.requests.len(), 1);
    let r = &c.requests[0];
    assert_eq!(r.status, RequestStatus::Ok);
    close(r.ttft_s.unwrap(), 0.005 + 100.0 * 1e-4); // one 100-token prefill step
    close(r.tpot_s.unwrap(), 0.005 + 1e-3); // each later token: one decode step
    close(r.e2e_s.unwrap(), 0.015 + 9.0 * 0.006);
    assert_eq!(r.output_tokens, 10);
}

#[test]
fn a_long_prompt_alone_is_prefilled_in_budget_sized_chunks() {
    let s = with_linear_profile(scenario(
        TWO_REPLICAS,
        &[
            "workload.phases.0.num_requests=1",
            "workload.phases.0.input_tokens.value=10000",
            "defaults.engine.max_model_len=16384",
            "defaults.engine.max_num_batched_tokens=2048",
        ],
    ));
    let r = &run(&s).requests[0];
    // ceil(10000 / 2048) = 5 chunk steps: 2048 x 4 + 1808 tokens.
    close(r.ttft_s.unwrap(), 5.0 * 0.005 + 10000.0 * 1e-4);
    close(r.tpot_s.unwrap(), 0.006);
}

#[test]
fn at_very_low_load_every_routing_policy_gives_the_same_latencies() {
    // Requests 20 s apart never overlap: each runs alone on whichever replica it is sent to.
    let sets = [
        "workload.phases.0.arrival={process=\"constant\", rate=0.05}",
        "workload.phases.0.duration_s=2000",
        "workload.phases.0.input_tokens={dist=\"uniform\", min=10, max=3000}",
    ];
    let mut stats = Vec::new();
    for policy in ["round_robin", "queue_aware", "least_outstanding", "power_of_two", "random"] {
        let mut s = scenario(TWO_REPLICAS, &sets);
        s.router.policy = serde_json::from_value(serde_json::json!(policy)).unwrap();
        let all = summary(&s).overall;
        assert!(all.requests > 50, "{}", all.requests);
        stats.push((policy, all.ttft.unwrap(), all.tpot.unwrap(), all.e2e.unwrap()));
    }
    let (_, t0, p0, e0) = &stats[0];
    for (policy, t, p, e) in &stats[1..] {
        for (a, b) in [(t0.p50, t.p50), (t0.p99, t.p99), (p0.p50, p.p50), (e0.p90, e.p90)] {
            assert!((a - b).abs() < 1e-9, "{policy}: {a} vs {b}");
        }
    }
}

#[test]
fn load_above_capacity_grows_the_queue_and_preempts_when_kv_is_short() {
    let s = scenario(
        TWO_REPLICAS,
        &[
            "workload.phases.0.arrival.rate=60",
            "workload.phases.0.duration_s=20",
            "workload.phases.0.input_tokens.value=1000",
            "workload.phases.0.output_tokens.value=400",
            "defaults.engine.num_gpu_blocks_override=800",
            "defaults.engine.max_model_len=4096",
        ],
    );
    let c = run(&s);
    let waiting = |from: f64, to: f64| {
        c.samples
            .iter()
            .filter(|r| r.time_s >= from && r.time_s < to)
            .map(|r| r.num_requests_waiting)
            .max()
            .unwrap_or(0)
    };
    assert!(waiting(15.0, 20.0) > waiting(0.0, 5.0) + 50, "{} vs {}", waiting(0.0, 5.0), waiting(15.0, 20.0));
    let preempted: u32 = c.requests.iter().map(|r| r.preemptions.unwrap_or(0)).sum();
    assert!(preempted > 0);
    let last: u64 = s
        .instances
        .iter()
        .map(|i| c.samples.iter().rev().find(|r| r.instance == i.name).unwrap().num_preemptions_total)
        .sum();
    assert_eq!(u64::from(preempted), last, "per-request and per-instance preemption counts agree");
    assert!(c.requests.iter().all(|r| r.status == RequestStatus::Ok));
}

#[test]
fn prefix_caching_lowers_ttft_for_shared_prefixes() {
    let base = [
        "workload.phases.0.arrival.rate=4",
        "workload.phases.0.input_tokens.value=2000",
        "workload.prefix.tokens=1536",
        "workload.prefix.groups=1",
        "workload.prefix.fraction=1.0",
    ];
    let cached =
        scenario(TWO_REPLICAS, &[&base[..], &["defaults.engine.enable_prefix_caching=true"]].concat());
    let uncached =
        scenario(TWO_REPLICAS, &[&base[..], &["defaults.engine.enable_prefix_caching=false"]].concat());
    let (a, b) = (summary(&cached).overall, summary(&uncached).overall);
    let (ta, tb) = (a.ttft.unwrap().p50, b.ttft.unwrap().p50);
    assert!(ta < 0.6 * tb, "cached TTFT p50 {ta} vs uncached {tb}");
    let rows = run(&cached).requests;
    let hits = rows.iter().filter(|r| r.cached_tokens.unwrap_or(0) >= 1520).count();
    assert!(hits as f64 > 0.9 * rows.len() as f64, "{hits} of {} hit the prefix", rows.len());
}

#[test]
fn queue_aware_routing_on_a_one_second_poll_herds_a_burst_and_least_outstanding_does_not() {
    let four = TWO_REPLICAS.replace("num_gpus = 2", "num_gpus = 4")
        + "\n[[instances]]\nmodel = \"llama-3.1-8b\"\ngpu = 2\n\n[[instances]]\nmodel = \"llama-3.1-8b\"\ngpu = 3\n";
    let burst = [
        "workload.phases.0.arrival={process=\"constant\", rate=200.0}",
        "workload.phases.0.duration_s=0.5",
        "router.poll_interval_s=1.0",
    ];
    let share = |policy: &str| {
        let mut s = scenario(&four, &burst);
        s.router.policy = serde_json::from_value(serde_json::json!(policy)).unwrap();
        let sum = summary(&s);
        let n: u64 = sum.instances.iter().map(|i| i.requests).sum();
        let max = sum.instances.iter().map(|i| i.requests).max().unwrap();
        (max as f64 / n as f64, sum.overall.ttft.unwrap().p90)
    };
    let (qa_share, qa_ttft) = share("queue_aware");
    let (lo_share, lo_ttft) = share("least_outstanding");
    assert!(qa_share > 0.9, "queue-aware sent {qa_share} of the burst to one replica");
    assert!(lo_share < 0.3, "least-outstanding sent {lo_share} to one replica");
    assert!(qa_ttft > lo_ttft, "herding costs TTFT: {qa_ttft} vs {lo_ttft}");
}

#[test]
fn the_same_seed_gives_byte_identical_run_dirs() {
    let s = scenario(TWO_REPLICAS, &["workload.phases.0.arrival.rate=20"]);
    let dir = tempfile::tempdir().unwrap();
    for k in ["a", "b"] {
        simulate_to_dir(&s, Path::new("."), &dir.path().join(k), false, "t", SimOptions::default()).unwrap();
    }
    for f in ["requests.csv", "instances.csv", "summary.json"] {
        let a = std::fs::read(dir.path().join("a").join(f)).unwrap();
        let b = std::fs::read(dir.path().join("b").join(f)).unwrap();
        assert!(a.len() > 100 && a == b, "{f} differs between runs of the same seed");
    }
}

/// One (id, scheduled time, model, prompt, output) per request, sorted by id.
fn stream(c: &Collect) -> Vec<(u64, f64, String, u32, u32)> {
    let mut v: Vec<_> = c
        .requests
        .iter()
        .map(|r| (r.id, r.scheduled_s, r.model.clone(), r.prompt_tokens, r.max_tokens))
        .collect();
    v.sort_by_key(|x| x.0);
    v
}

const VARIANTS: &str = r#"
[variants.baseline]
set = { "defaults.engine.preset" = "vllm-0.6.4", "router.policy" = "round_robin", "defaults.engine.enable_prefix_caching" = true }
[variants.managed]
set = { "router.policy" = "queue_aware", "defaults.engine.enable_prefix_caching" = false }
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_request_ends_exactly_once_and_the_kv_cache_drains(
        rate in 0.5f64..80.0,
        input in 1u32..3000,
        output in 1u32..300,
        blocks in prop_oneof![Just(None), (200u32..3000).prop_map(Some)],
        policy in prop_oneof![Just("round_robin"), Just("queue_aware"), Just("least_outstanding"), Just("power_of_two"), Just("random")],
        preset in prop_oneof![Just("vllm-v1"), Just("vllm-0.6.4")],
        caching in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let mut sets = vec![
            format!("workload.phases.0.arrival.rate={rate}"),
            "workload.phases.0.duration_s=5".to_string(),
            format!("workload.phases.0.input_tokens={{dist=\"uniform\", min=1, max={input}}}"),
            format!("workload.phases.0.output_tokens={{dist=\"uniform\", min=1, max={output}}}"),
            format!("router.policy=\"{policy}\""),
            format!("defaults.engine.preset=\"{preset}\""),
            format!("defaults.engine.enable_prefix_caching={caching}"),
            "workload.prefix={tokens=64, groups=2, fraction=0.5}".to_string(),
            format!("seed={seed}"),
            // Longer requests than this are rejected (a property too): the smallest cache holds it.
            "defaults.engine.max_model_len=3200".to_string(),
        ];
        if let Some(b) = blocks {
            sets.push(format!("defaults.engine.num_gpu_blocks_override={b}"));
        }
        let refs: Vec<&str> = sets.iter().map(String::as_str).collect();
        let s = scenario(TWO_REPLICAS, &refs);
        let mut c = Collect::default();
        let stats = simulate(&s, Path::new("."), &mut c, SimOptions::default()).unwrap();
        let mut ids: Vec<u64> = c.requests.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..stats.requests).collect::<Vec<_>>());
        for r in &c.requests {
            match r.status {
                RequestStatus::Ok => prop_assert_eq!(r.output_tokens, r.max_tokens),
                RequestStatus::Rejected => prop_assert!(!r.error.is_empty()),
                other => prop_assert!(false, "unexpected status {:?}", other),
            }
        }
        // The last sample of each instance shows an empty, fully freed cache.
        for inst in &s.instances {
            let last = c.samples.iter().rev().find(|r| r.instance == inst.name).unwrap();
            prop_assert_eq!(last.kv_cache_usage, 0.0);
            prop_assert_eq!(last.num_requests_running + last.num_requests_waiting, 0);
        }
    }

    #[test]
    fn variants_of_one_scenario_see_the_identical_request_stream(rate in 1.0f64..40.0, seed in 0u64..1000) {
        let text = format!("{TWO_REPLICAS}\n{VARIANTS}");
        let r = format!("workload.phases.0.arrival.rate={rate}");
        let sd = format!("seed={seed}");
        let v = scenarios(&text, &[&r, &sd, "workload.phases.0.duration_s=10"]);
        prop_assert_eq!(v.len(), 2);
        let (a, b) = (run(&v[0]), run(&v[1]));
        prop_assert!(!a.requests.is_empty());
        prop_assert_eq!(stream(&a), stream(&b));
    }
}

#[test]
fn the_summary_reports_the_prefix_cache_hit_rate_per_model_and_instance() {
    let sets = [
        "workload.phases.0.arrival.rate=4",
        "workload.phases.0.input_tokens.value=2000",
        "workload.prefix.tokens=1536",
        "workload.prefix.groups=2",
        "workload.prefix.fraction=0.5",
        "instances.1.engine.enable_prefix_caching=false",
    ];
    let s = scenario(TWO_REPLICAS, &sets);
    let rows = run(&s).requests;
    let sum = summary(&s);
    // vLLM counts lookups of instances with prefix caching on only: instance 0 here.
    let on: Vec<&RequestRow> = rows.iter().filter(|r| r.instance == s.instances[0].name).collect();
    let queries: u64 =
        on.iter().filter(|r| r.cached_tokens.is_some()).map(|r| u64::from(r.prompt_tokens)).sum();
    let hits: u64 = on.iter().filter_map(|r| r.cached_tokens).map(u64::from).sum();
    assert!(hits > 0 && queries > hits);
    let p = sum.instances[0].prefix_cache;
    assert_eq!((p.queries, p.hits), (queries, hits));
    assert_eq!(p.hit_rate, Some(hits as f64 / queries as f64));
    assert_eq!(sum.instances[1].prefix_cache.hit_rate, None, "caching off: nothing queried");
    assert_eq!(sum.models[0].prefix_cache, p, "the model's only caching instance");
    assert_eq!(sum.overall.prefix_cache, p);
}

#[test]
fn idle_simulated_time_writes_no_samples_between_arrivals() {
    // Two requests a million seconds apart, sampled every millisecond: without pausing over idle
    // time this would be 2e9 samples per instance (the limit is raised so loading allows it).
    let s = with_linear_profile(scenario(
        TWO_REPLICAS,
        &[
            "workload.phases.0.arrival={ process = \"constant\", rate = 1e-6 }",
            "workload.phases.0.num_requests=2",
            "workload.phases.0.duration_s=3e6",
            "output.sample_interval_s=0.001",
            "output.max_samples=1000000000000000",
        ],
    ));
    let c = run(&s);
    assert_eq!(c.requests.len(), 2);
    assert!(c.requests.iter().all(|r| r.status == RequestStatus::Ok));
    // Each request keeps the cluster busy ~0.07 s: about 70 samples per instance each.
    assert!(c.samples.len() < 2_000, "{} samples over idle time", c.samples.len());
    // Samples stay on the interval's grid, in time order.
    for w in c.samples.windows(2) {
        assert!(w[0].time_s <= w[1].time_s);
    }
    let busy = c.samples.iter().filter(|r| r.num_requests_running > 0).count();
    assert!(busy > 0, "samples while a request runs are still taken");
}

#[test]
fn a_workload_above_the_planned_limits_is_refused_on_load_with_the_estimate() {
    let err = |sets: &[&str]| {
        let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
        parse_scenario(TWO_REPLICAS, Path::new("tests/sim-test.toml"), &overrides).err().unwrap()
    };
    let e = err(&["workload.phases.0.arrival.rate=1e12", "workload.phases.0.duration_s=1"]);
    assert_eq!(e.field, "output.max_requests", "{e}");
    assert!(e.reason.contains("1.000e12") && e.reason.contains("--set output.max_requests="), "{e}");
    let e = err(&["output.sample_interval_s=0.001", "workload.phases.0.duration_s=1e5"]);
    assert_eq!(e.field, "output.max_samples", "{e}");
    let e =
        err(&["workload.phases.0.input_tokens={ dist = \"fixed\", value = 1000 }", "output.max_tokens=1000"]);
    assert_eq!(e.field, "output.max_tokens", "{e}");
    let e = err(&["output.sample_interval_s=1e-9"]);
    assert_eq!(e.field, "output.sample_interval_s", "{e}");
    // Raising the limit lets the same workload load.
    let ok = scenarios(
        TWO_REPLICAS,
        &[
            "output.sample_interval_s=0.001",
            "workload.phases.0.duration_s=1e5",
            "output.max_samples=1000000000000",
        ],
    );
    assert_eq!(ok.len(), 1);
}

#[test]
fn steps_far_longer_than_planned_stop_at_the_sample_limit_with_an_error() {
    // A closed loop on a profile whose steps take an hour (a valid file with an absurd
    // coefficient): the plan, made from the workload, cannot see how long it runs; the run stops
    // when instances.csv reaches the limit instead of writing samples for simulated years.
    let mut s = with_linear_profile(scenario(
        TWO_REPLICAS,
        &[
            "workload.phases.0.arrival={ process = \"closed_loop\", concurrency = 2 }",
            "workload.phases.0.num_requests=4",
            "output.sample_interval_s=0.5",
            "output.max_samples=5000",
        ],
    ));
    for i in &mut s.instances {
        if let PerfSpec::Profile { coefficients, .. } = &mut i.perf {
            coefficients.fixed_s = 3600.0;
        }
    }
    let mut c = Collect::default();
    let e = simulate(&s, Path::new("."), &mut c, SimOptions::default()).unwrap_err();
    assert!(matches!(e, sim::simulation::SimError::TooManySamples { limit: 5_000, .. }), "{e}");
    assert!(e.to_string().contains("output.max_samples"), "{e}");
    assert!(c.samples.len() <= 5_000, "{} samples written", c.samples.len());
    // The same run with a step of 5 ms stays far below the limit.
    let ok = with_linear_profile(scenario(
        TWO_REPLICAS,
        &[
            "workload.phases.0.arrival={ process = \"closed_loop\", concurrency = 2 }",
            "workload.phases.0.num_requests=4",
            "output.sample_interval_s=0.5",
            "output.max_samples=5000",
        ],
    ));
    assert_eq!(run(&ok).requests.len(), 4);
}

#[test]
fn the_poll_phase_decides_how_a_burst_herds_under_queue_aware_routing() {
    // A 0.5-s burst over four replicas. Polled at 0, 1, 2 s every replica looks idle for the whole
    // burst (it herds onto one); polled at 0.25, 1.25, ... s the poll inside the burst spreads
    // the rest of it. Least-outstanding does not poll: the phase changes nothing.
    let four = TWO_REPLICAS.replace("num_gpus = 2", "num_gpus = 4")
        + "\n[[instances]]\nmodel = \"llama-3.1-8b\"\ngpu = 2\n\n[[instances]]\nmodel = \"llama-3.1-8b\"\ngpu = 3\n";
    let run_with = |policy: &str, offset: &str| {
        let sets = [
            "workload.phases.0.arrival={process=\"constant\", rate=200.0}",
            "workload.phases.0.duration_s=0.5",
            "router.poll_interval_s=1.0",
            offset,
        ];
        let mut s = scenario(&four, &sets);
        s.router.policy = serde_json::from_value(serde_json::json!(policy)).unwrap();
        let sum = summary(&s);
        let n: u64 = sum.instances.iter().map(|i| i.requests).sum();
        let max = sum.instances.iter().map(|i| i.requests).max().unwrap();
        (max as f64 / n as f64, sum.overall.ttft.unwrap().p90)
    };
    let (at0, _) = run_with("queue_aware", "router.poll_offset_s=0.0");
    let (at_quarter, _) = run_with("queue_aware", "router.poll_offset_s=0.25");
    assert!(at0 > 0.9, "polled at 0: {at0} of the burst on one replica");
    assert!(at_quarter < 0.75, "polled at 0.25 s: {at_quarter} of the burst on one replica");
    assert_eq!(
        run_with("least_outstanding", "router.poll_offset_s=0.0"),
        run_with("least_outstanding", "router.poll_offset_s=0.25")
    );
    // The phase lies within the interval.
    let bad: Override = "router.poll_offset_s=1.0".parse().unwrap();
    let e = parse_scenario(TWO_REPLICAS, Path::new("tests/sim-test.toml"), &[bad]).unwrap_err();
    assert_eq!(e.field, "router.poll_offset_s", "{e}");
}
