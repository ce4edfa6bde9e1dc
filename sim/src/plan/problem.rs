//! The planning problem: the scenario's models, workload and SLOs, the GPU kind and count, and
//! how to turn one layout into a runnable scenario and judge a simulation of it.
//!
//! Each model's instances are built from a *template*: the model's first `[[instances]]` entry
//! in the file (its `engine` table, `profile`, `launch_command`), placed on the layout's GPUs, so
//! variants and `[defaults.engine]` apply exactly as in `simulate`. Instances on shared GPUs get
//! the layout's KV mode and, when static, their share of `gpu_memory_utilization` (see `fit`).
//! The file is loaded once (`scenario::Placer`); every layout is then built as typed instances
//! and goes through the loader's own instance resolution and startup checks, so a layout it
//! rejects "does not start". This module does not search (see `search`).

use super::budget::{self, BudgetNote};
use super::error::PlanError;
use super::fit::Footprint;
use super::layout::{GroupType, Layout, group_types};
use super::report::{Metric, ModelResult};
use super::{PlanOptions, SloTarget};
use crate::ids::{GpuId, InstanceId, ModelId};
use crate::runner::simulate_summary;
use crate::scenario::{
    EnginePreset, GpuSpec, KvCacheMode, Override, Placement, Placer, PlacerInput, Scenario, ScenarioError,
    WorkloadSpec, parse_scenario,
};
use crate::simulation::{SimError, SimOptions};
use std::path::{Path, PathBuf};

/// One model of the plan.
#[derive(Clone, Debug)]
pub(crate) struct PlanModel {
    /// Catalogue name.
    pub name: String,
    /// Short display name (`llama-8b`).
    pub short: String,
    /// Memory needs of one instance.
    pub footprint: Footprint,
    /// KV mode of the template (kept on dedicated GPUs).
    pub kv: KvCacheMode,
    /// Engine generation of the template.
    pub preset: EnginePreset,
    /// p90 TTFT target, seconds.
    pub ttft_p90_s: Option<f64>,
    /// p90 TPOT target, seconds.
    pub tpot_p90_s: Option<f64>,
}

/// Everything the search needs, immutable and shared by the worker threads.
#[derive(Debug)]
pub(crate) struct Problem {
    /// The variant loaded once; builds each layout's scenario from the models' templates.
    placer: Placer,
    base_dir: PathBuf,
    /// The variant planned.
    pub variant: String,
    /// Scenario name.
    pub scenario_name: String,
    /// Seed of every evaluation.
    pub seed: u64,
    /// The GPU kind.
    pub gpu: GpuSpec,
    /// Most GPUs a layout may use.
    pub max_gpus: u32,
    /// Models in scenario order (`ModelId` order).
    pub models: Vec<PlanModel>,
    /// Group types that fit one GPU.
    pub types: Vec<GroupType>,
    /// The budgeted workload every evaluation runs (before load scaling).
    pub workload: WorkloadSpec,
    /// What the budget did.
    pub budget: BudgetNote,
    /// Least success rate a model needs to pass.
    pub min_success: f64,
    /// Request streams (seeds) each evaluation runs; a layout must pass on all.
    pub seeds: u32,
}

/// A judged simulation of one layout at one load scale.
#[derive(Clone, Debug)]
pub(crate) struct Judged {
    /// Per model, scenario order.
    pub models: Vec<ModelResult>,
    /// Every model passes.
    pub passes: bool,
    /// Smallest model margin.
    pub margin: Option<f64>,
    /// `short metric` of the model and metric setting the margin (or failing).
    pub limiting: Option<String>,
}

impl Judged {
    /// Whether `model` met its targets.
    pub fn model_passes(&self, model: ModelId) -> bool {
        self.models[model.index()].passes
    }
}

/// The user's overrides, split around the layout's own `cluster` and `instances`.
#[derive(Debug, Default)]
struct UserOverrides {
    /// Applied before (everything outside `[[instances]]`).
    pre: Vec<Override>,
    /// Applied after: `instances.*.FIELD`, to every instance of every layout.
    post: Vec<Override>,
    /// A whole `instances = [...]` array: the templates come from it.
    instances: Option<toml::Value>,
}

