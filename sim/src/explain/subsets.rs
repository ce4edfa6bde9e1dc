//! Groups of factors and the scenario of every subset of groups, as a ready-to-run sweep plan.
//!
//! A group is one or more factors switched together: the user's `--group`, plus factors merged
//! automatically when some subset does not start (the loader refuses it: the seed's elastic KV on
//! vLLM 0.6.4, "kvcached needs vLLM >= 0.8.4"), because a Shapley value needs the metric at every
//! subset. The smallest refused subset is merged with the first other group that makes it start;
//! the note says which and why. The plan's points cross the groups (first slowest, values *from*
//! then *to*) with the seeds (fastest), each point's scenario already loaded, so
//! `sweep::run_sweep` runs it, shards it and `sweep merge` merges it unchanged.

use super::ExplainError;
use super::factors::Factor;
use crate::scenario::{Override, Scenario, ScenarioError, parse_scenario};
use crate::sweep::axis::Point;
use crate::sweep::plan::PlannedPoint;
use crate::sweep::{Axis, SweepPlan, SweepSpec};
use std::path::Path;

/// Factors switched together (indices into the factor list), with the reason they were joined.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Factor indices, ascending.
    pub factors: Vec<usize>,
    /// Why automatic, `None` for a single factor or a `--group`.
    pub note: Option<String>,
}

/// Loads variant `from` of `text` with `cli` and the *to* value of every factor of `on`.
pub(crate) struct Loader<'a> {
    pub text: &'a str,
    pub path: &'a Path,
    pub from: &'a str,
    pub cli: &'a [Override],
    pub factors: &'a [Factor],
}

impl Loader<'_> {
    /// The scenario with the factors in `on` switched to their *to* values.
    pub fn load(
        &self,
        on: impl Iterator<Item = usize>,
    ) -> Result<(Scenario, std::path::PathBuf), ScenarioError> {
        let mut o = self.cli.to_vec();
        o.extend(on.map(|i| Override::new(self.factors[i].path.clone(), self.factors[i].to.clone())));
        let file = parse_scenario(self.text, self.path, &o)?;
        Ok((file.variant(self.from)?.clone(), file.base_dir))
    }

    fn load_mask(&self, groups: &[Group], mask: u64) -> Result<Scenario, ScenarioError> {
        let on = (0..groups.len()).filter(|g| mask >> g & 1 == 1).flat_map(|g| groups[g].factors.clone());
        self.load(on).map(|(s, _)| s)
    }
}

/// The subsets an explanation runs, with the scenario of each.
pub(crate) struct Subsets {
    /// The groups (bit `g` of a mask is group `g`).
    pub groups: Vec<Group>,
    /// The masks run, in sweep order: every mask in product order (group 0 slowest) when exact,
    /// the prefixes of `permutations` and the single groups, ascending, when sampled.
    pub masks: Vec<u64>,
    /// The sampled orders (empty: exact).
    pub permutations: Vec<Vec<usize>>,
    /// The scenario of each of `masks`.
    pub scenarios: Vec<Scenario>,
}

/// The masks of `g` groups in product order: group 0 is the slowest axis (the code's top bit).
fn product_masks(g: usize) -> Vec<u64> {
    (0..1u64 << g)
        .map(|code| (0..g).filter(|i| code >> (g - 1 - i) & 1 == 1).fold(0u64, |m, i| m | 1 << i))
        .collect()
}

/// Orders sampled when many settings differ and `--permutations` is not given.
pub const DEFAULT_PERMUTATIONS: usize = 64;

/// Most groups a sampled explanation takes (a mask is 64 bits).
pub const MAX_SAMPLED_GROUPS: usize = 64;

/// Singleton groups joined by `requested` (`--group a,b`: paths) and then as needed for every
/// subset run to start. Exact (every subset) when `permutations` is 0 and there are at most
/// `max_groups` groups; else `permutations` orders (64 when 0) drawn from `seed`.
pub(crate) fn group(
    loader: &Loader<'_>,
    requested: &[Vec<String>],
    max_groups: usize,
    permutations: u32,
    seed: u64,
) -> Result<Subsets, ExplainError> {
    let factors = loader.factors;
    let mut groups: Vec<Group> = (0..factors.len()).map(|i| Group { factors: vec![i], note: None }).collect();
    for req in requested {
        let mut idx = Vec::new();
        for p in req {
            let Some(i) = factors.iter().position(|f| f.path == *p) else {
                return Err(ExplainError::Spec(format!(
                    "--group names `{p}`, which is not a differing setting; they are: {}",
                    factors.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", ")
                )));
            };
            idx.push(i);
        }
        merge(&mut groups, &idx, None);
    }
    loop {
        let g = groups.len();
        let sampled = permutations > 0 || g > max_groups;
        if g > MAX_SAMPLED_GROUPS {
            return Err(ExplainError::Spec(format!(
                "{g} settings (or groups) differ, more than {MAX_SAMPLED_GROUPS}: join settings with \
                 --group A,B or narrow the difference with --to-set"
            )));
        }
        let (masks, perms) = if sampled {
            use rand::SeedableRng;
            let n = if permutations == 0 { DEFAULT_PERMUTATIONS } else { permutations as usize };
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let perms = super::shapley::permutations(g, n, &mut rng);
            let mut masks = super::shapley::prefix_masks(&perms);
            masks.extend((0..g).map(|i| 1u64 << i));
            masks.sort_unstable();
            masks.dedup();
            (masks, perms)
        } else {
            (product_masks(g), Vec::new())
        };
        // Smallest subsets first, so the refusal found is the smallest.
        let mut order: Vec<usize> = (0..masks.len()).collect();
        order.sort_by_key(|&i| (masks[i].count_ones(), masks[i]));
        let mut loaded: Vec<Option<Scenario>> = vec![None; masks.len()];
        let mut refused = None;
        for i in order {
            match loader.load_mask(&groups, masks[i]) {
                Ok(s) => loaded[i] = Some(s),
                Err(e) => {
                    refused = Some((masks[i], e));
                    break;
                }
            }
        }
        let Some((mask, error)) = refused else {
            let scenarios = loaded.into_iter().flatten().collect();
            return Ok(Subsets { groups, masks, permutations: perms, scenarios });
        };
        if mask == 0 {
            return Err(error.into());
        }
        let members: Vec<usize> = (0..g).filter(|i| mask >> i & 1 == 1).collect();
        let partner = (0..g).find(|j| mask >> j & 1 == 0 && loader.load_mask(&groups, mask | 1 << j).is_ok());
        let Some(j) = partner else {
            return Err(ExplainError::Spec(format!(
                "switching only {} does not start ({error}), and switching one more setting with it does \
                 not help: join settings with --group A,B",
                names(factors, &groups, &members)
            )));
        };
        let note = format!(
            "{} switched together: {} alone does not start ({})",
            names(factors, &groups, &[members.clone(), vec![j]].concat()),
            names(factors, &groups, &members),
            error.reason.split(" (from ").next().unwrap_or_default()
        );
        let idx: Vec<usize> =
            members.iter().chain(std::iter::once(&j)).flat_map(|&m| groups[m].factors.clone()).collect();
        merge(&mut groups, &idx, Some(note));
    }
}

