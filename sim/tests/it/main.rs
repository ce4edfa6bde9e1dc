//! sim's integration tests: one binary, one module per area.

// Tests may unwrap (the common brief); helpers outside `#[test]` functions need the allowance too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod awq;
mod bench;
mod contention;
mod elastic;
mod explain;
mod fast_forward;
mod plan;
mod replay_options;
mod scenario_errors;
mod scenario_fuzz;
mod scenario_load;
mod scenario_overrides;
mod scenario_presets;
mod sessions;
mod simulation;
mod step_model;
mod sweep;
mod trace_hit_rate;