fn split_overrides(all: &[Override]) -> Result<UserOverrides, PlanError> {
    let mut out = UserOverrides::default();
    for o in all {
        if o.path == "instances" {
            out.instances = Some(o.value.clone());
        } else if let Some(rest) = o.path.strip_prefix("instances.") {
            if rest.split('.').next() != Some("*") {
                return Err(PlanError::InstanceIndexOverride { path: o.path.clone() });
            }
            // Plan sets these per layout; an override would silently undo the layout.
            let placed = [
                "instances[0].gpu",
                "instances[0].engine.kv_cache",
                "instances[0].engine.gpu_memory_utilization",
            ];
            if placed.iter().any(|f| o.touches(f)) {
                return Err(PlanError::PlacementOverride { path: o.path.clone() });
            }
            out.post.push(o.clone());
        } else {
            out.pre.push(o.clone());
        }
    }
    Ok(out)
}

/// `llama-3.1-8b` -> `llama-8b`: leading letters + the size segment, when unique.
fn short_names(names: &[String]) -> Vec<String> {
    let short: Vec<Option<String>> = names
        .iter()
        .map(|n| {
            let prefix: String = n.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            let size = n.split(['-', '_']).find(|seg| {
                seg.len() >= 2
                    && seg.ends_with(['b', 'B'])
                    && seg[..seg.len() - 1].chars().all(|c| c.is_ascii_digit() || c == '.')
            })?;
            (!prefix.is_empty()).then(|| format!("{prefix}-{}", size.to_lowercase()))
        })
        .collect();
    let unique = short.iter().enumerate().all(|(i, s)| {
        s.as_ref().is_some_and(|s| short.iter().enumerate().all(|(j, t)| i == j || t.as_ref() != Some(s)))
    });
    if unique { short.into_iter().flatten().collect() } else { names.to_vec() }
}

/// A model's target: a command-line `MODEL=S` for it, else a bare command-line value, else the
/// scenario's `[slo]` (the last of repeated flags wins).
fn target(given: &[SloTarget], model: &str, file: Option<f64>) -> Option<f64> {
    let specific = given.iter().rev().find(|t| t.model.as_deref() == Some(model)).map(|t| t.seconds);
    let global = given.iter().rev().find(|t| t.model.is_none()).map(|t| t.seconds);
    specific.or(global).or(file)
}

