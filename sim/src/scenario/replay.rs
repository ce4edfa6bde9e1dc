//! Options of a replay phase (`arrival = { process = "replay", ... }`): which trace format, which
//! part of the source, how to scale its rate and where the model of each row comes from. Checked
//! here once, for the scenario loader (errors name the field) and the workload compiler alike.
//! Reading the file is `workload::replay`'s job.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A trace file format (`format = "..."`); detected from the file when not named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormat {
    /// Azure LLM inference trace CSV: `TIMESTAMP,ContextTokens,GeneratedTokens`.
    Azure,
    /// A run dir (or its `requests.csv`) written by `simulate` or `live run`.
    RunDir,
    /// Mooncake / aiperf `mooncake_trace` JSONL: `timestamp` (ms), `input_length`,
    /// `output_length`, optional `hash_ids`.
    Mooncake,
    /// BurstGPT CSV: `Timestamp,Model,Request tokens,Response tokens,...`.
    Burstgpt,
    /// The generic CSV: `time_s,input_tokens,output_tokens` and optional `model`, `session_id`,
    /// `block_ids`.
    Csv,
}

impl TraceFormat {
    /// The spelling used in scenario files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Azure => "azure",
            TraceFormat::RunDir => "run_dir",
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::Burstgpt => "burstgpt",
            TraceFormat::Csv => "csv",
        }
    }
}

/// Where a replayed row's model comes from (`models = "..."`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayModels {
    /// The trace's model column when the format has one, else the phase mix.
    #[default]
    Auto,
    /// The trace's model column (mapped through `model_map`); an error for formats without one.
    Trace,
    /// The phase mix, ignoring any model column.
    Mix,
}

/// Replay options besides the path and the time compression (`speedup`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayOptions {
    /// The file's format; `None`: detected from its extension and header.
    pub format: Option<TraceFormat>,
    /// Source window start: rows earlier than this many seconds after the file's first row are
    /// skipped.
    pub start_s: f64,
    /// Source window end (exclusive), seconds after the file's first row; `None`: to the end.
    /// A replay phase's `duration_s` is the window's length (source seconds, before `speedup`).
    pub end_s: Option<f64>,
    /// Rate scaling that keeps time: < 1 keeps each row with this probability (thinning); > 1
    /// superposes `ceil(rate_scale)` copies of the window, each shifted by a share of the window
    /// and wrapped around, and thins them to the rate. Lengths and burst shape are kept.
    pub rate_scale: f64,
    /// Where each row's model comes from.
    pub models: ReplayModels,
    /// Trace model name -> scenario model key, for `models = "trace"` (names not listed must be
    /// scenario keys themselves).
    pub model_map: BTreeMap<String, String>,
    /// Tokens per block of the trace's `hash_ids` / `block_ids` (Mooncake: 512).
    pub block_size: u32,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            format: None,
            start_s: 0.0,
            end_s: None,
            rate_scale: 1.0,
            models: ReplayModels::Auto,
            model_map: BTreeMap::new(),
            block_size: 512,
        }
    }
}

/// Largest `rate_scale` (copies of the window superposed).
pub const MAX_RATE_SCALE: f64 = 1000.0;

impl ReplayOptions {
    /// Checks the values; `duration_s` is the phase's. On error: the field (relative to the
    /// arrival table, or `duration_s`) and what to do.
    pub fn check(&self, duration_s: Option<f64>) -> Result<(), (&'static str, String)> {
        if !self.start_s.is_finite() || self.start_s < 0.0 {
            return Err(("start_s", format!("start_s must be seconds >= 0, got {}", self.start_s)));
        }
        if let Some(end) = self.end_s {
            if !end.is_finite() || end <= self.start_s {
                return Err((
                    "end_s",
                    format!("end_s must be a number of seconds > start_s ({}), got {end}", self.start_s),
                ));
            }
            if duration_s.is_some() {
                return Err((
                    "duration_s",
                    "a replay phase takes end_s or duration_s (the window length), not both".into(),
                ));
            }
        }
        if !self.rate_scale.is_finite() || self.rate_scale <= 0.0 || self.rate_scale > MAX_RATE_SCALE {
            return Err((
                "rate_scale",
                format!("rate_scale must be a number in (0, {MAX_RATE_SCALE}], got {}", self.rate_scale),
            ));
        }
        if self.block_size == 0 {
            return Err(("block_size", "block_size must be at least 1 token (Mooncake: 512)".into()));
        }
        if !self.model_map.is_empty() && self.models == ReplayModels::Mix {
            return Err((
                "model_map",
                "model_map maps the trace's model column, but models = \"mix\" ignores it; remove one".into(),
            ));
        }
        Ok(())
    }

    /// The source window's end: `end_s`, or `start_s + duration_s`.
    pub fn window_end(&self, duration_s: Option<f64>) -> Option<f64> {
        self.end_s.or(duration_s.map(|d| self.start_s + d))
    }
}
