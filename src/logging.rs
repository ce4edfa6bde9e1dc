//! The binary's log subscriber: routes the libraries' `tracing` events (the LB's ejections and
//! readmissions, the emulator's faults, the launcher's steps) to stderr, so the tables printed on
//! stdout stay clean.
//!
//! Levels come from `RUST_LOG` (tracing-subscriber's `EnvFilter` syntax, e.g. `RUST_LOG=debug` or
//! `RUST_LOG=live::proxy=debug`); without it the command's default applies (`info` for the
//! long-running servers, `warn` otherwise). `--log-format json` (or `MODELSGUARD_LOG_FORMAT=json`)
//! writes one JSON object per line instead of text. No event carries a prompt or token ids: the
//! libraries log names, addresses, statuses and counts only. This file does not decide what to log.

use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

/// The environment variable that picks the format when `--log-format` is not given.
pub const LOG_FORMAT_ENV: &str = "MODELSGUARD_LOG_FORMAT";

/// The format from the flag, else from `MODELSGUARD_LOG_FORMAT` (`text` or `json`).
pub fn resolve_format(flag: Option<LogFormat>) -> anyhow::Result<LogFormat> {
    if let Some(f) = flag {
        return Ok(f);
    }
    match std::env::var(LOG_FORMAT_ENV) {
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => anyhow::bail!("{LOG_FORMAT_ENV}={other}: give `text` or `json`"),
        },
        Err(_) => Ok(LogFormat::Text),
    }
}

/// Installs the global subscriber: stderr, `RUST_LOG` or `default_level`, in `format`.
pub fn init(default_level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).map_err(|e| {
            anyhow::anyhow!("RUST_LOG={spec}: {e} (e.g. RUST_LOG=info or RUST_LOG=live::proxy=debug)")
        })?,
        _ => EnvFilter::new(default_level),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second install (never in the binary) is not an error worth failing a command for.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    Ok(())
}
