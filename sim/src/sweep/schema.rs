//! The sweep-dir schema: `sweep.json` ([`SweepMeta`]) and `sweep.csv` ([`SweepRow`], tidy: one
//! value per row). The reports crate reads these files with its own copy of the structs
//! (`reports::sweep_schema`); the two must agree field for field and column for column.
//!
//! `sweep.csv` columns, in this order: `point, variant, model, metric, value, ci_low, ci_high, n`,
//! then one `param:<field path>` column per entry of [`SweepMeta::params`], in that order.
//! `value` is the mean over replications; `ci_low`/`ci_high` bound its 95% Student-t interval and
//! are empty with one replication; `n` counts the replications that had the metric. Metric names
//! are listed in `sweep::metrics::METRICS`; `model` is a model key or `all`. Rows are ordered by
//! point, then variant (scenario file order), then model (`all` first, then scenario order), then
//! metric. This module only defines, writes and reads the files.

use super::SweepError;
use super::shard::Shard;
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
    /// Run dirs (with `--run-dirs`), one per point, variant and replication.
    pub const RUNS_DIR: &str = "runs";
}

/// Prefix of the `sweep.csv` columns holding swept field values.
pub const PARAM_PREFIX: &str = "param:";

/// The fixed leading columns of `sweep.csv`.
pub const FIXED_COLUMNS: [&str; 8] =
    ["point", "variant", "model", "metric", "value", "ci_low", "ci_high", "n"];

/// The scenario's SLOs, as charts draw them (`ttft_p90_s`, `tpot_p90_s`) and as goodput counts
/// them (`ttft_s`, `tpot_s`, per request).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepSlo {
    /// p90 TTFT target, seconds.
    #[serde(default)]
    pub ttft_p90_s: Option<f64>,
    /// p90 TPOT target, seconds.
    #[serde(default)]
    pub tpot_p90_s: Option<f64>,
    /// Per-request TTFT bound behind `goodput`, seconds.
    #[serde(default)]
    pub ttft_s: Option<f64>,
    /// Per-request TPOT bound behind `goodput`, seconds.
    #[serde(default)]
    pub tpot_s: Option<f64>,
}

impl SweepSlo {
    /// The percentile target that applies to a metric name, if any (`ttft_p90` -> `ttft_p90_s`).
    pub fn for_metric(&self, metric: &str) -> Option<f64> {
        match metric {
            "ttft_p90" => self.ttft_p90_s,
            "tpot_p90" => self.tpot_p90_s,
            _ => None,
        }
    }
}

