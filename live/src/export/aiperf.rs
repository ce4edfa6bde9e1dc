//! Writes aiperf's exports from what the live harness recorded, so aiperf's tooling reads a live
//! run: `profile_export.jsonl` (one `MetricRecordInfo` per request, streamed as requests finish)
//! and, at the end, `profile_export_aiperf.json` / `.csv` (per-metric avg, min, max, p1..p99,
//! std).
//!
//! Follows aiperf 0.13.0 (PyPI `aiperf`; source github.com/ai-dynamo/aiperf, paths below; the
//! exports of that version are checked by reading them with its own pydantic models, see the
//! README's interop section):
//! - records: `aiperf/common/models/record_models.py` (`MetricRecordInfo`, `MetricRecordMetadata`,
//!   `MetricValue`) and `aiperf/common/models/error_models.py` (`ErrorDetails`,
//!   `ErrorDetailsCount`); metrics in display units (times in ms) as
//!   `docs/tutorials/working-with-profile-exports.md` shows;
//! - metric definitions: `aiperf/metrics/types/*.py` (TTFT = first response - request start;
//!   ICL = gaps between responses; ITL = (request latency - TTFT) / (OSL - 1); per-user token
//!   throughput = 1 / ITL; benchmark duration = last response - first request);
//! - statistics: `aiperf/metrics/metric_dicts.py` `MetricArray.to_result` (numpy's linear
//!   percentiles, population std);
//! - aggregate files: `aiperf/common/models/export_models.py` (`JsonExportData`,
//!   `JsonMetricResult` with `count` and `sum`; fields left out when unset) and
//!   `aiperf/exporters/metrics_csv_exporter.py` (a section of metrics with percentiles, a blank
//!   row, a `Metric,Value` section; rows sorted by tag; numbers with two decimals; `\r\n` line
//!   ends as Python's `csv.writer`).
//!
//! Requests are "responses" in aiperf's sense when they carried text (the harness's chunks).
//! Failed requests are written as error records (`error_isl` only, `error` set). Fields aiperf
//! fills from its own workers (`worker_id`, `record_processor_id`) name this harness. Keeps a few
//! numbers per request for the statistics (exact percentiles, as aiperf computes them).

use super::{Experiment, SendSpan};
use crate::client::RequestRecord;
use crate::run::rfc3339;
use serde_json::{Map, Value, json};
use sim::SimTime;
use sim::trace::{RequestRow, RequestStatus};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Per-request records, one JSON object a line.
pub const PROFILE_EXPORT_JSONL: &str = "profile_export.jsonl";
/// Aggregate statistics, JSON.
pub const PROFILE_EXPORT_AIPERF_JSON: &str = "profile_export_aiperf.json";
/// Aggregate statistics, CSV.
pub const PROFILE_EXPORT_AIPERF_CSV: &str = "profile_export_aiperf.csv";

/// The key of the extra object (per record: model and max_tokens; in the aggregate file: the
/// experiment) that aiperf's models accept and ignore, and `modelsguard import` reads.
pub const OWN_FIELDS_KEY: &str = "modelsguard";

/// aiperf's `STAT_KEYS` (`aiperf/common/constants.py`, 0.13.0), in its order.
pub const STAT_KEYS: [&str; 14] =
    ["avg", "min", "max", "sum", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "std"];

/// A per-request metric aiperf exports with statistics: tag, header, display unit.
const RECORD_METRICS: [(&str, &str, &str); 9] = [
    ("time_to_first_token", "Time to First Token", "ms"),
    ("time_to_second_token", "Time to Second Token", "ms"),
    ("request_latency", "Request Latency", "ms"),
    ("inter_token_latency", "Inter Token Latency", "ms"),
    ("inter_chunk_latency", "Inter Chunk Latency", "ms"),
    ("output_token_throughput_per_user", "Output Token Throughput Per User", "tokens/sec/user"),
    ("output_sequence_length", "Output Sequence Length", "tokens"),
    ("input_sequence_length", "Input Sequence Length", "tokens"),
    ("output_token_count", "Output Token Count", "tokens"),
];

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Streams `profile_export.jsonl`; [`AiperfWriter::finish`] writes the aggregate files.
pub struct AiperfWriter {
    dir: PathBuf,
    jsonl: BufWriter<File>,
    epoch_offset_ns: u64,
    samples: BTreeMap<&'static str, Vec<f64>>,
    ok: u64,
    error_isl: Vec<f64>,
    errors: BTreeMap<(Option<u16>, String, String), u64>,
    first_start_ns: Option<u64>,
    last_end_ns: Option<u64>,
    experiment: Experiment,
    sends: SendSpan,
}

