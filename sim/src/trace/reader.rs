//! Reads a run dir back, checking its schema version; errors name the file and what to do.

use super::schema::{RunMeta, SCHEMA_VERSION, files};
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
    Ok(RunDir {
        path: dir.to_path_buf(),
        meta: read_json(&dir.join(files::RUN_JSON))?,
        summary: read_json(&dir.join(files::SUMMARY_JSON))?,
        requests: read_csv(&dir.join(files::REQUESTS_CSV))?,
        instances: read_csv(&dir.join(files::INSTANCES_CSV))?,
    })
}
