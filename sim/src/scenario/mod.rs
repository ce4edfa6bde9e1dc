//! Scenario files (TOML): schema, built-in catalogues, presets, overrides and validation.

mod types;

pub use types::*;