impl AiperfWriter {
    /// Creates `dir/profile_export.jsonl`. `epoch_offset_ns` is the run start in nanoseconds since
    /// the Unix epoch; `experiment` is the load, written to the aggregate file's `modelsguard` key.
    pub fn create(dir: &Path, experiment: Experiment, epoch_offset_ns: u64) -> io::Result<Self> {
        let path = dir.join(PROFILE_EXPORT_JSONL);
        let f = File::create(&path).map_err(|e| annotate(&path, e))?;
        Ok(AiperfWriter {
            dir: dir.to_path_buf(),
            jsonl: BufWriter::new(f),
            epoch_offset_ns,
            samples: BTreeMap::new(),
            ok: 0,
            error_isl: Vec::new(),
            errors: BTreeMap::new(),
            first_start_ns: None,
            last_end_ns: None,
            experiment,
            sends: SendSpan::default(),
        })
    }

    fn sample(&mut self, tag: &'static str, v: f64) {
        self.samples.entry(tag).or_default().push(v);
    }

    /// Appends the record of one finished request (ok or not).
    pub fn add(&mut self, row: &RequestRow, rec: &RequestRecord) -> io::Result<()> {
        let send = rec.send.unwrap_or_else(|| SimTime::from_secs_f64(row.send_s));
        let start_ns = self.epoch_offset_ns.saturating_add(send.0);
        self.sends.add(start_ns);
        let end_ns = self.epoch_offset_ns.saturating_add(rec.end.unwrap_or(send).0);
        let mut metrics = Map::new();
        let mut put = |tag: &str, value: Value, unit: &str| {
            metrics.insert(tag.to_string(), json!({"value": value, "unit": unit}));
        };
        let error = if row.status == RequestStatus::Ok {
            let isl = f64::from(row.prompt_tokens);
            let osl = f64::from(row.output_tokens);
            let latency = ms(end_ns.saturating_sub(start_ns));
            put("input_sequence_length", json!(row.prompt_tokens), "tokens");
            put("request_latency", json!(latency), "ms");
            put("output_token_count", json!(row.output_tokens), "tokens");
            put("output_sequence_length", json!(row.output_tokens), "tokens");
            let mut samples = vec![
                ("input_sequence_length", isl),
                ("request_latency", latency),
                ("output_token_count", osl),
                ("output_sequence_length", osl),
            ];
            if let Some(first) = rec.chunks.first() {
                let ttft = ms(first.time.0.saturating_sub(send.0));
                put("time_to_first_token", json!(ttft), "ms");
                samples.push(("time_to_first_token", ttft));
                let icl: Vec<f64> =
                    rec.chunks.windows(2).map(|w| ms(w[1].time.0.saturating_sub(w[0].time.0))).collect();
                if let Some(&ttst) = icl.first() {
                    put("time_to_second_token", json!(ttst), "ms");
                    samples.push(("time_to_second_token", ttst));
                    put("inter_chunk_latency", json!(icl), "ms");
                    samples.extend(icl.iter().map(|&v| ("inter_chunk_latency", v)));
                }
                if row.output_tokens >= 2 {
                    let itl = (latency - ttft) / (osl - 1.0);
                    put("inter_token_latency", json!(itl), "ms");
                    samples.push(("inter_token_latency", itl));
                    if itl > 0.0 {
                        put("output_token_throughput_per_user", json!(1e3 / itl), "tokens/sec/user");
                        samples.push(("output_token_throughput_per_user", 1e3 / itl));
                    }
                }
            }
            for (tag, v) in samples {
                self.sample(tag, v);
            }
            self.ok += 1;
            self.first_start_ns = Some(self.first_start_ns.map_or(start_ns, |f| f.min(start_ns)));
            self.last_end_ns = Some(self.last_end_ns.map_or(end_ns, |l| l.max(end_ns)));
            Value::Null
        } else {
            put("error_isl", json!(row.prompt_tokens), "tokens");
            self.error_isl.push(f64::from(row.prompt_tokens));
            let kind = format!("{:?}", row.status);
            *self.errors.entry((rec.http_status, kind.clone(), row.error.clone())).or_default() += 1;
            json!({"code": rec.http_status, "type": kind, "message": row.error})
        };
        let line = json!({
            "metadata": {
                "session_num": row.id,
                "x_request_id": Value::Null,
                "x_correlation_id": Value::Null,
                "conversation_id": Value::Null,
                "turn_index": 0,
                "request_start_ns": start_ns,
                "request_ack_ns": Value::Null,
                "request_end_ns": end_ns,
                "worker_id": "modelsguard",
                "record_processor_id": "modelsguard",
                "benchmark_phase": "profiling",
                "was_cancelled": false,
                "cancellation_time_ns": Value::Null,
            },
            "metrics": metrics,
            "error": error,
            // Extra fields are allowed by aiperf's models; `modelsguard import` reads them.
            OWN_FIELDS_KEY: {"model": row.model, "max_tokens": row.max_tokens},
        });
        let path = self.dir.join(PROFILE_EXPORT_JSONL);
        writeln!(self.jsonl, "{line}").map_err(|e| annotate(&path, e))
    }

