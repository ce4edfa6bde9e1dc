//! Calibration of step-time profiles from live run dirs (`calibrate`), and validation of the
//! simulator against a live run (`validate`).
//!
//! `calibrate` fits the coefficients of the linear step-time model of one (model, GPU, engine)
//! by non-negative least squares, from the engine's own step log (`steps.csv`) when the run dirs
//! carry one, else from steps reconstructed out of client-side chunk timestamps (`tokens.csv`,
//! so it works on stock vLLM), and writes a profile (format v2) with a fit report. `validate`
//! simulates a live run's request stream with a profile and tabulates the simulation's error.
//! Neither talks to a server; both read and write files only.

#![deny(missing_docs)]

mod calibrate;
pub mod dataset;
pub mod delay;
mod error;
pub mod fit;
pub mod profile;
pub mod reconstruct;
mod replay;
mod report;
pub mod step;
pub mod steps_log;
mod validate;

pub use calibrate::{BurstInfo, CalibrateOptions, Calibration, DataSource, Method, OutputDelay, calibrate};
pub use error::CalibrationError;
pub use report::FitReport;
pub use validate::{ValidateOptions, Validation, validate, validation_table};
