//! Replay sources: a recorded run dir (`requests.csv`) or an Azure LLM inference trace CSV
//! (`TIMESTAMP,ContextTokens,GeneratedTokens`). Files are checked in full when the workload is
//! built (so a bad line fails up front, naming the file and line); Azure traces are then streamed
//! again row by row, while a run dir's few needed columns are loaded and sorted (its rows are
//! written in completion order, not issue order). It does not apply phase bounds or pick models
//! for Azure rows (see `generator`).

use super::error::WorkloadError;
use crate::ids::ModelId;
use crate::time::SimDuration;
use serde::Deserialize;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Column names of the Azure LLM inference traces (Patel et al., Splitwise, ISCA 2024).
const AZURE_COLUMNS: [&str; 3] = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"];

/// One replayed request before phase bounds and speedup: offset from the first row, model (run
/// dirs only) and lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplayItem {
    /// Nanoseconds after the file's first request.
    pub offset_ns: u64,
    /// The recorded model (run dirs); `None` for Azure rows (the phase mix picks).
    pub model: Option<ModelId>,
    /// Prompt tokens (at least 1).
    pub prompt: u32,
    /// Output tokens (at least 1).
    pub output: u32,
}

/// What kind of file a replay path is.
#[derive(Clone, Debug)]
enum Source {
    /// An Azure trace, streamed from disk on each pass.
    Azure,
    /// A run dir's rows, sorted in issue order.
    RunDir(Arc<[ReplayItem]>),
}

/// A checked replay file.
#[derive(Clone, Debug)]
pub(crate) struct ReplayPlan {
    /// The CSV file read.
    pub path: PathBuf,
    source: Source,
    /// Gaps are divided by this.
    pub speedup: f64,
    /// Requests the phase will issue (rows within its count and time bounds).
    pub planned: u64,
}

impl ReplayPlan {
    /// Checks the file at `path` (a run dir, its `requests.csv`, or an Azure trace) and counts
    /// the rows the phase bounds keep. `model_keys` maps a run dir's model column to `ModelId`s.
    pub(crate) fn load(
        path: &Path,
        speedup: f64,
        model_keys: &[String],
        limit: Option<u64>,
        duration: Option<SimDuration>,
    ) -> Result<Self, WorkloadError> {
        let csv_path =
            if path.is_dir() { path.join(crate::trace::files::REQUESTS_CSV) } else { path.to_path_buf() };
        let headers = read_headers(&csv_path)?;
        let source = if AZURE_COLUMNS.iter().all(|c| headers.iter().any(|h| h == *c)) {
            Source::Azure
        } else if headers.iter().any(|h| h == "scheduled_s") {
            Source::RunDir(load_run_dir(&csv_path, model_keys)?.into())
        } else {
            return Err(WorkloadError::File {
                path: csv_path,
                reason: format!(
                    "not a replay file: expected an Azure LLM inference trace with columns {} or a run dir's requests.csv (with scheduled_s); found columns {:?}",
                    AZURE_COLUMNS.join(","),
                    headers
                ),
            });
        };
        let mut plan = ReplayPlan { path: csv_path, source, speedup, planned: 0 };
        let mut cursor = plan.open()?;
        let (mut rows, mut planned) = (0u64, 0u64);
        let mut within = true;
        while let Some(item) = cursor.next_item() {
            let item = item?;
            rows += 1;
            within = within
                && limit.is_none_or(|n| planned < n)
                && duration.is_none_or(|d| plan.scaled(item.offset_ns) <= d);
            if within {
                planned += 1;
            }
        }
        if rows == 0 {
            return Err(WorkloadError::File { path: plan.path, reason: "no request rows to replay".into() });
        }
        plan.planned = planned;
        Ok(plan)
    }

    /// Whether rows carry their own model (run dir) rather than taking one from the mix (Azure).
    pub(crate) fn has_models(&self) -> bool {
        matches!(self.source, Source::RunDir(_))
    }

    /// The offset after the phase start of a row `offset_ns` after the first row.
    pub(crate) fn scaled(&self, offset_ns: u64) -> SimDuration {
        scale(offset_ns, self.speedup)
    }

    /// Starts a pass over the rows.
    pub(crate) fn open(&self) -> Result<ReplayCursor, WorkloadError> {
        Ok(match &self.source {
            Source::Azure => ReplayCursor::Azure(Box::new(AzureReader::open(&self.path)?)),
            Source::RunDir(rows) => ReplayCursor::RunDir { rows: Arc::clone(rows), pos: 0 },
        })
    }
}

/// `offset_ns / speedup`, rounded to the nanosecond (exact for speedup 1).
pub(crate) fn scale(offset_ns: u64, speedup: f64) -> SimDuration {
    let ns = (offset_ns as f64 / speedup).round();
    SimDuration(if ns >= u64::MAX as f64 { u64::MAX } else { ns as u64 })
}

