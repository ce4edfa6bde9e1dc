//! Integration tests of the calibration crate: one binary (see STYLE.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod emulator;
mod fit_paths;
mod run_dir_fuzz;
mod validate;
