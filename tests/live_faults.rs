//! Failures end as rows, end to end (emulated engines with injected faults, the LB, the load
//! generator): an instance killed mid-run is ejected by the LB within 2 s and its in-flight
//! requests are recorded as failed with a reason; a 5xx, a mid-stream error, a stall and
//! malformed SSE each end as a failed row; there is always one row per request sent; Ctrl-C
//! (SIGINT to the `modelsguard live run` process) leaves a valid partial run dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rig, load, run_opts, workspace_file};
use live::emulator::Fault;
use live::loadgen::FixedSchedule;
use live::proxy::LbOptions;
use live::run::{Target, live_run, live_run_with_source};
use sim::trace::{RequestRow, RequestStatus, read_run_dir};
use sim::workload::RequestSpec;
use sim::{InstanceId, ModelId, RequestId, SimTime};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = "scenarios/live-loopback.toml";

fn req(id: u64, at_ms: u64, model: u32) -> RequestSpec {
    RequestSpec {
        id: RequestId(id),
        phase: 0,
        arrival: SimTime(at_ms * 1_000_000),
        model: ModelId(model),
        num_prompt_tokens: 32,
        max_tokens: 6,
        content: Default::default(),
    }
}

fn rows_of<'a>(rows: &'a [RequestRow], instance: &str) -> Vec<&'a RequestRow> {
    rows.iter().filter(|r| r.instance == instance).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_injected_fault_ends_as_a_failed_row_with_its_reason() {
    let (_, scenario) = load(SCENARIO, &[]);
    // No retries: each request must meet the fault of the replica it was routed to.
    let mut rig = Rig::start(&scenario, LbOptions { max_retries: 0, ..LbOptions::default() }).await;
    let faults = [
        Fault::ServerError { status: 500 },
        Fault::MidStreamError { after_tokens: 2 },
        Fault::Stall { after_tokens: 2 },
        Fault::MalformedSse { after_tokens: 2 },
    ];
    for (i, f) in faults.into_iter().enumerate() {
        rig.emu.set_fault(InstanceId(i as u32), f).await.unwrap();
    }
    // Round robin: two requests per model go to each of its two replicas.
    let specs = (0..8).map(|k| req(k, k * 20, (k % 2) as u32)).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut o = run_opts(Target::Lb(rig.lb_url.clone()), dir.path());
    o.per_request_timeout = Duration::from_secs(2);
    let report = live_run_with_source(&rig.scenario, &mut FixedSchedule::new(specs), o).await.unwrap();
    rig.stop().await;
    assert_eq!((report.load.sent, report.load.ok, report.load.failed), (8, 0, 8));

    let run = read_run_dir(dir.path()).unwrap();
    assert_eq!(run.requests.len(), 8, "one row per request sent");
    assert_eq!(run.summary.overall.requests, 8);
    let expect: [(&str, RequestStatus, &str); 4] = [
        ("llama-3.1-8b#0", RequestStatus::Error, "HTTP 500"),
        ("llama-3.1-8b#1", RequestStatus::Error, "injected fault: generation failed"),
        ("qwen2.5-7b#0", RequestStatus::Timeout, "per-request timeout"),
        ("qwen2.5-7b#1", RequestStatus::Error, "malformed"),
    ];
    for (instance, status, reason) in expect {
        let rows = rows_of(&run.requests, instance);
        assert_eq!(rows.len(), 2, "{instance}: {:?}", run.requests);
        for r in rows {
            assert_eq!(r.status, status, "{r:?}");
            assert!(r.error.to_lowercase().contains(&reason.to_lowercase()), "{instance}: {}", r.error);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_ejected_within_2_s_and_its_in_flight_requests_fail_with_a_reason() {
    let (file, scenario) = load(SCENARIO, &["workload.phases.0.num_requests=60"]);
    let mut rig = Rig::start(&scenario, LbOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = run_opts(Target::Lb(rig.lb_url.clone()), dir.path());
    let (sc, base) = (rig.scenario.clone(), file.base_dir.clone());
    let run = tokio::spawn(async move { live_run(&sc, &base, opts).await });

    // Kill llama-3.1-8b#0 while it streams at least two requests.
    let victim = InstanceId(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rig.lb.stats()[0].in_flight < 2 {
        assert!(Instant::now() < deadline, "instance 0 never had 2 requests in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = Instant::now();
    rig.emu.set_fault(victim, Fault::Kill).await.unwrap();
    while rig.lb.stats()[0].healthy {
        assert!(killed_at.elapsed() < Duration::from_secs(10), "the LB never ejected the killed instance");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ejected_after = killed_at.elapsed();
    eprintln!("ejected {ejected_after:?} after the kill");
    let report = run.await.unwrap().unwrap();
    let routed_after_kill = rig.lb.stats()[0].routed_total;
    rig.stop().await;
    assert!(ejected_after < Duration::from_millis(2500), "ejected {ejected_after:?} after the kill");

    let run = read_run_dir(dir.path()).unwrap();
    assert_eq!(report.load.sent, 60);
    assert_eq!(run.requests.len(), 60, "one row per request sent");
    let failed: Vec<&RequestRow> = run.requests.iter().filter(|r| r.status != RequestStatus::Ok).collect();
    assert!(failed.len() >= 2, "the in-flight requests of the killed instance failed: {failed:?}");
    assert_eq!(failed.len() as u64 + run.summary.overall.ok, 60);
    // The kill happened just before the first failure ended (in run-clock seconds).
    let killed_s = failed.iter().filter_map(|r| r.end_s).fold(f64::MAX, f64::min);
    let ejected_s = killed_s + ejected_after.as_secs_f64();
    for r in &failed {
        // A request whose stream broke before the LB sent its headers has no instance column;
        // its reason still says what happened.
        assert!(["llama-3.1-8b#0", ""].contains(&r.instance.as_str()), "{r:?}");
        assert_eq!((r.status, r.model.as_str()), (RequestStatus::Error, "llama-3.1-8b"), "{r:?}");
        assert!(!r.error.is_empty() && r.end_s.is_some(), "{r:?}");
        assert!(r.send_s < ejected_s + 0.05, "only requests sent before the ejection fail: {r:?}");
    }
    assert!(failed.iter().any(|r| r.instance == "llama-3.1-8b#0"), "{failed:?}");
    // What was sent after the ejection went to the surviving replica.
    for r in run.requests.iter().filter(|r| r.send_s > ejected_s + 0.05 && r.model == "llama-3.1-8b") {
        assert_eq!((r.status, r.instance.as_str()), (RequestStatus::Ok, "llama-3.1-8b#1"), "{r:?}");
    }
    assert!(routed_after_kill >= 2);
}

/// Reads lines from the child's stdout until one satisfies `pred`, returning it.
fn wait_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    pred: impl Fn(&str) -> bool,
) -> String {
    for line in lines.by_ref() {
        let line = line.unwrap();
        if pred(&line) {
            return line;
        }
    }
    panic!("the process ended before printing the expected line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_to_live_run_leaves_a_valid_partial_run_dir() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (_, scenario) = load(SCENARIO, &[]);
    let rig = Rig::start(&scenario, LbOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelsguard"))
        .args(["live", "run"])
        .arg(workspace_file(SCENARIO))
        .args(["--target", &format!("lb={}", rig.lb_url), "--scrape-interval-ms", "0", "--no-report"])
        .args(["--grace", "0.3", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once some requests have finished and others are streaming.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = std::fs::read_to_string(out.join("requests.csv")).map_or(0, |t| t.lines().count());
        if rows > 10 {
            break;
        }
        assert!(Instant::now() < deadline, "no rows within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let stdout = child.stdout.take().unwrap();
    let summary_line = tokio::task::spawn_blocking(move || {
        wait_line(&mut BufReader::new(stdout).lines(), |l| l.starts_with("sent "))
    })
    .await
    .unwrap();
    let status = child.wait().unwrap();
    let routed: u64 = rig.lb.stats().iter().map(|s| s.routed_total).sum();
    rig.stop().await;
    assert!(status.success(), "live run exits cleanly after Ctrl-C: {status:?}");
    assert!(summary_line.contains("interrupted"), "{summary_line}");
    let sent: u64 = summary_line.split_whitespace().nth(1).unwrap().parse().unwrap();

    let run = read_run_dir(&out).unwrap();
    assert!(sent < 160, "the run was cut short: {summary_line}");
    assert_eq!(run.requests.len() as u64, sent, "one row per request sent");
    assert_eq!(routed, sent, "the LB saw exactly the requests sent");
    assert_eq!(run.summary.overall.requests, sent);
    assert!(run.summary.overall.ok > 0);
    for r in run.requests.iter().filter(|r| r.status != RequestStatus::Ok) {
        assert!(r.error.contains("interrupted"), "{}", r.error);
    }
}