/// A pass over a replay file's rows in issue order.
#[derive(Debug)]
pub(crate) enum ReplayCursor {
    /// Streaming an Azure trace.
    Azure(Box<AzureReader>),
    /// Walking a loaded run dir.
    RunDir {
        /// The rows.
        rows: Arc<[ReplayItem]>,
        /// Next row.
        pos: usize,
    },
}

impl ReplayCursor {
    /// The next row, an error naming the file and line, or `None` at the end.
    pub(crate) fn next_item(&mut self) -> Option<Result<ReplayItem, WorkloadError>> {
        match self {
            ReplayCursor::Azure(r) => r.next_item(),
            ReplayCursor::RunDir { rows, pos } => {
                let item = rows.get(*pos).copied()?;
                *pos += 1;
                Some(Ok(item))
            }
        }
    }
}

fn io_err(path: &Path, e: csv::Error) -> WorkloadError {
    let line = e.position().map(|p| p.line());
    let reason = e.to_string();
    match (e.into_kind(), line) {
        (csv::ErrorKind::Io(source), _) => WorkloadError::Io { path: path.into(), source },
        (_, Some(line)) => WorkloadError::Line { path: path.into(), line, reason },
        (_, None) => WorkloadError::File { path: path.into(), reason },
    }
}

fn open_csv(path: &Path) -> Result<csv::Reader<File>, WorkloadError> {
    let file = File::open(path).map_err(|source| WorkloadError::Io { path: path.into(), source })?;
    Ok(csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file))
}

fn read_headers(path: &Path) -> Result<Vec<String>, WorkloadError> {
    let mut r = open_csv(path)?;
    let h = r.headers().map_err(|e| io_err(path, e))?;
    Ok(h.iter().map(str::to_owned).collect())
}

/// Streams an Azure trace, checking that timestamps never go backwards.
#[derive(Debug)]
pub(crate) struct AzureReader {
    path: PathBuf,
    reader: csv::Reader<File>,
    record: csv::StringRecord,
    /// Column indices of TIMESTAMP, ContextTokens, GeneratedTokens.
    cols: [usize; 3],
    first_ns: Option<i128>,
    prev_ns: Option<i128>,
}

impl AzureReader {
    fn open(path: &Path) -> Result<Self, WorkloadError> {
        let mut reader = open_csv(path)?;
        let headers = reader.headers().map_err(|e| io_err(path, e))?.clone();
        let mut cols = [0usize; 3];
        for (slot, name) in cols.iter_mut().zip(AZURE_COLUMNS) {
            *slot = headers.iter().position(|h| h == name).ok_or_else(|| WorkloadError::File {
                path: path.into(),
                reason: format!("no {name} column; an Azure trace has columns {}", AZURE_COLUMNS.join(",")),
            })?;
        }
        Ok(AzureReader {
            path: path.into(),
            reader,
            record: csv::StringRecord::new(),
            cols,
            first_ns: None,
            prev_ns: None,
        })
    }

    fn next_item(&mut self) -> Option<Result<ReplayItem, WorkloadError>> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => Some(self.parse_record()),
            Err(e) => Some(Err(io_err(&self.path, e))),
        }
    }

    fn parse_record(&mut self) -> Result<ReplayItem, WorkloadError> {
        let line = self.record.position().map_or(0, |p| p.line());
        let err = |reason: String| WorkloadError::Line { path: self.path.clone(), line, reason };
        let field = |i: usize| self.record.get(self.cols[i]).unwrap_or("");
        let ts = field(0);
        let ns = parse_timestamp_ns(ts).map_err(|r| err(format!("TIMESTAMP {ts:?}: {r}")))?;
        let tokens = |i: usize| -> Result<u32, WorkloadError> {
            let v = field(i);
            v.parse::<u32>()
                .map_err(|_| err(format!("{} {v:?} is not a whole number of tokens", AZURE_COLUMNS[i])))
        };
        let (prompt, output) = (tokens(1)?, tokens(2)?);
        if self.prev_ns.is_some_and(|p| ns < p) {
            return Err(err(format!(
                "TIMESTAMP {ts} is earlier than the row before; sort the file by TIMESTAMP"
            )));
        }
        self.prev_ns = Some(ns);
        let first = *self.first_ns.get_or_insert(ns);
        let offset_ns = u64::try_from(ns - first).unwrap_or(u64::MAX);
        Ok(ReplayItem { offset_ns, model: None, prompt: prompt.max(1), output: output.max(1) })
    }
}

