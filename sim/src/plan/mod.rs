//! Capacity planning (`modelsguard plan`): the cheapest layouts — instances per model, which of
//! them share a GPU, static or elastic KV — that meet p90 TTFT / TPOT targets for a scenario's
//! models and workload on at most N GPUs of one kind, with their margin and load headroom.
//!
//! `plan_file` reads a scenario, builds the problem (`problem`: templates, targets, the request
//! budget of `budget`, the GPU combinations `fit` allows), enumerates layouts by cost
//! (`layout`), simulates them cheapest first while skipping dominated ones (`search`) and returns
//! a [`PlanReport`] (`report`), printable as a table or JSON. How to read the answer is in this
//! directory's README. Nothing here writes files or prints.

mod budget;
mod error;
mod fit;
mod layout;
mod problem;
mod report;
mod search;

pub use budget::{BudgetNote, scale_load};
pub use error::PlanError;
pub use report::{
    Headroom, LayoutResult, Metric, ModelResult, PlanReport, PlannedModel, SearchStats, SharedGpus,
};

use crate::scenario::{EngineGeneration, KvCacheMode, Override};
use layout::Limits;
use problem::Problem;
pub use search::bisect_load;
use search::{Evaluated, SearchConfig, search};
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

/// A p90 target from the command line: `SECONDS` for every model or `MODEL=SECONDS` for one.
#[derive(Clone, Debug, PartialEq)]
pub struct SloTarget {
    /// The model it applies to (None: every model without its own).
    pub model: Option<String>,
    /// The bound, seconds.
    pub seconds: f64,
}

impl FromStr for SloTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (model, value) = match s.split_once('=') {
            Some((m, v)) => (Some(m.trim().to_string()), v.trim()),
            None => (None, s.trim()),
        };
        let seconds: f64 = value
            .parse()
            .map_err(|_| format!("expected [MODEL=]SECONDS, e.g. 0.5 or llama-3.1-8b=0.5; got `{s}`"))?;
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(format!("the target must be a number of seconds > 0, got `{value}`"));
        }
        if model.as_deref() == Some("") {
            return Err(format!("no model name before `=` in `{s}`"));
        }
        Ok(SloTarget { model, seconds })
    }
}

/// Everything `plan` can be asked (the CLI's flags).
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Variant to plan (None: the file's first).
    pub variant: Option<String>,
    /// `--set` overrides, applied to every layout (`instances.*.X` after the layout's instances).
    pub overrides: Vec<Override>,
    /// Seed override.
    pub seed: Option<u64>,
    /// Most GPUs (None: the scenario's count).
    pub gpus: Option<u32>,
    /// GPU kind (None: the scenario's).
    pub gpu: Option<String>,
    /// Most replicas of one model (None: as many as GPUs).
    pub max_replicas: Option<u32>,
    /// Most instances on one GPU (1: dedicated GPUs only).
    pub colocate: u32,
    /// KV modes tried on shared GPUs.
    pub kv_modes: Vec<KvCacheMode>,
    /// Passing layouts to report.
    pub top: usize,
    /// Request budget of one evaluation.
    pub requests: u64,
    /// Multiple of the scenario's load the targets must hold at.
    pub at_load: f64,
    /// Upper bound of the headroom search (None: no headroom search).
    pub max_load: Option<f64>,
    /// Bisection steps of the headroom search.
    pub bisect_steps: u32,
    /// `--ttft-p90` targets.
    pub ttft_p90: Vec<SloTarget>,
    /// `--tpot-p90` targets.
    pub tpot_p90: Vec<SloTarget>,
    /// Least fraction of a model's requests that must succeed.
    pub min_success: f64,
    /// Request streams per evaluation (seeds `seed`, `seed + 1`, ...): a layout passes only if it
    /// passes on every one, and shows each model's worst.
    pub seeds: u32,
    /// Worker threads (0: the machine's parallelism).
    pub jobs: usize,
    /// Skip dominated layouts and stop at the first level filling `top` (false: brute force).
    pub prune: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            variant: None,
            overrides: Vec::new(),
            seed: None,
            gpus: None,
            gpu: None,
            max_replicas: None,
            colocate: 1,
            kv_modes: vec![KvCacheMode::Static, KvCacheMode::Elastic],
            top: 10,
            requests: 4000,
            at_load: 1.0,
            max_load: Some(4.0),
            bisect_steps: 4,
            ttft_p90: Vec::new(),
            tpot_p90: Vec::new(),
            min_success: 0.99,
            seeds: 1,
            jobs: 0,
            prune: true,
        }
    }
}

fn check(opts: &PlanOptions) -> Result<(), PlanError> {
    let bad = |option, reason: &str| Err(PlanError::BadOption { option, reason: reason.to_string() });
    if opts.top == 0 {
        return bad("--top", "must be at least 1");
    }
    if opts.requests == 0 {
        return bad("--requests", "must be at least 1");
    }
    if !(opts.at_load.is_finite() && opts.at_load > 0.0) {
        return bad("--at-load", "must be a number > 0");
    }
    if let Some(m) = opts.max_load {
        if !(m.is_finite() && m > opts.at_load) {
            return bad("--max-load", "must be greater than --at-load (or use --no-headroom)");
        }
    }
    if !(0.0..=1.0).contains(&opts.min_success) {
        return bad("--min-success", "must be within [0, 1]");
    }
    if opts.colocate == 0 || opts.colocate > 8 {
        return bad("--colocate", "must be 1 to 8 instances per GPU");
    }
    if opts.seeds == 0 || opts.seeds > 100 {
        return bad("--seeds", "must be 1 to 100 request streams");
    }
    if opts.kv_modes.is_empty() {
        return bad("--kv", "give at least one of static, elastic");
    }
    if opts.max_replicas == Some(0) {
        return bad("--max-replicas", "must be at least 1 (every model needs a replica)");
    }
    Ok(())
}

