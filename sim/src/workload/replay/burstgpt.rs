//! BurstGPT traces (Wang et al., "BurstGPT", KDD 2025): `Timestamp` (seconds from the trace
//! start), `Model` (e.g. `ChatGPT`, `GPT-4`), `Request tokens`, `Response tokens`, and columns
//! replay ignores (`Total tokens`, `Log Type`).

use super::TraceRow;
use super::csv_fields::Table;
use crate::workload::WorkloadError;
use std::path::Path;

/// The columns replay reads.
pub(super) const COLUMNS: [&str; 4] = ["Timestamp", "Model", "Request tokens", "Response tokens"];

const FORMAT: &str = "a BurstGPT trace has columns Timestamp,Model,Request tokens,Response tokens";

/// Whether a CSV header is a BurstGPT trace's.
pub(super) fn matches(headers: &[String]) -> bool {
    COLUMNS.iter().all(|c| headers.iter().any(|h| h == c))
}

/// Reads every row.
pub(super) fn read(path: &Path) -> Result<Vec<TraceRow>, WorkloadError> {
    let mut t = Table::open(path)?;
    let cols = COLUMNS.map(|c| t.column(c, FORMAT));
    let [ts, model, req, resp] = cols;
    let (ts, model, req, resp) = (ts?, model?, req?, resp?);
    let mut rows = Vec::new();
    while t.next()? {
        rows.push(TraceRow {
            line: t.line(),
            time_ns: t.seconds_ns(ts)?,
            model: Some(t.field(model).to_owned()),
            prompt: t.tokens(req)?,
            output: t.tokens(resp)?,
            blocks: Vec::new(),
        });
    }
    Ok(rows)
}
