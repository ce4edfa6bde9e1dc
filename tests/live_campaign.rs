//! `live campaign` as a user runs it on a laptop: the shipped two-variant dry-run scenario with
//! every instance served by `modelsguard emulate` (started, supervised and stopped by `live up`),
//! shortened by `--quick`. The campaign dir gets every step's outputs, a profile per model,
//! validation tables and the report; a rerun skips what finished; a lost output reruns its step
//! and what depends on it, nothing else; a failing engine stops the campaign naming the step and
//! the engine's log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

const SCENARIO: &str = "scenarios/campaign-dryrun.toml";
const VARIANTS: [&str; 2] = ["baseline", "managed"];
const MODELS: [&str; 2] = ["llama-3.1-8b", "qwen2.5-7b"];

fn scenario() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SCENARIO).display().to_string()
}

/// `--set` overrides moving the scenario's three instances to free loopback ports.
fn free_ports() -> Vec<String> {
    let listeners: Vec<_> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            ["--set".to_string(), format!("instances.{i}.port={}", l.local_addr().unwrap().port())]
        })
        .collect()
}

fn campaign(out: &Path, extra: &[String]) -> Output {
    let mut args: Vec<String> = vec!["live".into(), "campaign".into(), scenario(), "--out".into()];
    args.push(out.display().to_string());
    args.extend(extra.iter().cloned());
    Command::new(env!("CARGO_BIN_EXE_modelsguard")).args(&args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn markers(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let t = mtime(&p);
            (p, t)
        })
        .collect();
    out.sort();
    out
}

fn assert_files(dir: &Path, rel: &[&str]) {
    for r in rel {
        let p = dir.join(r);
        assert!(p.is_file() && std::fs::metadata(&p).unwrap().len() > 0, "missing or empty: {}", p.display());
    }
}

#[test]
fn a_dry_run_campaign_writes_every_steps_outputs_and_a_rerun_skips_what_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("campaign");
    let mut args = vec!["--emulate".to_string(), "--quick".into()];
    args.extend(free_ports());

    let first = campaign(&out, &args);
    let t = text(&first);
    assert!(first.status.success(), "{t}");
    assert!(
        t.contains("[ 1/13 +0:00] baseline: start 3 engines and the LB"),
        "progress shows step i of n: {t}"
    );
    assert!(t.contains("13 steps run, 0 skipped"), "{t}");
    for v in VARIANTS {
        assert_files(
            &out.join("variants").join(v),
            &[
                "live/run.json",
                "live/requests.csv",
                "live/summary.json",
                "validation/validation.csv",
                "validation/validation.json",
                "validation/report.md",
                "validation/sim/summary.json",
            ],
        );
        let validation =
            std::fs::read_to_string(out.join("variants").join(v).join("validation/validation.json")).unwrap();
        assert!(
            validation.contains("profile ") && !validation.contains("UNCALIBRATED"),
            "{v} simulated with the fitted profiles: {validation}"
        );
        assert!(out.join("variants").join(v).join("engines/logs").is_dir(), "engine logs of {v}");
        assert!(
            !out.join("variants").join(v).join("engines/live-state.json").exists(),
            "{v}'s engines were stopped"
        );
    }
    for m in MODELS {
        assert_files(
            &out,
            &[
                &format!("variants/baseline/calibration-{m}/tokens.csv"),
                &format!("variants/baseline/calibration-{m}/requests.csv"),
                &format!("calibrate/H100-80GB-SXM-{m}-vllm-v1/fit.md"),
            ],
        );
        let profile =
            std::fs::read_to_string(out.join(format!("profiles/H100-80GB-SXM-{m}-vllm-v1.toml"))).unwrap();
        assert!(
            profile.contains(&format!("model = \"{m}\"")) && profile.contains("[coefficients]"),
            "{profile}"
        );
        assert!(
            !out.join(format!("variants/managed/calibration-{m}")).exists(),
            "one ladder per (model, GPU, engine)"
        );
    }
    assert_files(&out, &["report/report.md", "report/validation.csv", "summary.md", "campaign.log"]);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("### baseline") && summary.contains("### managed"), "{summary}");
    assert!(summary.contains("## managed against baseline: measured and predicted difference"), "{summary}");
    assert!(t.contains("## managed against baseline"), "the command prints the summary");

    let before = markers(&out);
    assert_eq!(before.len(), 9, "a marker per step with outputs (up/down have none): {before:?}");
    let again = campaign(&out, &args);
    let t = text(&again);
    assert!(again.status.success(), "{t}");
    assert_eq!(t.matches("finished earlier, skipped").count(), 9, "{t}");
    assert!(t.contains("0 steps run, 13 skipped") && !t.contains("engine logs:"), "no engine started: {t}");
    assert_eq!(markers(&out), before, "nothing rewritten");

    // A lost output: that step reruns (with its engines), and so do the steps that depend on it.
    std::fs::remove_file(out.join("variants/managed/live/summary.json")).unwrap();
    let calibrated = mtime(&out.join("profiles/H100-80GB-SXM-llama-3.1-8b-vllm-v1.toml"));
    let resumed = campaign(&out, &args);
    let t = text(&resumed);
    assert!(resumed.status.success(), "{t}");
    for step in
        ["managed: start 3 engines", "managed: live run of the scenario", "managed: validate", "report:"]
    {
        let line = t.lines().find(|l| l.contains(step)).unwrap_or_else(|| panic!("no line for {step}: {t}"));
        assert!(!line.contains("skipped") && !line.contains("not needed"), "{step} reran: {line}");
    }
    for step in
        ["baseline: calibration ladder", "baseline: live run", "calibrate llama", "baseline: validate"]
    {
        let line = t.lines().find(|l| l.contains(step)).unwrap_or_else(|| panic!("no line for {step}: {t}"));
        assert!(line.contains("finished earlier, skipped"), "{step} did not rerun: {line}");
    }
    assert!(t.contains("5 steps run, 8 skipped"), "{t}");
    assert_eq!(mtime(&out.join("profiles/H100-80GB-SXM-llama-3.1-8b-vllm-v1.toml")), calibrated);
    assert_files(&out, &["variants/managed/live/summary.json", "report/report.md"]);

    // Other settings are refused rather than mixed with these steps.
    let other = campaign(&out, &args[..1]);
    assert!(!other.status.success());
    assert!(text(&other).contains("--fresh"), "{}", text(&other));
}

