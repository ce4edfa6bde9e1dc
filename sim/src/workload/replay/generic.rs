//! The generic trace CSV, for traces of any origin: `time_s` (seconds, any origin),
//! `input_tokens`, `output_tokens`, and optional `model` (scenario key or a `model_map` name),
//! `session_id` (accepted and ignored for now) and `block_ids` (space-separated prefix-block
//! ids of `block_size` tokens each, as Mooncake's `hash_ids`).

use super::TraceRow;
use super::csv_fields::Table;
use crate::workload::WorkloadError;
use std::path::Path;

/// The required columns.
pub(super) const COLUMNS: [&str; 3] = ["time_s", "input_tokens", "output_tokens"];

const FORMAT: &str = "the generic trace CSV has columns time_s,input_tokens,output_tokens and optional model,session_id,block_ids";

/// Whether a CSV header is the generic format's.
pub(super) fn matches(headers: &[String]) -> bool {
    COLUMNS.iter().all(|c| headers.iter().any(|h| h == c))
}

/// Reads every row.
pub(super) fn read(path: &Path) -> Result<Vec<TraceRow>, WorkloadError> {
    let mut t = Table::open(path)?;
    let cols = COLUMNS.map(|c| t.column(c, FORMAT));
    let [time, input, output] = cols;
    let (time, input, output) = (time?, input?, output?);
    let (model, blocks) = (t.find("model"), t.find("block_ids"));
    let mut rows = Vec::new();
    while t.next()? {
        let block_ids = match blocks {
            Some(col) => t
                .field(col)
                .split_whitespace()
                .map(|b| {
                    b.parse::<u64>()
                        .map_err(|_| t.err(col, format!("{b:?} is not a block id (a whole number)")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        rows.push(TraceRow {
            line: t.line(),
            time_ns: t.seconds_ns(time)?,
            model: model.map(|c| t.field(c).to_owned()),
            prompt: t.tokens(input)?,
            output: t.tokens(output)?,
            blocks: block_ids,
        });
    }
    Ok(rows)
}