/// Nanoseconds since 1970-01-01 of a wall-clock `YYYY-MM-DD HH:MM:SS[.fffffffff]` (a `T` may
/// separate date and time; no time zone; up to 9 fractional digits).
pub(crate) fn parse_timestamp_ns(s: &str) -> Result<i128, String> {
    const FORMAT: &str = "expected YYYY-MM-DD HH:MM:SS.fffffff";
    let (date, time) = s.trim().split_once([' ', 'T']).ok_or(FORMAT)?;
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(da), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(FORMAT.into());
    };
    let num = |x: &str| -> Result<u32, String> {
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FORMAT.into());
        }
        x.parse::<u32>().map_err(|_| FORMAT.to_string())
    };
    let (y, mo, da) = (num(y)?, num(mo)?, num(da)?);
    if !(1..=12).contains(&mo) || da < 1 || da > days_in_month(y, mo) {
        return Err(format!("no such date {date}"));
    }
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(se), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(FORMAT.into());
    };
    let (h, mi, se) = (num(h)?, num(mi)?, num(se)?);
    if h > 23 || mi > 59 || se > 59 {
        return Err(format!("no such time of day {hms}"));
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{FORMAT} (at most 9 fractional digits)"));
    }
    let frac_ns =
        if frac.is_empty() { 0 } else { i128::from(num(frac)?) * 10i128.pow(9 - frac.len() as u32) };
    let days = days_from_civil(i64::from(y), mo, da);
    let secs = i128::from(days) * 86_400 + i128::from(h * 3600 + mi * 60 + se);
    Ok(secs * 1_000_000_000 + frac_ns)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The columns of a run dir's `requests.csv` that replay needs (others are ignored).
#[derive(Deserialize)]
struct RunDirCsvRow {
    id: u64,
    model: String,
    scheduled_s: f64,
    prompt_tokens: u32,
    max_tokens: u32,
}

/// Loads a run dir's requests in issue order (`scheduled_s`, then `id`).
fn load_run_dir(path: &Path, model_keys: &[String]) -> Result<Vec<ReplayItem>, WorkloadError> {
    let mut reader = open_csv(path)?;
    let headers = reader.headers().map_err(|e| io_err(path, e))?.clone();
    let mut rows: Vec<(f64, u64, ReplayItem)> = Vec::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(|e| io_err(path, e))? {
        let line = record.position().map_or(0, |p| p.line());
        let err = |reason: String| WorkloadError::Line { path: path.into(), line, reason };
        let row: RunDirCsvRow = record.deserialize(Some(&headers)).map_err(|e| err(e.to_string()))?;
        if !row.scheduled_s.is_finite() || row.scheduled_s < 0.0 {
            return Err(err(format!("scheduled_s {} is not a time >= 0 s", row.scheduled_s)));
        }
        let model = model_keys.iter().position(|k| *k == row.model).ok_or_else(|| {
            err(format!("model {:?} is not in this scenario (models: {model_keys:?}); replay it in a scenario that serves it", row.model))
        })?;
        let item = ReplayItem {
            offset_ns: 0,
            model: Some(ModelId(model as u32)),
            prompt: row.prompt_tokens.max(1),
            output: row.max_tokens.max(1),
        };
        rows.push((row.scheduled_s, row.id, item));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let first = rows.first().map_or(0.0, |r| r.0);
    Ok(rows
        .into_iter()
        .map(|(s, _, item)| ReplayItem { offset_ns: SimDuration::from_secs_f64(s - first).0, ..item })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_timestamps_parse_to_the_nanosecond() {
        let a = parse_timestamp_ns("2023-11-16 18:15:46.6805900").unwrap();
        let b = parse_timestamp_ns("2023-11-16 18:15:50.9951690").unwrap();
        assert_eq!(b - a, 4_314_579_000);
        // 2023-11-16 is day 19677 since the epoch.
        assert_eq!(parse_timestamp_ns("2023-11-16 00:00:00").unwrap(), 19_677 * 86_400 * 1_000_000_000);
        let over_midnight = parse_timestamp_ns("2024-03-01 00:00:00.5").unwrap()
            - parse_timestamp_ns("2024-02-29T23:59:59.5").unwrap();
        assert_eq!(over_midnight, 1_000_000_000);
    }

    #[test]
    fn malformed_timestamps_are_rejected_with_the_expected_format() {
        for bad in [
            "2023-11-16",
            "2023-13-01 00:00:00",
            "2023-02-29 00:00:00",
            "2023-11-16 25:00:00",
            "x-y-z 1:2:3",
            "2023-11-16 10:00:00.1234567890",
        ] {
            let e = parse_timestamp_ns(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(parse_timestamp_ns("16/11/2023 18:15").unwrap_err().contains("YYYY-MM-DD"));
    }
}