#[test]
fn an_engine_that_dies_stops_the_campaign_naming_the_step_and_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("campaign");
    let mut args = vec![
        "--quick".to_string(),
        "--set".into(),
        "instances.*.launch_command=\"echo boom >&2; exit 3\"".into(),
    ];
    args.extend(free_ports());
    let o = campaign(&out, &args);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("step 1/13 (baseline: start 3 engines and the LB) failed"), "{t}");
    // Every engine dies at once: whichever the launcher saw first is named, with its log.
    let logs = out.join("variants/baseline/engines/logs");
    let named: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|log| t.contains(&format!("read {} for the details", log.display())))
        .collect();
    assert_eq!(named.len(), 1, "one engine log named: {t}");
    assert!(std::fs::read_to_string(&named[0]).unwrap().contains("boom"));
    let step_log = std::fs::read_to_string(out.join("logs/01-baseline-up.log")).unwrap();
    assert!(step_log.contains("FAILED") && step_log.contains("exit status: 3"), "{step_log}");
    assert!(
        !out.join("state").exists() || std::fs::read_dir(out.join("state")).unwrap().next().is_none(),
        "nothing marked finished"
    );
}

#[test]
fn ctrl_c_stops_the_engines_before_the_campaign_exits() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("campaign");
    let mut args: Vec<String> = vec!["live".into(), "campaign".into(), scenario(), "--out".into()];
    args.push(out.display().to_string());
    args.extend(["--emulate".to_string(), "--quick".into()]);
    args.extend(free_ports());
    let child = Command::new(env!("CARGO_BIN_EXE_modelsguard"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until the engines are up and the first calibration run has started.
    let state = out.join("variants/baseline/engines/live-state.json");
    let log = out.join("campaign.log");
    let mut engines: Vec<u32> = Vec::new();
    for _ in 0..600 {
        let started = std::fs::read_to_string(&log).is_ok_and(|l| l.contains("calibration ladder of llama"));
        if started && let Ok(text) = std::fs::read_to_string(&state) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            engines =
                v["engines"].as_array().unwrap().iter().map(|e| e["pid"].as_u64().unwrap() as u32).collect();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(engines.len(), 3, "the engines came up");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("interrupted during step 2/13 (baseline: calibration ladder of llama-3.1-8b)"), "{t}");
    assert!(t.contains("baseline: stop the engines") && t.contains("engines stopped"), "{t}");
    for pid in engines {
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| matches!(s[s.rfind(')').unwrap() + 2..].chars().next(), Some('Z' | 'X')))
            .unwrap_or(true);
        assert!(gone, "engine pid {pid} still runs after the campaign exited");
    }
    assert!(!state.exists(), "the state file is gone with the engines");
    assert!(
        !out.join("state/baseline_calibration_llama-3.1-8b.json").exists(),
        "an interrupted step is not finished"
    );
}
