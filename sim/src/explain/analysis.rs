//! From an explanation's sweep dir to the attribution: per model and metric, per replication, the
//! value at every subset of factors, then Shapley values, effects alone, the interaction left
//! over and pair indices, folded over replications into means with 95% Student-t intervals.
//!
//! Point `p` of the sweep is replication `p % reps` of subset `masks[p / reps]` (exact: every
//! subset, in the product order of the factor axes; sampled: the prefixes of the sampled orders
//! and the single factors). `explain.json` ([`Explanation`]) is what this module writes; the spec of
//! the explanation (`explain-spec.json`: scenario, from, to, factors) is written next to the sweep
//! files before the runs, so shard dirs carry it and a merged dir can be analysed alone.

use super::shapley;
use super::{ExplainError, ExplainPlan, SEED_AXIS, describe_target};
use crate::sweep::schema::{SweepMeta, SweepRow, read_sweep_dir};
use crate::sweep::stats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Version of `explain.json` and `explain-spec.json`.
pub const EXPLAIN_SCHEMA_VERSION: u32 = 1;

/// The attribution file of an explanation dir.
pub const EXPLAIN_JSON: &str = "explain.json";

/// The spec file written before the runs.
const SPEC_JSON: &str = "explain-spec.json";

/// A factor as the files show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactorInfo {
    /// The `set` key.
    pub path: String,
    /// Its *from* value, as TOML text.
    pub from: String,
    /// Its *to* value, as TOML text.
    pub to: String,
}

impl FactorInfo {
    /// `path: from -> to`.
    pub fn describe(&self) -> String {
        format!("{}: {} -> {}", self.path, self.from, self.to)
    }
}

/// `explain-spec.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SpecFile {
    schema_version: u32,
    scenario: String,
    from: String,
    to: String,
    factors: Vec<FactorInfo>,
    /// The subsets run, in sweep order.
    masks: Vec<u64>,
    /// The sampled orders (empty: exact).
    #[serde(default)]
    permutations: Vec<Vec<usize>>,
}

/// A mean over replications with its 95% Student-t interval (none with one replication).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Mean.
    pub mean: f64,
    /// Lower end of the interval.
    pub ci_low: Option<f64>,
    /// Upper end of the interval.
    pub ci_high: Option<f64>,
    /// Replications behind it.
    pub n: u32,
}

impl Estimate {
    fn of(samples: &[f64]) -> Estimate {
        match stats::estimate(samples) {
            Some(e) => {
                Estimate { mean: e.mean, ci_low: e.ci.map(|c| c.0), ci_high: e.ci.map(|c| c.1), n: e.n }
            }
            None => Estimate { mean: f64::NAN, ci_low: None, ci_high: None, n: 0 },
        }
    }
}

/// One factor's share of one metric's change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Index into [`Explanation::factors`].
    pub factor: usize,
    /// Shapley value: the factor's contribution; the factors' add up to the total change.
    pub shapley: Estimate,
    /// The factor switched alone on the *from* variant.
    pub alone: Estimate,
}

/// The Shapley interaction index of two factors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairIndex {
    /// The two factors (indices).
    pub factors: (usize, usize),
    /// Zero when their effects add up; their joint effect when they only matter together.
    pub index: Estimate,
}

/// One metric of one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricExplanation {
    /// Metric name (as in `sweep.csv`).
    pub metric: String,
    /// Value on the *from* variant.
    pub from: Estimate,
    /// Value on the *to* variant.
    pub to: Estimate,
    /// `to - from`, paired per replication.
    pub total: Estimate,
    /// Per factor, sorted by |Shapley value|, largest first.
    pub contributions: Vec<Contribution>,
    /// `total - sum of the effects alone`: what no factor does on its own.
    pub interaction: Estimate,
    /// Every pair, sorted by |index|, largest first.
    pub pairs: Vec<PairIndex>,
}

