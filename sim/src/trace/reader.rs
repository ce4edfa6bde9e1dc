//! Reads a run dir back, checking its schema version, the `requests.csv` header and that the
//! rows agree with `summary.json`; errors name the file and what to do. A partial run dir (one
//! holding the `PARTIAL` marker) is read when it is consistent, and says why it is partial.

use super::schema::{REQUEST_COLUMNS, RunMeta, SCHEMA_VERSION, files};
use super::{InstanceRow, RequestRow};
use crate::metrics::RunSummary;
use std::fs;
use std::path::{Path, PathBuf};

/// Why a run dir could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A file is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not valid JSON/CSV of the expected shape.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The run dir was written by an incompatible version.
    #[error(
        "{path}: run dir schema version {found}, this modelsguard reads version {expected}; re-run the simulation or live run with this version"
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version expected.
        expected: u32,
    },
}

/// A run dir loaded in memory.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// Where it was read from.
    pub path: PathBuf,
    /// `run.json`.
    pub meta: RunMeta,
    /// `summary.json`.
    pub summary: RunSummary,
    /// `requests.csv`, in file order.
    pub requests: Vec<RequestRow>,
    /// `instances.csv`, in file order.
    pub instances: Vec<InstanceRow>,
    /// Why the run is partial (the `PARTIAL` marker's text); None for a complete run.
    pub partial: Option<String>,
}

impl RunDir {
    /// A one-line warning for a partial run dir (None when it is complete).
    pub fn partial_warning(&self) -> Option<String> {
        self.partial.as_ref().map(|why| {
            format!(
                "{} is a PARTIAL run ({why}): it holds only the {} requests recorded; compare it \
                 with a complete run with care",
                self.path.display(),
                self.requests.len()
            )
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TraceError> {
    let text = fs::read_to_string(path).map_err(|source| TraceError::Io { path: path.into(), source })?;
    // Check the version before the shape, so an old run dir says "old" rather than "missing field".
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TraceError::Parse { path: path.into(), reason: e.to_string() })?;
    let found = v.get("schema_version").and_then(|x| x.as_u64()).unwrap_or(0) as u32;
    if found != SCHEMA_VERSION {
        return Err(TraceError::Schema { path: path.into(), found, expected: SCHEMA_VERSION });
    }
    serde_json::from_value(v).map_err(|e| TraceError::Parse { path: path.into(), reason: e.to_string() })
}

fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, TraceError> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| TraceError::Parse { path: path.into(), reason: e.to_string() })?;
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| TraceError::Parse { path: path.into(), reason: e.to_string() })
}

/// Reads `run.json`, `summary.json`, `requests.csv` and `instances.csv` from `dir`.
pub fn read_run_dir(dir: &Path) -> Result<RunDir, TraceError> {
    if !dir.is_dir() {
        return Err(TraceError::Io {
            path: dir.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a run dir (no such directory)"),
        });
    }
    let partial = read_partial(dir)?;
    let meta = read_json(&dir.join(files::RUN_JSON))?;
    let summary_path = dir.join(files::SUMMARY_JSON);
    if let (Some(why), false) = (&partial, summary_path.is_file()) {
        return Err(TraceError::Parse {
            path: summary_path,
            reason: format!(
                "missing: this is a partial run dir ({why}); its requests.csv holds the rows \
                 recorded before it stopped, but without summary.json it cannot be reported: re-run it"
            ),
        });
    }
    let summary: RunSummary = read_json(&summary_path)?;
    let requests_path = dir.join(files::REQUESTS_CSV);
    check_request_header(&requests_path)?;
    let requests: Vec<RequestRow> = read_csv(&requests_path)?;
    if requests.len() as u64 != summary.overall.requests {
        return Err(TraceError::Parse {
            path: requests_path,
            reason: format!(
                "{} rows but summary.json counts {} requests: the run dir was cut short or edited; \
                 re-run it (or restore requests.csv)",
                requests.len(),
                summary.overall.requests
            ),
        });
    }
    Ok(RunDir {
        path: dir.to_path_buf(),
        meta,
        summary,
        requests,
        instances: read_csv(&dir.join(files::INSTANCES_CSV))?,
        partial,
    })
}

/// The `PARTIAL` marker's reason, if the run dir has one.
fn read_partial(dir: &Path) -> Result<Option<String>, TraceError> {
    let path = dir.join(files::PARTIAL);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let why = text.trim();
            Ok(Some(if why.is_empty() { "no reason given".to_string() } else { why.to_string() }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TraceError::Io { path, source }),
    }
}

/// `requests.csv` must start with the header this version writes (an empty or foreign file
/// would otherwise read as zero rows).
fn check_request_header(path: &Path) -> Result<(), TraceError> {
    let mut r = csv::Reader::from_path(path)
        .map_err(|e| TraceError::Parse { path: path.into(), reason: e.to_string() })?;
    let header = r.headers().map_err(|e| TraceError::Parse { path: path.into(), reason: e.to_string() })?;
    if header.iter().ne(REQUEST_COLUMNS.iter().copied()) {
        let found: Vec<&str> = header.iter().collect();
        let found = if found.iter().all(|c| c.is_empty()) { "nothing".to_string() } else { found.join(",") };
        return Err(TraceError::Parse {
            path: path.into(),
            reason: format!(
                "the header should be {} but the file starts with {found}: not a requests.csv \
                 written by modelsguard; re-run the simulation or live run",
                REQUEST_COLUMNS.join(",")
            ),
        });
    }
    Ok(())
}
