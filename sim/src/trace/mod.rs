//! Run dirs: the one trace schema written by the simulator and the live harness, and read by
//! reports, calibration, validation and replay.

mod reader;
mod schema;
mod writer;

pub use reader::{RunDir, TraceError, read_run_dir};
pub use schema::*;
pub use writer::{RunDirWriter, write_summary};
