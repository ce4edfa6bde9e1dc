//! The `modelsguard` binary: parse the command line, run, report errors.
//!
//! All logic lives in the library crates (`sim`, `live`, `calibration`, `reports`); this file and
//! `cli.rs` only parse arguments and dispatch.

/// `println!` that returns an error instead of panicking when stdout is closed (`| head -1`):
/// use it with `?` so the command stops and `main` ends quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(crate::StdoutError)?
    }};
}

/// `print!` that returns an error instead of panicking when stdout is closed (see `outln!`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($arg)*).map_err(crate::StdoutError)?
    }};
}

mod calibrate_commands;
mod campaign_commands;
mod cli;
mod commands;
mod explain_commands;
mod import_commands;
mod live_commands;
mod logging;

use clap::Parser;
use std::io::ErrorKind;
use std::process::ExitCode;

/// Writing to stdout failed (see `outln!`).
#[derive(Debug)]
pub(crate) struct StdoutError(std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing to stdout: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

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
        // The reader went away (`| head`): what it wanted was printed; end quietly, as ripgrep
        // does (crates/core/main.rs).
        Err(err)
            if err.chain().any(|e| {
                e.downcast_ref::<StdoutError>().is_some_and(|s| s.0.kind() == ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
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
