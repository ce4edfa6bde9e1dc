//! Dispatch: each command calls into the library crates and prints what they return.

use crate::cli::{
    BenchArgs, Cli, Command, PlanArgs, ReportArgs, ScenarioArgs, ScenarioFileArgs, SimulateArgs, SweepAction,
    SweepArgs, SweepMergeArgs,
};
use anyhow::{Context, Result, bail};
use reports::{ReportOptions, write_report};
use sim::bench::{BenchOptions, TABLE_HEADER, run_bench};
use sim::metrics::table::{comparison_table, outcome_warning, variant_table};
use sim::runner::simulate_to_dir;
use sim::scenario::{Override, Scenario, ScenarioFile, load_scenario};
use sim::simulation::SimOptions;
use sim::sweep::{
    Axis, Shard, SweepFile, SweepOptions, SweepSpec, load_sweep_file, merge_shards, plan as sweep_plan,
    run_sweep,
};
use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Simulate(a) => simulate(a),
        Command::Plan(a) => plan(a),
        Command::Bench(a) => bench(a),
        Command::Report(a) => report(a),
        Command::Sweep(a) => sweep(a),
        Command::Explain(a) => crate::explain_commands::explain(a),
        Command::Live(a) => crate::live_commands::live(a.command),
        Command::Lb(a) => crate::live_commands::lb(a),
        Command::Emulate(a) => crate::live_commands::emulate(a),
        Command::Calibrate(a) => crate::calibrate_commands::calibrate(a),
        Command::Validate(a) => crate::calibrate_commands::validate(a),
        Command::Import(a) => crate::import_commands::import(a),
    }
}

pub(crate) fn parse_overrides(raw: &[String]) -> Result<Vec<Override>> {
    raw.iter().map(|s| s.parse::<Override>().map_err(anyhow::Error::from)).collect()
}

/// Loads the scenario file with its `--set` and `--seed` overrides applied.
pub(crate) fn load_file(args: &ScenarioFileArgs) -> Result<ScenarioFile> {
    let mut overrides = parse_overrides(&args.overrides)?;
    if let Some(seed) = args.seed {
        overrides.push(format!("seed={seed}").parse::<Override>()?);
    }
    Ok(load_scenario(&args.scenario, &overrides)?)
}

/// Loads the scenario file and picks the requested variants.
fn load(args: &ScenarioArgs) -> Result<(ScenarioFile, Vec<Scenario>)> {
    let file = load_file(&args.file)?;
    let variants = if args.variants.is_empty() {
        file.variants.clone()
    } else {
        args.variants.iter().map(|v| file.variant(v).cloned()).collect::<Result<Vec<_>, _>>()?
    };
    Ok((file, variants))
}

fn now_rfc3339() -> String {
    // Informational only (run.json); deterministic outputs never include it.
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("unix:{secs}")
}

fn progress_printer(label: String, planned: Option<u64>) -> impl FnMut(u64) {
    let show = std::io::stderr().is_terminal();
    let start = Instant::now();
    move |done| {
        if show {
            let pct = planned.map(|p| format!(" ({:.0}%)", done as f64 / p.max(1) as f64 * 100.0));
            eprint!(
                "\r  {label}: {done} requests done{} in {:.1}s",
                pct.unwrap_or_default(),
                start.elapsed().as_secs_f64()
            );
        }
    }
}

/// The progress bar of a sweep (or an explanation's runs) on stderr, drawn only when stderr is a
/// terminal, and the callback that moves it; finish it with `finish_and_clear` after the runs.
pub(crate) fn sweep_progress_bar() -> (indicatif::ProgressBar, sim::sweep::SweepProgress) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("sweep [{elapsed_precise}] {wide_bar} {pos}/{len} runs, ETA {eta}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let moved = bar.clone();
    let progress = sim::sweep::SweepProgress(std::sync::Arc::new(move |done, total| {
        moved.set_length(total);
        moved.set_position(done);
    }));
    (bar, progress)
}

