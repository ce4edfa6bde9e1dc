//! `modelsguard import`: turns a genai-perf `profile_export.json` or an aiperf
//! `profile_export.jsonl` into a run dir, the same files `live run` writes (`run.json` with
//! source = live, `requests.csv`, `tokens.csv` with every chunk's arrival, `summary.json`), so
//! existing measurements can be reported, replayed through the simulator and used by `calibrate`
//! without rerunning.
//!
//! The readers (`genai_perf`, `aiperf`) turn a file into [`ImportedRequest`]s; this module maps
//! them onto a scenario's models and writes the run dir with the live harness's own row and
//! summary code. It sends nothing.

mod aiperf;
mod genai_perf;

use crate::client::{Chunk, RequestFailure, RequestRecord};
use crate::loadgen::{Finished, LoadSink, request_row};
use crate::run::{RunSink, rfc3339};
use serde_json::Value;
use sim::metrics::RunSummary;
use sim::scenario::Scenario;
use sim::trace::{RequestStatus, RunDirWriter, RunMeta, SCHEMA_VERSION, Source};
use sim::workload::RequestSpec;
use sim::{ModelId, RequestId, SimTime};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Which tool wrote the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// genai-perf / perf_analyzer `profile_export.json`.
    GenaiPerf,
    /// aiperf `profile_export.jsonl`.
    Aiperf,
}

impl fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImportFormat::GenaiPerf => "genai-perf",
            ImportFormat::Aiperf => "aiperf",
        })
    }
}

/// The load the tool was run with, as its export records it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ImportedLoad {
    /// Closed loop with this many concurrent requests.
    Concurrency(u32),
    /// Open loop at this many requests per second.
    RequestRate(f64),
    /// Not recorded in the file.
    Unknown,
}

impl fmt::Display for ImportedLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportedLoad::Concurrency(n) => write!(f, "concurrency {n}"),
            ImportedLoad::RequestRate(r) => write!(f, "request rate {r}/s"),
            ImportedLoad::Unknown => f.write_str("load not recorded"),
        }
    }
}

/// One request as an export recorded it; times in nanoseconds since the Unix epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportedRequest {
    /// Request id, when the export carries one; else (or when not unique) assigned in send order.
    pub id: Option<u64>,
    /// Model: our model key or the served name sent, when known.
    pub model: Option<String>,
    /// When it was sent.
    pub send_ns: u64,
    /// Chunks with text: arrival and tokens.
    pub chunks: Vec<(u64, u32)>,
    /// When the last response arrived (None when unknown).
    pub end_ns: Option<u64>,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Output tokens received.
    pub output_tokens: u32,
    /// Output tokens asked for.
    pub max_tokens: u32,
    /// Ok, or why not (status and message).
    pub failure: Option<(RequestStatus, String)>,
    /// HTTP status, when recorded.
    pub http_status: Option<u16>,
}

/// What a reader returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedExport {
    /// The requests, in file order.
    pub requests: Vec<ImportedRequest>,
    /// The load.
    pub load: ImportedLoad,
    /// Notes for the user (e.g. lengths that had to be estimated).
    pub notes: Vec<String>,
}

/// Why an export could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A field is missing or malformed.
    #[error("{path}: {location}: field `{field}`: {reason}")]
    Field {
        /// The file.
        path: PathBuf,
        /// `line N` (JSONL, JSON syntax) or a JSON path such as `experiments[0].requests[3]`.
        location: String,
        /// The field.
        field: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The file as a whole is not what was expected, or does not fit the scenario.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Writing the run dir failed (the message names the file).
    #[error("writing the run dir: {0}")]
    Write(#[from] io::Error),
}

/// Options of [`import_export`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The format (None: detected from the content).
    pub format: Option<ImportFormat>,
    /// Attribute every request to this model key of the scenario (None: from the export, or the
    /// scenario's only model).
    pub model: Option<String>,
}

/// What an import wrote.
#[derive(Clone, Debug)]
pub struct ImportReport {
    /// The run dir.
    pub run_dir: PathBuf,
    /// The format read.
    pub format: ImportFormat,
    /// The load recorded.
    pub load: ImportedLoad,
    /// Requests imported (ok and failed).
    pub requests: usize,
    /// The run's summary.
    pub summary: RunSummary,
    /// Notes for the user.
    pub notes: Vec<String>,
}

