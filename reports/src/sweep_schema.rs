//! The sweep-dir schema: `sweep.json` ([`SweepMeta`]) and `sweep.csv` ([`SweepRow`], tidy: one
//! value per row), written by the sweep command and read by the sweep charts. This module only
//! defines, writes and reads the files; it does not run sweeps nor compute confidence intervals.
//!
//! `sweep.csv` columns, in this order: `point, variant, model, metric, value, ci_low, ci_high, n`,
//! then one `param:<field path>` column per entry of [`SweepMeta::params`], in that order
//! (e.g. `param:workload.phases.0.arrival.rate`). `ci_low`/`ci_high` are empty when there is no
//! interval (one seed). Metric names: `ttft_p50`, `ttft_p90`, `ttft_p99` (and the same for `tpot_`,
//! `e2e_`, `itl_`; seconds), `request_throughput` (req/s), `output_token_throughput` (tokens/s),
//! `goodput` (req/s), `success_rate` and `slo_attainment` (fractions). `model` is a model key or
//! `all` for every model together.

use crate::error::ReportError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;

/// Version written into `sweep.json`; readers refuse others.
pub const SWEEP_SCHEMA_VERSION: u32 = 1;

/// File names inside a sweep dir.
pub mod files {
    /// The sweep's metadata.
    pub const SWEEP_JSON: &str = "sweep.json";
    /// The tidy table of results.
    pub const SWEEP_CSV: &str = "sweep.csv";
}

/// Prefix of the `sweep.csv` columns holding swept field values.
pub const PARAM_PREFIX: &str = "param:";

/// The fixed leading columns of `sweep.csv`.
pub const FIXED_COLUMNS: [&str; 8] =
    ["point", "variant", "model", "metric", "value", "ci_low", "ci_high", "n"];

/// Percentile SLO targets drawn as horizontal lines on the matching metric (`ttft_p90`, `tpot_p90`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepSlo {
    /// p90 TTFT target, seconds.
    #[serde(default)]
    pub ttft_p90_s: Option<f64>,
    /// p90 TPOT target, seconds.
    #[serde(default)]
    pub tpot_p90_s: Option<f64>,
}

impl SweepSlo {
    /// The target that applies to a metric name, if any (`ttft_p90` -> `ttft_p90_s`).
    pub fn for_metric(&self, metric: &str) -> Option<f64> {
        match metric {
            "ttft_p90" => self.ttft_p90_s,
            "tpot_p90" => self.tpot_p90_s,
            _ => None,
        }
    }
}

/// `sweep.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepMeta {
    /// [`SWEEP_SCHEMA_VERSION`] at write time.
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Swept field paths (without the `param:` prefix), in column order.
    pub params: Vec<String>,
    /// The field path used as the x axis: the first numeric one of `params`.
    pub x_param: String,
    /// SLO targets to draw, if any.
    #[serde(default)]
    pub slo: SweepSlo,
    /// True when every simulated instance used a calibrated step-time profile (false: roofline
    /// prior; charts then say "UNCALIBRATED").
    #[serde(default)]
    pub calibrated: bool,
}

/// The value of one swept field at one point: a number, or text (a policy name, a bool).
#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A numeric value.
    Num(f64),
    /// Anything else, verbatim.
    Text(String),
}

impl ParamValue {
    /// Parses a CSV cell: a finite number becomes [`ParamValue::Num`], anything else text.
    pub fn parse(cell: &str) -> ParamValue {
        match cell.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => ParamValue::Num(v),
            _ => ParamValue::Text(cell.to_string()),
        }
    }

    /// The number, when numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Num(v) => Some(*v),
            ParamValue::Text(_) => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Num(v) => write!(f, "{v}"),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

/// One row of `sweep.csv`: one metric of one model of one variant at one sweep point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    /// Sweep point index, from 0.
    pub point: u32,
    /// Variant name.
    pub variant: String,
    /// Model key, or `all`.
    pub model: String,
    /// Metric name (see the module doc).
    pub metric: String,
    /// Mean over seeds (or the single value).
    pub value: f64,
    /// Lower end of the confidence interval.
    pub ci_low: Option<f64>,
    /// Upper end of the confidence interval.
    pub ci_high: Option<f64>,
    /// Number of seeds (replicates) behind `value`.
    pub n: u32,
    /// Swept field path -> value at this point (`param:` columns).
    pub params: BTreeMap<String, ParamValue>,
}

