//! The live crate's integration tests (one binary).

mod emulator;
mod launcher;
mod proxy;
mod server_fixtures;
