//! Sim-versus-live comparison: pairs a simulated run with a live run of the same scenario and
//! variant, and tabulates p50/p90/p99 TTFT, TPOT, ITL and E2E and the throughput (requests and
//! output tokens per second) per model with the relative error of the simulation. Reads the
//! figures from each run's `summary.json`, and ITL samples for the overlays from `tokens.csv`
//! when a run has one; draws nothing (see `charts::validation`).

use crate::error::ReportError;
use crate::input::Run;
use crate::stats::{LatencyMetric, Percentile, rel_diff};
use serde::{Deserialize, Serialize};
use sim::metrics::ModelSummary;
use sim::trace::{RequestStatus, RunDir, Source, TokenRow, files};
use std::collections::{BTreeMap, HashMap};
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

/// A throughput the validation compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThroughputMetric {
    /// Successful requests per second.
    RequestThroughput,
    /// Output tokens of successful requests per second.
    OutputTokenThroughput,
}

impl ThroughputMetric {
    /// Both, in table order.
    pub const ALL: [ThroughputMetric; 2] =
        [ThroughputMetric::RequestThroughput, ThroughputMetric::OutputTokenThroughput];

    /// Display name with its unit.
    pub fn label(self) -> &'static str {
        match self {
            ThroughputMetric::RequestThroughput => "throughput (req/s)",
            ThroughputMetric::OutputTokenThroughput => "output tokens/s",
        }
    }

    /// CSV and JSON name (`summary.json`'s field).
    pub fn key(self) -> &'static str {
        match self {
            ThroughputMetric::RequestThroughput => "request_throughput",
            ThroughputMetric::OutputTokenThroughput => "output_token_throughput",
        }
    }

    /// The value in a model summary.
    pub fn of_summary(self, m: &ModelSummary) -> f64 {
        match self {
            ThroughputMetric::RequestThroughput => m.request_throughput,
            ThroughputMetric::OutputTokenThroughput => m.output_token_throughput,
        }
    }
}

/// One throughput of a model, simulated and measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThroughputRow {
    /// Model key, or `"all"`.
    pub model: String,
    /// Which throughput.
    pub metric: ThroughputMetric,
    /// Simulated value (None when the sim run has no such model).
    pub sim: Option<f64>,
    /// Measured value.
    pub live: Option<f64>,
    /// `(sim - live) / live`.
    pub rel_error: Option<f64>,
}

/// The models of a pair: sim's order, then any model only live has, then `"all"`.
fn pair_models<'a>(sim: &'a RunDir, live: &'a RunDir) -> Vec<&'a str> {
    let mut models: Vec<&str> = sim.summary.models.iter().map(|m| m.model.as_str()).collect();
    for m in &live.summary.models {
        if !models.contains(&m.model.as_str()) {
            models.push(&m.model);
        }
    }
    models.push("all");
    models
}

fn find(run: &RunDir, model: &str) -> Option<ModelSummary> {
    if model == "all" {
        Some(run.summary.overall.clone())
    } else {
        run.summary.models.iter().find(|m| m.model == model).cloned()
    }
}

/// Compares the throughputs of `sim` and `live`: one row per model (and `"all"`) x metric.
pub fn compare_throughput(sim: &RunDir, live: &RunDir) -> Vec<ThroughputRow> {
    let mut rows = Vec::new();
    for model in pair_models(sim, live) {
        let (s, l) = (find(sim, model), find(live, model));
        for metric in ThroughputMetric::ALL {
            let sv = s.as_ref().map(|m| metric.of_summary(m));
            let lv = l.as_ref().map(|m| metric.of_summary(m));
            let rel_error = match (sv, lv) {
                (Some(a), Some(b)) => rel_diff(a, b),
                _ => None,
            };
            rows.push(ThroughputRow { model: model.to_string(), metric, sim: sv, live: lv, rel_error });
        }
    }
    rows
}

/// Inter-token gaps of each model's successful requests (every gap between consecutive chunks,
/// as `vllm bench serve` counts ITL), read from the run's `tokens.csv`; None when it has none.
pub(crate) fn itl_samples(run: &RunDir) -> Result<Option<HashMap<String, Vec<f64>>>, ReportError> {
    let path = run.path.join(files::TOKENS_CSV);
    if !path.is_file() {
        return Ok(None);
    }
    let model_of: HashMap<u64, &str> = run
        .requests
        .iter()
        .filter(|r| r.status == RequestStatus::Ok)
        .map(|r| (r.id, r.model.as_str()))
        .collect();
    let bad = |reason: String| ReportError::Parse { path: path.clone(), reason };
    let mut reader = csv::Reader::from_path(&path).map_err(|e| bad(e.to_string()))?;
    let mut last: BTreeMap<u64, f64> = BTreeMap::new();
    let mut out: HashMap<String, Vec<f64>> = HashMap::new();
    for row in reader.deserialize::<TokenRow>() {
        let t = row.map_err(|e| bad(e.to_string()))?;
        let Some(model) = model_of.get(&t.id) else { continue };
        if let Some(prev) = last.insert(t.id, t.time_s) {
            out.entry((*model).to_string()).or_default().push(t.time_s - prev);
        }
    }
    for v in out.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    Ok(Some(out))
}

/// Compares `sim` with `live` (same scenario and variant expected, not checked): one row per model
/// (sim's order, then any model only live has, then `"all"`) x latency x percentile.
pub fn compare_sim_live(sim: &RunDir, live: &RunDir) -> Vec<ErrorRow> {
    let mut rows = Vec::new();
    for model in pair_models(sim, live) {
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

/// Writes `validation.csv`: scenario, variant, model, metric, statistic, sim, live,
/// rel_error_pct (empty cells where a value is missing). Latency rows (metric ttft, tpot, itl,
/// e2e; statistic p50, p90, p99) are in seconds; throughput rows (metric request_throughput in
/// requests/s, output_token_throughput in tokens/s) have statistic `value`.
pub(crate) fn write_csv(path: &Path, runs: &[Run], pairs: &[Pair]) -> Result<(), ReportError> {
    let err = |e: csv::Error| ReportError::Io { path: path.into(), source: std::io::Error::other(e) };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record(["scenario", "variant", "model", "metric", "statistic", "sim", "live", "rel_error_pct"])
        .map_err(err)?;
    let pct = |e: Option<f64>| e.map(|e| format!("{:.2}", e * 100.0)).unwrap_or_default();
    for p in pairs {
        let (s, l) = (&runs[p.sim].dir, &runs[p.live].dir);
        let (scenario, variant) = (s.meta.scenario_name.as_str(), s.meta.variant.as_str());
        for r in compare_sim_live(s, l) {
            w.write_record([
                scenario,
                variant,
                r.model.as_str(),
                r.metric.key(),
                r.percentile.label(),
                &cell(r.sim_s),
                &cell(r.live_s),
                &pct(r.rel_error),
            ])
            .map_err(err)?;
        }
        for r in compare_throughput(s, l) {
            w.write_record([
                scenario,
                variant,
                r.model.as_str(),
                r.metric.key(),
                "value",
                &cell(r.sim),
                &cell(r.live),
                &pct(r.rel_error),
            ])
            .map_err(err)?;
        }
    }
    w.flush().map_err(ReportError::io(path))
}
