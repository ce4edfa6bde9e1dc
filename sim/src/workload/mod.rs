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
mod reuse;
mod sessions;
mod spec;
mod streams;
#[cfg(test)]
mod tests;

pub use custom::{load_empirical_column, phase_from_custom_json};
pub use generator::{WorkloadError, WorkloadGenerator, open_loop_requests};
pub use replay::ReplayStats;
pub use reuse::{ModelReuse, ReuseBound, prefix_reuse_bound, scenario_reuse_bounds};
pub use spec::{PrefixRef, RequestSpec};
