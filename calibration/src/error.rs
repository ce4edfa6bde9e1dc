//! The one error type of the calibration crate. Every variant names the run dir, file or field
//! involved and, where it helps, what to do about it.

use std::path::PathBuf;

/// Why calibration or validation could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    /// `calibrate` was given no run dirs.
    #[error(
        "no run dirs: pass at least one live run dir (written by `modelsguard live run --tokens`, \
         e.g. of scenarios/calibration-h200-llama8b.toml)"
    )]
    NoRunDirs,
    /// A run dir could not be read (missing file, bad CSV, older schema).
    #[error(transparent)]
    Trace(#[from] sim::trace::TraceError),
    /// A file holds something calibration cannot use (names the file and what to do).
    #[error("{path}: {reason}")]
    Input {
        /// The file or run dir.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The run dirs do not describe one (model, GPU, engine).
    #[error("{0}")]
    Mismatch(String),
    /// Too little usable data to fit.
    #[error("not enough data to fit: {0}")]
    NotEnoughData(String),
    /// The least-squares solver failed.
    #[error("fitting failed: {0}")]
    Solver(String),
    /// A file or directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The fit report could not be drawn.
    #[error(transparent)]
    Report(#[from] reports::ReportError),
    /// The scenario given to `validate` could not be loaded or overridden.
    #[error(transparent)]
    Scenario(#[from] sim::scenario::ScenarioError),
    /// The simulation of `validate` failed.
    #[error("simulating the live run's request stream: {0}")]
    Simulation(#[from] sim::simulation::SimError),
}

impl CalibrationError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CalibrationError {
        let path = path.into();
        move |source| CalibrationError::Io { path, source }
    }

    pub(crate) fn input(path: impl Into<PathBuf>, reason: impl Into<String>) -> CalibrationError {
        CalibrationError::Input { path: path.into(), reason: reason.into() }
    }
}
