//! Scenario files (TOML): schema, built-in catalogues, presets, overrides and validation.
//!
//! `load_scenario` turns a file (plus `--set` overrides) into one resolved, validated `Scenario`
//! per variant; everything downstream reads those and never the TOML. The file format is
//! documented in the README ("Scenario files") and by the shipped `scenarios/*.toml`. Errors name
//! the file, the dotted field and the reason (`ScenarioError`, with the instance index when the
//! error is about one). `Placer` loads a variant once and builds the `Scenario` of any placement
//! of its models through the same resolution and checks (for `plan`). This module does not
//! generate requests or simulate anything.

mod catalog;
mod error;
pub(crate) mod limits;
mod load;
mod memory;
mod overrides;
mod perf;
mod phases;
mod placement;
mod presets;
mod raw;
mod replay;
mod resolve;
mod types;

pub use catalog::{gpu_catalog, model_catalog};
pub use error::ScenarioError;
pub use limits::{
    DEFAULT_MAX_REQUESTS, DEFAULT_MAX_SAMPLES, DEFAULT_MAX_TOKENS, MIN_SAMPLE_INTERVAL_S, PlannedWork,
    planned_work,
};
pub use load::{ScenarioFile, load_scenario, parse_scenario};
pub use overrides::Override;
pub use perf::MAX_OUTPUT_DELAY_S;
pub(crate) use placement::{Placement, Placer, PlacerInput};
pub use presets::{default_activation_reserve_bytes, engine_preset_defaults};
pub use replay::{MAX_RATE_SCALE, ReplayModels, ReplayOptions, TraceFormat};
pub use types::*;
