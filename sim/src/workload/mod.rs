//! Workloads: arrival process x length distribution x model mix, deterministic from a seed.
//!
//! [`WorkloadGenerator`] turns a resolved [`WorkloadSpec`](crate::scenario::WorkloadSpec) into the
//! request stream that both the simulator and the live harness send; [`phase_from_custom_json`]
//! and [`load_empirical_column`] read the seed benchmark's custom-workload JSON and observed
//! length columns. Nothing here simulates, routes or sends requests.

mod arrivals;
mod closed_loop;
mod custom;
mod error;
mod generator;
mod lengths;
mod plan;
mod replay;
mod spec;
mod streams;
#[cfg(test)]
mod tests;

pub use custom::{load_empirical_column, phase_from_custom_json};
pub use generator::{WorkloadError, WorkloadGenerator, open_loop_requests};
pub use spec::{PrefixRef, RequestSpec};

// TEMP until the workload branch merges: stand-ins for the hooks the scenario loader calls, with
// the signatures the workload branch provides. The lead replaces this block at merge.
use crate::scenario::PhaseSpec;
use std::path::Path;

/// Error from the workload module (temporary stand-in).
#[derive(Debug)]
pub struct WorkloadError(pub String);

impl std::fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds a phase from the seed's custom workload JSON (temporary stand-in: always an error).
pub fn phase_from_custom_json(
    path: &Path,
    _served_names: &[String],
    _num_requests: u64,
    _concurrency: Option<u32>,
) -> Result<PhaseSpec, WorkloadError> {
    Err(WorkloadError(format!("{}: custom JSON workloads are not available in this build", path.display())))
}

/// Reads one integer column of a CSV file (temporary stand-in).
pub fn load_empirical_column(path: &Path, column: &str) -> Result<Vec<u32>, WorkloadError> {
    let err = |e: &dyn std::fmt::Display| WorkloadError(format!("{}: {e}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(&e))?;
    let headers = reader.headers().map_err(|e| err(&e))?.clone();
    let Some(col) = headers.iter().position(|h| h == column) else {
        return Err(err(&format!("no column `{column}`")));
    };
    let mut values = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| err(&e))?;
        let cell = record.get(col).unwrap_or("");
        values.push(cell.trim().parse::<u32>().map_err(|e| err(&format!("`{cell}`: {e}")))?);
    }
    Ok(values)
}