impl Problem {
    /// Reads the scenario (`text` from `path`) and the options into a problem, checking that every
    /// model has a target, fits one GPU, and that the GPU budget can hold them.
    pub fn new(text: &str, path: &Path, opts: &PlanOptions) -> Result<Problem, PlanError> {
        let mut user = opts.overrides.clone();
        if let Some(seed) = opts.seed {
            user.push(Override::new("seed", toml::Value::Integer(seed as i64)));
        }
        let UserOverrides { pre, post, instances: instances_value } = split_overrides(&user)?;
        // Only the planned variant is resolved from here on: another variant's settings may not
        // start on a layout this one can use.
        let written = parse_scenario(text, path, &[])?;
        let variant = match &opts.variant {
            Some(v) => written.variant(v)?.variant.clone(),
            None => written.variants.first().map(|s| s.variant.clone()).unwrap_or_default(),
        };
        let text = &single_variant(text, &variant, path)?;
        let file = parse_scenario(text, path, &user)?;
        let base = file.variant(&variant)?.clone();
        let names: Vec<String> = base.models.iter().map(|m| m.name.clone()).collect();
        for t in opts.ttft_p90.iter().chain(&opts.tpot_p90) {
            if let Some(m) = &t.model {
                if !names.contains(m) {
                    let flag = if opts.ttft_p90.contains(t) { "ttft-p90" } else { "tpot-p90" };
                    return Err(PlanError::UnknownSloModel {
                        flag,
                        model: m.clone(),
                        served: names.join(", "),
                    });
                }
            }
        }
        let gpu_name = match &opts.gpu {
            Some(g) => g.clone(),
            None => {
                let first = base.gpus.first().map(|g| g.name.clone()).unwrap_or_default();
                if base.gpus.iter().any(|g| g.name != first) {
                    let kinds: Vec<&str> = base.gpus.iter().map(|g| g.name.as_str()).collect();
                    return Err(PlanError::BadOption {
                        option: "--gpu",
                        reason: format!(
                            "the scenario mixes GPU kinds ({}); plan places one kind: pass --gpu NAME",
                            kinds.join(", ")
                        ),
                    });
                }
                first
            }
        };
        let max_gpus = opts.gpus.unwrap_or(base.gpus.len() as u32);
        if max_gpus == 0 {
            return Err(PlanError::BadOption { option: "--gpus", reason: "must be at least 1".into() });
        }

        let templates = templates(text, instances_value.as_ref(), &names, path)?;
        // Probe: every model alone on its own GPU of the planned kind resolves each template there.
        let input = PlacerInput {
            text,
            path,
            variant: &variant,
            gpu: &gpu_name,
            templates: &templates,
            pre: &pre,
            post: &post,
        };
        let placer = Placer::new(&input).map_err(|e| {
            match e.instance.map(InstanceId::index).filter(|&i| i < names.len()) {
                // The cluster table is plan's own override: a failure there is the --gpu named.
                _ if opts.gpu.is_some() && e.field.starts_with("cluster") => {
                    let reason = e.reason.split(" (from --set cluster=").next().unwrap_or_default();
                    PlanError::BadOption { option: "--gpu", reason: reason.to_string() }
                }
                Some(m) => PlanError::ModelDoesNotFit {
                    model: names[m].clone(),
                    gpu: gpu_name.clone(),
                    reason: format!("{}: {}", e.field, e.reason),
                },
                None => PlanError::Scenario(e),
            }
        })?;
        let probe = placer.probe().clone();
        let mut problem = Problem {
            placer,
            base_dir: file.base_dir.clone(),
            variant: base.variant.clone(),
            scenario_name: base.name.clone(),
            seed: base.seed,
            gpu: probe.gpus.first().cloned().ok_or_else(|| ScenarioError::new(path, "cluster", "no GPU"))?,
            max_gpus,
            models: Vec::new(),
            types: Vec::new(),
            workload: base.workload.clone(),
            budget: BudgetNote { expected_requests: None, requests_per_evaluation: 0, truncated: false },
            min_success: opts.min_success,
            seeds: opts.seeds,
        };
        let short = short_names(&names);
        let mut missing = Vec::new();
        for (m, name) in names.iter().enumerate() {
            let ttft = target(&opts.ttft_p90, name, base.slo.ttft_p90_s);
            let tpot = target(&opts.tpot_p90, name, base.slo.tpot_p90_s);
            if ttft.is_none() && tpot.is_none() {
                missing.push(name.clone());
            }
            problem.models.push(PlanModel {
                name: name.clone(),
                short: short[m].clone(),
                footprint: Footprint::of(&probe.models[m], &probe.instances[m].engine),
                kv: probe.instances[m].engine.kv_cache,
                preset: probe.instances[m].engine.preset,
                ttft_p90_s: ttft,
                tpot_p90_s: tpot,
            });
        }
        if !missing.is_empty() {
            let models = if missing.len() == names.len() { Vec::new() } else { missing };
            return Err(PlanError::NoSlo { models });
        }
        let footprints: Vec<Footprint> = problem.models.iter().map(|m| m.footprint).collect();
        problem.types = group_types(&footprints, problem.gpu.memory_bytes, opts.colocate.max(1));
        let fewest = names.len().div_ceil(opts.colocate.max(1) as usize) as u32;
        if max_gpus < fewest {
            let hint = if opts.colocate > 1 {
                format!(" even {} to a GPU", opts.colocate)
            } else {
                " (one model per GPU; --colocate lets small models share)".to_string()
            };
            return Err(PlanError::TooFewGpus { gpus: max_gpus, models: names.len(), hint });
        }
        problem.budget = budget::budget(&mut problem.workload, opts.requests);
        Ok(problem)
    }

