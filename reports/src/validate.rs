//! Sim-versus-live comparison: pairs a simulated run with a live run of the same scenario and
//! variant, and tabulates p50/p90/p99 TTFT, TPOT and E2E per model with the relative error of the
//! simulation. Reads the percentiles from each run's `summary.json`; draws nothing (see
//! `charts::validation`).

use crate::error::ReportError;
use crate::input::Run;
use crate::stats::{LatencyMetric, Percentile, rel_diff};
use serde::{Deserialize, Serialize};
use sim::trace::{RunDir, Source};
use std::path::Path;

/// One cell of the validation table: a percentile of a latency of a model, simulated and measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    /// Model key, or `"all"` for every model together.
    pub model: String,
    /// Which latency.
    pub metric: LatencyMetric,
    /// Which percentile.
    pub percentile: Percentile,
    /// Simulated value, seconds (None when the sim run has no sample).
    pub sim_s: Option<f64>,
    /// Measured value, seconds (None when the live run has no sample).
    pub live_s: Option<f64>,
    /// `(sim - live) / live` (None when either side is missing or live is zero).
    pub rel_error: Option<f64>,
}

/// Compares `sim` with `live` (same scenario and variant expected, not checked): one row per model
/// (sim's order, then any model only live has, then `"all"`) x latency x percentile.
pub fn compare_sim_live(sim: &RunDir, live: &RunDir) -> Vec<ErrorRow> {
    let mut models: Vec<&str> = sim.summary.models.iter().map(|m| m.model.as_str()).collect();
    for m in &live.summary.models {
        if !models.contains(&m.model.as_str()) {
            models.push(&m.model);
        }
    }
    let find = |run: &'_ RunDir, model: &str| {
        if model == "all" {
            Some(run.summary.overall.clone())
        } else {
            run.summary.models.iter().find(|m| m.model == model).cloned()
        }
    };
    let mut rows = Vec::new();
    for model in models.into_iter().chain(std::iter::once("all")) {
        let (s, l) = (find(sim, model), find(live, model));
        for metric in LatencyMetric::ALL {
            let ss = s.as_ref().and_then(|m| metric.of_summary(m).cloned());
            let ls = l.as_ref().and_then(|m| metric.of_summary(m).cloned());
            for p in Percentile::ALL {
                let sim_s = ss.as_ref().map(|x| p.of(x));
                let live_s = ls.as_ref().map(|x| p.of(x));
                let rel_error = match (sim_s, live_s) {
                    (Some(a), Some(b)) => rel_diff(a, b),
                    _ => None,
                };
                rows.push(ErrorRow {
                    model: model.to_string(),
                    metric,
                    percentile: p,
                    sim_s,
                    live_s,
                    rel_error,
                });
            }
        }
    }
    rows
}

/// A simulated run and the live run it is validated against (indices into the runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pair {
    /// The simulated run.
    pub sim: usize,
    /// The live run.
    pub live: usize,
}

/// Pairs each live run with the first sim run of the same scenario name and variant.
pub(crate) fn pairs(runs: &[Run]) -> Vec<Pair> {
    runs.iter()
        .filter(|l| l.dir.meta.source == Source::Live)
        .filter_map(|l| {
            runs.iter()
                .find(|s| {
                    s.dir.meta.source == Source::Sim
                        && s.dir.meta.scenario_name == l.dir.meta.scenario_name
                        && s.dir.meta.variant == l.dir.meta.variant
                })
                .map(|s| Pair { sim: s.index, live: l.index })
        })
        .collect()
}

fn cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

/// Writes `validation.csv`: scenario, variant, model, metric, percentile, sim_s, live_s,
/// rel_error_pct (empty cells where a value is missing).
pub(crate) fn write_csv(path: &Path, runs: &[Run], pairs: &[Pair]) -> Result<(), ReportError> {
    let err = |e: csv::Error| ReportError::Io { path: path.into(), source: std::io::Error::other(e) };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record([
        "scenario",
        "variant",
        "model",
        "metric",
        "percentile",
        "sim_s",
        "live_s",
        "rel_error_pct",
    ])
    .map_err(err)?;
    for p in pairs {
        let (s, l) = (&runs[p.sim].dir, &runs[p.live].dir);
        for r in compare_sim_live(s, l) {
            w.write_record([
                s.meta.scenario_name.as_str(),
                s.meta.variant.as_str(),
                r.model.as_str(),
                r.metric.key(),
                r.percentile.label(),
                &cell(r.sim_s),
                &cell(r.live_s),
                &r.rel_error.map(|e| format!("{:.2}", e * 100.0)).unwrap_or_default(),
            ])
            .map_err(err)?;
        }
    }
    w.flush().map_err(ReportError::io(path))
}