/// The format of `text` (the content of `path`): a JSON document with `experiments` is
/// genai-perf's, JSON lines with `metadata` and `metrics` are aiperf's.
pub fn detect_format(path: &Path, text: &str) -> Result<ImportFormat, ImportError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if let Ok(v) = serde_json::from_str::<Value>(first)
        && v.get("metadata").is_some()
        && v.get("metrics").is_some()
    {
        return Ok(ImportFormat::Aiperf);
    }
    if text.contains("\"experiments\"") {
        return Ok(ImportFormat::GenaiPerf);
    }
    Err(ImportError::Format {
        path: path.to_path_buf(),
        reason: "neither a genai-perf profile_export.json (a JSON object with \"experiments\") nor an aiperf \
                 profile_export.jsonl (lines with \"metadata\" and \"metrics\"); name the format with --format"
            .into(),
    })
}

/// Reads `path` as `format` (None: detected).
pub fn read_export(
    path: &Path,
    format: Option<ImportFormat>,
) -> Result<(ImportFormat, ImportedExport), ImportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ImportError::Io { path: path.to_path_buf(), source })?;
    let format = match format {
        Some(f) => f,
        None => detect_format(path, &text)?,
    };
    let export = match format {
        ImportFormat::GenaiPerf => genai_perf::read(path, &text)?,
        ImportFormat::Aiperf => aiperf::read(path, &text)?,
    };
    if export.requests.is_empty() {
        return Err(ImportError::Format {
            path: path.to_path_buf(),
            reason: format!("no requests in this {format} export; nothing to import"),
        });
    }
    Ok((format, export))
}

/// The model of `r` among `scenario`'s models.
fn model_of(
    path: &Path,
    scenario: &Scenario,
    forced: Option<&str>,
    r: &ImportedRequest,
) -> Result<ModelId, ImportError> {
    let names: Vec<&str> = scenario.models.iter().map(|m| m.name.as_str()).collect();
    let find = |key: &str| {
        scenario
            .models
            .iter()
            .position(|m| m.name == key)
            .or_else(|| scenario.models.iter().position(|m| m.served_name == key))
    };
    let err = |reason: String| ImportError::Format { path: path.to_path_buf(), reason };
    match (forced, r.model.as_deref()) {
        (Some(key), _) => find(key).ok_or_else(|| err(format!("--model {key}: not a model of the scenario (models: {})", names.join(", ")))),
        (None, Some(m)) => match find(m) {
            Some(i) => Ok(i),
            None if scenario.models.len() == 1 => Ok(0),
            None => Err(err(format!(
                "requests name model {m:?}, which is neither the name nor the served name of a scenario model ({}); \
                 pick one with --model",
                names.join(", ")
            ))),
        },
        (None, None) if scenario.models.len() == 1 => Ok(0),
        (None, None) => Err(err(format!(
            "the export does not name the model and the scenario has several ({}); pick one with --model",
            names.join(", ")
        ))),
    }
    .map(|i| ModelId(i as u32))
}

