//! The `modelsguard` binary: parse the command line, run, report errors.
//!
//! All logic lives in the library crates (`sim`, `live`, `calibration`, `reports`); this file and
//! `cli.rs` only parse arguments and dispatch.

mod calibrate_commands;
mod campaign_commands;
mod cli;
mod commands;
mod explain_commands;
mod import_commands;
mod live_commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