    /// The runnable scenario of `layout` (with the budgeted workload), or the loader's refusal.
    pub fn scenario_for(&self, layout: &Layout) -> Result<Scenario, ScenarioError> {
        let mut s = self.placer.place(layout.gpus(), &self.placements(layout))?;
        s.workload = self.workload.clone();
        Ok(s)
    }

    /// Where `layout` puts each instance: models in order, each model's copies group by group
    /// (groups in layout order, a group's copies on consecutive GPUs); instances on shared GPUs
    /// get the layout's KV mode and, when static, their share of `gpu_memory_utilization`.
    fn placements(&self, layout: &Layout) -> Vec<Placement> {
        // The first GPU of each group.
        let mut first_gpu: Vec<u32> = Vec::with_capacity(layout.groups.len());
        let mut next = 0;
        for &(_, copies) in &layout.groups {
            first_gpu.push(next);
            next += copies;
        }
        let mut out = Vec::new();
        for m in 0..self.models.len() {
            for (gi, &(t, copies)) in layout.groups.iter().enumerate() {
                let ty = &self.types[t];
                let Some(pos) = ty.models.iter().position(|x| x.index() == m) else { continue };
                let (kv_cache, gpu_memory_utilization) = if ty.is_shared() {
                    let kv = layout.kv.unwrap_or(KvCacheMode::Static);
                    let util = match kv {
                        KvCacheMode::Static => ty.static_utils.as_ref().map(|u| u[pos]),
                        KvCacheMode::Elastic => None,
                    };
                    (Some(kv), util)
                } else {
                    (None, None)
                };
                for c in 0..copies {
                    out.push(Placement {
                        model: ModelId(m as u32),
                        gpu: GpuId(first_gpu[gi] + c),
                        kv_cache,
                        gpu_memory_utilization,
                    });
                }
            }
        }
        out
    }

    /// Simulates `scenario` at `scale` x its load and judges it against the targets.
    pub fn evaluate(&self, scenario: &Scenario, scale: f64) -> Result<Judged, SimError> {
        let mut s = scenario.clone();
        budget::scale_load(&mut s.workload, scale);
        // Per model, its worst result over the request streams (seed, seed + 1, ...); stop at the
        // first stream on which some model misses: the layout fails anyway.
        let mut models: Vec<ModelResult> = Vec::with_capacity(self.models.len());
        for k in 0..u64::from(self.seeds.max(1)) {
            s.seed = self.seed.wrapping_add(k);
            let run = simulate_summary(&s, &self.base_dir, SimOptions::default())?;
            for (i, m) in self.models.iter().enumerate() {
                let sum = run.summary.models.iter().find(|x| x.model == m.name);
                let r = judge_model(m, sum, self.min_success);
                match models.get_mut(i) {
                    None => models.push(r),
                    Some(worst) if worse(&r, worst) => *worst = r,
                    Some(_) => {}
                }
            }
            if models.iter().any(|m| !m.passes) {
                break;
            }
        }
        let passes = models.iter().all(|m| m.passes);
        let margin = models.iter().filter_map(|m| m.margin).min_by(f64::total_cmp);
        // The failing model (else the tightest one) and the metric that sets its margin.
        let key = |r: &ModelResult| (r.passes, r.margin.unwrap_or(f64::NEG_INFINITY));
        let limiting = models
            .iter()
            .zip(&self.models)
            .filter(|(r, _)| r.limit.is_some())
            .min_by(|a, b| key(a.0).0.cmp(&key(b.0).0).then(f64::total_cmp(&key(a.0).1, &key(b.0).1)))
            .and_then(|(r, pm)| r.limit.map(|l| format!("{} {}", pm.short, l.label())));
        Ok(Judged { models, passes, margin, limiting })
    }
}

/// Whether `a` is a worse result than `b`: failing before passing, then the smaller margin.
fn worse(a: &ModelResult, b: &ModelResult) -> bool {
    match (a.passes, b.passes) {
        (false, true) => true,
        (true, false) => false,
        _ => a.margin.unwrap_or(f64::NEG_INFINITY) < b.margin.unwrap_or(f64::NEG_INFINITY),
    }
}