fn opt_cell(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// Writes `sweep.json` and `sweep.csv` into `dir` (created if needed). Every row must carry a
/// value for each of `meta.params`.
pub fn write_sweep_dir(dir: &Path, meta: &SweepMeta, rows: &[SweepRow]) -> Result<(), ReportError> {
    fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
    let json_path = dir.join(files::SWEEP_JSON);
    let json = serde_json::to_string_pretty(meta).map_err(|e| ReportError::sweep(&json_path, e))?;
    fs::write(&json_path, json + "\n").map_err(ReportError::io(&json_path))?;

    let csv_path = dir.join(files::SWEEP_CSV);
    let mut w = csv::Writer::from_path(&csv_path).map_err(|e| ReportError::sweep(&csv_path, e))?;
    let mut header: Vec<String> = FIXED_COLUMNS.iter().map(|s| s.to_string()).collect();
    header.extend(meta.params.iter().map(|p| format!("{PARAM_PREFIX}{p}")));
    w.write_record(&header).map_err(|e| ReportError::sweep(&csv_path, e))?;
    for (i, r) in rows.iter().enumerate() {
        let mut rec = vec![
            r.point.to_string(),
            r.variant.clone(),
            r.model.clone(),
            r.metric.clone(),
            r.value.to_string(),
            opt_cell(r.ci_low),
            opt_cell(r.ci_high),
            r.n.to_string(),
        ];
        for p in &meta.params {
            let v = r.params.get(p).ok_or_else(|| {
                ReportError::sweep(&csv_path, format!("row {i} has no value for swept field {p}"))
            })?;
            rec.push(v.to_string());
        }
        w.write_record(&rec).map_err(|e| ReportError::sweep(&csv_path, e))?;
    }
    w.flush().map_err(ReportError::io(&csv_path))
}

/// Reads `sweep.json` (checking its version) and `sweep.csv` from `dir`.
pub fn read_sweep_dir(dir: &Path) -> Result<(SweepMeta, Vec<SweepRow>), ReportError> {
    let json_path = dir.join(files::SWEEP_JSON);
    let text = fs::read_to_string(&json_path).map_err(ReportError::io(&json_path))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ReportError::sweep(&json_path, e))?;
    let found = v.get("schema_version").and_then(|x| x.as_u64()).unwrap_or(0) as u32;
    if found != SWEEP_SCHEMA_VERSION {
        return Err(ReportError::SweepSchema { path: json_path, found, expected: SWEEP_SCHEMA_VERSION });
    }
    let meta: SweepMeta = serde_json::from_value(v).map_err(|e| ReportError::sweep(&json_path, e))?;
    if !meta.params.contains(&meta.x_param) {
        return Err(ReportError::sweep(
            &json_path,
            format!("x_param {:?} is not one of params {:?}", meta.x_param, meta.params),
        ));
    }
    let csv_path = dir.join(files::SWEEP_CSV);
    let rows = read_rows(&csv_path, &meta)?;
    Ok((meta, rows))
}

fn read_rows(path: &Path, meta: &SweepMeta) -> Result<Vec<SweepRow>, ReportError> {
    let mut r = csv::Reader::from_path(path).map_err(|e| ReportError::sweep(path, e))?;
    let header = r.headers().map_err(|e| ReportError::sweep(path, e))?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| ReportError::sweep(path, format!("no column {name}")))
    };
    let fixed: Vec<usize> = FIXED_COLUMNS.iter().map(|c| col(c)).collect::<Result<_, _>>()?;
    let params: Vec<usize> =
        meta.params.iter().map(|p| col(&format!("{PARAM_PREFIX}{p}"))).collect::<Result<_, _>>()?;
    if let Some(extra) = header
        .iter()
        .filter_map(|h| h.strip_prefix(PARAM_PREFIX))
        .find(|p| !meta.params.iter().any(|m| m == p))
    {
        return Err(ReportError::sweep(
            path,
            format!("column {PARAM_PREFIX}{extra} is not listed in sweep.json params"),
        ));
    }
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| ReportError::sweep(path, e))?;
        let cell = |k: usize| rec.get(fixed[k]).unwrap_or("");
        let num = |k: usize| -> Result<Option<f64>, ReportError> {
            let s = cell(k).trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<f64>().map(Some).map_err(|_| {
                ReportError::sweep(path, format!("line {line}: {} = {s:?} is not a number", FIXED_COLUMNS[k]))
            })
        };
        let int = |k: usize| -> Result<u32, ReportError> {
            cell(k).trim().parse::<u32>().map_err(|_| {
                ReportError::sweep(
                    path,
                    format!("line {line}: {} = {:?} is not a count", FIXED_COLUMNS[k], cell(k)),
                )
            })
        };
        let value =
            num(4)?.ok_or_else(|| ReportError::sweep(path, format!("line {line}: value is empty")))?;
        let params = meta
            .params
            .iter()
            .zip(&params)
            .map(|(p, &c)| (p.clone(), ParamValue::parse(rec.get(c).unwrap_or(""))))
            .collect();
        out.push(SweepRow {
            point: int(0)?,
            variant: cell(1).to_string(),
            model: cell(2).to_string(),
            metric: cell(3).to_string(),
            value,
            ci_low: num(5)?,
            ci_high: num(6)?,
            n: int(7)?,
            params,
        });
    }
    Ok(out)
}