    /// Flushes the records and writes `profile_export_aiperf.json` and `.csv`; returns the dir.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        let path = self.dir.join(PROFILE_EXPORT_JSONL);
        self.jsonl.flush().map_err(|e| annotate(&path, e))?;
        let (stats, system) = self.results();
        let mut json = Map::new();
        for (tag, r) in stats.iter().chain(system.iter()) {
            json.insert(tag.to_string(), r.to_json());
        }
        json.insert("was_cancelled".into(), json!(false));
        json.insert(OWN_FIELDS_KEY.into(), json!({"experiment": self.experiment.to_json(&self.sends)}));
        let summary: Vec<Value> = self
            .errors
            .iter()
            .map(|((code, kind, msg), n)| {
                json!({"error_details": {"code": code, "type": kind, "message": msg}, "count": n})
            })
            .collect();
        json.insert("error_summary".into(), json!(summary));
        let time = |ns: u64| json!(rfc3339(UNIX_EPOCH + Duration::from_nanos(ns)));
        if let (Some(s), Some(e)) = (self.first_start_ns, self.last_end_ns) {
            json.insert("start_time".into(), time(s));
            json.insert("end_time".into(), time(e));
        }
        let json_path = self.dir.join(PROFILE_EXPORT_AIPERF_JSON);
        let text = serde_json::to_string_pretty(&Value::Object(json)).map_err(io::Error::other)?;
        std::fs::write(&json_path, text + "\n").map_err(|e| annotate(&json_path, e))?;
        let csv_path = self.dir.join(PROFILE_EXPORT_AIPERF_CSV);
        std::fs::write(&csv_path, csv_text(&stats, &system)).map_err(|e| annotate(&csv_path, e))?;
        Ok(self.dir)
    }

    /// The metrics with statistics and the single-valued ones, each sorted by tag.
    fn results(&self) -> (BTreeMap<&'static str, MetricStats>, BTreeMap<&'static str, MetricStats>) {
        let mut stats = BTreeMap::new();
        for (tag, header, unit) in RECORD_METRICS {
            if let Some(s) = self.samples.get(tag).and_then(|v| MetricStats::of(header, unit, v)) {
                stats.insert(tag, s);
            }
        }
        if let Some(s) = MetricStats::of("Error Input Sequence Length", "tokens", &self.error_isl) {
            stats.insert("error_isl", s);
        }
        let mut system = BTreeMap::new();
        let mut one = |tag: &'static str, header: &str, unit: &str, v: f64| {
            system.insert(tag, MetricStats::single(header, unit, v));
        };
        let sum = |tag: &str| self.samples.get(tag).map_or(0.0, |v| v.iter().sum::<f64>());
        if self.ok > 0 {
            one("request_count", "Request Count", "requests", self.ok as f64);
            one("total_isl", "Total Input Sequence Length", "tokens", sum("input_sequence_length"));
            one("total_osl", "Total Output Sequence Length", "tokens", sum("output_sequence_length"));
            one("total_output_tokens", "Total Output Tokens", "tokens", sum("output_token_count"));
        }
        if let (Some(s), Some(e)) = (self.first_start_ns, self.last_end_ns) {
            one("min_request_timestamp", "Minimum Request Timestamp", "ns", s as f64);
            one("max_response_timestamp", "Maximum Response Timestamp", "ns", e as f64);
            let duration_s = e.saturating_sub(s) as f64 / 1e9;
            one("benchmark_duration", "Benchmark Duration", "sec", duration_s);
            if duration_s > 0.0 {
                one("request_throughput", "Request Throughput", "requests/sec", self.ok as f64 / duration_s);
                let tokens = sum("output_sequence_length");
                one("output_token_throughput", "Output Token Throughput", "tokens/sec", tokens / duration_s);
            }
        }
        if !self.error_isl.is_empty() {
            one("error_request_count", "Error Request Count", "requests", self.error_isl.len() as f64);
            one(
                "total_error_isl",
                "Total Error Input Sequence Length",
                "tokens",
                self.error_isl.iter().sum(),
            );
        }
        (stats, system)
    }
}

