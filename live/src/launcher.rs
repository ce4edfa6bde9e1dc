//! `live up` / `live down`: start one engine process per instance, wait until every `/health`
//! answers, run the LB in front of them, and tear it all down cleanly.
//!
//! Each engine runs `sh -c <command>` in its own process group (so SIGTERM reaches vLLM's worker
//! processes too), with `CUDA_VISIBLE_DEVICES=<gpu index>`, stdout and stderr appended to
//! `<run_dir>/logs/<instance>.log`. The command is the instance's `launch_command` template or
//! the default line built from its engine settings (`render_command`): `vllm serve` for the vLLM
//! presets, the reference engine (`live/reference-engine/server.py`) for `transformers-cb`. A state file
//! (`<run_dir>/live-state.json`) records the pids and ports so `live down` from another shell can
//! stop them. Teardown (on Ctrl-C/SIGTERM, when an engine dies, or when startup fails) sends
//! SIGTERM to every group, waits `grace`, then SIGKILLs what is left. An engine that dies is
//! reported with the last lines of its log.
//!
//! Template placeholders (values are shell-quoted; `{{` and `}}` are literal braces):
//! `{model_path}` (the checkpoint to load) `{served_name}` `{model}` (scenario key) `{instance}`
//! (name) `{instance_id}` `{port}` `{host}` `{gpu}` (GPU index, also in `CUDA_VISIBLE_DEVICES`)
//! `{max_num_seqs}` `{max_num_batched_tokens}` `{block_size}` `{gpu_memory_utilization}`
//! `{max_model_len}` `{run_dir}`, and the flags (inserted as is, empty when not applicable)
//! `{prefix_caching_flag}` `{chunked_prefill_flag}` `{quantization_flag}` (exactly the instance's
//! `quantization`) `{num_gpu_blocks_flag}` `{reserve_full_isl_flag}` `{async_scheduling_flag}`
//! (`--no-async-scheduling` on a V1 release that schedules asynchronously by default,
//! `--async-scheduling` on one that does not, `--no-async-batching` on the reference engine, when
//! the knob departs from the default).
//!
//! Before spawning, `live up` checks that each instance's `--quantization` agrees with its model's
//! weights (`checkpoint`).
//!
//! It does not install engines, download weights, place instances on GPUs (the scenario does) or
//! start engines on other hosts.

use crate::checkpoint::{CheckpointNote, check_quantization};
use crate::proxy::{LbError, LbOptions, LbServer, shutdown_signal};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use sim::ids::InstanceId;
use sim::scenario::{EngineGeneration, EnginePreset, InstanceSpec, KvCacheMode, Scenario};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

/// Name of the state file inside the run dir.
pub const STATE_FILE: &str = "live-state.json";

/// Lines of an engine's log quoted in errors.
const LOG_TAIL_LINES: usize = 40;

/// How `live up` starts and supervises the engines.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchOptions {
    /// Directory for the state file and `logs/` (created if missing).
    pub run_dir: PathBuf,
    /// Instances to start (`None`: all of the scenario's).
    pub instances: Option<Vec<InstanceId>>,
    /// Host the engines listen on and the LB reaches them at (default 127.0.0.1).
    pub engine_host: String,
    /// Longest wait for every engine's `/health` (default 20 min: weights load, graphs compile).
    pub health_timeout: Duration,
    /// Time between readiness probes (default 1 s).
    pub health_poll: Duration,
    /// Time between SIGTERM and SIGKILL at teardown (default 30 s).
    pub grace: Duration,
    /// The LB to run once the engines are up (`None`: engines only). Its `upstream_host` is
    /// replaced by `engine_host`.
    pub lb: Option<LbOptions>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            run_dir: PathBuf::from("runs/live"),
            instances: None,
            engine_host: "127.0.0.1".into(),
            health_timeout: Duration::from_secs(1200),
            health_poll: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            lb: Some(LbOptions::default()),
        }
    }
}

