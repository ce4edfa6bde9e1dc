//! Loads what calibration reads from live run dirs: the run dir itself (`run.json`,
//! `requests.csv`, ...), the client's per-chunk timestamps (`tokens.csv`, written by `live run
//! --tokens`) and the server's step log (`steps.csv`, fetched from `GET /steps` when the engine
//! has one), and works out which (model, GPU, engine) the runs measured.

use crate::error::CalibrationError;
use serde::Deserialize;
use sim::scenario::{EnginePreset, Scenario};
use sim::trace::{RunDir, Source, TokenRow, files, read_run_dir};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The server's per-step log in a run dir (see [`ServerStepRow`]).
pub const STEPS_CSV: &str = "steps.csv";

/// One row of `steps.csv`: the reference engine's per-step log (`GET /steps`) with the instance
/// that wrote it first.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServerStepRow {
    /// Instance name.
    pub instance: String,
    /// Step number within the engine.
    pub step: u64,
    /// Wall clock at step start, Unix seconds.
    pub start_unix_s: f64,
    /// Wall time of the step (GPU synchronised at its end), seconds.
    pub duration_s: f64,
    /// Requests scheduled.
    pub num_scheduled_requests: u64,
    /// Prompt (or recompute) tokens.
    pub num_prefill_tokens: u64,
    /// Sequences decoding one token.
    pub num_decode_seqs: u64,
    /// KV tokens read.
    pub num_kv_tokens_read: u64,
    /// Query tokens after CUDA-graph padding (= prefill + decode when eager).
    pub num_padded_tokens: u64,
    /// 1 when the step ran a CUDA graph.
    pub cuda_graph: u8,
    /// 1 when the step captured a new graph (its time is not a step's).
    pub captured: u8,
}

/// One (model, GPU, engine preset) triple: what a profile is fitted for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// Model catalogue name.
    pub model: String,
    /// GPU catalogue name.
    pub gpu: String,
    /// Engine preset name.
    pub engine: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {} with {}", self.model, self.gpu, self.engine)
    }
}

/// `--model`, `--gpu`, `--engine`: pick one triple when the run dirs hold several.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetFilter {
    /// Model catalogue name.
    pub model: Option<String>,
    /// GPU catalogue name.
    pub gpu: Option<String>,
    /// Engine preset name.
    pub engine: Option<String>,
}

impl TargetFilter {
    fn accepts(&self, t: &Target) -> bool {
        self.model.as_ref().is_none_or(|m| *m == t.model)
            && self.gpu.as_ref().is_none_or(|g| *g == t.gpu)
            && self.engine.as_ref().is_none_or(|e| *e == t.engine)
    }
}

/// A run dir with its optional timestamp files.
#[derive(Clone, Debug)]
pub struct LoadedRun {
    /// The run dir.
    pub dir: RunDir,
    /// `tokens.csv`, when present.
    pub tokens: Option<Vec<TokenRow>>,
    /// `steps.csv`, when present.
    pub steps: Option<Vec<ServerStepRow>>,
}

impl LoadedRun {
    /// The run dir's path.
    pub fn path(&self) -> &Path {
        &self.dir.path
    }
}

/// The name an engine preset has in scenario and profile files (`"vllm-v1"`).
pub fn engine_name(p: EnginePreset) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{p:?}"))
}

/// The triple instance `i` of `s` runs.
pub fn instance_target(s: &Scenario, i: usize) -> Option<Target> {
    let inst = s.instances.get(i)?;
    Some(Target {
        model: s.models.get(inst.model.index())?.name.clone(),
        gpu: s.gpus.get(inst.gpu.index())?.name.clone(),
        engine: engine_name(inst.engine.preset),
    })
}

fn read_optional_csv<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<Vec<T>>, CalibrationError> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut r = csv::Reader::from_path(path).map_err(|e| CalibrationError::input(path, e.to_string()))?;
    let rows = r
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| CalibrationError::input(path, format!("{e}; is it a file this modelsguard wrote?")))?;
    Ok(Some(rows))
}

