//! Sweep dirs (`sweep.json` + the tidy `sweep.csv`): the schema lives with the sweep that writes it
//! (`sim::sweep::schema`); this module re-exports it and maps its errors into [`ReportError`].

use crate::error::ReportError;
use sim::sweep::SweepError;
use std::path::Path;

pub use sim::sweep::schema::{
    FIXED_COLUMNS, PARAM_PREFIX, ParamValue, SWEEP_SCHEMA_VERSION, SweepMeta, SweepRow, SweepSlo, files,
};

fn map(dir: &Path, e: SweepError) -> ReportError {
    match e {
        SweepError::SchemaVersion { path, found, expected } => {
            ReportError::SweepSchema { path, found, expected }
        }
        other => ReportError::Sweep { path: dir.to_path_buf(), reason: other.to_string() },
    }
}

/// Writes `sweep.json` and `sweep.csv` into `dir` (used by tests and tools that build sweeps).
pub fn write_sweep_dir(dir: &Path, meta: &SweepMeta, rows: &[SweepRow]) -> Result<(), ReportError> {
    sim::sweep::schema::write_sweep_dir(dir, meta, rows).map_err(|e| map(dir, e))
}

/// Reads `sweep.json` (checking its version) and `sweep.csv` from `dir`.
pub fn read_sweep_dir(dir: &Path) -> Result<(SweepMeta, Vec<SweepRow>), ReportError> {
    sim::sweep::schema::read_sweep_dir(dir).map_err(|e| map(dir, e))
}