/// Errors of `live up` and `live down`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// A file or directory under the run dir could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The instance's `launch_command` template is malformed.
    #[error("instance `{instance}`: launch_command: {reason}")]
    Template {
        /// Instance name.
        instance: String,
        /// What is wrong.
        reason: String,
    },
    /// An instance id outside the scenario was asked for.
    #[error("instance id {0} is not in the scenario")]
    NoSuchInstance(InstanceId),
    /// The engine process could not be started.
    #[error("instance `{instance}`: cannot start `{command}`: {source}")]
    Spawn {
        /// Instance name.
        instance: String,
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An engine process exited (during startup or while serving).
    #[error("instance `{instance}` exited ({status}); last lines of {}:\n{tail}", log.display())]
    EngineExited {
        /// Instance name.
        instance: String,
        /// How it ended.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// Some engines never answered `/health`.
    #[error(
        "instances {instances:?} did not answer /health within {timeout:?} (raise --health-timeout?); log tails:\n{tails}"
    )]
    HealthTimeout {
        /// Names of the engines still not ready.
        instances: Vec<String>,
        /// The timeout.
        timeout: Duration,
        /// The last lines of each one's log.
        tails: String,
    },
    /// The state file is missing or unreadable.
    #[error("{path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another `live up` still runs with this run dir.
    #[error("{path} names a running `live up` (pid {pid}); stop it with `live down` or use another run dir")]
    AlreadyRunning {
        /// The state file.
        path: PathBuf,
        /// Its supervisor pid.
        pid: u32,
    },
    /// An instance's `--quantization` disagrees with its model or checkpoint.
    #[error("instance `{instance}`: {reason}")]
    Quantization {
        /// Instance name.
        instance: String,
        /// What disagrees and what to do.
        reason: String,
    },
    /// The LB failed.
    #[error(transparent)]
    Lb(#[from] LbError),
}

/// One engine command, ready to spawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineCommand {
    /// The shell command line (run with `sh -c`).
    pub command_line: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// The default engine template: vLLM's CLI with the instance's settings.
pub const DEFAULT_TEMPLATE: &str = "exec vllm serve {model_path} --served-model-name {served_name} \
    --host {host} --port {port} \
    --max-num-seqs {max_num_seqs} --max-num-batched-tokens {max_num_batched_tokens} --block-size {block_size} \
    --gpu-memory-utilization {gpu_memory_utilization} --max-model-len {max_model_len}\
    {prefix_caching_flag}{chunked_prefill_flag}{quantization_flag}{num_gpu_blocks_flag}{reserve_full_isl_flag}\
    {async_scheduling_flag}";

/// The default template of a `transformers-cb` instance: the reference engine (not vLLM), run from
/// the repository root, with the instance's settings.
pub const REFERENCE_ENGINE_TEMPLATE: &str = "exec python3 live/reference-engine/server.py --model {model} \
    --served-model-name {served_name} --host {host} --port {port} --block-size {block_size} \
    --max-batch-tokens {max_num_batched_tokens} --max-num-seqs {max_num_seqs} --max-model-len {max_model_len} \
    --gpu-memory-utilization {gpu_memory_utilization}{num_gpu_blocks_flag}{async_scheduling_flag}";

