//! Dispatch of the live commands (`live run`, `live up`, `live down`, `live bench`, `lb`,
//! `emulate`): load the scenario variant, build the library options from the arguments, run the
//! library function on a tokio runtime and print what it returns.
//!
//! Ctrl-C, SIGTERM or SIGHUP: `live run` stops sending and gives in-flight requests `--grace` (a
//! second signal stops at once) and still writes the run dir, marked partial; `lb`, `emulate` and
//! `live up` shut down cleanly. Every argument is checked before any work. No measuring, routing
//! or serving logic lives here.

use crate::cli::{
    EmulateArgs, LbArgs, LiveBenchArgs, LiveCommand, LiveDownArgs, LiveRunArgs, LiveUpArgs, MetricsNamingArg,
    OneVariantArgs,
};
use anyhow::{Context, Result, bail};
use live::bench::{BenchOptions, run_bench};
use live::checkpoint::{CheckpointNote, check_quantization};
use live::emulator::{EmulatorHandle, EmulatorOptions, MetricsNaming};
use live::launcher::{LaunchOptions, live_down, live_up, render_all};
use live::loadgen::StopSignal;
use live::proxy::{LbOptions, LbServer, shutdown_signal};
use live::run::{LiveRunOptions, Target, live_run};
use live::sse::ApiMode;
use reports::{ReportOptions, write_report};
use sim::InstanceId;
use sim::metrics::table::variant_table;
use sim::scenario::{Scenario, ScenarioFile};
use std::path::PathBuf;
use std::time::Duration;

/// Default LB address of `live run`.
const DEFAULT_LB: &str = "http://127.0.0.1:8080";

/// Runs one `live` subcommand.
pub fn live(cmd: LiveCommand) -> Result<()> {
    match cmd {
        LiveCommand::Run(a) => live_run_cmd(a),
        LiveCommand::Up(a) => live_up_cmd(a),
        LiveCommand::Down(a) => live_down_cmd(a),
        LiveCommand::Bench(a) => live_bench_cmd(a),
        LiveCommand::Campaign(a) => crate::campaign_commands::campaign(a),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Loads the scenario file and picks its one variant to run.
pub(crate) fn load_one(args: &OneVariantArgs) -> Result<(ScenarioFile, Scenario)> {
    let file = crate::commands::load_file(&args.file)?;
    let scenario = match (&args.variant, file.variants.as_slice()) {
        (Some(v), _) => file.variant(v)?.clone(),
        (None, [only]) => only.clone(),
        (None, all) => {
            let names: Vec<&str> = all.iter().map(|v| v.variant.as_str()).collect();
            bail!(
                "{}: pick one variant with --variant (available: {})",
                file.path.display(),
                names.join(", ")
            )
        }
    };
    Ok((file, scenario))
}

pub(crate) fn secs(what: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{what}: {s} is not a duration in seconds (>= 0)"))
}

/// A duration that must be above zero (a zero timeout would fail every request).
pub(crate) fn positive_secs(what: &str, s: f64) -> Result<Duration> {
    let d = secs(what, s)?;
    if d.is_zero() {
        bail!("{what}: must be above 0 seconds (got {s})");
    }
    Ok(d)
}

/// `--xxx-host HOST`: a bare host name or address.
fn host_arg(what: &str, host: &str) -> Result<()> {
    live::run::check_host(host).map_err(|reason| anyhow::anyhow!("{what} {host:?}: {reason}"))
}

/// Each `--compare` input must be a run dir or a sweep dir, checked before the run starts.
fn check_compare(a: &LiveRunArgs) -> Result<()> {
    if a.no_report && !a.compare.is_empty() {
        bail!("--compare goes into the report, which --no-report skips: drop one of them");
    }
    for p in &a.compare {
        if !p.join("run.json").is_file() && !p.join("sweep.json").is_file() {
            bail!(
                "--compare {}: not a run dir (no run.json) nor a sweep dir (no sweep.json); give the \
                 output dir of `modelsguard simulate` or `sweep`",
                p.display()
            );
        }
    }
    Ok(())
}

/// `--target lb=URL` (the `lb=` may be left out) or `--direct HOST`.
fn target_of(a: &LiveRunArgs) -> Result<Target> {
    match (&a.target, &a.direct) {
        (_, Some(host)) => {
            host_arg("--direct", host)?;
            Ok(Target::Direct(host.clone()))
        }
        (Some(t), None) => {
            let url = t.strip_prefix("lb=").unwrap_or(t);
            if url.contains('=') {
                bail!("--target {t}: give lb=URL, e.g. --target lb=http://127.0.0.1:8080 (or --direct HOST)");
            }
            Ok(Target::Lb(url.to_string()))
        }
        (None, None) => Ok(Target::Lb(DEFAULT_LB.to_string())),
    }
}

fn live_run_cmd(a: LiveRunArgs) -> Result<()> {
    check_compare(&a)?;
    if let Some(h) = &a.scrape_host {
        host_arg("--scrape-host", h)?;
    }
    let (file, scenario) = load_one(&a.scenario)?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(&file.name).join(format!("{}-live", scenario.variant))
    });
    let mut opts = LiveRunOptions::new(target_of(&a)?, &out);
    opts.per_request_timeout = positive_secs("--timeout", a.timeout)?;
    opts.deadline = a.deadline.map(|d| positive_secs("--deadline", d)).transpose()?;
    opts.grace = secs("--grace", a.grace)?;
    opts.scrape_interval = (a.scrape_interval_ms > 0).then(|| Duration::from_millis(a.scrape_interval_ms));
    opts.scrape_host = a.scrape_host.clone();
    opts.mode = if a.chat { ApiMode::Chat } else { ApiMode::Completions };
    opts.tokens_csv = a.tokens.then_some(true);
    opts.genai_perf_export = a.genai_perf;
    opts.aiperf_export = a.aiperf;
    let target = match &opts.target {
        Target::Lb(u) => format!("the LB at {u}"),
        Target::Direct(h) => format!("the instances on {h}"),
    };
    eprintln!(
        "live run of {} / {} against {target} -> {} (Ctrl-C, SIGTERM or SIGHUP stops sending; a second one stops at once)",
        scenario.name,
        scenario.variant,
        out.display()
    );
    crate::commands::print_replay_stats(&scenario, &file.base_dir)?;
    let rt = runtime()?;
    {
        // Listen for the stop signals before the run dir exists, so none kills the process.
        let _in_runtime = rt.enter();
        opts.stop = Some(StopSignal::on_signals());
    }
    let report = rt
        .block_on(live_run(&scenario, &file.base_dir, opts))
        .with_context(|| format!("live run of variant '{}' of {}", scenario.variant, file.path.display()))?;
    let l = &report.load;
    outln!("{}", variant_table(&report.summary));
    outln!(
        "sent {} requests: {} ok, {} failed; {}; run dir {}",
        l.sent,
        l.ok,
        l.failed,
        report.partial.as_ref().map_or("complete".to_string(), |why| format!("PARTIAL: {why}")),
        report.run_dir.display()
    );
    if let Some(s) = &report.scrape
        && s.failures > 0
    {
        eprintln!(
            "warning: {} /metrics scrapes failed (instances.csv has gaps); last: {}",
            s.failures,
            s.last_failure.as_deref().unwrap_or("-")
        );
    }
    if let Some(e) = &report.workload_error {
        eprintln!("warning: the request stream stopped early: {e}");
    }
    if let Some(w) = report.summary.send_lag.as_ref().and_then(|l| l.warning()) {
        eprintln!("warning: {w}");
    }
    if !a.no_report {
        let mut inputs = vec![report.run_dir.clone()];
        inputs.extend(a.compare.iter().cloned());
        let opts = ReportOptions { out_dir: report.run_dir.join("report"), ..ReportOptions::default() };
        let written =
            write_report(&inputs, &opts).context("writing the report (skip it with --no-report)")?;
        for w in &written.warnings {
            eprintln!("warning: {w}");
        }
        outln!("report: {} ({} charts)", written.report_md.display(), written.charts.len());
    }
    Ok(())
}

