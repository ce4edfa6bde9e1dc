//! Planning a sweep: expand the axes into points, load and validate the scenario at every point
//! (so a bad field or value fails once, before any simulation), pick the variants, and derive the
//! sweep's metadata and identity hash. This module runs nothing.

use super::SweepError;
use super::axis::{Axis, Point, expand};
use super::schema::{SWEEP_SCHEMA_VERSION, SweepMeta, SweepSlo};
use super::shard::Shard;
use crate::runner::is_calibrated;
use crate::scenario::{Override, Scenario, load_scenario};
use std::path::{Path, PathBuf};

/// What to sweep: everything that determines the results.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSpec {
    /// The scenario file.
    pub scenario: PathBuf,
    /// The varied fields.
    pub axes: Vec<Axis>,
    /// Pair the axes' values (`--zip`) instead of crossing them.
    pub zip: bool,
    /// Replications per point and variant; replication `r` runs with seed = scenario seed + r.
    pub reps: u32,
    /// Variants to run (empty: every variant of the file).
    pub variants: Vec<String>,
    /// `--set` overrides applied at every point before the point's own values.
    pub overrides: Vec<Override>,
}

/// One point, ready to run: its values and the resolved scenario of each selected variant.
#[derive(Clone, Debug)]
pub struct PlannedPoint {
    /// Index and values.
    pub point: Point,
    /// The selected variants at this point, in `SweepPlan::variants` order.
    pub scenarios: Vec<Scenario>,
}

/// A validated sweep: every point loads.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    /// What was asked.
    pub spec: SweepSpec,
    /// Scenario name.
    pub name: String,
    /// Directory the scenario's relative paths resolve against.
    pub base_dir: PathBuf,
    /// Variant names, in file order (or `--variant` order).
    pub variants: Vec<String>,
    /// Every point of the sweep, in index order.
    pub points: Vec<PlannedPoint>,
    /// Hex hash identifying the sweep (see [`SweepMeta::spec_hash`]).
    pub spec_hash: String,
}

/// Loads the scenario at every point of `spec` and checks the variants, reps and axes. The first
/// problem is returned (a field that does not exist fails at point 0, naming the field).
pub fn plan(spec: &SweepSpec) -> Result<SweepPlan, SweepError> {
    if spec.reps == 0 {
        return Err(SweepError::Spec("--reps must be at least 1".into()));
    }
    let text = std::fs::read_to_string(&spec.scenario).map_err(SweepError::io(&spec.scenario))?;
    let points = expand(&spec.axes, spec.zip)?;
    let mut planned = Vec::with_capacity(points.len());
    let mut name = String::new();
    let mut base_dir = PathBuf::new();
    let mut variants: Vec<String> = Vec::new();
    for point in points {
        let at = || point.describe(&spec.axes);
        let mut overrides = spec.overrides.clone();
        overrides.extend(point.overrides(&spec.axes));
        let file = load_scenario(&spec.scenario, &overrides).map_err(|mut error| {
            // The loader names every command-line override `--set`; say which came from --vary.
            for a in &spec.axes {
                error.reason =
                    error.reason.replace(&format!("--set {}=", a.path), &format!("--vary {}=", a.path));
            }
            SweepError::Scenario { point: point.index, at: at(), error: Box::new(error) }
        })?;
        if variants.is_empty() {
            variants = if spec.variants.is_empty() {
                file.variants.iter().map(|v| v.variant.clone()).collect()
            } else {
                spec.variants.clone()
            };
            name = file.name.clone();
            base_dir = file.base_dir.clone();
        }
        let scenarios =
            variants.iter().map(|v| file.variant(v).cloned()).collect::<Result<Vec<_>, _>>().map_err(
                |error| SweepError::Scenario { point: point.index, at: at(), error: Box::new(error) },
            )?;
        planned.push(PlannedPoint { point, scenarios });
    }
    for (i, v) in variants.iter().enumerate() {
        if variants[..i].contains(v) {
            return Err(SweepError::Spec(format!("variant '{v}' is selected twice")));
        }
    }
    let spec_hash = spec_hash(spec, &text, &variants);
    Ok(SweepPlan { spec: spec.clone(), name, base_dir, variants, points: planned, spec_hash })
}

impl SweepPlan {
    /// Points of the whole sweep.
    pub fn total_points(&self) -> u32 {
        self.points.len() as u32
    }

    /// Simulations `shard` will run.
    pub fn runs(&self, shard: Shard) -> usize {
        let points = self.points.iter().filter(|p| shard.owns(p.point.index)).count();
        points * self.variants.len() * self.spec.reps as usize
    }

    /// `sweep.json` for `shard` (`None`: the whole sweep).
    pub fn meta(&self, shard: Option<Shard>) -> SweepMeta {
        let axes = &self.spec.axes;
        let x_param = axes.iter().find(|a| a.is_numeric()).or(axes.first()).map(|a| a.path.clone());
        let slo = self.points.first().and_then(|p| p.scenarios.first()).map(|s| &s.slo);
        SweepMeta {
            schema_version: SWEEP_SCHEMA_VERSION,
            scenario: self.name.clone(),
            params: axes.iter().map(|a| a.path.clone()).collect(),
            x_param: x_param.unwrap_or_default(),
            slo: slo.map_or_else(SweepSlo::default, |s| SweepSlo {
                ttft_p90_s: s.ttft_p90_s,
                tpot_p90_s: s.tpot_p90_s,
                ttft_s: s.ttft_s,
                tpot_s: s.tpot_s,
            }),
            calibrated: self.points.iter().flat_map(|p| &p.scenarios).all(is_calibrated),
            variants: self.variants.clone(),
            reps: self.spec.reps,
            zip: self.spec.zip,
            total_points: self.total_points(),
            shard,
            spec_hash: self.spec_hash.clone(),
        }
    }

    /// The default output dir: `results/<scenario>-sweep` (with `-shard-I-of-N` for a shard).
    pub fn default_out(&self, shard: Option<Shard>) -> PathBuf {
        let base = format!("{}-sweep", self.name);
        let name = match shard {
            Some(s) if s.count > 1 => format!("{base}-shard-{}-of-{}", s.index, s.count),
            _ => base,
        };
        Path::new("results").join(name)
    }
}

/// FNV-1a (64-bit) of everything that determines a sweep's results: stable across builds and
/// machines, unlike `std`'s hasher.
fn spec_hash(spec: &SweepSpec, scenario_text: &str, variants: &[String]) -> String {
    let mut canon = format!("sweep schema {SWEEP_SCHEMA_VERSION}\nscenario\n{scenario_text}\n");
    for a in &spec.axes {
        canon.push_str(&format!("axis {a}\n"));
    }
    for o in &spec.overrides {
        canon.push_str(&format!("set {o}\n"));
    }
    canon.push_str(&format!("zip {}\nreps {}\nvariants {}\n", spec.zip, spec.reps, variants.join(",")));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canon.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