/// Prints what each replay phase does with its file's rows (read, skipped and why, sent).
pub(crate) fn print_replay_stats(scenario: &Scenario, base_dir: &std::path::Path) -> Result<()> {
    let mut workload = sim::simulation::scenario_workload(scenario, base_dir)
        .with_context(|| format!("building the workload of variant '{}'", scenario.variant))?;
    let stats = workload.replay_stats();
    if stats.is_empty() {
        return Ok(());
    }
    // Requests no replica of their model can take (prompt + max_tokens > max_model_len), per phase;
    // only listed in advance when every phase is open loop.
    let closed = scenario
        .workload
        .phases
        .iter()
        .any(|p| matches!(p.arrival, sim::scenario::ArrivalSpec::ClosedLoop { .. }));
    let mut too_long = vec![0u64; scenario.workload.phases.len()];
    if !closed {
        let max_len: Vec<u32> = (0..scenario.models.len())
            .map(|m| {
                let lens = scenario.instances.iter().filter(|i| i.model.index() == m);
                lens.map(|i| i.engine.max_model_len).max().unwrap_or(0)
            })
            .collect();
        while let Some(r) = workload.pop() {
            if r.num_prompt_tokens.saturating_add(r.max_tokens) > max_len[r.model.index()] {
                too_long[r.phase as usize] += 1;
            }
        }
    }
    for (phase, stats) in stats {
        let long = match too_long[phase] {
            0 => String::new(),
            n => format!(
                "; {n} of them longer than max_model_len: sent and rejected, as vLLM does (in reqs, not in ok)"
            ),
        };
        eprintln!("replay phase {phase}: {stats}{long}");
    }
    let bounds = sim::workload::scenario_reuse_bounds(scenario, base_dir)
        .with_context(|| format!("building the workload of variant '{}'", scenario.variant))?;
    let pct =
        |b: &sim::workload::ReuseBound| b.hit_rate().map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
    for b in bounds {
        eprintln!(
            "prefix hits the requests allow for {} (one at a time): {} with an infinite cache, {} with \
             an LRU cache of its replicas' {} blocks (README, \"Replaying traces\")",
            b.model,
            pct(&b.infinite),
            pct(&b.finite),
            b.cache_blocks
        );
    }
    Ok(())
}

