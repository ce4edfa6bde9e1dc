//! Runs the plan: each step either skipped (finished earlier and nothing it depends on ran again)
//! or run, its marker written when its outputs are complete. Engines are up only while a variant
//! has runs left; they are stopped before any error or interruption is returned.

use crate::engines::{Engines, StartError, emulate_template};
use crate::error::CampaignError;
use crate::interrupt::Interrupt;
use crate::layout::Layout;
use crate::plan::{self, Plan, StepKind};
use crate::progress::{Progress, StepLog};
use crate::summary::{self, SummaryInput, VariantRuns};
use crate::{CampaignOptions, quick, state};
use calibration::dataset::TargetFilter;
use calibration::{CalibrateOptions, Method, ValidateOptions, validation_table};
use live::launcher::{LaunchOptions, STATE_FILE, live_down, render_all};
use live::loadgen::stop_pair;
use live::proxy::LbOptions;
use live::run::{LiveRunOptions, ProgressMode, Target, live_run};
use reports::{ReportOptions, write_report};
use sim::metrics::table::variant_table;
use sim::trace::files;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a campaign produced.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignReport {
    /// The campaign dir.
    pub out: PathBuf,
    /// `summary.md`: validation tables and variant differences.
    pub summary_md: PathBuf,
    /// The report with charts of every variant, sim and live.
    pub report_md: PathBuf,
    /// The fitted profiles.
    pub profiles: Vec<PathBuf>,
    /// Steps run by this invocation.
    pub steps_run: usize,
    /// Steps skipped as finished earlier.
    pub steps_skipped: usize,
}

struct Exec<'a> {
    opts: &'a CampaignOptions,
    layout: Layout,
    plan: Plan,
    progress: Progress,
    ran: Vec<bool>,
    started: Vec<Option<Instant>>,
    interrupt: Interrupt,
    skipped: usize,
}

/// Runs the campaign `opts` describes, stopping for `interrupt` (Ctrl-C): engines are stopped,
/// finished steps stay finished, and the error says to rerun to resume.
pub async fn run_campaign(
    opts: &CampaignOptions,
    interrupt: Interrupt,
) -> Result<CampaignReport, CampaignError> {
    if let Some(f) = opts.quick {
        quick::check_factor(f).map_err(CampaignError::Options)?;
    }
    if let Some(exe) = &opts.emulate
        && !exe.is_file()
    {
        return Err(CampaignError::Options(format!(
            "--emulate: {} (the modelsguard executable serving `emulate`) is not a file",
            exe.display()
        )));
    }
    let layout = Layout::new(&opts.out);
    let plan = plan::build(opts, &layout)?;
    std::fs::create_dir_all(&layout.root)
        .map_err(|source| CampaignError::Io { path: layout.root.clone(), source })?;
    let _lock = state::lock(&layout)?;
    state::check_settings(&layout, &plan.settings, opts.fresh)?;
    let n = plan.steps.len();
    let mut progress = Progress::new(&layout.campaign_log(), n, opts.progress)?;
    progress.header(&format!(
        "live campaign of {} (variants {}) in {}: {n} steps; engines: {}",
        opts.scenario.display(),
        plan.settings.variants.join(", "),
        layout.root.display(),
        if opts.emulate.is_some() {
            "emulated (`modelsguard emulate`)"
        } else {
            "the scenario's launch commands"
        }
    ));
    let mut ex = Exec {
        opts,
        layout,
        plan,
        progress,
        ran: vec![false; n],
        started: vec![None; n],
        interrupt,
        skipped: 0,
    };
    for v in 0..ex.plan.variants.len() {
        ex.variant(v).await?;
    }
    for t in 0..ex.plan.targets.len() {
        ex.calibrate(t).await?;
    }
    for v in 0..ex.plan.variants.len() {
        ex.validate(v).await?;
    }
    let report_md = ex.report().await?;
    let steps_run = ex.ran.iter().filter(|r| **r).count();
    ex.progress.note(&format!(
        "campaign finished in {}: {steps_run} steps run, {} skipped; summary {}",
        crate::progress::clock(ex.progress.elapsed()),
        ex.skipped,
        ex.layout.summary().display()
    ));
    Ok(CampaignReport {
        out: ex.layout.root.clone(),
        summary_md: ex.layout.summary(),
        report_md,
        profiles: ex.plan.targets.iter().map(|t| t.profile.clone()).collect(),
        steps_run,
        steps_skipped: ex.skipped,
    })
}

