//! Why a campaign stopped. A failed step names itself, its position and the log to read.

use std::path::PathBuf;

/// Errors of `live campaign`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CampaignError {
    /// The options make no sense (names the option and what to give).
    #[error("{0}")]
    Options(String),
    /// The scenario file could not be loaded or a variant derived from it.
    #[error(transparent)]
    Scenario(#[from] sim::scenario::ScenarioError),
    /// The campaign dir holds a campaign with other settings.
    #[error("{path}: {reason}")]
    Settings {
        /// `campaign.json`.
        path: PathBuf,
        /// What differs and what to do.
        reason: String,
    },
    /// A file or directory of the campaign dir could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A step failed.
    #[error(
        "step {position} ({step}) failed: {detail}\n  read {log} for the details; rerun the same command to \
         resume from this step"
    )]
    Step {
        /// `3/14`.
        position: String,
        /// What the step does, e.g. `baseline: live run of the scenario`.
        step: String,
        /// The error.
        detail: String,
        /// The log to read: the engine's log when an engine died, else the step's own log.
        log: PathBuf,
    },
    /// Ctrl-C or SIGTERM stopped the campaign (engines were stopped first).
    #[error(
        "interrupted during step {position} ({step}); the engines were stopped. Rerun the same command to \
         resume: finished steps are skipped"
    )]
    Interrupted {
        /// `3/14`.
        position: String,
        /// What the step was doing.
        step: String,
    },
}
