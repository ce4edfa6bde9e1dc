//! Parameter sweeps: run a scenario at many points of a grid of field values, replicate each point
//! with several seeds, and write one tidy table of means with Student-t confidence intervals.
//!
//! The pieces, in the order a sweep uses them: [`axis`] parses `--vary PATH=SPEC` and expands the
//! axes into points (cartesian product or zipped); [`plan`] loads and validates the scenario at
//! every point before anything runs; [`run`] simulates every (point, variant, replication) on a
//! rayon pool and aggregates the replications ([`stats`], [`metrics`]); [`schema`] writes the
//! sweep dir (`sweep.json` + `sweep.csv`, the format the reports crate reads); [`spec_file`]
//! reads a sweep written down in TOML; [`shard`] and [`merge`] split a sweep over machines and put
//! it back together byte for byte. This module does not draw charts (the reports crate does) nor
//! parse command lines (the binary does).

pub mod axis;
mod error;
pub mod merge;
pub mod metrics;
pub mod plan;
pub mod run;
pub mod schema;
pub mod shard;
pub mod spec_file;
pub mod stats;

pub use axis::{Axis, Point, expand};
pub use error::SweepError;
pub use merge::merge_shards;
pub use plan::{SweepPlan, SweepSpec, plan};
pub use run::{PARTIAL_FILE, SweepOptions, SweepOutcome, run_sweep};
pub use schema::{ParamValue, SWEEP_SCHEMA_VERSION, SweepMeta, SweepRow, SweepSlo};
pub use shard::Shard;
pub use spec_file::{SweepFile, load_sweep_file};
