//! `modelsguard explain`: attribute the change of every metric between two variants of a scenario
//! to the settings that differ between them, with Shapley values over all subsets of the settings.
//!
//! An explanation is a sweep: one axis per factor (`factors`: a `set` key whose value differs,
//! with values *from* and *to*) and one `seed` axis (the replications), crossed, run on the
//! *from* variant with `reps = 1`. Every subset of factors therefore runs on the same request
//! streams (common random numbers: replication `r` is seed + r in every subset), on all cores,
//! sharded with `--shard i/n` and merged with `sweep merge` exactly as sweeps are (`crate::sweep`
//! does all the running and file handling). [`analyse`] then reads the sweep dir back and
//! computes, per model and metric and per replication, each factor's Shapley value, its effect
//! alone, the interaction left over and every pair's interaction index (`shapley`), and folds the
//! replications into means with Student-t intervals (`analysis`). `text` prints the tables and
//! sentences. Drawing the waterfalls is the reports crate's job.

mod analysis;
pub mod factors;
mod operating;
pub mod shapley;
mod subsets;
mod text;

pub use analysis::{
    Contribution, EXPLAIN_JSON, EXPLAIN_SCHEMA_VERSION, Estimate, Explanation, FactorInfo, MetricExplanation,
    ModelExplanation, PairIndex, analyse, analyse_dir, write_explanation,
};
pub use factors::{Factor, Target, factors};
pub use operating::{MIN_SUCCESS, OperatingPoint, operating_points, operating_table};
pub use subsets::{DEFAULT_PERMUTATIONS, Group, MAX_SAMPLED_GROUPS, group_path};
pub use text::{HEADLINE_METRICS, format_value, metric_label, sentences, tables};

use crate::scenario::{Override, ScenarioError, parse_scenario};
use crate::sweep::{SweepError, SweepPlan};
use std::path::PathBuf;

/// Most factors (or groups) an explanation switches: `2^10` subsets, each loaded before the runs.
pub const MAX_GROUPS: usize = 10;

/// The sweep axis holding the replications' seeds (always the last axis of an explanation).
pub const SEED_AXIS: &str = "seed";

/// An explanation could not be planned, run or analysed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// The request is inconsistent (no differing setting, too many, a key that cannot switch...).
    #[error("explain: {0}")]
    Spec(String),
    /// The scenario does not load.
    #[error("explain: {0}")]
    Scenario(ScenarioError),
    /// Running or reading the underlying sweep failed.
    #[error("explain: {0}")]
    Sweep(SweepError),
    /// The sweep dir is not an explanation's.
    #[error("explain: {}: {reason}", path.display())]
    NotAnExplanation {
        /// The dir.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// Writing a file failed.
    #[error("explain: {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}

// Not `#[from]`: the messages already hold their cause's, and a source would print it twice.
impl From<SweepError> for ExplainError {
    fn from(e: SweepError) -> Self {
        ExplainError::Sweep(e)
    }
}

impl From<ScenarioError> for ExplainError {
    fn from(e: ScenarioError) -> Self {
        ExplainError::Scenario(e)
    }
}

/// What to explain: everything that determines the result.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainSpec {
    /// The scenario file.
    pub scenario: PathBuf,
    /// The variant the change starts from.
    pub from: String,
    /// Where it goes.
    pub to: Target,
    /// `--set` overrides every run gets (applied after the variant's own `set`).
    pub overrides: Vec<Override>,
    /// Replications (seeds: the *from* variant's seed + 0..reps).
    pub reps: u32,
    /// Settings to switch together (`--group a,b`: their paths).
    pub groups: Vec<Vec<String>>,
    /// Sampled orders for a permutation estimate; 0: exact over all subsets when at most
    /// [`MAX_GROUPS`] settings differ, else 64 orders.
    pub permutations: u32,
}

/// A planned explanation: the factors and the sweep that runs every subset.
#[derive(Clone, Debug)]
pub struct ExplainPlan {
    /// What was asked.
    pub spec: ExplainSpec,
    /// The differing settings.
    pub factors: Vec<Factor>,
    /// The factors switched together, in axis order (group `g` is bit `g` of a subset mask).
    pub groups: Vec<Group>,
    /// The subsets run, in sweep order.
    pub masks: Vec<u64>,
    /// The sampled orders of a sampled explanation (empty: exact over all subsets).
    pub permutations: Vec<Vec<usize>>,
    /// The sweep: `2^k x reps` points of the *from* variant.
    pub sweep: SweepPlan,
}

