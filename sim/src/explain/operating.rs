//! The operating point of the *from* variant, per model: how busy it runs (mean and peak KV
//! usage, the longest waiting queue) against its `[slo]` p90 targets, and the load multiple at
//! which it stops meeting them (`plan`'s bisection, `plan::bisect_load`, on the *from* variant
//! with every phase's load scaled by `plan::scale_load`). A difference measured near that multiple
//! is large and fragile: a little more load and any setting looks decisive.
//!
//! It runs replication 0's request stream (the explanation's first seed), one bisection per model
//! on worker threads; the result goes to `operating-point.json`, apart from `explain.json`, so a
//! merged explanation stays byte-identical to an unsharded one.

use super::{ExplainError, ExplainPlan};
use crate::metrics::ModelSummary;
use crate::plan::{bisect_load, scale_load};
use crate::runner::simulate_summary;
use crate::simulation::{SimError, SimOptions};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Least success rate a model needs to count as meeting its targets (`plan`'s `--min-success`
/// default).
pub const MIN_SUCCESS: f64 = 0.99;

/// Lowest load multiple the search goes down to for a model missing its targets at 1x.
pub const MIN_LOAD: f64 = 1.0 / 16.0;

/// One model's operating point on the *from* variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// Model key.
    pub model: String,
    /// p90 TTFT at the scenario's load, seconds.
    pub ttft_p90_s: Option<f64>,
    /// The `[slo] ttft_p90_s` target.
    pub ttft_slo_s: Option<f64>,
    /// p90 TPOT at the scenario's load, seconds.
    pub tpot_p90_s: Option<f64>,
    /// The `[slo] tpot_p90_s` target.
    pub tpot_slo_s: Option<f64>,
    /// Mean KV usage over the model's instances (0..1).
    pub mean_kv_usage: f64,
    /// Peak KV usage of its busiest instance (0..1).
    pub peak_kv_usage: f64,
    /// Longest waiting queue of any of its instances.
    pub peak_waiting: u32,
    /// Whether it meets its targets at the scenario's load.
    pub meets_slo: bool,
    /// Highest load multiple found to meet them (None: misses at 1x already, or no target).
    pub sustained: Option<f64>,
    /// Lowest multiple found to miss (None: held up to the search's bound, or no target).
    pub breaks_at: Option<f64>,
}

fn meets(m: Option<&ModelSummary>, ttft: Option<f64>, tpot: Option<f64>) -> bool {
    let Some(m) = m else { return true };
    let ok = |target: Option<f64>, p90: Option<f64>| match (target, p90) {
        (Some(t), Some(v)) => v <= t,
        (Some(_), None) => m.requests == 0,
        (None, _) => true,
    };
    ok(ttft, m.ttft.as_ref().map(|s| s.p90))
        && ok(tpot, m.tpot.as_ref().map(|s| s.p90))
        && m.success_rate >= MIN_SUCCESS
}

/// Every model's operating point, bisecting up to `max_load` x the load in `steps` steps.
pub fn operating_points(
    plan: &ExplainPlan,
    max_load: f64,
    steps: u32,
) -> Result<Vec<OperatingPoint>, ExplainError> {
    let Some(base) = plan.sweep.points.first().and_then(|p| p.scenarios.first()) else {
        return Ok(Vec::new());
    };
    let dir = &plan.sweep.base_dir;
    let sim_err =
        |e: SimError| ExplainError::Spec(format!("operating point of variant `{}`: {e}", plan.spec.from));
    let at = |scale: f64| -> Result<crate::metrics::RunSummary, SimError> {
        let mut s = base.clone();
        scale_load(&mut s.workload, scale);
        simulate_summary(&s, dir, SimOptions::default()).map(|r| r.summary)
    };
    let first = at(1.0).map_err(sim_err)?;
    let (ttft, tpot) = (base.slo.ttft_p90_s, base.slo.tpot_p90_s);
    let models: Vec<&ModelSummary> = first.models.iter().collect();
    models
        .par_iter()
        .map(|m| {
            let mine: Vec<_> = first.instances.iter().filter(|i| i.model == m.model).collect();
            let meets_slo = meets(Some(m), ttft, tpot);
            let has_target = ttft.is_some() || tpot.is_some();
            let point = |sustained: Option<f64>, breaks_at: Option<f64>| OperatingPoint {
                model: m.model.clone(),
                ttft_p90_s: m.ttft.as_ref().map(|s| s.p90),
                ttft_slo_s: ttft,
                tpot_p90_s: m.tpot.as_ref().map(|s| s.p90),
                tpot_slo_s: tpot,
                mean_kv_usage: mine.iter().map(|i| i.mean_kv_usage).sum::<f64>() / mine.len().max(1) as f64,
                peak_kv_usage: mine.iter().map(|i| i.peak_kv_usage).fold(0.0, f64::max),
                peak_waiting: mine.iter().map(|i| i.peak_waiting).max().unwrap_or(0),
                meets_slo,
                sustained,
                breaks_at,
            };
            let (sustained, breaks_at) = if !has_target {
                (None, None)
            } else {
                let passes = |scale: f64| {
                    at(scale).map(|r| meets(r.models.iter().find(|x| x.model == m.model), ttft, tpot))
                };
                // Missing at 1x: halve the load until it holds (down to MIN_LOAD), then bisect
                // between that and 1x with the same search.
                let (mut base, mut top) = (1.0, max_load);
                if !meets_slo {
                    top = 1.0;
                    base = 0.5;
                    while !passes(base).map_err(sim_err)? {
                        base /= 2.0;
                        if base < MIN_LOAD {
                            return Ok(point(None, Some(base * 2.0)));
                        }
                    }
                }
                let (h, _) = bisect_load(base, top, steps, passes).map_err(sim_err)?;
                (Some(h.sustained), h.fails_at)
            };
            Ok(point(sustained, breaks_at))
        })
        .collect()
}

/// The operating points as a table, with a note on how to read them.
pub fn operating_table(points: &[OperatingPoint], from: &str) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0}", v * 1e3));
    let mut out = format!(
        "operating point of `{from}` (seed 0): p90s against the [slo] targets, KV use, longest queue, and \
         the load multiple where the targets break\n  {:<22} {:>16} {:>16} {:>8} {:>8} {:>6}  {}\n",
        "model", "TTFT p90/SLO ms", "TPOT p90/SLO ms", "mean KV", "peak KV", "queue", "SLO holds up to"
    );
    for p in points {
        let load = match (p.meets_slo, p.sustained, p.breaks_at) {
            (false, Some(s), Some(b)) => format!("{s:.2}x: misses at 1x (breaks by {b:.2}x)"),
            (false, _, _) => format!("misses even at {MIN_LOAD}x"),
            (true, Some(s), Some(b)) => format!("{s:.2}x (breaks by {b:.2}x)"),
            (true, Some(s), None) => format!("{s:.2}x and beyond (search bound)"),
            _ => "- (no target)".to_string(),
        };
        out.push_str(&format!(
            "  {:<22} {:>16} {:>16} {:>7.0}% {:>7.0}% {:>6}  {}\n",
            p.model,
            format!("{}/{}", ms(p.ttft_p90_s), ms(p.ttft_slo_s)),
            format!("{}/{}", ms(p.tpot_p90_s), ms(p.tpot_slo_s)),
            p.mean_kv_usage * 100.0,
            p.peak_kv_usage * 100.0,
            p.peak_waiting,
            load
        ));
    }
    out
}
