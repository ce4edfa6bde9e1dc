//! Integration tests of the calibration crate: one binary (see STYLE.md).
