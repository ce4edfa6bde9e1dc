//! The live crate's integration tests (one binary).

mod proxy;
mod server_fixtures;