fn simulate(args: SimulateArgs) -> Result<()> {
    let (file, variants) = load(&args.scenario)?;
    if args.explain && variants.len() != 2 {
        bail!(
            "simulate --explain compares exactly two variants, but {} are selected ({}); pick two with \
             --variant A --variant B",
            variants.len(),
            variants.iter().map(|v| v.variant.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("results").join(&file.name));
    let started = now_rfc3339();
    let mut summaries = Vec::new();
    let mut run_dirs = Vec::new();
    let mut reported: Option<&sim::scenario::WorkloadSpec> = None;
    for scenario in &variants {
        if reported != Some(&scenario.workload) {
            print_replay_stats(scenario, &file.base_dir)?;
            reported = Some(&scenario.workload);
        }
        let dir = out.join(&scenario.variant);
        run_dirs.push(dir.clone());
        let mut progress = progress_printer(scenario.variant.clone(), None);
        let opts = SimOptions { progress: Some(&mut progress), ..SimOptions::default() };
        let t0 = Instant::now();
        let run = simulate_to_dir(scenario, &file.base_dir, &dir, args.tokens, &started, opts).with_context(
            || format!("simulating variant '{}' of {}", scenario.variant, file.path.display()),
        )?;
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[2K");
        }
        eprintln!(
            "simulated {} / {}: {} requests, {} steps, {:.1} s simulated in {:.2} s -> {}",
            scenario.name,
            scenario.variant,
            run.stats.requests,
            run.stats.steps,
            run.stats.end_time.as_secs_f64(),
            t0.elapsed().as_secs_f64(),
            dir.display()
        );
        if !args.quiet {
            outln!("{}", variant_table(&run.summary));
        } else if let Some(w) = outcome_warning(&run.summary) {
            eprintln!("WARNING: {} / {}: {w}", scenario.name, scenario.variant);
        }
        summaries.push(run.summary);
    }
    if summaries.len() > 1 {
        outln!("{}", comparison_table(&summaries));
    }
    outln!("latencies in ms; run dirs under {}", out.display());
    if !args.no_report {
        let opts = ReportOptions { out_dir: out.join("report"), ..ReportOptions::default() };
        let written =
            write_report(&run_dirs, &opts).context("writing the report (skip it with --no-report)")?;
        outln!("report: {} ({} charts)", written.report_md.display(), written.charts.len());
    }
    if args.explain {
        let a = &args.scenario.file;
        crate::explain_commands::explain(crate::cli::ExplainArgs {
            action: None,
            scenario: Some(a.scenario.clone()),
            from: Some(variants[0].variant.clone()),
            to: Some(variants[1].variant.clone()),
            to_set: Vec::new(),
            groups: Vec::new(),
            overrides: a.overrides.clone(),
            seed: a.seed,
            replications: 3,
            permutations: 0,
            metrics: Vec::new(),
            out: Some(out.join("explain")),
            max_load: 8.0,
            no_operating_point: false,
            shard: None,
            jobs: None,
        })?;
    }
    Ok(())
}

fn report(args: ReportArgs) -> Result<()> {
    let opts = ReportOptions { out_dir: args.out, title: args.title, ..ReportOptions::default() };
    let written = write_report(&args.inputs, &opts)?;
    for w in &written.warnings {
        eprintln!("warning: {w}");
    }
    outln!("report: {} ({} charts)", written.report_md.display(), written.charts.len());
    for c in &written.charts {
        outln!("  {}", c.display());
    }
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    let opts = BenchOptions {
        scenario: args.scenario,
        variant: args.variant,
        requests: args.requests,
        overrides: parse_overrides(&args.overrides)?,
        repeat: args.repeat,
        fast_forward: !args.no_fast_forward,
        peak_rss_mib: live::procfs::peak_rss_mib,
    };
    // Each row prints as its run ends (the header with the first); a closed stdout stops the bench.
    let mut printed = 0;
    let mut write_error = None;
    let report = run_bench(&opts, &mut |row| {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let written = if printed == 0 { writeln!(stdout, "{TABLE_HEADER}") } else { Ok(()) }
            .and_then(|()| writeln!(stdout, "{}", row.table_line()));
        printed += 1;
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(crate::StdoutError(e).into());
    }
    out!("{}", report.footer());
    Ok(())
}

fn plan(args: PlanArgs) -> Result<()> {
    use sim::plan::{PlanOptions, SloTarget, plan_file};
    use sim::scenario::KvCacheMode;
    let targets = |flag: &str, raw: &[String]| -> Result<Vec<SloTarget>> {
        raw.iter().map(|s| s.parse::<SloTarget>().map_err(|e| anyhow::anyhow!("--{flag}: {e}"))).collect()
    };
    let kv_modes = args
        .kv
        .iter()
        .map(|k| match k.trim() {
            "static" => Ok(KvCacheMode::Static),
            "elastic" => Ok(KvCacheMode::Elastic),
            other => bail!("--kv: unknown KV mode `{other}`; use static, elastic or both"),
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = PlanOptions {
        variant: args.variant,
        overrides: parse_overrides(&args.overrides)?,
        seed: args.seed,
        gpus: args.gpus,
        gpu: args.gpu,
        max_replicas: args.max_replicas,
        colocate: args.colocate.unwrap_or(1),
        kv_modes,
        top: args.top,
        requests: args.requests,
        at_load: args.at_load,
        max_load: (!args.no_headroom).then_some(args.max_load),
        ttft_p90: targets("ttft-p90", &args.ttft_p90)?,
        tpot_p90: targets("tpot-p90", &args.tpot_p90)?,
        min_success: args.min_success,
        seeds: args.seeds,
        jobs: args.jobs.unwrap_or(0),
        ..PlanOptions::default()
    };
    let report = plan_file(&args.scenario, &opts)?;
    if args.json {
        outln!("{}", report.to_json()?);
    } else {
        out!("{}", report.table());
    }
    Ok(())
}

fn sweep(args: SweepArgs) -> Result<()> {
    if let Some(SweepAction::Merge(m)) = args.action {
        return sweep_merge(m);
    }
    let file = match &args.spec {
        Some(path) => load_sweep_file(path)?,
        None => SweepFile::default(),
    };
    let Some(scenario) = args.scenario.or(file.scenario) else {
        bail!("sweep: give a scenario file, or a --spec whose [sweep] table names one")
    };
    let mut overrides = file.overrides;
    overrides.extend(parse_overrides(&args.overrides)?);
    if let Some(seed) = args.seed {
        overrides.push(format!("seed={seed}").parse::<Override>()?);
    }
    let mut axes = file.axes;
    for v in &args.vary {
        axes.push(v.parse::<Axis>()?);
    }
    let mut variants = file.variants;
    variants.extend(args.variants);
    let spec = SweepSpec {
        scenario,
        axes,
        zip: args.zip || file.zip,
        reps: args.reps.or(file.reps).unwrap_or(3),
        variants,
        overrides,
    };
    let shard = args.shard.as_deref().map(str::parse::<Shard>).transpose()?;
    let plan = sweep_plan(&spec)?;
    let out = args.out.unwrap_or_else(|| plan.default_out(shard));
    let (bar, progress) = sweep_progress_bar();
    let opts = SweepOptions {
        shard,
        jobs: args.jobs,
        run_dirs: args.run_dirs,
        progress: Some(progress),
        stop: Some(stop_on_signals()?),
    };
    let runs = plan.runs(shard.unwrap_or(Shard::WHOLE));
    eprintln!(
        "sweep {}: {} points x {} variant(s) x {} rep(s){} = {runs} runs -> {}",
        plan.name,
        plan.total_points(),
        plan.variants.len(),
        spec.reps,
        shard.map(|s| format!(", shard {s}")).unwrap_or_default(),
        out.display()
    );
    let t0 = Instant::now();
    let done = run_sweep(&plan, &out, &opts);
    bar.finish_and_clear();
    let done = done?;
    let wall = t0.elapsed().as_secs_f64();
    eprintln!(
        "swept {} runs ({} simulated requests) in {wall:.1} s -> {} ({} rows)",
        done.runs,
        done.requests,
        out.join("sweep.csv").display(),
        done.rows.len()
    );
    if let Some(why) = &done.partial {
        eprintln!("warning: PARTIAL sweep: {why} (marker {})", out.join(sim::sweep::PARTIAL_FILE).display());
    }
    if shard.is_some_and(|s| s.count > 1) {
        outln!(
            "shard written to {}; merge all shards with `modelsguard sweep merge <dirs>... --out DIR`",
            out.display()
        );
        return Ok(());
    }
    outln!("sweep written to {}", out.display());
    sweep_report(&out)
}

/// A flag the first SIGINT, SIGTERM or SIGHUP sets (a second one exits at once with status 130),
/// for `sweep`, whose runs are rayon jobs: each job checks it before it starts. The handlers are
/// installed before this returns (tokio's `signal::unix`, as `live run` and `lb` use), so a signal
/// that comes early is not lost nor fatal.
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal listener of sweep")?;
    let mut signals = {
        let _guard = rt.enter();
        live::signals::StopSignals::install()
    };
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    std::thread::spawn(move || {
        rt.block_on(async move {
            let first = signals.next().await;
            eprintln!(
                "{first}: finishing the runs in progress and skipping the rest (again to stop at once)"
            );
            set.store(true, Ordering::Relaxed);
            signals.next().await;
            std::process::exit(130);
        });
    });
    Ok(flag)
}

/// Writes the report of a finished (whole or merged) sweep dir into `<dir>/report/`: the one
/// place a sweep calls the reports crate.
fn sweep_report(dir: &std::path::Path) -> Result<()> {
    let opts = ReportOptions { out_dir: dir.join("report"), ..ReportOptions::default() };
    let written = write_report(&[dir.to_path_buf()], &opts)
        .with_context(|| format!("writing the report of the sweep in {}", dir.display()))?;
    outln!("report: {} ({} charts)", written.report_md.display(), written.charts.len());
    Ok(())
}

fn sweep_merge(args: SweepMergeArgs) -> Result<()> {
    let meta = merge_shards(&args.shards, &args.out)?;
    outln!(
        "merged {} shards of {} ({} points) into {}",
        args.shards.len(),
        meta.scenario,
        meta.total_points,
        args.out.display()
    );
    sweep_report(&args.out)
}
