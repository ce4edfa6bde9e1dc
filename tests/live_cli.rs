//! The live commands as a user runs them: `emulate` and `lb` print where they listen, serve a
//! request end to end, and exit cleanly on Ctrl-C; `live up --dry-run` prints the engine commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::workspace_file;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

const SCENARIO: &str = "scenarios/live-loopback.toml";

fn spawn(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelsguard"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The first `http://...` URL on the first line containing `marker`.
fn url_after(lines: &mut Lines<BufReader<ChildStdout>>, marker: &str) -> String {
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains(marker) {
            let start = line.find("http://").unwrap();
            let url: String = line[start..].chars().take_while(|c| !c.is_whitespace() && *c != ';').collect();
            return url;
        }
    }
    panic!("no line with {marker:?}");
}

fn interrupt_and_wait(mut child: Child) -> std::process::ExitStatus {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    child.wait().unwrap()
}

#[test]
fn emulate_and_lb_serve_a_request_and_exit_cleanly_on_ctrl_c() {
    let scenario = workspace_file(SCENARIO);
    let scenario = scenario.to_str().unwrap();
    let (emu, mut emu_out) =
        spawn(&["emulate", scenario, "--instances", "llama-3.1-8b#0", "--set", "instances.0.port=0"]);
    let engine = url_after(&mut emu_out, "llama-3.1-8b#0 on");
    let port = engine.rsplit(':').next().unwrap().to_string();
    let (lb, mut lb_out) =
        spawn(&["lb", scenario, "--port", "0", "--set", &format!("instances.0.port={port}")]);
    let lb_url = url_after(&mut lb_out, "listening on");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, text) = rt.block_on(async {
        let body = serde_json::json!({
            "model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": [1, 2, 3], "max_tokens": 3, "stream": true,
        });
        let resp =
            reqwest::Client::new().post(format!("{lb_url}/v1/completions")).json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.matches("data: ").count(), 3 + 1, "3 tokens then [DONE]: {text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    assert!(interrupt_and_wait(lb).success(), "lb exits 0 on Ctrl-C");
    assert!(interrupt_and_wait(emu).success(), "emulate exits 0 on Ctrl-C");
}

#[test]
fn live_up_dry_run_prints_one_vllm_command_per_instance_and_starts_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_modelsguard"))
        .args(["live", "up"])
        .arg(workspace_file(SCENARIO))
        .args(["--dry-run", "--run-dir"])
        .arg(std::env::temp_dir().join("modelsguard-dry-run-never-created"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("exec vllm serve").count(), 4, "{text}");
    assert!(text.contains("CUDA_VISIBLE_DEVICES=3") && text.contains("--port 8004"), "{text}");
    assert!(!std::env::temp_dir().join("modelsguard-dry-run-never-created").exists());
}

#[test]
fn live_up_dry_run_shows_the_quantization_flag_the_scenario_asked_for() {
    let dry_run = |variant: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_modelsguard"))
            .args(["live", "up"])
            .arg(workspace_file("scenarios/whatif-70b-awq-marlin.toml"))
            .args(["--variant", variant, "--dry-run", "--run-dir"])
            .arg(std::env::temp_dir().join("modelsguard-dry-run-awq-never-created"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let seed = dry_run("baseline");
    assert_eq!(seed.matches(" --quantization awq\"").count(), 2, "{seed}");
    assert!(!seed.contains("awq_marlin"), "{seed}");
    let marlin = dry_run("baseline-awq-marlin");
    assert_eq!(marlin.matches(" --quantization awq_marlin\"").count(), 2, "{marlin}");
    // The 70B is loaded from an AWQ checkpoint and served under the seed's model name.
    assert!(
        seed.contains("vllm serve casperhansen/llama-3.3-70b-instruct-awq --served-model-name meta-llama/Llama-3.3-70B-Instruct "),
        "{seed}"
    );
}

#[test]
fn lb_logs_ejections_to_stderr_as_json_lines_and_keeps_stdout_for_its_own_lines() {
    let scenario = workspace_file(SCENARIO);
    let mut args: Vec<String> =
        ["lb", scenario.to_str().unwrap(), "--port", "0", "--log-format", "json"].map(String::from).to_vec();
    // Ports 1-4 refuse connections: every backend fails its health checks and is ejected.
    for i in 0..4 {
        args.extend(["--set".to_string(), format!("instances.{i}.port={}", i + 1)]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelsguard"))
        .args(&args)
        .env("RUST_LOG", "info")
        .env_remove("MODELSGUARD_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let ejected = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => {
                let ejection = line.contains("ejected");
                seen.push(line);
                if ejection {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    assert!(interrupt_and_wait(child).success(), "lb exits 0 on Ctrl-C");
    assert!(ejected, "no ejection logged on stderr; it said: {seen:#?}");
    for line in &seen {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
    }
    let out: Vec<String> = stdout.lines().map_while(Result::ok).collect();
    assert!(out.iter().any(|l| l.contains("listening on")), "{out:?}");
    assert!(out.iter().all(|l| !l.starts_with('{')), "no log line on stdout: {out:?}");
}
