//! Running a planned sweep: every (point, variant, replication) of a shard as one job on a rayon
//! pool, then the replications of each (point, variant, model, metric) folded into a mean and a
//! Student-t interval, and the sweep dir written.
//!
//! Results are collected in job order, not completion order, and aggregated in replication
//! order, so the output is byte-identical whatever the thread count or timing. Replication `r`
//! runs with seed = scenario seed + r at every point and variant (common random numbers: the
//! points differ by their fields, not by their luck). This module does not parse arguments nor
//! draw reports.

use super::SweepError;
use super::metrics::{METRICS, clamp_interval, metric_value};
use super::plan::SweepPlan;
use super::schema::{self, ParamValue, SweepMeta, SweepRow, files};
use super::shard::Shard;
use super::stats::estimate;
use crate::metrics::{ModelSummary, RunSummary};
use crate::runner::{simulate_summary, simulate_to_dir};
use crate::simulation::SimOptions;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How to run a sweep; nothing here changes the results.
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// Run only this shard's points (`None`: all).
    pub shard: Option<Shard>,
    /// Worker threads (`None`: one per core).
    pub jobs: Option<usize>,
    /// Also write a run dir per simulation under `<out>/runs/p<point>-<variant>-r<rep>/`.
    pub run_dirs: bool,
    /// Show a progress bar with ETA on stderr (drawn only when stderr is a terminal).
    pub progress: bool,
    /// Set (by a signal handler) to stop: runs not yet started are skipped, the sweep dir gets
    /// the (point, variant) groups whose every replication finished and a `PARTIAL` marker.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a finished sweep wrote.
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// The sweep dir.
    pub dir: PathBuf,
    /// Its `sweep.json`.
    pub meta: SweepMeta,
    /// Its `sweep.csv` rows.
    pub rows: Vec<SweepRow>,
    /// Simulations run.
    pub runs: usize,
    /// Simulated requests, all runs together.
    pub requests: u64,
    /// Why the sweep dir is partial (also in its `PARTIAL` file); None when every run ran.
    pub partial: Option<String>,
}

/// The marker file of a sweep dir that a stop request cut short (one line: why).
pub const PARTIAL_FILE: &str = "PARTIAL";

/// One simulation of the sweep.
#[derive(Clone, Copy, Debug)]
struct Job {
    /// Position in `plan.points`.
    point: usize,
    /// Position in `plan.variants`.
    variant: usize,
    /// Replication.
    rep: u32,
}

/// The run dir of one simulation, relative to the sweep dir.
pub fn run_dir_name(point: u32, variant: &str, rep: u32) -> PathBuf {
    Path::new(files::RUNS_DIR).join(format!("p{point}-{variant}-r{rep}"))
}

