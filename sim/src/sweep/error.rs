//! The one error type of sweeps: which argument, point, run or file is wrong, and what to do.
//!
//! Every message names what the user typed or pointed at (the `--vary` text, the shard, the point
//! with its field values, the dir) so that one line is enough to fix it. Each message already
//! includes its cause's, so causes are fields, not `source()`s (a chain would print them twice).
//! This module only builds errors; it does not decide what is wrong.

use crate::scenario::ScenarioError;
use crate::simulation::SimError;
use std::io;
use std::path::PathBuf;

/// A sweep could not be planned, run, written or merged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// A `--vary` argument is malformed (bad syntax, empty range, bad path...).
    #[error("--vary '{arg}': {reason}")]
    Vary {
        /// The argument as given.
        arg: String,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// A `--shard` argument is malformed.
    #[error("--shard '{text}': {reason}")]
    Shard {
        /// The argument as given.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// The sweep as a whole is inconsistent (zip lengths differ, no axis, zero replications...).
    #[error("sweep: {0}")]
    Spec(String),
    /// The scenario does not load at a sweep point (a field that does not exist, a bad value...).
    #[error("sweep point {point} ({at}): {error}")]
    Scenario {
        /// Point index.
        point: u32,
        /// The point's field values, `path=value, ...`.
        at: String,
        /// The scenario loader's error (names the file and field).
        error: Box<ScenarioError>,
    },
    /// A simulation failed.
    #[error("sweep point {point} ({at}), variant '{variant}', replication {rep}: {error}")]
    Sim {
        /// Point index.
        point: u32,
        /// The point's field values.
        at: String,
        /// Variant name.
        variant: String,
        /// Replication index (seed = scenario seed + rep).
        rep: u32,
        /// What failed.
        error: SimError,
    },
    /// Reading or writing a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or dir.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// A sweep dir's file is malformed (bad JSON or CSV).
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A sweep dir was written by another version of the sweep schema.
    #[error(
        "{}: sweep schema version {found}, this modelsguard reads version {expected}; re-run the sweep \
         (or its shards) with this version",
        path.display()
    )]
    SchemaVersion {
        /// The `sweep.json`.
        path: PathBuf,
        /// Version found in the file (0 when absent).
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The dirs given to `sweep merge` are not the shards of one complete sweep.
    #[error("sweep merge: {0}")]
    Merge(String),
    /// The worker pool could not be built.
    #[error("sweep: cannot start {jobs} worker threads: {reason}")]
    Pool {
        /// Threads asked for.
        jobs: usize,
        /// Why not.
        reason: String,
    },
}

impl SweepError {
    /// An I/O error about `path`, for `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SweepError {
        let path = path.into();
        move |error| SweepError::Io { path, error }
    }

    /// A malformed-file error about `path`, for `map_err`.
    pub(crate) fn malformed<E: std::fmt::Display>(path: impl Into<PathBuf>) -> impl FnOnce(E) -> SweepError {
        let path = path.into();
        move |e| SweepError::Malformed { path, reason: e.to_string() }
    }
}
