//! Why a workload could not be built or replayed: every error names the phase or the file (and
//! line) at fault and says what to change. It does not cover scenario-file syntax (the scenario
//! loader reports that before a workload is built).

use std::path::PathBuf;

/// A workload that cannot be generated, or a replay/custom-workload file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The workload has no phase at all.
    #[error("workload: no phases; add at least one [[workload.phases]] entry")]
    NoPhases,
    /// A phase's settings are inconsistent or out of range.
    #[error("workload.phases[{index}] ({name:?}): {reason}")]
    Phase {
        /// Phase index (0-based, in file order).
        index: usize,
        /// Phase label.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The shared-prefix settings are out of range.
    #[error("workload.prefix: {reason}")]
    Prefix {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file could not be opened or read.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not of the expected shape as a whole (header, JSON structure, no rows).
    #[error("{path}: {reason}", path = .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// One line of a CSV file is invalid.
    #[error("{path}:{line}: {reason}", path = .path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number in the file.
        line: u64,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// `open_loop_requests` was given a closed-loop phase, whose issue times depend on completions.
    #[error(
        "workload.phases[{index}] ({name:?}) is closed loop: its send times depend on completions, so it cannot be listed in advance; drive a WorkloadGenerator and call on_request_finished instead"
    )]
    ClosedLoop {
        /// Phase index.
        index: usize,
        /// Phase label.
        name: String,
    },
}