fn judge_model(m: &PlanModel, sum: Option<&crate::metrics::ModelSummary>, min_success: f64) -> ModelResult {
    let Some(s) = sum.filter(|s| s.requests > 0) else {
        return ModelResult {
            model: m.name.clone(),
            requests: 0,
            success_rate: 1.0,
            ttft_p90_s: None,
            tpot_p90_s: None,
            margin: None,
            limit: None,
            passes: true,
        };
    };
    let ttft = s.ttft.as_ref().map(|x| x.p90);
    let tpot = s.tpot.as_ref().map(|x| x.p90);
    let mut margin: Option<(f64, Metric)> = None;
    let mut fold = |slo: Option<f64>, p90: Option<f64>, metric: Metric| {
        if let (Some(slo), Some(p90)) = (slo, p90) {
            let g = (slo - p90) / slo;
            if margin.is_none_or(|(best, _)| g < best) {
                margin = Some((g, metric));
            }
        }
    };
    fold(m.ttft_p90_s, ttft, Metric::Ttft);
    fold(m.tpot_p90_s, tpot, Metric::Tpot);
    let latency_ok = margin.is_none_or(|(g, _)| g >= 0.0) && (ttft.is_some() || m.ttft_p90_s.is_none());
    let success_ok = s.success_rate >= min_success;
    let limit = if success_ok { margin.map(|(_, k)| k) } else { Some(Metric::Success) };
    ModelResult {
        model: m.name.clone(),
        requests: s.requests,
        success_rate: s.success_rate,
        ttft_p90_s: ttft,
        tpot_p90_s: tpot,
        margin: margin.map(|(g, _)| g),
        limit,
        passes: latency_ok && success_ok,
    }
}

/// `text` with `[variants]` reduced to `variant` (unchanged when the file has no variants).
fn single_variant(text: &str, variant: &str, path: &Path) -> Result<String, ScenarioError> {
    let mut root: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ScenarioError::new(path, "(toml)", e.message().to_string()))?;
    let Some(toml::Value::Table(variants)) = root.get_mut("variants") else { return Ok(text.to_string()) };
    variants.retain(|name, _| name == variant);
    Ok(root.to_string())
}

/// Each model's template: its first `[[instances]]` entry (from `--set instances=[...]` when
/// given), without `gpu`, `port` and `name`.
fn templates(
    text: &str,
    instances: Option<&toml::Value>,
    names: &[String],
    path: &Path,
) -> Result<Vec<toml::Table>, PlanError> {
    let root: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ScenarioError::new(path, "(toml)", e.message().to_string()))?;
    let list = instances.or_else(|| root.get("instances")).and_then(toml::Value::as_array);
    let entries: Vec<&toml::Table> =
        list.map(|l| l.iter().filter_map(toml::Value::as_table).collect()).unwrap_or_default();
    names
        .iter()
        .map(|name| {
            let entry = entries
                .iter()
                .find(|e| e.get("model").and_then(toml::Value::as_str) == Some(name.as_str()))
                .ok_or_else(|| {
                    ScenarioError::new(path, "instances", format!("no [[instances]] entry serves {name}"))
                })?;
            let mut t = (*entry).clone();
            for key in ["gpu", "port", "name"] {
                t.remove(key);
            }
            Ok(t)
        })
        .collect()
}

#[cfg(test)]
#[path = "problem_roundtrip.rs"]
mod roundtrip;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_keep_family_and_size() {
        let names = ["llama-3.1-8b", "qwen2.5-7b", "llama-3.3-70b-awq"].map(String::from);
        assert_eq!(short_names(&names), ["llama-8b", "qwen-7b", "llama-70b"]);
    }

    #[test]
    fn short_names_fall_back_to_full_names_when_ambiguous() {
        let names = ["llama-3.1-8b", "llama-3-8b"].map(String::from);
        assert_eq!(short_names(&names), names);
    }
}