impl Exec<'_> {
    fn label(&self, i: usize) -> String {
        self.plan.steps[i].label.clone()
    }

    /// Finished earlier, and nothing it depends on ran again since.
    fn finished(&self, i: usize) -> bool {
        let s = &self.plan.steps[i];
        state::is_finished(&self.layout, &s.id) && s.deps.iter().all(|&d| !self.ran[d])
    }

    fn skip(&mut self, i: usize) {
        let why = match self.plan.steps[i].kind {
            StepKind::Up(_) | StepKind::Down(_) => "not needed, the variant's runs finished earlier",
            _ => "finished earlier, skipped",
        };
        let text = format!("{}: {why}", self.label(i));
        self.progress.step(i, &text);
        self.skipped += 1;
    }

    fn begin(&mut self, i: usize) -> Result<StepLog, CampaignError> {
        let id = self.plan.steps[i].id.clone();
        state::clear(&self.layout, &id)?;
        let text = self.label(i);
        self.progress.step(i, &text);
        self.ran[i] = true;
        self.started[i] = Some(Instant::now());
        StepLog::open(&self.layout.logs_dir(), i, &id)
    }

    fn secs(&self, i: usize) -> f64 {
        self.started[i].map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    fn done(&mut self, i: usize, log: &mut StepLog, outputs: &[PathBuf]) -> Result<(), CampaignError> {
        if !outputs.is_empty() {
            state::mark_finished(&self.layout, &self.plan.steps[i].id, outputs)?;
        }
        let text = format!("done in {:.1} s", self.secs(i));
        log.line(&text);
        self.progress.note(&text);
        Ok(())
    }

    fn fail(&mut self, i: usize, log: &mut StepLog, detail: String, read: Option<PathBuf>) -> CampaignError {
        log.line(&format!("FAILED after {:.1} s: {detail}", self.secs(i)));
        self.progress.note(&format!("FAILED: see {}", log.path.display()));
        CampaignError::Step {
            position: self.progress.position(i),
            step: self.label(i),
            detail,
            log: read.unwrap_or_else(|| log.path.clone()),
        }
    }

    fn interrupted(&mut self, i: usize) -> CampaignError {
        self.progress.note("interrupted");
        CampaignError::Interrupted { position: self.progress.position(i), step: self.label(i) }
    }

    /// Runs blocking work off the async threads; Ctrl-C abandons it (its step stays unfinished).
    async fn blocking<T: Send + 'static>(
        &mut self,
        i: usize,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CampaignError> {
        let mut task = tokio::task::spawn_blocking(work);
        loop {
            if self.interrupt.level() > 0 {
                return Err(self.interrupted(i));
            }
            tokio::select! {
                r = &mut task => {
                    return r.map_err(|e| CampaignError::Step {
                        position: self.progress.position(i),
                        step: self.label(i),
                        detail: format!("the step's worker thread failed: {e}"),
                        log: self.layout.campaign_log(),
                    });
                }
                _ = self.interrupt.raised() => {}
            }
        }
    }

    /// One variant's engine session: up, its unfinished runs, down.
    async fn variant(&mut self, v: usize) -> Result<(), CampaignError> {
        let idx = self.plan.index.variants[v].clone();
        let runs: Vec<usize> = idx.calibrations.iter().copied().chain([idx.run]).collect();
        if runs.iter().all(|&i| self.finished(i)) {
            for i in [idx.up].into_iter().chain(runs).chain([idx.down]) {
                self.skip(i);
            }
            return Ok(());
        }
        let vp = self.plan.variants[v].clone();
        let name = vp.scenario.variant.clone();
        let dir = self.layout.engines(&name);
        let mut log = self.begin(idx.up)?;
        if dir.join(STATE_FILE).is_file() {
            match live_down(&dir, self.opts.grace).await {
                Ok(r) => log.line(&format!("engines left by an earlier campaign run: {r:?}")),
                Err(e) => log.line(&format!("stale state file: {e}")),
            }
        }
        let mut launch = vp.scenario.clone();
        if let Some(exe) = &self.opts.emulate {
            let t = emulate_template(exe, &self.opts.scenario, &name, &vp.overrides);
            for inst in &mut launch.instances {
                inst.launch_command = Some(t.clone());
            }
        }
        match render_all(&launch, &self.opts.engine_host, &dir) {
            Ok(cmds) => {
                for (inst, c) in cmds {
                    log.line(&format!("{inst}: {}", c.command_line));
                }
            }
            Err(e) => return Err(self.fail(idx.up, &mut log, e.to_string(), None)),
        }
        self.progress.note(&format!("engine logs: {}", dir.join("logs").display()));
        let lopts = LaunchOptions {
            run_dir: dir.clone(),
            instances: None,
            engine_host: self.opts.engine_host.clone(),
            health_timeout: self.opts.health_timeout,
            health_poll: Duration::from_millis(250),
            grace: self.opts.grace,
            lb: Some(LbOptions { port: 0, ..LbOptions::default() }),
        };
        let mut engines = match Engines::start(&launch, lopts, &mut self.interrupt).await {
            Ok(e) => e,
            Err(StartError::Interrupted) => return Err(self.interrupted(idx.up)),
            Err(StartError::Failed(exit)) => {
                return Err(self.fail(idx.up, &mut log, exit.message, Some(exit.log)));
            }
        };
        log.line(&format!("LB at {}", engines.lb_url));
        self.done(idx.up, &mut log, &[])?;
        let mut result = Ok(());
        for i in runs {
            if self.finished(i) {
                self.skip(i);
                continue;
            }
            if let Err(e) = self.live_run(i, &mut engines).await {
                result = Err(e);
                break;
            }
        }
        let log = self.begin(idx.down);
        let down = engines.stop().await;
        let mut log = log?;
        match (result, down) {
            (Err(e), down) => {
                if let Err(exit) = down {
                    log.line(&exit.message);
                }
                log.line("engines stopped after the failure above");
                self.progress.note("engines stopped");
                Err(e)
            }
            (Ok(()), Err(exit)) => Err(self.fail(idx.down, &mut log, exit.message, Some(exit.log))),
            (Ok(()), Ok(())) => self.done(idx.down, &mut log, &[]),
        }
    }

    /// A calibration run or the scenario's run against the running engines.
    async fn live_run(&mut self, i: usize, engines: &mut Engines) -> Result<(), CampaignError> {
        let (scenario, dir, tokens, base_dir) = match self.plan.steps[i].kind {
            StepKind::Calibration(v, k) => {
                let vp = &self.plan.variants[v];
                let (model, s) = &vp.calibrations[k];
                (
                    s.clone(),
                    self.layout.calibration_run(&vp.scenario.variant, model),
                    true,
                    vp.base_dir.clone(),
                )
            }
            StepKind::Run(v) => {
                let vp = &self.plan.variants[v];
                let tokens = self.opts.tokens || vp.scenario.output.tokens_csv;
                let dir = self.layout.live_run(&vp.scenario.variant);
                (vp.scenario.clone(), dir, tokens, vp.base_dir.clone())
            }
            _ => return Ok(()),
        };
        let mut log = self.begin(i)?;
        state::remove_dir(&self.layout, &dir)?;
        let load_s: f64 = scenario.workload.phases.iter().filter_map(|p| p.duration_s).sum();
        let text = format!(
            "-> {} ({} phases{})",
            self.layout.relative(&dir).display(),
            scenario.workload.phases.len(),
            if load_s > 0.0 { format!(", {load_s:.0} s of load") } else { String::new() }
        );
        self.progress.note(&text);
        log.line(&format!("run dir {}; LB {}", dir.display(), engines.lb_url));
        let (handle, signal) = stop_pair();
        let mut ropts = LiveRunOptions::new(Target::Lb(engines.lb_url.clone()), &dir);
        ropts.tokens_csv = Some(tokens);
        ropts.stop = Some(signal);
        ropts.progress = if self.opts.progress { ProgressMode::Auto } else { ProgressMode::Never };
        let mut intr = self.interrupt.clone();
        let forward = tokio::spawn(async move {
            loop {
                let level = intr.level();
                if level >= 1 {
                    handle.stop();
                }
                if level >= 2 {
                    handle.stop_now();
                    return;
                }
                intr.raised().await;
            }
        });
        let run = live_run(&scenario, &base_dir, ropts);
        tokio::pin!(run);
        let outcome = tokio::select! {
            r = &mut run => Ok(r),
            exit = engines.wait_exit() => Err(exit),
        };
        forward.abort();
        let report = match outcome {
            Err(exit) => {
                let detail = format!("an engine stopped during the run: {}", exit.message);
                return Err(self.fail(i, &mut log, detail, Some(exit.log)));
            }
            Ok(Err(e)) => return Err(self.fail(i, &mut log, e.to_string(), None)),
            Ok(Ok(r)) => r,
        };
        log.line(&variant_table(&report.summary));
        let l = &report.load;
        log.line(&format!("sent {}, ok {}, failed {}", l.sent, l.ok, l.failed));
        if l.interrupted {
            return Err(self.interrupted(i));
        }
        if l.ok == 0 {
            let detail = format!(
                "no request succeeded ({} sent): read the status and error columns of {} and the engine logs in {}",
                l.sent,
                dir.join(files::REQUESTS_CSV).display(),
                self.layout.engines(&scenario.variant).join("logs").display()
            );
            return Err(self.fail(i, &mut log, detail, None));
        }
        if l.failed > 0 {
            let text = format!(
                "warning: {} of {} requests failed (see {})",
                l.failed,
                l.sent,
                dir.join(files::REQUESTS_CSV).display()
            );
            self.progress.note(&text);
        }
        if let Some(e) = &report.workload_error {
            let text = format!("warning: the request stream stopped early: {e}");
            log.line(&text);
            self.progress.note(&text);
        }
        let mut outputs: Vec<PathBuf> =
            [files::RUN_JSON, files::SUMMARY_JSON, files::REQUESTS_CSV].iter().map(|f| dir.join(f)).collect();
        if tokens {
            outputs.push(dir.join(files::TOKENS_CSV));
        }
        self.done(i, &mut log, &outputs)
    }

    /// Fits one (model, GPU, engine) profile from its calibration runs.
    async fn calibrate(&mut self, t: usize) -> Result<(), CampaignError> {
        let i = self.plan.index.calibrate[t];
        if self.finished(i) {
            self.skip(i);
            return Ok(());
        }
        let tp = self.plan.targets[t].clone();
        let mut log = self.begin(i)?;
        state::remove_dir(&self.layout, &tp.fit_dir)?;
        let mut copts = CalibrateOptions::new(tp.runs.clone());
        copts.filter = TargetFilter {
            model: Some(tp.target.model.clone()),
            gpu: Some(tp.target.gpu.clone()),
            engine: Some(tp.target.engine.clone()),
        };
        copts.out = Some(tp.profile.clone());
        copts.profiles_dir = self.layout.profiles();
        copts.report_dir = Some(tp.fit_dir.clone());
        log.line(&format!("from {:?}", tp.runs));
        let cal = match self.blocking(i, move || calibration::calibrate(&copts)).await? {
            Ok(c) => c,
            Err(e) => return Err(self.fail(i, &mut log, e.to_string(), None)),
        };
        let f = &cal.fit;
        for (term, se) in &f.fitted {
            log.line(&format!("{:<26} {:.4e} (std. error {se:?})", term.key(), cal.fit.model.get(*term)));
        }
        log.line(&format!("output_delay_s {:.4e}", cal.output_delay.value_s));
        for n in &cal.notes {
            log.line(&format!("- {n}"));
        }
        log.line(&format!("method: {:?}", cal.method));
        let source = match cal.method {
            Method::StepLog { .. } => "from the engines' step logs",
            Method::Client { .. } => "reconstructed from client chunk timestamps",
        };
        let text = format!(
            "{}: {} steps {source}, R^2 {:.4}, |residual| p50 {:.1}%; fit report {}",
            self.layout.relative(&cal.profile_path).display(),
            f.num_rows,
            f.r2,
            f.residual_p50 * 100.0,
            self.layout.relative(&cal.report.markdown).display()
        );
        log.line(&text);
        self.progress.note(&text);
        self.done(i, &mut log, &[cal.profile_path.clone(), cal.report.markdown.clone()])
    }

    /// Replays a variant's live run through the simulator with the fitted profiles.
    async fn validate(&mut self, v: usize) -> Result<(), CampaignError> {
        let i = self.plan.index.validate[v];
        if self.finished(i) {
            self.skip(i);
            return Ok(());
        }
        let vp = self.plan.variants[v].clone();
        let name = vp.scenario.variant.clone();
        let mut log = self.begin(i)?;
        let out = self.layout.validation(&name);
        state::remove_dir(&self.layout, &out)?;
        let mut vo = ValidateOptions::new(&self.opts.scenario, self.layout.live_run(&name));
        vo.overrides = vp.overrides.clone();
        vo.variant = Some(name.clone());
        vo.out = Some(out);
        vo.profiles_dir = self.layout.profiles();
        let res =
            self.blocking(i, move || calibration::validate(&vo).map(|v| (validation_table(&v), v))).await?;
        let (table, val) = match res {
            Ok(x) => x,
            Err(e) => return Err(self.fail(i, &mut log, e.to_string(), None)),
        };
        for (inst, src) in &val.step_times {
            log.line(&format!("{inst}: {src}"));
            if !src.starts_with("profile") {
                self.progress.note(&format!("warning: {inst} has no fitted profile; simulated with {src}"));
            }
        }
        for d in &val.differences {
            log.line(&format!("differs: {d}"));
        }
        log.line(&table);
        let headline: Vec<String> = val
            .throughput
            .iter()
            .filter(|r| r.model == "all")
            .filter_map(|r| r.rel_error.map(|e| format!("{} {:+.1}%", r.metric.label(), e * 100.0)))
            .collect();
        let text = format!(
            "error of the simulation: {}; table in {}",
            if headline.is_empty() { "-".into() } else { headline.join(", ") },
            log.path.display()
        );
        self.progress.note(&text);
        let outputs = [val.json.clone(), val.sim_dir.join(files::SUMMARY_JSON), val.report_md.clone()];
        self.done(i, &mut log, &outputs)
    }

    /// The report of every variant (sim and live) and `summary.md`.
    async fn report(&mut self) -> Result<PathBuf, CampaignError> {
        let i = self.plan.index.report;
        let report_md = self.layout.report().join("report.md");
        if self.finished(i) {
            self.skip(i);
            return Ok(report_md);
        }
        let mut log = self.begin(i)?;
        let dir = self.layout.report();
        state::remove_dir(&self.layout, &dir)?;
        let variants: Vec<VariantRuns> = self
            .plan
            .variants
            .iter()
            .map(|v| VariantRuns {
                name: v.scenario.variant.clone(),
                live: self.layout.live_run(&v.scenario.variant),
                sim: self.layout.validation(&v.scenario.variant).join("sim"),
            })
            .collect();
        let mut inputs: Vec<PathBuf> = variants.iter().map(|v| v.live.clone()).collect();
        inputs.extend(variants.iter().map(|v| v.sim.clone()));
        let scenario_name = self.plan.variants.first().map(|v| v.scenario.name.clone()).unwrap_or_default();
        let title = format!("Live campaign of {scenario_name}: simulated and measured");
        let ropts =
            ReportOptions { out_dir: dir.clone(), title: Some(title.clone()), ..ReportOptions::default() };
        let s = &self.plan.settings;
        let mut about = vec![format!("scenario `{}`, variants {}", s.scenario, s.variants.join(", "))];
        if !s.overrides.is_empty() {
            about.push(format!("`--set` {}", s.overrides.join(" ")));
        }
        if let Some(q) = s.quick {
            about
                .push(format!("`--quick {q}`: every phase and the calibration ladder shortened (a dry run)"));
        }
        about.push(if s.emulate {
            "engines: emulated (`modelsguard emulate`), not a real engine".into()
        } else {
            "engines: the scenario's launch commands".into()
        });
        about.push("charts: `report/report.md`; per variant: `variants/<v>/validation/`".into());
        let profiles = self
            .plan
            .targets
            .iter()
            .map(|t| (t.target.to_string(), self.layout.relative(&t.profile).to_path_buf()))
            .collect();
        let input = SummaryInput { title, about, profiles, variants };
        let summary_path = self.layout.summary();
        let res = self
            .blocking(i, move || -> Result<(PathBuf, String), String> {
                let written = write_report(&inputs, &ropts).map_err(|e| e.to_string())?;
                let text = summary::render(&input).map_err(|e| e.to_string())?;
                Ok((written.report_md, text))
            })
            .await?;
        let (written, text) = match res {
            Ok(x) => x,
            Err(e) => return Err(self.fail(i, &mut log, e, None)),
        };
        state::write_atomic(&summary_path, text.as_bytes())?;
        log.line(&format!("report {}; summary {}", written.display(), summary_path.display()));
        self.progress.note(&format!("report {}", written.display()));
        self.done(i, &mut log, &[written.clone(), summary_path])?;
        Ok(written)
    }
}