/// Imports the export at `path` into the run dir `out_dir`, with `scenario` (the deployment that
/// was measured) recorded in `run.json`.
pub fn import_export(
    path: &Path,
    scenario: &Scenario,
    out_dir: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let (format, export) = read_export(path, opts.format)?;
    let mut reqs = export.requests;
    let mut ids: Vec<Option<u64>> = reqs.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < reqs.len() || ids.contains(&None) {
        // Ids missing or repeated (multi-turn sessions): number requests in send order instead.
        reqs.iter_mut().for_each(|r| r.id = None);
    }
    let t0 = reqs.iter().map(|r| r.send_ns).min().unwrap_or(0);
    let models: Vec<ModelId> =
        reqs.iter().map(|r| model_of(path, scenario, opts.model.as_deref(), r)).collect::<Result<_, _>>()?;
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    order.sort_by_key(|&i| (reqs[i].send_ns, reqs[i].id, i));
    let meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        source: Source::Live,
        scenario_name: scenario.name.clone(),
        variant: scenario.variant.clone(),
        seed: scenario.seed,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: rfc3339(UNIX_EPOCH + Duration::from_nanos(t0)),
        host: format!("imported from the {format} export {} ({})", path.display(), export.load),
        calibrated: false,
        scenario: scenario.clone(),
    };
    let writer = RunDirWriter::create(out_dir, &meta, true)?;
    let mut sink = RunSink::new(writer, scenario, None, None);
    let rel = |ns: u64| SimTime(ns.saturating_sub(t0));
    for (k, &i) in order.iter().enumerate() {
        let r = std::mem::take(&mut reqs[i]);
        let model = models[i];
        let key = scenario.models.get(model.index()).map(|m| m.name.clone()).unwrap_or_default();
        let sole: Vec<&str> =
            scenario.instances.iter().filter(|x| x.model == model).map(|x| x.name.as_str()).collect();
        let instance = if sole.len() == 1 { sole[0] } else { "" };
        let send = rel(r.send_ns);
        let spec = RequestSpec {
            id: RequestId(r.id.unwrap_or(k as u64)),
            phase: 0,
            arrival: send,
            model,
            num_prompt_tokens: r.prompt_tokens,
            max_tokens: r.max_tokens,
            content: Default::default(),
        };
        let record = RequestRecord {
            send: Some(send),
            http_status: r.http_status,
            instance_header: None,
            chunks: r.chunks.iter().map(|&(t, tokens)| Chunk { time: rel(t), tokens }).collect(),
            raw: Vec::new(),
            end: r.end_ns.map(rel),
            output_tokens: r.output_tokens,
            cached_tokens: None,
        };
        let result = match r.failure {
            None => Ok(()),
            Some((status, reason)) => Err(RequestFailure { status, reason }),
        };
        let row = request_row(&spec, &key, instance, &record, &result, send);
        sink.on_finished(Finished { row, model, record, payload: None })?;
    }
    let (run_dir, summary) = sink.finish(None)?;
    Ok(ImportReport {
        run_dir,
        format,
        load: export.load,
        requests: reqs.len(),
        summary,
        notes: export.notes,
    })
}

/// The load of a genai-perf-style `{"mode": ..., "value": ...}` experiment object found at
/// `location` of `path`; a concurrency past `u32::MAX` is an error (see [`concurrency`]).
pub(crate) fn load_of(path: &Path, location: &str, experiment: &Value) -> Result<ImportedLoad, ImportError> {
    Ok(match (experiment["mode"].as_str(), experiment["value"].as_f64()) {
        (Some("concurrency"), _) => concurrency(path, location, "value", &experiment["value"])?
            .map_or(ImportedLoad::Unknown, ImportedLoad::Concurrency),
        (Some("request_rate"), Some(v)) if v > 0.0 => ImportedLoad::RequestRate(v),
        _ => ImportedLoad::Unknown,
    })
}

/// A closed loop's stream count `v` (field `field` at `location` of `path`): None when it is not
/// a number of at least 1 (the load then reads as not recorded); an error when it is more than
/// `u32::MAX` streams, which no load generator runs: the file is corrupt, and truncating the
/// count would import a load the run never had.
pub(crate) fn concurrency(
    path: &Path,
    location: &str,
    field: &str,
    v: &Value,
) -> Result<Option<u32>, ImportError> {
    match v.as_f64() {
        Some(c) if c > f64::from(u32::MAX) => Err(ImportError::Field {
            path: path.to_path_buf(),
            location: location.to_string(),
            field: field.to_string(),
            reason: format!(
                "a concurrency of {v} streams is more than {} (no load generator runs that many); \
                 the file is corrupt: fix or delete the field",
                u32::MAX
            ),
        }),
        Some(c) if c >= 1.0 => Ok(Some(c as u32)),
        _ => Ok(None),
    }
}

/// `v[key]` as a u64, or a field error at `location`.
pub(crate) fn req_u64(path: &Path, location: &str, v: &Value, key: &str) -> Result<u64, ImportError> {
    v.get(key).and_then(Value::as_u64).ok_or_else(|| ImportError::Field {
        path: path.to_path_buf(),
        location: location.to_string(),
        field: key.to_string(),
        reason: match v.get(key) {
            None => "missing".into(),
            Some(x) => format!("{x} is not a non-negative integer (nanoseconds since the epoch)"),
        },
    })
}

/// A u32 count from an optional JSON number (saturating).
pub(crate) fn count(v: Option<&Value>) -> Option<u32> {
    v.and_then(|x| x.as_u64().or_else(|| x.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64)))
        .map(|n| n.min(u64::from(u32::MAX)) as u32)
}