/// One model (or `all`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelExplanation {
    /// Model key or `all`.
    pub model: String,
    /// Per metric, in `sweep::metrics::METRICS` order; metrics a replication lacks are left out.
    pub metrics: Vec<MetricExplanation>,
}

impl ModelExplanation {
    /// The explanation of `metric`, if the runs have it.
    pub fn metric(&self, metric: &str) -> Option<&MetricExplanation> {
        self.metrics.iter().find(|m| m.metric == metric)
    }
}

/// `explain.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// [`EXPLAIN_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// The *from* variant.
    pub from: String,
    /// The *to* side (`variant `managed`` or `--to-set ...`).
    pub to: String,
    /// The factors, in axis order.
    pub factors: Vec<FactorInfo>,
    /// Replications.
    pub reps: u32,
    /// Simulations behind it (subsets x reps).
    pub runs: u32,
    /// Sampled orders behind a permutation estimate; 0 for exact values over all `2^k` subsets
    /// (the intervals of an estimate cover the replications' noise, not the sampling's).
    pub permutations: u32,
    /// True when every run used calibrated step-time profiles.
    pub calibrated: bool,
    /// `all` first, then the models in scenario order.
    pub models: Vec<ModelExplanation>,
}

impl Explanation {
    /// The explanation of `model`.
    pub fn model(&self, model: &str) -> Option<&ModelExplanation> {
        self.models.iter().find(|m| m.model == model)
    }
}

/// Writes `explain-spec.json` for `plan` into `dir` (before the runs).
pub(crate) fn write_spec(dir: &Path, plan: &ExplainPlan) -> Result<(), ExplainError> {
    let spec = SpecFile {
        schema_version: EXPLAIN_SCHEMA_VERSION,
        scenario: plan.sweep.name.clone(),
        from: plan.spec.from.clone(),
        to: describe_target(&plan.spec.to),
        factors: plan
            .groups
            .iter()
            .map(|g| {
                let join = |to: bool| {
                    let v: Vec<String> = g
                        .factors
                        .iter()
                        .map(|&i| {
                            if to { plan.factors[i].to.to_string() } else { plan.factors[i].from.to_string() }
                        })
                        .collect();
                    v.join(" + ")
                };
                FactorInfo { path: super::group_path(&plan.factors, g), from: join(false), to: join(true) }
            })
            .collect(),
        masks: plan.masks.clone(),
        permutations: plan.permutations.clone(),
    };
    write_json(&dir.join(SPEC_JSON), &spec)
}

/// Copies the spec of the first shard dir into `out`, refusing shards of different explanations.
pub fn merge_spec(shards: &[std::path::PathBuf], out: &Path) -> Result<(), ExplainError> {
    let mut first: Option<SpecFile> = None;
    for d in shards {
        let s = read_spec(d)?;
        match &first {
            None => first = Some(s),
            Some(f) if *f != s => {
                return Err(ExplainError::NotAnExplanation {
                    path: d.clone(),
                    reason: "explains another difference than the first shard (explain-spec.json differs)"
                        .into(),
                });
            }
            Some(_) => {}
        }
    }
    match first {
        Some(s) => write_json(&out.join(SPEC_JSON), &s),
        None => Err(ExplainError::Spec("no shard dirs given".into())),
    }
}

fn read_spec(dir: &Path) -> Result<SpecFile, ExplainError> {
    let path = dir.join(SPEC_JSON);
    let text = std::fs::read_to_string(&path).map_err(|e| ExplainError::NotAnExplanation {
        path: dir.to_path_buf(),
        reason: format!("no readable {SPEC_JSON} ({e}): pass a dir written by `modelsguard explain`"),
    })?;
    let spec: SpecFile = serde_json::from_str(&text)
        .map_err(|e| ExplainError::NotAnExplanation { path: path.clone(), reason: e.to_string() })?;
    if spec.schema_version != EXPLAIN_SCHEMA_VERSION {
        return Err(ExplainError::NotAnExplanation {
            path,
            reason: format!(
                "schema version {}, this modelsguard reads {EXPLAIN_SCHEMA_VERSION}: re-run the explanation",
                spec.schema_version
            ),
        });
    }
    Ok(spec)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ExplainError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|error| ExplainError::Io { path: dir.to_path_buf(), error })?;
    }
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| ExplainError::Spec(format!("{}: cannot serialise: {e}", path.display())))?;
    std::fs::write(path, json + "\n").map_err(|error| ExplainError::Io { path: path.to_path_buf(), error })
}

