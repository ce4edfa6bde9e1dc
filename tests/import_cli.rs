//! `import` as a user runs it: a real aiperf 0.13.0 export becomes a run dir that `report` draws;
//! the export's model is found by its served name; a bad `--model` ends with one error line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::workspace_file;
use std::path::Path;
use std::process::{Command, Output};

fn modelsguard(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelsguard")).args(args).current_dir(cwd).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn an_aiperf_export_imports_to_a_run_dir_that_report_draws() {
    let tmp = tempfile::tempdir().unwrap();
    let export = workspace_file("live/tests/fixtures/aiperf-0.13.0/profile_export.jsonl");
    let scenario = workspace_file("scenarios/live-loopback.toml");
    let (export, scenario) = (export.to_str().unwrap(), scenario.to_str().unwrap());
    let out = modelsguard(&["import", export, "--scenario", scenario, "--out", "imported"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("imported 10 requests from the aiperf export"), "{}", text(&out));
    assert!(text(&out).contains("concurrency 2"), "{}", text(&out));
    let requests = std::fs::read_to_string(tmp.path().join("imported/requests.csv")).unwrap();
    // aiperf ran against the served name meta-llama/Llama-3.1-8B-Instruct: the scenario's llama-3.1-8b.
    assert_eq!(requests.lines().skip(1).filter(|l| l.contains(",llama-3.1-8b,")).count(), 10, "{requests}");
    assert!(tmp.path().join("imported/tokens.csv").is_file());

    let out = modelsguard(&["report", "imported", "--out", "rep"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(tmp.path().join("rep/report.md").is_file());

    let out =
        modelsguard(&["import", export, "--scenario", scenario, "--out", "x", "--model", "nope"], tmp.path());
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("--model nope") && err.contains("llama-3.1-8b"), "{err}");
}
