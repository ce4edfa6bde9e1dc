//! `live up` / `live down` with shell commands standing in for engines and fake engines
//! answering `/health`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::server_fixtures::{FakeEngine, scenario};
use live::checkpoint::{CheckpointNote, check_quantization};
use live::launcher::{
    LaunchError, LaunchOptions, LiveState, STATE_FILE, live_down, live_up_until, read_state, render_command,
};
use live::proxy::LbOptions;
use sim::ids::InstanceId;
use sim::scenario::{EnginePreset, KvCacheMode, Quantization, RouterPolicy, Scenario, WeightFormat};
use std::path::Path;
use std::time::Duration;

fn with_commands(mut s: Scenario, commands: [&str; 3]) -> Scenario {
    for (inst, cmd) in s.instances.iter_mut().zip(commands) {
        inst.launch_command = Some(cmd.to_string());
    }
    s
}

fn opts(run_dir: &Path, lb: bool) -> LaunchOptions {
    LaunchOptions {
        run_dir: run_dir.to_path_buf(),
        health_poll: Duration::from_millis(50),
        health_timeout: Duration::from_secs(30),
        grace: Duration::from_secs(5),
        lb: lb.then(|| LbOptions { port: 0, ..LbOptions::default() }),
        ..LaunchOptions::default()
    }
}