/// The command and environment that start instance `id` of `scenario`, its engine listening on
/// `host`. Elastic KV (kvcached) sets `ENABLE_KVCACHED=true` and `KVCACHED_AUTOPATCH=1` and turns
/// prefix caching off. Prefix caching off is the absence of a flag on vLLM 0.6.4 (its default)
/// and `--no-enable-prefix-caching` on V1; chunked prefill is only ever switched on;
/// `--quantization` is the instance's `quantization`, as set; first-chunk admission on a release
/// that checks the full sequence by default is `--no-scheduler-reserve-full-isl`.
pub fn render_command(
    scenario: &Scenario,
    id: InstanceId,
    host: &str,
    run_dir: &Path,
) -> Result<EngineCommand, LaunchError> {
    let inst = scenario.instances.get(id.index()).ok_or(LaunchError::NoSuchInstance(id))?;
    let model = scenario.models.get(inst.model.index()).ok_or_else(|| LaunchError::Template {
        instance: inst.name.clone(),
        reason: format!("model id {} is not in the scenario", inst.model),
    })?;
    let e = &inst.engine;
    let elastic = e.kv_cache == KvCacheMode::Elastic;
    let prefix = match (e.enable_prefix_caching && !elastic, e.preset.generation()) {
        (true, _) => " --enable-prefix-caching",
        // The reference engine has no prefix-caching flag (it never shares blocks).
        (false, _) if !e.preset.is_vllm() => "",
        (false, EngineGeneration::V0) => "",
        (false, EngineGeneration::V1) => " --no-enable-prefix-caching",
    };
    let no_async = match (e.async_scheduling, e.preset) {
        (false, EnginePreset::TransformersCb) => " --no-async-batching",
        (false, p) if p.async_scheduling_default() => " --no-async-scheduling",
        (true, p)
            if p.is_vllm() && !p.async_scheduling_default() && p.generation() == EngineGeneration::V1 =>
        {
            " --async-scheduling"
        }
        _ => "",
    };
    let flag = |on: bool, s: &str| if on { s.to_string() } else { String::new() };
    let blocks =
        e.num_gpu_blocks_override.map(|n| format!(" --num-gpu-blocks-override {n}")).unwrap_or_default();
    let reserve = if e.preset.has_reserve_full_isl() && !e.scheduler_reserve_full_isl {
        " --no-scheduler-reserve-full-isl"
    } else {
        ""
    };
    let model_path = if model.model_path.is_empty() { &model.served_name } else { &model.model_path };
    let vars: Vec<(&str, String, bool)> = vec![
        ("model_path", model_path.clone(), true),
        ("served_name", model.served_name.clone(), true),
        ("model", model.name.clone(), true),
        ("instance", inst.name.clone(), true),
        ("instance_id", id.to_string(), true),
        ("port", inst.port.to_string(), true),
        ("host", host.to_string(), true),
        ("gpu", inst.gpu.to_string(), true),
        ("max_num_seqs", e.max_num_seqs.to_string(), true),
        ("max_num_batched_tokens", e.max_num_batched_tokens.to_string(), true),
        ("block_size", e.block_size.to_string(), true),
        ("gpu_memory_utilization", e.gpu_memory_utilization.to_string(), true),
        ("max_model_len", e.max_model_len.to_string(), true),
        ("run_dir", run_dir.display().to_string(), true),
        ("prefix_caching_flag", prefix.to_string(), false),
        ("chunked_prefill_flag", flag(e.enable_chunked_prefill, " --enable-chunked-prefill"), false),
        (
            "quantization_flag",
            e.quantization.map(|q| format!(" --quantization {}", q.as_flag())).unwrap_or_default(),
            false,
        ),
        ("num_gpu_blocks_flag", blocks, false),
        ("reserve_full_isl_flag", reserve.to_string(), false),
        ("async_scheduling_flag", no_async.to_string(), false),
    ];
    let default = match e.preset {
        EnginePreset::TransformersCb => REFERENCE_ENGINE_TEMPLATE,
        EnginePreset::Vllm064 | EnginePreset::Vllm092 | EnginePreset::Vllm0190 | EnginePreset::VllmV1 => {
            DEFAULT_TEMPLATE
        }
    };
    let template = inst.launch_command.as_deref().unwrap_or(default);
    let command_line = render_template(template, &vars)
        .map_err(|reason| LaunchError::Template { instance: inst.name.clone(), reason })?;
    let mut env = vec![("CUDA_VISIBLE_DEVICES".to_string(), inst.gpu.to_string())];
    if elastic {
        env.push(("ENABLE_KVCACHED".into(), "true".into()));
        env.push(("KVCACHED_AUTOPATCH".into(), "1".into()));
    }
    Ok(EngineCommand { command_line, env })
}

/// Substitutes `{name}` placeholders; `vars` are (name, value, quote-for-shell).
fn render_template(template: &str, vars: &[(&str, String, bool)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let rest = &template[i + 1..];
                let end = rest.find('}').ok_or_else(|| format!("unclosed `{{` at byte {i}"))?;
                let name = &rest[..end];
                let (_, value, quote) = vars.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
                    let known: Vec<&str> = vars.iter().map(|(n, _, _)| *n).collect();
                    format!("unknown placeholder `{{{name}}}`; known: {}", known.join(", "))
                })?;
                if *quote {
                    out.push_str(&shell_quote(value));
                } else {
                    out.push_str(value);
                }
                for _ in 0..name.chars().count() + 1 {
                    chars.next();
                }
            }
            '}' => return Err(format!("unmatched `}}` at byte {i} (write `}}}}` for a literal brace)")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Quotes `s` for `sh` unless it only holds characters the shell leaves alone.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What `live down` reads to find the processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// Pid of the `live up` process.
    pub supervisor_pid: u32,
    /// Its start time (`/proc/<pid>/stat` field 22), to tell it from a reused pid.
    pub supervisor_start: Option<u64>,
    /// The LB's URL once it listens.
    pub lb_url: Option<String>,
    /// The engines.
    pub engines: Vec<EngineState>,
}