/// Runs `plan` (or `opts.shard` of it) and writes `sweep.json` and `sweep.csv` into `out`.
pub fn run_sweep(plan: &SweepPlan, out: &Path, opts: &SweepOptions) -> Result<SweepOutcome, SweepError> {
    let shard = opts.shard.unwrap_or(Shard::WHOLE);
    let reps = plan.spec.reps;
    if reps == 0 {
        return Err(SweepError::Spec("--reps must be at least 1".into()));
    }
    let jobs: Vec<Job> = plan
        .points
        .iter()
        .enumerate()
        .filter(|(_, p)| shard.owns(p.point.index))
        .flat_map(|(point, _)| {
            (0..plan.variants.len())
                .flat_map(move |variant| (0..reps).map(move |rep| Job { point, variant, rep }))
        })
        .collect();
    let bar = progress_bar(opts.progress, jobs.len() as u64);
    let started_at = started_at();
    let stopped = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
    let run_one = |job: &Job| -> Result<Option<RunSummary>, SweepError> {
        if stopped() {
            return Ok(None);
        }
        let planned = &plan.points[job.point];
        let mut scenario = planned.scenarios[job.variant].clone();
        scenario.seed = scenario.seed.wrapping_add(u64::from(job.rep));
        let result = if opts.run_dirs {
            let dir = out.join(run_dir_name(planned.point.index, &scenario.variant, job.rep));
            simulate_to_dir(&scenario, &plan.base_dir, &dir, false, &started_at, SimOptions::default())
        } else {
            simulate_summary(&scenario, &plan.base_dir, SimOptions::default())
        };
        bar.inc(1);
        result.map(|r| Some(r.summary)).map_err(|error| SweepError::Sim {
            point: planned.point.index,
            at: planned.point.describe(&plan.spec.axes),
            variant: scenario.variant.clone(),
            rep: job.rep,
            error,
        })
    };
    let results: Vec<Result<Option<RunSummary>, SweepError>> = match opts.jobs {
        None => jobs.par_iter().map(run_one).collect(),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| SweepError::Pool { jobs: n, reason: e.to_string() })?
            .install(|| jobs.par_iter().map(run_one).collect()),
    };
    bar.finish_and_clear();
    let summaries = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let requests = summaries.iter().flatten().map(|s| s.overall.requests).sum();
    let done = summaries.iter().flatten().count();

    let mut rows = Vec::new();
    // Jobs are point-major, then variant, then rep: each chunk of `reps` is one (point, variant).
    // A stopped sweep keeps only the groups whose every replication ran.
    for (chunk, runs) in jobs.chunks(reps as usize).zip(summaries.chunks(reps as usize)) {
        let Some(first) = chunk.first() else { continue };
        let Some(runs) = runs.iter().cloned().collect::<Option<Vec<RunSummary>>>() else { continue };
        let runs = runs.as_slice();
        let planned = &plan.points[first.point];
        let params: BTreeMap<String, ParamValue> = plan
            .spec
            .axes
            .iter()
            .zip(&planned.point.values)
            .map(|(a, v)| (a.path.clone(), ParamValue::from_toml(v)))
            .collect();
        aggregate(planned.point.index, &plan.variants[first.variant], runs, &params, &mut rows);
    }
    let meta = plan.meta(opts.shard.filter(|s| s.count > 1));
    schema::write_sweep_dir(out, &meta, &rows)?;
    let marker = out.join(PARTIAL_FILE);
    let partial = (done < jobs.len()).then(|| {
        format!(
            "stopped by a signal: {done} of {} runs ran; sweep.csv holds the (point, variant) groups \
             whose every replication ran",
            jobs.len()
        )
    });
    match &partial {
        Some(why) => std::fs::write(&marker, format!("{why}\n")).map_err(SweepError::io(&marker))?,
        None if marker.exists() => std::fs::remove_file(&marker).map_err(SweepError::io(&marker))?,
        None => {}
    }
    Ok(SweepOutcome { dir: out.to_path_buf(), meta, rows, runs: done, requests, partial })
}

/// Appends the rows of one (point, variant): per model (`all` first), per metric, the estimate
/// over `runs` (the replications, in order).
fn aggregate(
    point: u32,
    variant: &str,
    runs: &[RunSummary],
    params: &BTreeMap<String, ParamValue>,
    rows: &mut Vec<SweepRow>,
) {
    let Some(first) = runs.first() else { return };
    let models: Vec<&str> = std::iter::once(first.overall.model.as_str())
        .chain(first.models.iter().map(|m| m.model.as_str()))
        .collect();
    for model in models {
        let per_run: Vec<Option<&ModelSummary>> = runs
            .iter()
            .map(|r| {
                if r.overall.model == model {
                    Some(&r.overall)
                } else {
                    r.models.iter().find(|m| m.model == model)
                }
            })
            .collect();
        for metric in METRICS {
            let samples: Vec<f64> =
                per_run.iter().flatten().filter_map(|m| metric_value(m, metric)).collect();
            let Some(e) = estimate(&samples) else { continue };
            rows.push(SweepRow {
                point,
                variant: variant.to_string(),
                model: model.to_string(),
                metric: metric.to_string(),
                value: e.mean,
                ci_low: e.ci.map(|c| clamp_interval(metric, c).0),
                ci_high: e.ci.map(|c| clamp_interval(metric, c).1),
                n: e.n,
                params: params.clone(),
            });
        }
    }
}

fn progress_bar(show: bool, total: u64) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("sweep [{elapsed_precise}] {wide_bar} {pos}/{len} runs, ETA {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Informational start time for `run.json` of run dirs; never part of the sweep's own files.
fn started_at() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("unix:{secs}")
}