/// Finds the factors, joins those that must switch together, loads every subset and plans the
/// sweep; checks that switching every factor on the *from* variant gives exactly the *to*
/// variant, so the subsets span the whole difference.
pub fn plan(spec: &ExplainSpec) -> Result<ExplainPlan, ExplainError> {
    if spec.reps == 0 {
        return Err(ExplainError::Spec("--replications must be at least 1".into()));
    }
    let text = std::fs::read_to_string(&spec.scenario)
        .map_err(|e| ExplainError::Spec(format!("{}: cannot read: {e}", spec.scenario.display())))?;
    let factors = factors::factors(&text, &spec.scenario, &spec.from, &spec.to, &spec.overrides)?;
    if factors.is_empty() {
        return Err(ExplainError::Spec(format!(
            "variant `{}` and {} resolve to the same settings: nothing to explain",
            spec.from,
            describe_target(&spec.to)
        )));
    }
    let loader = subsets::Loader {
        text: &text,
        path: &spec.scenario,
        from: &spec.from,
        cli: &spec.overrides,
        factors: &factors,
    };
    let (from, base_dir) = loader.load(std::iter::empty())?;
    let (switched, _) = loader.load(0..factors.len())?;
    let file = parse_scenario(&text, &spec.scenario, &spec.overrides)?;
    let target = match &spec.to {
        Target::Variant(v) => file.variant(v)?.clone(),
        Target::Sets(sets) => {
            let mut o = spec.overrides.clone();
            o.extend(sets.iter().cloned());
            parse_scenario(&text, &spec.scenario, &o)?.variant(&spec.from)?.clone()
        }
    };
    let normalise = |mut s: crate::scenario::Scenario| {
        s.variant.clear();
        s.description.clear();
        s
    };
    if normalise(switched) != normalise(target) {
        return Err(ExplainError::Spec(format!(
            "switching {} on variant `{}` does not give {}: the variants differ in something their \
             `set` tables do not show",
            factors.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", "),
            spec.from,
            describe_target(&spec.to)
        )));
    }
    let subsets = subsets::group(&loader, &spec.groups, MAX_GROUPS, spec.permutations, from.seed)?;
    let groups = subsets.groups.clone();
    let seeds: Vec<u64> = (0..spec.reps).map(|r| from.seed.wrapping_add(u64::from(r))).collect();
    let mut hash_text =
        format!("explain schema {EXPLAIN_SCHEMA_VERSION}\nscenario\n{text}\nfrom {}\n", spec.from);
    for f in &factors {
        hash_text.push_str(&format!("factor {}\n", f.describe()));
    }
    for g in &groups {
        hash_text.push_str(&format!("group {}\n", subsets::group_path(&factors, g)));
    }
    for o in &spec.overrides {
        hash_text.push_str(&format!("set {o}\n"));
    }
    hash_text.push_str(&format!(
        "seeds {seeds:?}\nmasks {:?}\norders {:?}\n",
        subsets.masks, subsets.permutations
    ));
    let sweep = subsets::sweep_plan(
        &factors,
        &subsets,
        subsets::SweepInputs {
            scenario: &spec.scenario,
            name: file.name.clone(),
            base_dir,
            from: &spec.from,
            cli: &spec.overrides,
            seeds,
            hash_text,
        },
    );
    Ok(ExplainPlan {
        spec: spec.clone(),
        factors,
        groups,
        masks: subsets.masks,
        permutations: subsets.permutations,
        sweep,
    })
}

/// `variant `x`` or `--to-set a=1, b=2`.
pub fn describe_target(to: &Target) -> String {
    match to {
        Target::Variant(v) => format!("variant `{v}`"),
        Target::Sets(s) => {
            format!("--to-set {}", s.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        }
    }
}

/// Runs `plan` (or `opts.shard` of it) into `out`: `explain-spec.json`, the sweep files and, when
/// the whole explanation ran here, `explain.json`, which is returned.
pub fn run(
    plan: &ExplainPlan,
    out: &std::path::Path,
    opts: &crate::sweep::SweepOptions,
) -> Result<Option<Explanation>, ExplainError> {
    analysis::write_spec(out, plan)?;
    crate::sweep::run_sweep(&plan.sweep, out, opts)?;
    if opts.shard.is_some_and(|s| s.count > 1) {
        return Ok(None);
    }
    let e = analyse_dir(out)?;
    write_explanation(out, &e)?;
    Ok(Some(e))
}

/// Merges the shard dirs of one explanation into `out` (the sweep files byte for byte, as
/// `sweep merge` does) and analyses the result: the same `explain.json` as an unsharded run.
pub fn merge(shards: &[PathBuf], out: &std::path::Path) -> Result<Explanation, ExplainError> {
    analysis::merge_spec(shards, out)?;
    crate::sweep::merge_shards(shards, out)?;
    let e = analyse_dir(out)?;
    write_explanation(out, &e)?;
    Ok(e)
}