/// Writes `explain.json` into `dir`.
pub fn write_explanation(dir: &Path, e: &Explanation) -> Result<(), ExplainError> {
    write_json(&dir.join(EXPLAIN_JSON), e)
}

/// Reads a whole (unsharded or merged) explanation dir and analyses it.
pub fn analyse_dir(dir: &Path) -> Result<Explanation, ExplainError> {
    let spec = read_spec(dir)?;
    let (meta, rows) = read_sweep_dir(dir)?;
    let subsets = Runs { masks: &spec.masks, permutations: &spec.permutations };
    analyse(&spec.from, &spec.to, &spec.factors, subsets, &meta, &rows)
        .map_err(|reason| ExplainError::NotAnExplanation { path: dir.to_path_buf(), reason })
}

/// Which subsets an explanation's sweep ran.
#[derive(Clone, Copy, Debug)]
pub struct Runs<'a> {
    /// The subset of each group of `reps` points, in order.
    pub masks: &'a [u64],
    /// The sampled orders (empty: `masks` holds every subset, exact values).
    pub permutations: &'a [Vec<usize>],
}

/// The attribution from a sweep's meta and rows; the reason when they are not an explanation's.
pub fn analyse(
    from: &str,
    to: &str,
    factors: &[FactorInfo],
    runs: Runs<'_>,
    meta: &SweepMeta,
    rows: &[SweepRow],
) -> Result<Explanation, String> {
    let k = factors.len();
    let axes_ok = meta.params.len() == k + 1
        && meta.params.last().map(String::as_str) == Some(SEED_AXIS)
        && meta.params.iter().zip(factors).all(|(p, f)| *p == f.path);
    let exact = runs.permutations.is_empty();
    let full = if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
    let needed = (0..k).map(|i| 1u64 << i).chain([0, full]);
    let complete = if exact {
        runs.masks.len() == 1 << k.min(20)
    } else {
        needed.clone().all(|m| runs.masks.contains(&m))
    };
    if !axes_ok || meta.shard.is_some() || k == 0 || !complete {
        return Err(format!(
            "sweep.json's axes ({}) are not the factors of explain-spec.json then `seed`, or the dir is \
             one shard (merge the shards first)",
            meta.params.join(", ")
        ));
    }
    let subsets = runs.masks.len() as u32;
    if subsets == 0 || meta.total_points % subsets != 0 {
        return Err(format!("{} points is not a multiple of {subsets} subsets", meta.total_points));
    }
    let reps = meta.total_points / subsets;
    // (model, metric) -> [rep][position in runs.masks]
    let mut values: BTreeMap<(usize, usize), Vec<Vec<Option<f64>>>> = BTreeMap::new();
    let mut models: Vec<String> = Vec::new();
    let metric_index = |m: &str| crate::sweep::metrics::METRICS.iter().position(|x| *x == m);
    for row in rows {
        let Some(mi) = metric_index(&row.metric) else { continue };
        let model = match models.iter().position(|m| *m == row.model) {
            Some(i) => i,
            None => {
                models.push(row.model.clone());
                models.len() - 1
            }
        };
        let (rep, at) = (row.point % reps, row.point / reps);
        if at >= subsets {
            return Err(format!("sweep.csv has point {}, beyond the {subsets} x {reps} runs", row.point));
        }
        let cell =
            values.entry((model, mi)).or_insert_with(|| vec![vec![None; subsets as usize]; reps as usize]);
        cell[rep as usize][at as usize] = Some(row.value);
    }
    let mut out: Vec<ModelExplanation> =
        models.iter().map(|m| ModelExplanation { model: m.clone(), metrics: Vec::new() }).collect();
    for ((model, mi), per_rep) in values {
        let complete: Vec<Vec<f64>> =
            per_rep.iter().filter_map(|v| v.iter().copied().collect::<Option<Vec<f64>>>()).collect();
        if complete.is_empty() {
            continue;
        }
        // Re-key each replication by mask.
        let by_mask: Vec<BTreeMap<u64, f64>> =
            complete.iter().map(|v| runs.masks.iter().copied().zip(v.iter().copied()).collect()).collect();
        out[model].metrics.push(explain_metric(
            crate::sweep::metrics::METRICS[mi],
            k,
            runs.permutations,
            &by_mask,
        ));
    }
    Ok(Explanation {
        schema_version: EXPLAIN_SCHEMA_VERSION,
        scenario: meta.scenario.clone(),
        from: from.to_string(),
        to: to.to_string(),
        factors: factors.to_vec(),
        reps,
        runs: meta.total_points,
        permutations: runs.permutations.len() as u32,
        calibrated: meta.calibrated,
        models: out,
    })
}

