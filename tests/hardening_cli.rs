//! Hardening through the binary (issue 12, items 1, 2, 5, 7 and 11): every stop signal ends a
//! long-running command like Ctrl-C and leaves a run dir that says whether it is complete;
//! `report` refuses run dirs whose rows disagree with their summary; bad arguments and oversized
//! workloads fail before any work; a closed stdout ends quietly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rig, load, workspace_file};
use live::proxy::LbOptions;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = "scenarios/live-loopback.toml";

fn modelsguard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_modelsguard"))
}

fn run(args: &[&str]) -> Output {
    modelsguard().args(args).stdin(Stdio::null()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scenario_path() -> String {
    workspace_file(SCENARIO).to_str().unwrap().to_string()
}

/// Starts `live run` against `lb_url` writing `out`, with `extra` arguments.
fn spawn_live_run(lb_url: &str, out: &Path, extra: &[&str]) -> Child {
    modelsguard()
        .args(["live", "run", &scenario_path(), "--target", &format!("lb={lb_url}")])
        .args(["--scrape-interval-ms", "200", "--no-report", "--grace", "0.3", "--out"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (up to a generous bound) until `requests.csv` in `out` holds more than `rows` rows.
async fn wait_rows(out: &Path, rows: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(out.join("requests.csv")).map_or(0, |t| t.lines().count()) <= rows {
        assert!(Instant::now() < deadline, "no {rows} rows within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `report` on `dir`; returns its output and report.md.
fn report(dir: &Path) -> (Output, String) {
    let out = dir.parent().unwrap().join(format!("report-{}", dir.file_name().unwrap().to_string_lossy()));
    let o = modelsguard().arg("report").arg(dir).arg("--out").arg(&out).output().unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap_or_default();
    (o, md)
}

async fn stop_signal_leaves_a_partial_run_dir_that_report_marks(signal: Signal, name: &str) {
    let (_, scenario) = load(SCENARIO, &[]);
    let rig = Rig::start(&scenario, LbOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = spawn_live_run(&rig.lb_url, &out, &[]);
    wait_rows(&out, 10).await;
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> =
        tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().map_while(Result::ok).collect())
            .await
            .unwrap();
    let status = child.wait().unwrap();
    rig.stop().await;
    assert!(status.success(), "live run exits 0 after {name}: {status:?}");
    let line = lines.iter().find(|l| l.starts_with("sent ")).cloned().unwrap_or_default();
    assert!(line.contains(&format!("PARTIAL: interrupted by {name}")), "{lines:?}");

    let marker = std::fs::read_to_string(out.join("PARTIAL")).unwrap();
    assert!(marker.contains(&format!("interrupted by {name}")), "{marker}");
    let (o, md) = report(&out);
    assert!(o.status.success(), "report accepts the partial run dir: {}", stderr(&o));
    assert!(stderr(&o).contains("PARTIAL run"), "report warns: {}", stderr(&o));
    assert!(md.contains("**WARNING:**") && md.contains(&format!("interrupted by {name}")), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_live_run_leaves_a_partial_run_dir_that_report_accepts_and_marks() {
    stop_signal_leaves_a_partial_run_dir_that_report_marks(Signal::SIGTERM, "SIGTERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_to_live_run_leaves_a_partial_run_dir_that_report_accepts_and_marks() {
    stop_signal_leaves_a_partial_run_dir_that_report_marks(Signal::SIGHUP, "SIGHUP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_s_term_5_live_run_leaves_a_complete_or_partial_run_dir_that_report_accepts() {
    if Command::new("timeout").arg("--version").output().is_err() {
        eprintln!("skipped: no coreutils `timeout` here");
        return;
    }
    let (_, scenario) = load(SCENARIO, &[]);
    let rig = Rig::start(&scenario, LbOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "--preserve-status",
        "-s",
        "TERM",
        "5",
        env!("CARGO_BIN_EXE_modelsguard"),
        "live",
        "run",
        &scenario_path(),
    ])
    .args(["--target", &format!("lb={}", rig.lb_url), "--no-report", "--grace", "0.3", "--out"])
    .arg(&out);
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    rig.stop().await;
    assert!(o.status.success(), "live run ends 0 whether or not SIGTERM came: {}", stderr(&o));
    let (r, md) = report(&out);
    assert!(r.status.success(), "report accepts the run dir: {}", stderr(&r));
    if out.join("PARTIAL").exists() {
        assert!(md.contains("PARTIAL run"), "{md}");
    } else {
        assert!(!md.contains("PARTIAL run"), "{md}");
    }
}

/// The first stdout line of `child` that contains `marker`.
fn line_with(child: &mut Child, marker: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.by_ref().map_while(Result::ok).find(|l| l.contains(marker)).unwrap_or_default();
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    line
}

#[test]
fn lb_and_emulate_exit_cleanly_on_ctrl_c_sigterm_and_sighup() {
    let scenario = scenario_path();
    for (signal, name) in
        [(Signal::SIGINT, "SIGINT"), (Signal::SIGTERM, "SIGTERM"), (Signal::SIGHUP, "SIGHUP")]
    {
        let mut emu = modelsguard()
            .args(["emulate", &scenario, "--instances", "llama-3.1-8b#0", "--set", "instances.0.port=0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(line_with(&mut emu, "llama-3.1-8b#0 on http://").contains("http://"), "emulate started");
        let mut lb = modelsguard()
            .args(["lb", &scenario, "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(line_with(&mut lb, "listening on").contains("http://"), "lb started");
        for (what, mut child) in [("lb", lb), ("emulate", emu)] {
            kill(Pid::from_raw(child.id() as i32), signal).unwrap();
            let status = child.wait().unwrap();
            assert!(status.success(), "{what} exits 0 on {name}: {status:?}");
        }
    }
}

/// Simulates a small scenario into `dir` with the CLI.
fn simulate_small(dir: &Path) {
    let o = modelsguard()
        .args([
            "simulate",
            &scenario_path(),
            "--set",
            "workload.phases.0.num_requests=12",
            "--no-report",
            "-q",
        ])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn report_refuses_a_run_dir_whose_requests_csv_is_empty_header_only_garbage_or_short() {
    let tmp = tempfile::tempdir().unwrap();
    simulate_small(tmp.path());
    let run_dir = tmp.path().join("default");
    let good = std::fs::read_to_string(run_dir.join("requests.csv")).unwrap();
    let (o, _) = report(&run_dir);
    assert!(o.status.success(), "the intact run dir reports: {}", stderr(&o));
    let header = good.lines().next().unwrap().to_string();
    let short: String = good.lines().take(3).map(|l| format!("{l}\n")).collect();
    for (what, text) in [
        ("empty", String::new()),
        ("header only", format!("{header}\n")),
        ("garbage", "hello\nworld\n".to_string()),
        ("rows missing", short),
    ] {
        std::fs::write(run_dir.join("requests.csv"), &text).unwrap();
        let (o, _) = report(&run_dir);
        assert!(!o.status.success(), "{what}: report must refuse");
        let err = stderr(&o);
        assert!(err.contains("requests.csv"), "{what}: the error names the file: {err}");
    }
}

#[test]
fn report_refuses_a_run_dir_killed_before_its_summary_and_says_it_is_partial() {
    let tmp = tempfile::tempdir().unwrap();
    simulate_small(tmp.path());
    let run_dir = tmp.path().join("default");
    assert!(!run_dir.join("PARTIAL").exists(), "a finished run has no PARTIAL marker");
    // What a SIGKILL leaves: the marker written at the start, no summary.json.
    std::fs::remove_file(run_dir.join("summary.json")).unwrap();
    std::fs::write(run_dir.join("PARTIAL"), "the run did not finish\n").unwrap();
    let (o, _) = report(&run_dir);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("partial run dir"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_fail_at_once_naming_the_argument() {
    let s = scenario_path();
    let unused = "lb=http://127.0.0.1:9"; // nothing listens: a run would only fail after its requests
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["live", "run", &s, "--target", unused, "--compare", "nope"], "--compare nope"),
        (vec!["live", "run", &s, "--target", unused, "--timeout", "0"], "--timeout"),
        (vec!["live", "run", &s, "--deadline", "0", "--target", unused], "--deadline"),
        (vec!["live", "run", &s, "--direct", "not a host!!"], "--direct"),
        (vec!["live", "run", &s, "--target", "lb=http://bad host:80"], "not a host name"),
        (vec!["lb", &s, "--upstream-host", "bad host", "--port", "0"], "--upstream-host"),
        (vec!["emulate", &s, "--time-scale", "1e300"], "out of range"),
        (vec!["emulate", &s, "--time-scale", "0"], "out of range"),
        (vec!["simulate", &s, "--seed", "18446744073709551615"], "largest seed"),
        (vec!["simulate", &s, "--set", "workload.phases.0.arrival.rate=1,5"], "does not parse"),
        (vec!["plan", &s, "--gpu", "H999"], "--gpu: unknown GPU"),
        (vec!["live", "up", &s, "--dry-run", "--engine-host", "a b"], "--engine-host"),
    ];
    for (args, expect) in cases {
        let o = run(&args);
        assert!(!o.status.success(), "{args:?} must fail");
        let err = stderr(&o);
        assert!(err.contains(expect), "{args:?}: expected {expect:?} in: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_workload_above_the_request_limit_is_refused_before_it_allocates_and_says_how_to_raise_it() {
    let s = scenario_path();
    let rate = ["--set", "workload.phases.0.arrival.rate=1e12", "--set", "workload.phases.0.duration_s=1"];
    let mut args = vec!["simulate", s.as_str(), "--no-report"];
    args.extend(rate);
    args.extend(["--set", "workload.phases.0.num_requests=1000000000000"]);
    let o = run(&args);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("output.max_requests") && err.contains("--set output.max_requests="), "{err}");
}

#[test]
fn a_closed_stdout_ends_quietly_with_exit_0() {
    let mut child = modelsguard()
        .args(["live", "up", &scenario_path(), "--dry-run", "--run-dir"])
        .arg(std::env::temp_dir().join("modelsguard-closed-stdout-never-created"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the command writes: every write then meets a broken pipe.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}: {}", o.status, stderr(&o));
    assert!(stderr(&o).is_empty(), "quiet: {}", stderr(&o));
}

#[test]
fn sigterm_to_sweep_finishes_the_runs_in_progress_and_leaves_a_partial_sweep_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let seed = workspace_file("scenarios/seed-6xh100.toml");
    let mut child = modelsguard()
        .args(["sweep", seed.to_str().unwrap(), "--variant", "baseline", "--reps", "1", "--jobs", "1"])
        .args([
            "--vary",
            "workload.phases.1.arrival.rate=1..400:1",
            "--set",
            "workload.phases.*.duration_s=3",
        ])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The plan line comes after the handlers are installed and before the first run starts.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let plan = lines.by_ref().map_while(Result::ok).find(|l| l.starts_with("sweep ")).unwrap_or_default();
    assert!(plan.contains("400 runs"), "{plan}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "sweep ends 0 after SIGTERM: {status:?} {rest:?}");
    let marker = std::fs::read_to_string(out.join("PARTIAL")).unwrap();
    assert!(marker.contains("stopped by a signal") && marker.contains("of 400 runs"), "{marker}");
    assert!(rest.iter().any(|l| l.contains("PARTIAL sweep")), "{rest:?}");
    assert!(out.join("sweep.csv").is_file() && out.join("sweep.json").is_file());
}
