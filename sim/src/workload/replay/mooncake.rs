//! Mooncake traces (Qin et al., FAST 2025; also aiperf's `mooncake_trace` dataset): one JSON
//! object a line with `timestamp` (milliseconds from the trace start), `input_length`,
//! `output_length` and optional `hash_ids`, the ids of the prompt's blocks of `block_size` (512)
//! tokens: equal leading ids mean an equal prefix. Other keys are ignored; blank lines skipped.

use super::TraceRow;
use crate::workload::WorkloadError;
use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::path::Path;

#[derive(Deserialize)]
struct Line {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Whether a file looks like Mooncake JSONL (by extension, or a first character `{`).
pub(super) fn matches(path: &Path, first_byte: Option<u8>) -> bool {
    path.extension().is_some_and(|e| e == "jsonl") || first_byte == Some(b'{')
}

/// Reads every row.
pub(super) fn read(path: &Path) -> Result<Vec<TraceRow>, WorkloadError> {
    let io = |source| WorkloadError::Io { path: path.into(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut rows = Vec::new();
    for (i, text) in BufReader::new(file).lines().enumerate() {
        let text = text.map_err(io)?;
        let line = i as u64 + 1;
        if text.trim().is_empty() {
            continue;
        }
        let err = |reason: String| WorkloadError::Line { path: path.into(), line, reason };
        let row: Line = serde_json::from_str(&text).map_err(|e| {
            err(format!(
                "column {}: {e}; a Mooncake trace line is {{\"timestamp\": ms, \"input_length\": n, \"output_length\": n, \"hash_ids\": [..]}}",
                e.column()
            ))
        })?;
        if !row.timestamp.is_finite() || row.timestamp < 0.0 {
            return Err(err(format!("timestamp {} is not a number of milliseconds >= 0", row.timestamp)));
        }
        rows.push(TraceRow {
            line,
            time_ns: (row.timestamp * 1e6).round() as i128,
            model: None,
            prompt: row.input_length.max(1),
            output: row.output_length.max(1),
            blocks: row.hash_ids,
        });
    }
    Ok(rows)
}