async fn wait_for_state(run_dir: &Path, ready: impl Fn(&LiveState) -> bool) -> LiveState {
    for _ in 0..400 {
        if let Ok(state) = read_state(&run_dir.join(STATE_FILE))
            && ready(&state)
        {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no state file in {}", run_dir.display());
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !matches!(s[s.rfind(')').unwrap() + 2..].chars().next(), Some('Z' | 'X')))
        .unwrap_or(false)
}

fn pid_file(run_dir: &Path, i: u32) -> u32 {
    std::fs::read_to_string(run_dir.join(format!("pid-{i}"))).unwrap().trim().parse().unwrap()
}

#[test]
fn the_default_command_is_vllm_serve_with_the_instances_settings() {
    let s = scenario(RouterPolicy::RoundRobin, [8001, 8002, 8003]);
    let cmd = render_command(&s, InstanceId(0), "127.0.0.1", Path::new("runs/x")).unwrap();
    assert_eq!(
        cmd.command_line,
        "exec vllm serve org/a --served-model-name org/a --host 127.0.0.1 --port 8001 --max-num-seqs 8 \
         --max-num-batched-tokens 2048 --block-size 16 --gpu-memory-utilization 0.9 --max-model-len 4096 \
         --enable-chunked-prefill --num-gpu-blocks-override 256"
    );
    assert_eq!(cmd.env, [("CUDA_VISIBLE_DEVICES".to_string(), "0".to_string())]);
}

#[test]
fn elastic_kv_turns_on_kvcached_and_turns_prefix_caching_off() {
    let mut s = scenario(RouterPolicy::RoundRobin, [8001, 8002, 8003]);
    for inst in &mut s.instances {
        inst.engine.preset = EnginePreset::VllmV1;
        inst.engine.enable_prefix_caching = true;
    }
    s.instances[1].engine.kv_cache = KvCacheMode::Elastic;
    let static_cmd = render_command(&s, InstanceId(0), "127.0.0.1", Path::new("r")).unwrap();
    assert!(static_cmd.command_line.contains(" --enable-prefix-caching"));
    assert!(!static_cmd.env.iter().any(|(k, _)| k == "ENABLE_KVCACHED"));
    let elastic = render_command(&s, InstanceId(1), "127.0.0.1", Path::new("r")).unwrap();
    assert!(elastic.command_line.contains(" --no-enable-prefix-caching"), "{}", elastic.command_line);
    assert!(elastic.env.contains(&("ENABLE_KVCACHED".into(), "true".into())));
    assert!(elastic.env.contains(&("KVCACHED_AUTOPATCH".into(), "1".into())));
}

/// An AWQ model whose checkpoint is another repo than its served name, on instance 0.
fn awq_scenario(q: Quantization) -> Scenario {
    let mut s = scenario(RouterPolicy::RoundRobin, [8001, 8002, 8003]);
    s.models[0].weight_format = WeightFormat::AwqInt4;
    s.models[0].model_path = "org/a-awq".into();
    s.instances[0].engine.quantization = Some(q);
    s
}

#[test]
fn the_quantization_flag_is_exactly_the_scenarios_and_the_awq_checkpoint_is_served_under_its_name() {
    for (q, flag) in [
        (Quantization::Awq, " --quantization awq "),
        (Quantization::AwqMarlin, " --quantization awq_marlin "),
    ] {
        let cmd = render_command(&awq_scenario(q), InstanceId(0), "127.0.0.1", Path::new("r")).unwrap();
        let line = format!("{} ", cmd.command_line);
        assert!(line.contains(flag), "{line}");
        assert_eq!(line.matches("--quantization").count(), 1, "{line}");
        assert!(line.starts_with("exec vllm serve org/a-awq --served-model-name org/a "), "{line}");
    }
    let bf16 =
        render_command(&awq_scenario(Quantization::Awq), InstanceId(2), "127.0.0.1", Path::new("r")).unwrap();
    assert!(!bf16.command_line.contains("--quantization"), "{}", bf16.command_line);
}

#[test]
fn first_chunk_admission_on_a_release_that_checks_the_full_sequence_is_passed_as_a_flag() {
    let mut s = scenario(RouterPolicy::RoundRobin, [8001, 8002, 8003]);
    let flag = " --no-scheduler-reserve-full-isl";
    for (preset, reserve, expected) in [
        (EnginePreset::VllmV1, false, true),
        (EnginePreset::VllmV1, true, false),
        (EnginePreset::Vllm0190, false, true),
        (EnginePreset::Vllm092, false, false),
        (EnginePreset::Vllm064, false, false),
    ] {
        s.instances[0].engine.preset = preset;
        s.instances[0].engine.scheduler_reserve_full_isl = reserve;
        let cmd = render_command(&s, InstanceId(0), "127.0.0.1", Path::new("r")).unwrap();
        assert_eq!(cmd.command_line.contains(flag), expected, "{preset:?} {reserve}: {}", cmd.command_line);
    }
}

#[test]
fn live_up_refuses_an_awq_flag_on_a_checkpoint_without_an_awq_config_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("llama-70b");
    std::fs::create_dir_all(&ckpt).unwrap();
    // The bf16 repo's config.json: no quantization_config.
    std::fs::write(
        ckpt.join("config.json"),
        r#"{"architectures":["LlamaForCausalLM"],"torch_dtype":"bfloat16"}"#,
    )
    .unwrap();
    let mut s = awq_scenario(Quantization::Awq);
    s.models[0].model_path = ckpt.display().to_string();
    let ids = [InstanceId(0)];
    let err = check_quantization(&s, &ids).unwrap_err();
    assert!(matches!(err, LaunchError::Quantization { ref instance, .. } if instance == "a#0"), "{err}");
    assert!(err.to_string().contains("no quantization_config"), "{err}");
    let run_dir = dir.path().join("run");
    let s = with_commands(s, ["touch started; exec sleep 300"; 3]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let out = rt.block_on(live_up_until(&s, opts(&run_dir, false), async {}));
    assert!(matches!(out, Err(LaunchError::Quantization { .. })), "{out:?}");
    assert!(!run_dir.join("started").exists() && !Path::new("started").exists(), "nothing was started");
    // An AWQ checkpoint agrees.
    std::fs::write(ckpt.join("config.json"), r#"{"quantization_config":{"quant_method":"awq","bits":4}}"#)
        .unwrap();
    let s = awq_scenario(Quantization::AwqMarlin);
    let mut s2 = s.clone();
    s2.models[0].model_path = ckpt.display().to_string();
    let notes = check_quantization(&s2, &ids).unwrap();
    assert!(matches!(&notes[..], [CheckpointNote::Checked { .. }]), "{notes:?}");
    // A bf16 model served from a quantized checkpoint is refused too.
    let mut s3 = scenario(RouterPolicy::RoundRobin, [8001, 8002, 8003]);
    s3.models[0].model_path = ckpt.display().to_string();
    assert!(check_quantization(&s3, &ids).unwrap_err().to_string().contains("quantized"));
}

#[test]
fn an_awq_model_whose_checkpoint_is_not_local_and_not_named_awq_gets_a_warning() {
    let mut s = awq_scenario(Quantization::Awq);
    s.models[0].model_path = "meta-llama/Llama-3.3-70B-Instruct-not-downloaded-here".into();
    let notes = check_quantization(&s, &[InstanceId(0)]).unwrap();
    assert!(matches!(&notes[..], [CheckpointNote::NotLocal { warning: Some(_), .. }]), "{notes:?}");
    let s = awq_scenario(Quantization::Awq);
    let notes = check_quantization(&s, &[InstanceId(0)]).unwrap();
    assert!(matches!(&notes[..], [CheckpointNote::NotLocal { warning: None, .. }]), "{notes:?}");
}

#[test]
fn a_quantization_flag_on_a_bf16_model_is_refused() {
    let mut s = scenario(RouterPolicy::RoundRobin, [8001, 8002, 8003]);
    s.instances[0].engine.quantization = Some(Quantization::AwqMarlin);
    let err = check_quantization(&s, &[InstanceId(0)]).unwrap_err();
    assert!(err.to_string().contains("bf16"), "{err}");
}

#[test]
fn a_launch_template_gets_quoted_values_and_unknown_placeholders_are_errors() {
    let s = with_commands(
        scenario(RouterPolicy::RoundRobin, [8001, 8002, 8003]),
        ["fake --port {port} --gpu {gpu} --name {instance} --seqs {max_num_seqs}", "x {bogus}", "y"],
    );
    let cmd = render_command(&s, InstanceId(0), "127.0.0.1", Path::new("r")).unwrap();
    assert_eq!(cmd.command_line, "fake --port 8001 --gpu 0 --name 'a#0' --seqs 8");
    let err = render_command(&s, InstanceId(1), "127.0.0.1", Path::new("r")).unwrap_err();
    assert!(matches!(err, LaunchError::Template { ref instance, .. } if instance == "a#1"));
    assert!(err.to_string().contains("{bogus}"), "{err}");
}

#[tokio::test]
async fn live_up_waits_for_health_runs_the_lb_and_tears_everything_down_on_shutdown() {
    let engines =
        [FakeEngine::start("a#0").await, FakeEngine::start("a#1").await, FakeEngine::start("b#0").await];
    let s = with_commands(
        scenario(RouterPolicy::RoundRobin, [engines[0].port, engines[1].port, engines[2].port]),
        ["echo started {instance}; exec sleep 300"; 3],
    );
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().to_path_buf();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let up = tokio::spawn({
        let (s, o) = (s.clone(), opts(&run_dir, true));
        async move {
            live_up_until(&s, o, async move {
                let _ = stopped.await;
            })
            .await
        }
    });
    let state = wait_for_state(&run_dir, |st| st.lb_url.is_some()).await;
    assert_eq!(state.engines.len(), 3);
    assert!(state.engines.iter().all(|e| running(e.pid)));
    let lb = state.lb_url.clone().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .post(format!("{lb}/v1/completions"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"model": "org/b", "prompt": "hi"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(engines[2].hits(), 1, "the LB routes to the instances' ports");

    stop.send(()).unwrap();
    up.await.unwrap().unwrap();
    assert!(state.engines.iter().all(|e| !running(e.pid)), "every engine is stopped");
    assert!(!run_dir.join(STATE_FILE).exists());
    let log = std::fs::read_to_string(&state.engines[0].log).unwrap();
    assert!(log.contains("started a#0"), "{log}");
}

#[tokio::test]
async fn an_engine_that_dies_at_startup_fails_live_up_with_its_log_tail_and_stops_the_others() {
    let s = with_commands(
        scenario(RouterPolicy::RoundRobin, [1, 2, 3]),
        [
            "echo $$ > {run_dir}/pid-{instance_id}; exec sleep 300",
            "while [ ! -f {run_dir}/pid-0 ] || [ ! -f {run_dir}/pid-2 ]; do sleep 0.02; done; \
             echo loading weights; echo 'CUDA out of memory' >&2; exit 3",
            "echo $$ > {run_dir}/pid-{instance_id}; exec sleep 300",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let err = live_up_until(&s, opts(dir.path(), true), std::future::pending()).await.unwrap_err();
    match &err {
        LaunchError::EngineExited { instance, status, tail, .. } => {
            assert_eq!(instance, "a#1");
            assert!(status.contains('3'), "{status}");
            assert!(tail.contains("loading weights") && tail.contains("CUDA out of memory"), "{tail}");
        }
        other => panic!("expected EngineExited, got {other}"),
    }
    for i in [0, 2] {
        assert!(!running(pid_file(dir.path(), i)), "engine {i} was stopped");
    }
}

#[tokio::test]
async fn engines_that_never_answer_health_time_out_and_are_stopped() {
    let s = with_commands(
        scenario(RouterPolicy::RoundRobin, [1, 2, 3]),
        ["echo $$ > {run_dir}/pid-{instance_id}; exec sleep 300"; 3],
    );
    let dir = tempfile::tempdir().unwrap();
    let o = LaunchOptions { health_timeout: Duration::from_secs(2), ..opts(dir.path(), true) };
    let err = live_up_until(&s, o, std::future::pending()).await.unwrap_err();
    match &err {
        LaunchError::HealthTimeout { instances, .. } => assert_eq!(instances, &["a#0", "a#1", "b#0"]),
        other => panic!("expected HealthTimeout, got {other}"),
    }
    for i in 0..3 {
        assert!(!running(pid_file(dir.path(), i)));
    }
}

#[tokio::test]
async fn an_engine_that_dies_while_serving_ends_live_up_with_its_log() {
    let engines =
        [FakeEngine::start("a#0").await, FakeEngine::start("a#1").await, FakeEngine::start("b#0").await];
    let s = with_commands(
        scenario(RouterPolicy::RoundRobin, [engines[0].port, engines[1].port, engines[2].port]),
        ["echo serving {instance}; exec sleep 300"; 3],
    );
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().to_path_buf();
    let up = tokio::spawn({
        let (s, o) = (s.clone(), opts(&run_dir, true));
        async move { live_up_until(&s, o, std::future::pending()).await }
    });
    let state = wait_for_state(&run_dir, |st| st.lb_url.is_some()).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(state.engines[2].pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = up.await.unwrap().unwrap_err();
    match &err {
        LaunchError::EngineExited { instance, status, tail, .. } => {
            assert_eq!(instance, "b#0");
            assert!(status.contains("signal: 9"), "{status}");
            assert!(tail.contains("serving b#0"), "{tail}");
        }
        other => panic!("expected EngineExited, got {other}"),
    }
    assert!(state.engines.iter().all(|e| !running(e.pid)));
}

#[tokio::test]
async fn live_down_stops_the_engines_and_kills_one_that_ignores_sigterm() {
    let engines =
        [FakeEngine::start("a#0").await, FakeEngine::start("a#1").await, FakeEngine::start("b#0").await];
    let s = with_commands(
        scenario(RouterPolicy::RoundRobin, [engines[0].port, engines[1].port, engines[2].port]),
        ["trap '' TERM; while true; do sleep 0.05; done", "exec sleep 300", "exec sleep 300"],
    );
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().to_path_buf();
    let up = tokio::spawn({
        let (s, o) = (s.clone(), opts(&run_dir, false));
        async move { live_up_until(&s, o, std::future::pending()).await }
    });
    let state = wait_for_state(&run_dir, |st| st.engines.len() == 3).await;
    let report = live_down(&run_dir, Duration::from_millis(500)).await.unwrap();
    assert_eq!(report.killed, ["a#0"]);
    assert_eq!(report.stopped, ["a#1", "b#0"]);
    assert!(state.engines.iter().all(|e| !running(e.pid)));
    assert!(!run_dir.join(STATE_FILE).exists());
    // The supervisor sees its engines gone and ends too.
    assert!(matches!(up.await.unwrap(), Err(LaunchError::EngineExited { .. })));
}