/// One engine process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// Instance name.
    pub instance: String,
    /// Pid of `sh -c` (also its process group id).
    pub pid: u32,
    /// Its start time, to tell it from a reused pid.
    pub start: Option<u64>,
    /// Its port.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
    /// The command line it runs.
    pub command: String,
}

struct Engine {
    name: String,
    state: EngineState,
}

/// Starts the engines and the LB, and runs until Ctrl-C/SIGTERM or an engine dies.
pub async fn live_up(scenario: &Scenario, opts: LaunchOptions) -> Result<(), LaunchError> {
    live_up_until(scenario, opts, shutdown_signal()).await
}

/// `live_up` that stops when `shutdown` resolves (returns `Ok` after a clean teardown).
pub async fn live_up_until(
    scenario: &Scenario,
    opts: LaunchOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), LaunchError> {
    let logs = opts.run_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|source| LaunchError::Io { path: logs.clone(), source })?;
    let state_path = opts.run_dir.join(STATE_FILE);
    refuse_if_running(&state_path)?;
    let ids: Vec<InstanceId> = match &opts.instances {
        Some(ids) => ids.clone(),
        None => (0..scenario.instances.len()).map(|i| InstanceId(i as u32)).collect(),
    };
    let commands = ids
        .iter()
        .map(|&id| render_command(scenario, id, &opts.engine_host, &opts.run_dir))
        .collect::<Result<Vec<_>, _>>()?;
    for note in check_quantization(scenario, &ids)? {
        match note {
            CheckpointNote::Checked { instance, config } => {
                tracing::info!(instance = %instance, "quantization agrees with {}", config.display());
            }
            CheckpointNote::NotLocal { instance, model_path, warning } => match warning {
                Some(w) => tracing::warn!(instance = %instance, "{w}"),
                None => {
                    tracing::info!(instance = %instance, "{model_path} is not on this machine; vLLM checks it")
                }
            },
        }
    }
    let mut state = LiveState {
        supervisor_pid: std::process::id(),
        supervisor_start: process_start(std::process::id()),
        lb_url: None,
        engines: Vec::new(),
    };
    let mut engines = Vec::new();
    let mut exits: JoinSet<(usize, std::io::Result<ExitStatus>)> = JoinSet::new();
    tracing::info!(engines = ids.len(), run_dir = %opts.run_dir.display(), "step 1/3: starting the engines");
    for (k, (&id, cmd)) in ids.iter().zip(&commands).enumerate() {
        let inst = &scenario.instances[id.index()];
        match spawn_engine(inst, cmd, &logs).await {
            Ok((engine, mut child)) => {
                state.engines.push(engine.state.clone());
                engines.push(engine);
                exits.spawn(async move { (k, child.wait().await) });
            }
            Err(e) => {
                teardown(&engines, &mut exits, opts.grace).await;
                return Err(e);
            }
        }
        if let Err(e) = write_state(&state_path, &state) {
            teardown(&engines, &mut exits, opts.grace).await;
            return Err(e);
        }
    }
    let outcome = supervise(scenario, &opts, &engines, &mut exits, &mut state, &state_path, shutdown).await;
    teardown(&engines, &mut exits, opts.grace).await;
    let _ = std::fs::remove_file(&state_path);
    outcome
}