/// One metric from its values per replication, keyed by mask; exact Shapley values and pair
/// indices when `perms` is empty (every mask present), else the permutation estimate (no pairs).
fn explain_metric(
    metric: &str,
    k: usize,
    perms: &[Vec<usize>],
    reps: &[BTreeMap<u64, f64>],
) -> MetricExplanation {
    let full = if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
    let at = |v: &BTreeMap<u64, f64>, m: u64| v.get(&m).copied().unwrap_or(f64::NAN);
    let col = |f: &dyn Fn(&BTreeMap<u64, f64>) -> f64| Estimate::of(&reps.iter().map(f).collect::<Vec<_>>());
    let dense = |v: &BTreeMap<u64, f64>| (0..=full).map(|m| at(v, m)).collect::<Vec<f64>>();
    let phis: Vec<Vec<f64>> = reps
        .iter()
        .map(|v| {
            if perms.is_empty() {
                shapley::exact(&dense(v), k)
            } else {
                shapley::from_permutations(k, perms, |m| at(v, m))
            }
        })
        .collect();
    let pairs: Vec<Vec<((usize, usize), f64)>> = if perms.is_empty() {
        reps.iter().map(|v| shapley::pair_interactions(&dense(v), k)).collect()
    } else {
        Vec::new()
    };
    let mut contributions: Vec<Contribution> = (0..k)
        .map(|i| Contribution {
            factor: i,
            shapley: Estimate::of(&phis.iter().map(|p| p[i]).collect::<Vec<_>>()),
            alone: col(&|v| at(v, 1 << i) - at(v, 0)),
        })
        .collect();
    contributions
        .sort_by(|a, b| b.shapley.mean.abs().total_cmp(&a.shapley.mean.abs()).then(a.factor.cmp(&b.factor)));
    let mut pair_list: Vec<PairIndex> = (0..pairs.first().map_or(0, Vec::len))
        .map(|j| PairIndex {
            factors: pairs[0][j].0,
            index: Estimate::of(&pairs.iter().map(|p| p[j].1).collect::<Vec<_>>()),
        })
        .collect();
    pair_list
        .sort_by(|a, b| b.index.mean.abs().total_cmp(&a.index.mean.abs()).then(a.factors.cmp(&b.factors)));
    MetricExplanation {
        metric: metric.to_string(),
        from: col(&|v| at(v, 0)),
        to: col(&|v| at(v, full)),
        total: col(&|v| at(v, full) - at(v, 0)),
        contributions,
        interaction: col(&|v| at(v, full) - at(v, 0) - (0..k).map(|i| at(v, 1 << i) - at(v, 0)).sum::<f64>()),
        pairs: pair_list,
    }
}