/// Plans the scenario file at `path`.
pub fn plan_file(path: &Path, opts: &PlanOptions) -> Result<PlanReport, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::scenario::ScenarioError::new(path, "(file)", format!("cannot read the scenario file: {e}"))
    })?;
    plan_text(&text, path, opts)
}

/// Plans a scenario given as text; `path` names it in messages and anchors relative paths.
pub fn plan_text(text: &str, path: &Path, opts: &PlanOptions) -> Result<PlanReport, PlanError> {
    let started = Instant::now();
    check(opts)?;
    let problem = Problem::new(text, path, opts)?;
    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    } else {
        opts.jobs
    };
    // kvcached needs vLLM >= 0.8.4: a 0.6.4 (or transformers-cb) variant can only share GPUs with
    // static KV.
    let v064: Vec<&str> = problem
        .models
        .iter()
        .filter(|m| m.preset.generation() == EngineGeneration::V0 || !m.preset.is_vllm())
        .map(|m| m.name.as_str())
        .collect();
    let mut kv_modes = opts.kv_modes.clone();
    let mut notes = Vec::new();
    if !v064.is_empty() && kv_modes.contains(&KvCacheMode::Elastic) {
        kv_modes.retain(|&k| k != KvCacheMode::Elastic);
        if kv_modes.is_empty() {
            return Err(PlanError::BadOption {
                option: "--kv",
                reason: format!(
                    "elastic KV (kvcached) needs vLLM >= 0.8.4 but {} run vllm-0.6.4 or transformers-cb in variant \"{}\": \
                     plan a V1 variant (e.g. --variant managed) or allow --kv static",
                    v064.join(", "),
                    problem.variant
                ),
            });
        }
        notes.push(format!(
            "elastic KV not tried: variant \"{}\" runs vllm-0.6.4 or transformers-cb and kvcached needs vLLM >= 0.8.4; \
             plan a V1 variant (e.g. --variant managed) for elastic layouts",
            problem.variant
        ));
    }
    let cfg = SearchConfig {
        top: opts.top,
        jobs,
        prune: opts.prune,
        kv_modes,
        limits: Limits { max_replicas: opts.max_replicas.unwrap_or(problem.max_gpus), max_layouts: 200_000 },
        colocate: opts.colocate,
        at_load: opts.at_load,
        headroom: opts.max_load.map(|m| (m, opts.bisect_steps)),
    };
    let found = search(&problem, &cfg)?;
    let mut stats = found.stats.clone();
    stats.wall_s = started.elapsed().as_secs_f64();
    let layouts = found.ranked.iter().enumerate().map(|(i, e)| layout_result(&problem, i + 1, e)).collect();
    let misses = found.misses.iter().enumerate().map(|(i, e)| layout_result(&problem, i + 1, e)).collect();
    if stats.elastic_skipped > 0 && problem.models.iter().any(|m| m.kv == KvCacheMode::Static) {
        notes.push(format!(
            "elastic KV not tried on {} layouts with one instance per GPU: alone on a GPU it cannot \
             add capacity, only map latency (dedicated GPUs keep the variant's KV mode)",
            stats.elastic_skipped
        ));
    }
    if opts.colocate <= 1 {
        notes.push("one instance per GPU; --colocate lets models share GPUs".to_string());
    }
    for (layout, reason) in &found.not_started {
        notes.push(format!("would not start: {layout}: {reason}"));
    }
    if !problem.types.iter().any(|t| t.is_shared()) && opts.colocate > 1 {
        notes.push(format!("no two models fit together on one {}", problem.gpu.name));
    }
    Ok(PlanReport {
        scenario: problem.scenario_name.clone(),
        variant: problem.variant.clone(),
        gpu: problem.gpu.name.clone(),
        max_gpus: problem.max_gpus,
        models: problem
            .models
            .iter()
            .map(|m| PlannedModel {
                name: m.name.clone(),
                short: m.short.clone(),
                ttft_p90_s: m.ttft_p90_s,
                tpot_p90_s: m.tpot_p90_s,
            })
            .collect(),
        seed: problem.seed,
        seeds: problem.seeds,
        at_load: opts.at_load,
        budget: problem.budget.clone(),
        min_success: problem.min_success,
        variant_kv: problem
            .models
            .first()
            .map(|m| m.kv)
            .filter(|k| problem.models.iter().all(|m| m.kv == *k)),
        feasible: !found.ranked.is_empty(),
        layouts,
        misses,
        search: stats,
        notes,
    })
}

fn layout_result(problem: &Problem, rank: usize, e: &Evaluated) -> LayoutResult {
    let types = &problem.types;
    let short: Vec<String> = problem.models.iter().map(|m| m.short.clone()).collect();
    let shared = e
        .layout
        .groups
        .iter()
        .filter(|&&(t, _)| types[t].is_shared())
        .map(|&(t, copies)| SharedGpus {
            models: types[t].models.iter().map(|m| problem.models[m.index()].name.clone()).collect(),
            copies,
            gpu_memory_utilization: match e.layout.kv {
                Some(KvCacheMode::Static) => types[t].static_utils.clone(),
                _ => None,
            },
        })
        .collect();
    LayoutResult {
        rank,
        gpus: e.layout.gpus(),
        instances: e.layout.instances(types),
        replicas: e.layout.replicas(types, problem.models.len()),
        layout: e.layout.describe(types, &short),
        shared,
        kv: e.layout.kv,
        passes: e.judged.passes,
        margin: e.judged.margin,
        limiting: e.judged.limiting.clone(),
        models: e.judged.models.clone(),
        max_load: e.headroom,
    }
}
