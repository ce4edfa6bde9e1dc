//! The `modelsguard` binary: parse the command line, run, report errors.
//!
//! All logic lives in the library crates (`sim`, `live`, `calibration`, `reports`); this file and
//! `cli.rs` only parse arguments and dispatch.

mod calibrate_commands;
mod campaign_commands;
mod cli;
mod commands;
mod explain_commands;
mod live_commands;
mod logging;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let logs = logging::resolve_format(args.log_format)
        .and_then(|format| logging::init(default_log_level(&args.command), format));
    if let Err(err) = logs {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `info` for the long-running live commands (their events are what an operator watches: ejections,
/// faults, launch steps), `warn` for the rest.
fn default_log_level(cmd: &cli::Command) -> &'static str {
    use cli::{Command, LiveCommand};
    match cmd {
        Command::Lb(_) | Command::Emulate(_) => "info",
        Command::Live(l) => match l.command {
            LiveCommand::Run(_) | LiveCommand::Up(_) | LiveCommand::Campaign(_) => "info",
            _ => "warn",
        },
        _ => "warn",
    }
}