async fn spawn_engine(
    inst: &InstanceSpec,
    cmd: &EngineCommand,
    logs: &Path,
) -> Result<(Engine, tokio::process::Child), LaunchError> {
    let log = logs.join(format!("{}.log", file_safe(&inst.name)));
    let io_err = |source| LaunchError::Io { path: log.clone(), source };
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(io_err)?;
    {
        use std::io::Write as _;
        writeln!(file, "# modelsguard live up: {}", cmd.command_line).map_err(io_err)?;
    }
    let stderr = file.try_clone().map_err(io_err)?;
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(&cmd.command_line)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let child = command.spawn().map_err(|source| LaunchError::Spawn {
        instance: inst.name.clone(),
        command: cmd.command_line.clone(),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    tracing::info!(instance = %inst.name, pid, port = inst.port, "engine started; log {}", log.display());
    let state = EngineState {
        instance: inst.name.clone(),
        pid,
        start: process_start(pid),
        port: inst.port,
        log,
        command: cmd.command_line.clone(),
    };
    Ok((Engine { name: inst.name.clone(), state }, child))
}

/// Waits for readiness, then runs the LB until shutdown, an engine exit or an LB failure.
async fn supervise(
    scenario: &Scenario,
    opts: &LaunchOptions,
    engines: &[Engine],
    exits: &mut JoinSet<(usize, std::io::Result<ExitStatus>)>,
    state: &mut LiveState,
    state_path: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LaunchError> {
    tokio::pin!(shutdown);
    let urls: Vec<String> = engines
        .iter()
        .map(|e| format!("http://{}:{}/health", url_host(&opts.engine_host), e.state.port))
        .collect();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| LaunchError::Lb(LbError::Client(e.to_string())))?;
    let deadline = Instant::now() + opts.health_timeout;
    tracing::info!(timeout = ?opts.health_timeout, "step 2/3: waiting for every engine's /health");
    let mut pending: Vec<usize> = (0..engines.len()).collect();
    while !pending.is_empty() {
        let probes = pending.iter().map(|&i| {
            let req = client.get(&urls[i]).send();
            async move { matches!(req.await, Ok(r) if r.status().is_success()) }
        });
        let ready = futures_util::future::join_all(probes).await;
        let mut it = ready.into_iter();
        pending.retain(|_| !it.next().unwrap_or(false));
        if pending.is_empty() {
            break;
        }
        tokio::select! {
            Some(done) = exits.join_next() => return Err(exited(engines, done)),
            () = sleep(opts.health_poll) => {}
            () = sleep_until(deadline) => {
                let mut tails = String::new();
                for &i in &pending {
                    let _ = writeln!(tails, "--- {} ({}):\n{}", engines[i].name, engines[i].state.log.display(), log_tail(&engines[i].state.log));
                }
                return Err(LaunchError::HealthTimeout {
                    instances: pending.iter().map(|&i| engines[i].name.clone()).collect(),
                    timeout: opts.health_timeout,
                    tails,
                });
            }
            () = &mut shutdown => {
                tracing::info!("interrupted while waiting for the engines");
                return Ok(());
            }
        }
    }
    tracing::info!("all {} engines answer /health", engines.len());
    let Some(lb_opts) = opts.lb.clone() else {
        return tokio::select! {
            Some(done) = exits.join_next() => Err(exited(engines, done)),
            () = &mut shutdown => Ok(()),
        };
    };
    let lb_opts = LbOptions { upstream_host: opts.engine_host.clone(), ..lb_opts };
    tracing::info!("step 3/3: starting the LB");
    let server = LbServer::bind(scenario, lb_opts).await?;
    let addr = server.local_addr()?;
    state.lb_url = Some(format!("http://{addr}"));
    write_state(state_path, state)?;
    tracing::info!("LB listening on http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut lb = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));
    let result = tokio::select! {
        Some(done) = exits.join_next() => Err(exited(engines, done)),
        () = &mut shutdown => Ok(()),
        res = &mut lb => match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LaunchError::Lb(e)),
            Err(e) => Err(LaunchError::Lb(LbError::Serve(std::io::Error::other(e.to_string())))),
        },
    };
    let _ = stop_tx.send(());
    if !lb.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut lb).await;
        lb.abort();
    }
    result
}