/// Reads `dir` for calibration; it must be a live run dir.
pub fn load_run(dir: &Path) -> Result<LoadedRun, CalibrationError> {
    let run = read_run_dir(dir)?;
    if run.meta.source != Source::Live {
        return Err(CalibrationError::input(
            dir,
            "a simulated run dir; calibrate needs live runs (`modelsguard live run --tokens`)",
        ));
    }
    let tokens = read_optional_csv::<TokenRow>(&dir.join(files::TOKENS_CSV))?;
    let steps = read_optional_csv::<ServerStepRow>(&dir.join(STEPS_CSV))?;
    Ok(LoadedRun { dir: run, tokens, steps })
}

/// Reads every run dir.
pub fn load_runs(dirs: &[PathBuf]) -> Result<Vec<LoadedRun>, CalibrationError> {
    if dirs.is_empty() {
        return Err(CalibrationError::NoRunDirs);
    }
    dirs.iter().map(|d| load_run(d)).collect()
}

/// The triples whose instances served requests in `run`, with those instances' indices.
pub fn served_targets(run: &LoadedRun) -> Vec<(Target, Vec<usize>)> {
    let s = &run.dir.meta.scenario;
    let mut out: Vec<(Target, Vec<usize>)> = Vec::new();
    for (i, inst) in s.instances.iter().enumerate() {
        let Some(t) = instance_target(s, i) else { continue };
        let model = &t.model;
        let served = run.dir.requests.iter().any(|r| {
            r.instance == inst.name || (r.instance.is_empty() && r.model == *model && sole_instance(s, i))
        });
        if !served {
            continue;
        }
        match out.iter_mut().find(|(x, _)| *x == t) {
            Some((_, v)) => v.push(i),
            None => out.push((t, vec![i])),
        }
    }
    out
}

/// True when instance `i` is the only one of its model (rows without an instance name are its).
pub fn sole_instance(s: &Scenario, i: usize) -> bool {
    let Some(model) = s.instances.get(i).map(|x| x.model) else { return false };
    s.instances.iter().filter(|x| x.model == model).count() == 1
}

/// The one triple the runs measured (after `filter`), or an error naming the run dirs.
pub fn choose_target(runs: &[LoadedRun], filter: &TargetFilter) -> Result<Target, CalibrationError> {
    let mut all: BTreeSet<Target> = BTreeSet::new();
    for run in runs {
        let here: Vec<Target> =
            served_targets(run).into_iter().map(|(t, _)| t).filter(|t| filter.accepts(t)).collect();
        if here.is_empty() {
            let served: Vec<String> = served_targets(run).iter().map(|(t, _)| t.to_string()).collect();
            return Err(CalibrationError::Mismatch(format!(
                "{}: no instance {} served requests (it served: {}); leave this run dir out or change \
                 --model/--gpu/--engine",
                run.path().display(),
                describe_filter(filter),
                if served.is_empty() { "nothing".to_string() } else { served.join("; ") }
            )));
        }
        all.extend(here);
    }
    if all.len() == 1 {
        if let Some(t) = all.into_iter().next() {
            return Ok(t);
        }
    }
    let listing: Vec<String> = runs
        .iter()
        .map(|r| {
            let ts: Vec<String> = served_targets(r)
                .into_iter()
                .filter(|(t, _)| filter.accepts(t))
                .map(|(t, _)| t.to_string())
                .collect();
            format!("{}: {}", r.path().display(), ts.join("; "))
        })
        .collect();
    Err(CalibrationError::Mismatch(format!(
        "the run dirs measured more than one (model, GPU, engine), and a profile is fitted for one; \
         pick it with --model, --gpu and --engine. Found:\n  {}",
        listing.join("\n  ")
    )))
}

fn describe_filter(f: &TargetFilter) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &f.model {
        parts.push(format!("of model {m}"));
    }
    if let Some(g) = &f.gpu {
        parts.push(format!("on {g}"));
    }
    if let Some(e) = &f.engine {
        parts.push(format!("with {e}"));
    }
    if parts.is_empty() { "at all".into() } else { parts.join(" ") }
}