fn names(factors: &[Factor], groups: &[Group], members: &[usize]) -> String {
    let paths: Vec<&str> =
        members.iter().flat_map(|&g| groups[g].factors.iter().map(|&i| factors[i].path.as_str())).collect();
    paths.join(" + ")
}

/// Replaces the groups holding any of `factors` by one group of all their factors (placed where
/// the first of them was).
fn merge(groups: &mut Vec<Group>, factors: &[usize], note: Option<String>) {
    let hit = |g: &Group| g.factors.iter().any(|f| factors.contains(f));
    let Some(at) = groups.iter().position(hit) else { return };
    let mut joined: Vec<usize> = groups.iter().filter(|g| hit(g)).flat_map(|g| g.factors.clone()).collect();
    joined.sort_unstable();
    joined.dedup();
    let notes: Vec<String> =
        groups.iter().filter(|g| hit(g)).filter_map(|g| g.note.clone()).chain(note).collect();
    let merged = Group { factors: joined, note: (!notes.is_empty()).then(|| notes.join("; ")) };
    let mut out: Vec<Group> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        if i == at {
            out.push(merged.clone());
        } else if !hit(g) {
            out.push(g.clone());
        }
    }
    *groups = out;
}

/// A group's label: its paths joined by ` + `.
pub fn group_path(factors: &[Factor], g: &Group) -> String {
    g.factors.iter().map(|&i| factors[i].path.as_str()).collect::<Vec<_>>().join(" + ")
}

/// A group's *from* or *to* value as one TOML value (the value itself for one factor).
fn group_value(factors: &[Factor], g: &Group, to: bool) -> toml::Value {
    let pick = |i: usize| if to { factors[i].to.clone() } else { factors[i].from.clone() };
    match g.factors.as_slice() {
        [one] => pick(*one),
        many => {
            toml::Value::String(many.iter().map(|&i| pick(i).to_string()).collect::<Vec<_>>().join(" + "))
        }
    }
}

/// Everything the sweep plan needs besides the loaded subsets.
pub(crate) struct SweepInputs<'a> {
    pub scenario: &'a Path,
    pub name: String,
    pub base_dir: std::path::PathBuf,
    pub from: &'a str,
    pub cli: &'a [Override],
    pub seeds: Vec<u64>,
    pub hash_text: String,
}

/// The sweep of every (subset, seed): group axes then the seed axis; point `p` is replication
/// `p % reps` of `subsets.masks[p / reps]`.
pub(crate) fn sweep_plan(factors: &[Factor], subsets: &Subsets, inputs: SweepInputs<'_>) -> SweepPlan {
    let groups = &subsets.groups;
    let g = groups.len();
    let mut axes: Vec<Axis> = groups
        .iter()
        .map(|gr| Axis {
            path: group_path(factors, gr),
            values: vec![group_value(factors, gr, false), group_value(factors, gr, true)],
        })
        .collect();
    let seed_values: Vec<toml::Value> =
        inputs.seeds.iter().map(|&s| toml::Value::Integer(s as i64)).collect();
    axes.push(Axis { path: super::SEED_AXIS.into(), values: seed_values.clone() });
    let reps = inputs.seeds.len();
    let mut points = Vec::with_capacity(subsets.masks.len() * reps);
    for (k, (&mask, scenario)) in subsets.masks.iter().zip(&subsets.scenarios).enumerate() {
        for (r, &seed) in inputs.seeds.iter().enumerate() {
            let mut values: Vec<toml::Value> =
                (0..g).map(|i| axes[i].values[usize::from(mask >> i & 1 == 1)].clone()).collect();
            values.push(seed_values[r].clone());
            let mut s = scenario.clone();
            s.seed = seed;
            points.push(PlannedPoint {
                point: Point { index: (k * reps + r) as u32, values },
                scenarios: vec![s],
            });
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in inputs.hash_text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    SweepPlan {
        spec: SweepSpec {
            scenario: inputs.scenario.to_path_buf(),
            axes,
            zip: false,
            reps: 1,
            variants: vec![inputs.from.to_string()],
            overrides: inputs.cli.to_vec(),
        },
        name: inputs.name,
        base_dir: inputs.base_dir,
        variants: vec![inputs.from.to_string()],
        points,
        spec_hash: format!("{h:016x}"),
    }
}