fn live_up_cmd(a: LiveUpArgs) -> Result<()> {
    host_arg("--engine-host", &a.engine_host)?;
    let (file, scenario) = load_one(&a.scenario)?;
    if a.dry_run {
        let cmds = render_all(&scenario, &a.engine_host, &a.run_dir)?;
        let ids: Vec<InstanceId> = (0..scenario.instances.len()).map(|i| InstanceId(i as u32)).collect();
        for note in check_quantization(&scenario, &ids)? {
            match note {
                CheckpointNote::Checked { instance, config } => {
                    outln!("# {instance}: --quantization agrees with {}", config.display());
                }
                CheckpointNote::NotLocal { instance, warning: Some(w), .. } => {
                    outln!("# {instance}: WARNING: {w}");
                }
                CheckpointNote::NotLocal { .. } => {}
            }
        }
        for inst in &scenario.instances {
            if let Some(c) = cmds.get(&inst.name) {
                let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                outln!("# {} (port {}, GPU {})", inst.name, inst.port, inst.gpu);
                outln!("{} sh -c {:?}", env.join(" "), c.command_line);
            }
        }
        if !a.no_lb {
            outln!("# LB ({:?} policy) on http://{}:{}", scenario.router.policy, a.lb_bind, a.lb_port);
        }
        return Ok(());
    }
    let lb = (!a.no_lb).then(|| LbOptions { bind: a.lb_bind, port: a.lb_port, ..LbOptions::default() });
    let opts = LaunchOptions {
        run_dir: a.run_dir.clone(),
        instances: None,
        engine_host: a.engine_host.clone(),
        health_timeout: positive_secs("--health-timeout", a.health_timeout)?,
        health_poll: Duration::from_secs(1),
        grace: secs("--grace", a.grace)?,
        lb,
    };
    eprintln!(
        "starting {} engines of {} / {} (logs in {}); Ctrl-C or `modelsguard live down --run-dir {}` stops them",
        scenario.instances.len(),
        scenario.name,
        scenario.variant,
        a.run_dir.join("logs").display(),
        a.run_dir.display()
    );
    runtime()?
        .block_on(live_up(&scenario, opts))
        .with_context(|| format!("live up of variant '{}' of {}", scenario.variant, file.path.display()))?;
    eprintln!("all engines stopped");
    Ok(())
}

