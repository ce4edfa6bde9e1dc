//! The one error type of the reports crate. Every variant names the file or directory involved
//! and, where it helps, what to do about it. It does not wrap plotters' types (only their text).

use std::path::PathBuf;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// `write_report` was given no inputs.
    #[error("no inputs: pass at least one run dir (with run.json) or sweep dir (with sweep.json)")]
    NoInputs,
    /// An input is neither a run dir nor a sweep dir.
    #[error(
        "{path}: not a run dir (no run.json) nor a sweep dir (no sweep.json); pass the directory a \
         simulate, live or sweep command wrote"
    )]
    NotAnInput {
        /// The path given.
        path: PathBuf,
    },
    /// A run dir could not be read (missing file, bad CSV, or a run dir from an older schema).
    #[error(transparent)]
    Trace(#[from] sim::trace::TraceError),
    /// `sweep.json` or `sweep.csv` is malformed.
    #[error("{path}: {reason}")]
    Sweep {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A run dir's optional file (e.g. `tokens.csv`) is malformed.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A sweep dir was written by an incompatible version.
    #[error(
        "{path}: sweep dir schema version {found}, this modelsguard reads version {expected}; re-run \
         the sweep with this version"
    )]
    SweepSchema {
        /// The file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version expected.
        expected: u32,
    },
    /// A file or directory could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A chart could not be drawn or encoded.
    #[error("{path}: drawing the chart failed: {reason}")]
    Chart {
        /// The PNG being written.
        path: PathBuf,
        /// plotters' message.
        reason: String,
    },
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReportError {
        let path = path.into();
        move |source| ReportError::Io { path, source }
    }
}