/// `sweep.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepMeta {
    /// [`SWEEP_SCHEMA_VERSION`] at write time.
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Swept field paths (without the `param:` prefix), in column order.
    pub params: Vec<String>,
    /// The field path used as the x axis: the first numeric one of `params` (else the first).
    pub x_param: String,
    /// SLO targets of the scenario (at point 0).
    #[serde(default)]
    pub slo: SweepSlo,
    /// True when every simulated instance used a calibrated step-time profile.
    #[serde(default)]
    pub calibrated: bool,
    /// Variants run at every point, in order.
    pub variants: Vec<String>,
    /// Replications per point and variant (seeds: scenario seed + 0..reps).
    pub reps: u32,
    /// Whether the axes were zipped rather than crossed.
    pub zip: bool,
    /// Points of the whole sweep (all shards).
    pub total_points: u32,
    /// The shard this dir holds; `None` for a whole (or merged) sweep.
    pub shard: Option<Shard>,
    /// Hash of everything that determines the results (scenario text, axes, overrides, variants,
    /// reps): shards merge only when theirs agree.
    pub spec_hash: String,
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

    /// The value of a swept TOML field: numbers as numbers, strings verbatim, others as TOML.
    pub fn from_toml(v: &toml::Value) -> ParamValue {
        match v {
            toml::Value::Integer(i) => ParamValue::Num(*i as f64),
            toml::Value::Float(f) => ParamValue::Num(*f),
            toml::Value::String(s) => ParamValue::Text(s.clone()),
            other => ParamValue::Text(other.to_string()),
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
    /// Metric name.
    pub metric: String,
    /// Mean over replications (or the single value).
    pub value: f64,
    /// Lower end of the confidence interval.
    pub ci_low: Option<f64>,
    /// Upper end of the confidence interval.
    pub ci_high: Option<f64>,
    /// Number of replications behind `value`.
    pub n: u32,
    /// Swept field path -> value at this point (`param:` columns).
    pub params: BTreeMap<String, ParamValue>,
}

/// The header of `sweep.csv` for `meta`.
pub fn header(meta: &SweepMeta) -> Vec<String> {
    let mut header: Vec<String> = FIXED_COLUMNS.iter().map(|s| s.to_string()).collect();
    header.extend(meta.params.iter().map(|p| format!("{PARAM_PREFIX}{p}")));
    header
}

fn opt_cell(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// Writes `sweep.json`.
pub fn write_meta(dir: &Path, meta: &SweepMeta) -> Result<(), SweepError> {
    fs::create_dir_all(dir).map_err(SweepError::io(dir))?;
    let path = dir.join(files::SWEEP_JSON);
    let json = serde_json::to_string_pretty(meta).map_err(SweepError::malformed(&path))?;
    fs::write(&path, json + "\n").map_err(SweepError::io(&path))
}

/// Writes `sweep.json` and `sweep.csv` into `dir` (created if needed). Every row must carry a
/// value for each of `meta.params`.
pub fn write_sweep_dir(dir: &Path, meta: &SweepMeta, rows: &[SweepRow]) -> Result<(), SweepError> {
    write_meta(dir, meta)?;
    let path = dir.join(files::SWEEP_CSV);
    let mut w = csv::Writer::from_path(&path).map_err(SweepError::malformed(&path))?;
    w.write_record(header(meta)).map_err(SweepError::malformed(&path))?;
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
            let v = r.params.get(p).ok_or_else(|| SweepError::Malformed {
                path: path.clone(),
                reason: format!("row {i} has no value for swept field {p}"),
            })?;
            rec.push(v.to_string());
        }
        w.write_record(&rec).map_err(SweepError::malformed(&path))?;
    }
    w.flush().map_err(SweepError::io(&path))
}

/// Reads `sweep.json` from `dir`, refusing other schema versions and dirs that are not sweep dirs.
pub fn read_meta(dir: &Path) -> Result<SweepMeta, SweepError> {
    let path = dir.join(files::SWEEP_JSON);
    if !path.is_file() {
        let what = if dir.join(crate::trace::files::RUN_JSON).is_file() {
            "is a run dir (it has run.json), not a sweep dir"
        } else if dir.is_dir() {
            "has no sweep.json, so it is not a sweep dir"
        } else {
            "does not exist"
        };
        return Err(SweepError::Malformed {
            path: dir.to_path_buf(),
            reason: format!("{what}; pass the --out dirs written by `modelsguard sweep`"),
        });
    }
    let text = fs::read_to_string(&path).map_err(SweepError::io(&path))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(SweepError::malformed(&path))?;
    let found = v.get("schema_version").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if found != u64::from(SWEEP_SCHEMA_VERSION) {
        return Err(SweepError::SchemaVersion {
            path,
            found: u32::try_from(found).unwrap_or(u32::MAX),
            expected: SWEEP_SCHEMA_VERSION,
        });
    }
    serde_json::from_value(v).map_err(SweepError::malformed(&path))
}

/// Reads `sweep.json` and `sweep.csv` from `dir`.
pub fn read_sweep_dir(dir: &Path) -> Result<(SweepMeta, Vec<SweepRow>), SweepError> {
    let meta = read_meta(dir)?;
    let path = dir.join(files::SWEEP_CSV);
    let (head, records) = read_records(&path)?;
    if head.iter().collect::<Vec<_>>() != header(&meta) {
        return Err(SweepError::Malformed {
            path,
            reason: format!("the header does not match sweep.json: expected {}", header(&meta).join(",")),
        });
    }
    let mut rows = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        let bad = |col: &str| SweepError::Malformed {
            path: path.clone(),
            reason: format!(
                "line {}: bad {col} {:?}",
                i + 2,
                rec.get(FIXED_COLUMNS.iter().position(|c| *c == col).unwrap_or(0))
            ),
        };
        let cell = |k: usize| rec.get(k).unwrap_or("");
        let opt = |k: usize| -> Result<Option<f64>, SweepError> {
            if cell(k).is_empty() {
                Ok(None)
            } else {
                cell(k).parse().map(Some).map_err(|_| bad(FIXED_COLUMNS[k]))
            }
        };
        rows.push(SweepRow {
            point: cell(0).parse().map_err(|_| bad("point"))?,
            variant: cell(1).to_string(),
            model: cell(2).to_string(),
            metric: cell(3).to_string(),
            value: cell(4).parse().map_err(|_| bad("value"))?,
            ci_low: opt(5)?,
            ci_high: opt(6)?,
            n: cell(7).parse().map_err(|_| bad("n"))?,
            params: meta
                .params
                .iter()
                .enumerate()
                .map(|(k, p)| (p.clone(), ParamValue::parse(cell(FIXED_COLUMNS.len() + k))))
                .collect(),
        });
    }
    Ok((meta, rows))
}

