//! Integration tests of the live harness (one test binary for the crate).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod import_fuzz;
mod interop;
mod loadgen;
mod mock;
mod prom;
mod sse;
mod step_log;
mod tool_parsers;
mod trace_replay;

// live-server
mod emulator;
mod launcher;
mod lb_limits;
mod proxy;
mod server_fixtures;
mod sessions;

// The Python reference engine (needs MODELSGUARD_REFENGINE_PYTHON; skipped without it outside CI).
mod reference_engine;