fn live_down_cmd(a: LiveDownArgs) -> Result<()> {
    let grace = secs("--grace", a.grace)?;
    let r = runtime()?.block_on(live_down(&a.run_dir, grace))?;
    for (what, list) in
        [("stopped", &r.stopped), ("killed (SIGKILL)", &r.killed), ("already gone", &r.already_gone)]
    {
        if !list.is_empty() {
            outln!("{what}: {}", list.join(", "));
        }
    }
    Ok(())
}

fn live_bench_cmd(a: LiveBenchArgs) -> Result<()> {
    let opts = BenchOptions {
        streams: a.streams,
        tokens: a.tokens,
        token_interval: Duration::from_millis(a.step_ms),
        rate: a.rate,
        duration: secs("--duration", a.duration)?,
        run_streams: !a.lb_only,
        run_lb: !a.streams_only,
        idle_connections: a.idle_connections,
    };
    let report = runtime()?.block_on(run_bench(&opts)).context("live bench")?;
    outln!("{}", report.table());
    Ok(())
}

pub(crate) fn lb(a: LbArgs) -> Result<()> {
    host_arg("--upstream-host", &a.upstream_host)?;
    let (file, scenario) = load_one(&a.scenario)?;
    let opts = LbOptions {
        bind: a.bind,
        port: a.port,
        upstream_host: a.upstream_host.clone(),
        max_connections: a.max_connections,
        client_header_timeout: secs("--client-header-timeout", a.client_header_timeout)?,
        client_body_timeout: secs("--client-body-timeout", a.client_body_timeout)?,
        max_body_bytes: a.max_body_bytes,
        ..LbOptions::default()
    };
    if a.max_connections == 0 || a.max_body_bytes == 0 {
        bail!("--max-connections and --max-body-bytes must be at least 1");
    }
    if opts.client_header_timeout.is_zero() || opts.client_body_timeout.is_zero() {
        bail!("--client-header-timeout and --client-body-timeout must be above 0 seconds");
    }
    runtime()?
        .block_on(async {
            let server = LbServer::bind(&scenario, opts).await?;
            let addr = server.local_addr()?;
            // Listening for the stop signals before saying "listening" loses none of them.
            let stop = shutdown_signal();
            outln!(
                "LB for {} / {} ({:?} policy) listening on http://{addr}; Ctrl-C, SIGTERM or SIGHUP stops it",
                scenario.name,
                scenario.variant,
                scenario.router.policy
            );
            for b in server.state().backends() {
                outln!("  {} -> {}", b.name, b.url);
            }
            server.run(stop).await?;
            anyhow::Ok(())
        })
        .with_context(|| format!("LB of variant '{}' of {}", scenario.variant, file.path.display()))
}

/// Instance ids from names or indices.
fn pick_instances(scenario: &Scenario, wanted: &[String]) -> Result<Option<Vec<InstanceId>>> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = scenario.instances.iter().map(|i| i.name.as_str()).collect();
    wanted
        .iter()
        .map(|w| {
            let by_name = names.iter().position(|n| n == w);
            let by_index = w.parse::<usize>().ok().filter(|&i| i < names.len());
            match by_name.or(by_index) {
                Some(i) => Ok(InstanceId(i as u32)),
                None => bail!(
                    "--instances {w}: no such instance; known: {} (or 0..{})",
                    names.join(", "),
                    names.len()
                ),
            }
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

pub(crate) fn emulate(a: EmulateArgs) -> Result<()> {
    let (file, scenario) = load_one(&a.scenario)?;
    let instances = pick_instances(&scenario, &a.instances)?;
    let opts = EmulatorOptions {
        bind: a.bind,
        time_scale: a.time_scale,
        metrics_naming: a.metrics_naming.map(|m| match m {
            MetricsNamingArg::V0 => MetricsNaming::Vllm064,
            MetricsNamingArg::V1 => MetricsNaming::V1,
        }),
        ..EmulatorOptions::default()
    };
    runtime()?
        .block_on(async {
            let handle = EmulatorHandle::start(&scenario, instances.clone(), opts).await?;
            let stop = shutdown_signal();
            outln!(
                "emulating {} / {} (time scale {}); Ctrl-C, SIGTERM or SIGHUP stops it",
                scenario.name,
                scenario.variant,
                a.time_scale
            );
            let ids = instances
                .unwrap_or_else(|| (0..scenario.instances.len()).map(|i| InstanceId(i as u32)).collect());
            for id in ids {
                if let (Some(addr), Some(inst)) = (handle.addr(id), scenario.instances.get(id.index())) {
                    outln!("  {} on http://{addr}", inst.name);
                }
            }
            stop.await;
            handle.shutdown().await;
            anyhow::Ok(())
        })
        .with_context(|| format!("emulating variant '{}' of {}", scenario.variant, file.path.display()))
}