/// The header and raw records of a `sweep.csv`, cells verbatim (what `merge` reorders).
pub fn read_records(path: &Path) -> Result<(csv::StringRecord, Vec<csv::StringRecord>), SweepError> {
    let mut r = csv::Reader::from_path(path).map_err(SweepError::malformed(path))?;
    let head = r.headers().map_err(SweepError::malformed(path))?.clone();
    let records = r.records().collect::<Result<Vec<_>, _>>().map_err(SweepError::malformed(path))?;
    Ok((head, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SweepMeta {
        SweepMeta {
            schema_version: SWEEP_SCHEMA_VERSION,
            scenario: "s".into(),
            params: vec!["workload.rate".into(), "router.policy".into()],
            x_param: "workload.rate".into(),
            slo: SweepSlo { ttft_p90_s: Some(1.0), ..SweepSlo::default() },
            calibrated: false,
            variants: vec!["a".into()],
            reps: 2,
            zip: false,
            total_points: 1,
            shard: None,
            spec_hash: "0123".into(),
        }
    }

    fn row(metric: &str, ci: Option<(f64, f64)>) -> SweepRow {
        SweepRow {
            point: 0,
            variant: "a".into(),
            model: "all".into(),
            metric: metric.into(),
            value: 0.1 + 0.2,
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
            n: 2,
            params: [
                ("workload.rate".to_string(), ParamValue::Num(2.5)),
                ("router.policy".to_string(), ParamValue::Text("queue_aware".into())),
            ]
            .into(),
        }
    }

    #[test]
    fn a_sweep_dir_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![row("ttft_p90", Some((0.25, 0.35))), row("goodput", None)];
        write_sweep_dir(dir.path(), &meta(), &rows).unwrap();
        let text = fs::read_to_string(dir.path().join(files::SWEEP_CSV)).unwrap();
        assert!(text.starts_with(
            "point,variant,model,metric,value,ci_low,ci_high,n,param:workload.rate,param:router.policy\n"
        ));
        assert!(text.contains("0,a,all,goodput,0.30000000000000004,,,2,2.5,queue_aware\n"), "{text}");
        let (m, back) = read_sweep_dir(dir.path()).unwrap();
        assert_eq!(m, meta());
        assert_eq!(back, rows);
    }

    #[test]
    fn another_schema_version_is_refused_with_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = meta();
        m.schema_version = 0;
        write_meta(dir.path(), &m).unwrap();
        let e = read_meta(dir.path()).unwrap_err().to_string();
        assert!(e.contains("sweep schema version 0, this modelsguard reads version 1"), "{e}");
    }

    #[test]
    fn a_run_dir_is_not_taken_for_a_sweep_dir() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("run.json"), "{}").unwrap();
        let e = read_meta(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a run dir"), "{e}");
    }

    #[test]
    fn param_values_print_as_the_reports_crate_parses_them() {
        for v in [toml::Value::Integer(2), toml::Value::Float(2.5), toml::Value::String("x".into())] {
            let p = ParamValue::from_toml(&v);
            assert_eq!(ParamValue::parse(&p.to_string()), p);
        }
        assert_eq!(ParamValue::from_toml(&toml::Value::Integer(40)).to_string(), "40");
        assert_eq!(ParamValue::from_toml(&toml::Value::Boolean(true)).to_string(), "true");
    }
}