/// One metric's result: header, unit and the statistics present (single-valued metrics only
/// have `avg`).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricStats {
    /// aiperf's header, e.g. "Time to First Token".
    pub header: String,
    /// Display unit, e.g. "ms".
    pub unit: String,
    /// `(stat key, value)` in [`STAT_KEYS`] order.
    pub values: Vec<(&'static str, f64)>,
    /// Number of samples (record metrics only).
    pub count: Option<usize>,
}

impl MetricStats {
    /// Statistics of `samples` as aiperf's `MetricArray.to_result` computes them; `None` when
    /// empty.
    pub fn of(header: &str, unit: &str, samples: &[f64]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let (min, max) = (*sorted.first()?, *sorted.last()?);
        let avg = sorted.iter().sum::<f64>() / n;
        let std = (sorted.iter().map(|v| (v - avg).powi(2)).sum::<f64>() / n).sqrt();
        let p = |q: f64| sim::metrics::percentile(&sorted, q).unwrap_or(f64::NAN);
        let values = vec![
            ("avg", avg),
            ("min", min),
            ("max", max),
            ("sum", sorted.iter().sum()),
            ("p1", p(1.0)),
            ("p5", p(5.0)),
            ("p10", p(10.0)),
            ("p25", p(25.0)),
            ("p50", p(50.0)),
            ("p75", p(75.0)),
            ("p90", p(90.0)),
            ("p95", p(95.0)),
            ("p99", p(99.0)),
            ("std", std),
        ];
        Some(MetricStats { header: header.into(), unit: unit.into(), values, count: Some(samples.len()) })
    }

    fn single(header: &str, unit: &str, v: f64) -> Self {
        MetricStats { header: header.into(), unit: unit.into(), values: vec![("avg", v)], count: None }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("unit".into(), json!(self.unit));
        for (k, v) in &self.values {
            m.insert((*k).into(), json!(v));
        }
        if let Some(n) = self.count {
            m.insert("count".into(), json!(n));
        }
        Value::Object(m)
    }

    /// `Header (unit)`, the unit left out for counts (`CsvExporter._format_metric_name`).
    fn csv_name(&self) -> String {
        if matches!(self.unit.to_lowercase().as_str(), "count" | "requests") {
            self.header.clone()
        } else {
            format!("{} ({})", self.header, self.unit)
        }
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// CSV as `CsvExporter._generate_csv_content` writes it.
fn csv_text(
    stats: &BTreeMap<&'static str, MetricStats>,
    system: &BTreeMap<&'static str, MetricStats>,
) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
    };
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
    let mut out = String::new();
    if !stats.is_empty() {
        out.push_str(&format!("Metric,{}\r\n", STAT_KEYS.join(",")));
        for m in stats.values() {
            let cells: Vec<String> = STAT_KEYS.iter().map(|k| num(m.get(k))).collect();
            out.push_str(&format!("{},{}\r\n", quote(&m.csv_name()), cells.join(",")));
        }
        if !system.is_empty() {
            out.push_str("\r\n");
        }
    }
    if !system.is_empty() {
        out.push_str("Metric,Value\r\n");
        for m in system.values() {
            out.push_str(&format!("{},{}\r\n", quote(&m.csv_name()), num(m.get("avg"))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_match_numpy() {
        // np.percentile([1,2,3,4], [1,50,99]) = [1.03, 2.5, 3.97]; np.std = 1.118033988749895
        let s = MetricStats::of("X", "ms", &[4.0, 1.0, 3.0, 2.0]).unwrap();
        let close = |k: &str, v: f64| assert!((s.get(k).unwrap() - v).abs() < 1e-9, "{k}: {:?}", s.get(k));
        close("p1", 1.03);
        close("p50", 2.5);
        close("p99", 3.97);
        close("std", 1.118_033_988_749_895);
        close("avg", 2.5);
        assert!(MetricStats::of("X", "ms", &[]).is_none());
    }

    #[test]
    fn csv_names_leave_out_count_units() {
        assert_eq!(MetricStats::single("Request Count", "requests", 1.0).csv_name(), "Request Count");
        assert_eq!(MetricStats::single("Request Latency", "ms", 1.0).csv_name(), "Request Latency (ms)");
    }
}