fn exited(
    engines: &[Engine],
    done: Result<(usize, std::io::Result<ExitStatus>), tokio::task::JoinError>,
) -> LaunchError {
    let (k, status) = match done {
        Ok((k, Ok(status))) => (k, status.to_string()),
        Ok((k, Err(e))) => (k, format!("wait failed: {e}")),
        Err(e) => (0, format!("supervisor task failed: {e}")),
    };
    let engine = &engines[k.min(engines.len().saturating_sub(1))];
    tracing::error!(instance = %engine.name, "engine exited ({status})");
    LaunchError::EngineExited {
        instance: engine.name.clone(),
        status,
        log: engine.state.log.clone(),
        tail: log_tail(&engine.state.log),
    }
}

/// SIGTERM every engine group, wait up to `grace` for the processes, then SIGKILL the groups
/// that still have members.
async fn teardown(
    engines: &[Engine],
    exits: &mut JoinSet<(usize, std::io::Result<ExitStatus>)>,
    grace: Duration,
) {
    if !engines.is_empty() {
        tracing::info!(
            engines = engines.len(),
            "stopping the engines (SIGTERM, then SIGKILL after {grace:?})"
        );
    }
    for e in engines {
        signal_group(e.state.pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    loop {
        let gone = engines.iter().all(|e| !group_alive(e.state.pid));
        if gone && exits.is_empty() {
            break;
        }
        tokio::select! {
            next = exits.join_next(), if !exits.is_empty() => { let _ = next; }
            () = sleep(Duration::from_millis(50)), if exits.is_empty() => {}
            () = sleep_until(deadline) => break,
        }
    }
    for e in engines {
        if group_alive(e.state.pid) {
            tracing::warn!(instance = %e.name, "still running {grace:?} after SIGTERM; sending SIGKILL");
            signal_group(e.state.pid, Signal::SIGKILL);
        }
    }
    // Reap what SIGKILL ended (bounded: a process in uninterruptible sleep may linger).
    let _ =
        tokio::time::timeout(Duration::from_secs(5), async { while exits.join_next().await.is_some() {} })
            .await;
}

/// What `live down` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Processes that ended after SIGTERM.
    pub stopped: Vec<String>,
    /// Processes that needed SIGKILL.
    pub killed: Vec<String>,
    /// Processes already gone.
    pub already_gone: Vec<String>,
}

/// Stops what `live up` started with `run_dir`: SIGTERM to the `live up` process (it tears its
/// engines down), then SIGTERM to every engine group still there, SIGKILL after `grace`.
/// Removes the state file.
pub async fn live_down(run_dir: &Path, grace: Duration) -> Result<DownReport, LaunchError> {
    let path = run_dir.join(STATE_FILE);
    let state = read_state(&path)?;
    let mut report = DownReport::default();
    let me = std::process::id();
    let sup = state.supervisor_pid;
    if sup != me && is_alive(sup, state.supervisor_start) {
        let _ = kill(Pid::from_raw(sup as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace + Duration::from_secs(5);
        while is_alive(sup, state.supervisor_start) && Instant::now() < deadline {
            sleep(Duration::from_millis(100)).await;
        }
        let label = format!("live up (pid {sup})");
        if is_alive(sup, state.supervisor_start) {
            let _ = kill(Pid::from_raw(sup as i32), Signal::SIGKILL);
            report.killed.push(label);
        } else {
            report.stopped.push(label);
        }
    }
    let running: Vec<&EngineState> = state
        .engines
        .iter()
        .filter(|e| {
            let alive = is_alive(e.pid, e.start);
            if !alive {
                report.already_gone.push(e.instance.clone());
            }
            alive
        })
        .collect();
    for e in &running {
        signal_group(e.pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while running.iter().any(|e| is_alive(e.pid, e.start)) && Instant::now() < deadline {
        sleep(Duration::from_millis(50)).await;
    }
    for e in &running {
        if is_alive(e.pid, e.start) || group_alive(e.pid) {
            signal_group(e.pid, Signal::SIGKILL);
            report.killed.push(e.instance.clone());
        } else {
            report.stopped.push(e.instance.clone());
        }
    }
    // SIGKILL is not instantaneous: return once the processes are gone (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.iter().any(|e| is_alive(e.pid, e.start)) && Instant::now() < deadline {
        sleep(Duration::from_millis(20)).await;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(LaunchError::Io { path, source }),
    }
    Ok(report)
}

/// Reads a state file.
pub fn read_state(path: &Path) -> Result<LiveState, LaunchError> {
    let text = std::fs::read_to_string(path).map_err(|e| LaunchError::State {
        path: path.to_path_buf(),
        reason: format!("{e}: nothing to stop (was `live up` run with this run dir?)"),
    })?;
    serde_json::from_str(&text).map_err(|e| LaunchError::State {
        path: path.to_path_buf(),
        reason: format!("not a live state file: {e}"),
    })
}

fn write_state(path: &Path, state: &LiveState) -> Result<(), LaunchError> {
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| LaunchError::State { path: path.to_path_buf(), reason: e.to_string() })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|source| LaunchError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| LaunchError::Io { path: path.to_path_buf(), source })
}

fn refuse_if_running(path: &Path) -> Result<(), LaunchError> {
    if let Ok(state) = read_state(path)
        && state.supervisor_pid != std::process::id()
        && is_alive(state.supervisor_pid, state.supervisor_start)
    {
        return Err(LaunchError::AlreadyRunning { path: path.to_path_buf(), pid: state.supervisor_pid });
    }
    Ok(())
}

/// The last `LOG_TAIL_LINES` lines of a log (reads at most its last 64 KiB).
pub fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return format!("(cannot read {})", path.display()) };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.#".contains(c) { c } else { '_' }).collect()
}

fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() }
}

fn signal_group(pgid: u32, sig: Signal) {
    if pgid == 0 {
        return;
    }
    match killpg(Pid::from_raw(pgid as i32), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!("cannot send {sig} to process group {pgid}: {e}"),
    }
}

fn group_alive(pgid: u32) -> bool {
    pgid != 0 && killpg(Pid::from_raw(pgid as i32), None::<Signal>).is_ok()
}

/// A process's start time in clock ticks since boot (Linux `/proc/<pid>/stat` field 22).
fn process_start(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

fn proc_stat(pid: u32) -> Option<(char, u64)> {
    crate::procfs::stat(Some(pid)).map(|s| (s.state, s.start_ticks))
}

/// Whether `pid` runs and (when known) is the process that started at `start`.
fn is_alive(pid: u32, start: Option<u64>) -> bool {
    if pid == 0 {
        return false;
    }
    match (proc_stat(pid), start) {
        (Some((state, _)), _) if state == 'Z' || state == 'X' => false,
        (Some((_, now)), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => {
            !std::path::Path::new("/proc/self").exists() && kill(Pid::from_raw(pid as i32), None).is_ok()
        }
    }
}

/// Engine commands of every instance, keyed by instance name (for `--dry-run` printing).
pub fn render_all(
    scenario: &Scenario,
    host: &str,
    run_dir: &Path,
) -> Result<BTreeMap<String, EngineCommand>, LaunchError> {
    (0..scenario.instances.len())
        .map(|i| {
            let id = InstanceId(i as u32);
            Ok((scenario.instances[i].name.clone(), render_command(scenario, id, host, run_dir)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(&'static str, String, bool)> {
        vec![
            ("port", "8001".into(), true),
            ("name", "it's here".into(), true),
            ("flag", " --x".into(), false),
        ]
    }

    #[test]
    fn placeholders_are_substituted_quoted_and_braces_escaped() {
        let out = render_template("serve {name} --port {port}{flag} {{literal}}", &vars()).unwrap();
        assert_eq!(out, "serve 'it'\\''s here' --port 8001 --x {literal}");
    }

    #[test]
    fn an_unknown_or_unclosed_placeholder_is_an_error_naming_it() {
        let err = render_template("serve {nope}", &vars()).unwrap_err();
        assert!(err.contains("{nope}") && err.contains("port"), "{err}");
        assert!(render_template("serve {port", &vars()).unwrap_err().contains("unclosed"));
        assert!(render_template("serve }", &vars()).unwrap_err().contains("unmatched"));
    }

    #[test]
    fn proc_stat_reads_this_process() {
        if std::path::Path::new("/proc/self/stat").exists() {
            let me = std::process::id();
            assert!(is_alive(me, process_start(me)));
            assert!(
                !is_alive(me, process_start(me).map(|s| s + 1)),
                "a different start time is another process"
            );
        }
    }
}
