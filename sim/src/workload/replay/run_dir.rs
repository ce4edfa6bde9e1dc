//! A run dir's `requests.csv` (written by `simulate` and `live run`): rows are in completion
//! order, so they are sorted back into issue order (`scheduled_s`, then `id`). Each row names
//! its model by scenario key; the requested `max_tokens` is replayed, not what came back.

use super::TraceRow;
use super::csv_fields::Table;
use crate::workload::WorkloadError;
use std::path::Path;

const FORMAT: &str = "a run dir's requests.csv has columns id,model,scheduled_s,prompt_tokens,max_tokens";

/// Whether a CSV header is a run dir's `requests.csv`.
pub(super) fn matches(headers: &[String]) -> bool {
    headers.iter().any(|h| h == "scheduled_s")
}

/// Reads every row, in issue order.
pub(super) fn read(path: &Path) -> Result<Vec<TraceRow>, WorkloadError> {
    let mut t = Table::open(path)?;
    let cols = ["id", "model", "scheduled_s", "prompt_tokens", "max_tokens"].map(|c| t.column(c, FORMAT));
    let [id, model, scheduled, prompt, max_tokens] = cols;
    let (id, model, scheduled, prompt, max_tokens) = (id?, model?, scheduled?, prompt?, max_tokens?);
    let mut rows: Vec<(u64, TraceRow)> = Vec::new();
    while t.next()? {
        let v = t.field(id);
        let request_id = v.parse::<u64>().map_err(|_| t.err(id, format!("{v:?} is not a request id")))?;
        rows.push((
            request_id,
            TraceRow {
                line: t.line(),
                time_ns: t.seconds_ns(scheduled)?,
                model: Some(t.field(model).to_owned()),
                prompt: t.tokens(prompt)?,
                output: t.tokens(max_tokens)?,
                blocks: Vec::new(),
            },
        ));
    }
    rows.sort_by_key(|(id, r)| (r.time_ns, *id));
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}
