//! Replay sources: trace readers, one module per format, all producing the same rows
//! ([`TraceRow`]), and the [`ReplayPlan`] a replay phase runs from: the rows inside the source
//! window, with models assigned, rate-scaled, as [`ReplayItem`]s in issue order.
//!
//! Formats: Azure CSV (`azure`), a run dir's `requests.csv` (`run_dir`), Mooncake / aiperf JSONL
//! (`mooncake`), BurstGPT CSV (`burstgpt`) and the generic CSV (`generic`). A file is read and
//! checked in full when the workload is built (errors name the file, line and column) and held in
//! memory (a few dozen bytes a row, plus its block ids). Rows other than a run dir's must be in
//! time order. It does not apply phase bounds or speedup at issue time (see `generator`).

mod azure;
mod burstgpt;
mod csv_fields;
mod generic;
mod mooncake;
mod run_dir;

use super::error::WorkloadError;
use super::streams::{Stream, rng};
use crate::engine::PromptContent;
use crate::ids::ModelId;
use crate::scenario::{ReplayModels, ReplayOptions, TraceFormat};
use crate::time::SimDuration;
use rand::Rng;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One request row of a trace, whatever its format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceRow {
    /// Line in the file (for errors).
    pub line: u64,
    /// Time in the file's own clock, nanoseconds (any origin).
    pub time_ns: i128,
    /// The model column, when the format has one.
    pub model: Option<String>,
    /// Prompt tokens (at least 1).
    pub prompt: u32,
    /// Output tokens (at least 1).
    pub output: u32,
    /// Prefix-block ids of `block_size` tokens, block 0 first (empty: none known).
    pub blocks: Vec<u64>,
}

/// One replayed request before speedup: offset into the window, model and content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplayItem {
    /// Nanoseconds after the window start (source time).
    pub offset_ns: u64,
    /// The row's model (`models = "trace"`); `None`: the phase mix picks.
    pub model: Option<ModelId>,
    /// Prompt tokens (at least 1).
    pub prompt: u32,
    /// Output tokens (at least 1).
    pub output: u32,
    /// The prompt's described prefix blocks.
    pub content: PromptContent,
}

/// What a replay phase did with its file's rows (printed by `simulate` and `live run`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplayStats {
    /// The file read.
    pub path: PathBuf,
    /// Its format.
    pub format: TraceFormat,
    /// Request rows in the file.
    pub rows_read: u64,
    /// Rows outside the source window (`start_s`, `end_s` / `duration_s`).
    pub outside_window: u64,
    /// Rows (or copies of rows) dropped by thinning (`rate_scale`).
    pub thinned: u64,
    /// Copies of the window superposed (`rate_scale` > 1), else 1.
    pub copies: u32,
    /// Rows past the phase's `num_requests`.
    pub over_count: u64,
    /// Requests the phase issues.
    pub sent: u64,
}

impl std::fmt::Display for ReplayStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {} rows read", self.path.display(), self.format.as_str(), self.rows_read)?;
        let skipped = [
            (self.outside_window, "outside the window"),
            (self.thinned, "thinned by rate_scale"),
            (self.over_count, "past num_requests"),
        ];
        for (n, why) in skipped.iter().filter(|s| s.0 > 0) {
            write!(f, ", {n} skipped ({why})")?;
        }
        if self.copies > 1 {
            write!(f, ", {} copies superposed", self.copies)?;
        }
        write!(f, ", {} sent", self.sent)
    }
}

/// A checked replay file: the requests a replay phase issues, in issue order.
#[derive(Clone, Debug)]
pub(crate) struct ReplayPlan {
    /// Its format.
    pub format: TraceFormat,
    items: Arc<[ReplayItem]>,
    /// Gaps are divided by this.
    pub speedup: f64,
    /// The window's length (source time), when it has an end.
    pub window_ns: Option<u64>,
    /// What happened to the rows.
    pub stats: ReplayStats,
}

/// Where a replay file's rows come from and how to pick them; see [`ReplayPlan::load`].
pub(crate) struct ReplaySource<'a> {
    /// The file or run dir.
    pub path: &'a Path,
    /// Time compression.
    pub speedup: f64,
    /// Window, scaling, models, block size.
    pub options: &'a ReplayOptions,
    /// The phase's `duration_s` (source window length).
    pub duration_s: Option<f64>,
    /// The phase's `num_requests`.
    pub limit: Option<u64>,
    /// Scenario model keys, indexed by `ModelId`.
    pub model_keys: &'a [String],
    /// Master seed and phase index (thinning draws).
    pub seed: u64,
    /// Phase index.
    pub phase: u32,
}

fn secs_to_ns(s: f64) -> u64 {
    SimDuration::from_secs_f64(s).0
}

impl ReplayPlan {
    /// Reads and checks the file, keeps the rows inside the window, assigns models, builds each
    /// row's content from its block ids and applies `rate_scale` and `num_requests`.
    pub(crate) fn load(src: &ReplaySource<'_>) -> Result<Self, WorkloadError> {
        let opts = src.options;
        let (path, format) = detect(src.path, opts.format)?;
        let rows = read(&path, format)?;
        let Some(first) = rows.first().map(|r| r.time_ns) else {
            return Err(WorkloadError::File { path, reason: "no request rows to replay".into() });
        };
        let use_trace = match opts.models {
            ReplayModels::Mix => false,
            ReplayModels::Auto => rows.iter().all(|r| r.model.is_some()),
            ReplayModels::Trace => {
                if rows.iter().any(|r| r.model.is_none()) {
                    return Err(WorkloadError::File {
                        path,
                        reason: format!(
                            "models = \"trace\" but this {} trace has no model column; use models = \"mix\"",
                            format.as_str()
                        ),
                    });
                }
                true
            }
        };
        let start = secs_to_ns(opts.start_s);
        let end = opts.window_end(src.duration_s).map(secs_to_ns);
        let mut stats = ReplayStats {
            path: path.clone(),
            format,
            rows_read: rows.len() as u64,
            outside_window: 0,
            thinned: 0,
            copies: 1,
            over_count: 0,
            sent: 0,
        };
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let offset = u64::try_from(row.time_ns - first).unwrap_or(u64::MAX);
            if offset < start || end.is_some_and(|e| offset >= e) {
                stats.outside_window += 1;
                continue;
            }
            let model = if use_trace { Some(map_model(&path, &row, opts, src.model_keys)?) } else { None };
            let content = PromptContent::trace_blocks(&row.blocks, opts.block_size, row.prompt);
            items.push(ReplayItem {
                offset_ns: offset - start,
                model,
                prompt: row.prompt,
                output: row.output,
                content,
            });
        }
        if items.is_empty() {
            return Err(WorkloadError::File {
                path,
                reason: format!(
                    "none of its {} rows is inside the replay window (start_s = {}, end = {}); the window is in seconds after the file's first row",
                    stats.rows_read,
                    opts.start_s,
                    end.map_or("the end of the file".to_string(), |e| format!("{} s", e as f64 / 1e9)),
                ),
            });
        }
        let window_ns = end.map(|e| e - start);
        if opts.rate_scale != 1.0 && !items.is_empty() {
            let span = window_ns.unwrap_or_else(|| items.last().map_or(1, |i| i.offset_ns.saturating_add(1)));
            items = rate_scale(items, opts.rate_scale, span, src.seed, src.phase, &mut stats);
        }
        if let Some(n) = src.limit.and_then(|n| usize::try_from(n).ok()).filter(|&n| n < items.len()) {
            stats.over_count = (items.len() - n) as u64;
            items.truncate(n);
        }
        stats.sent = items.len() as u64;
        Ok(ReplayPlan { format, items: items.into(), speedup: src.speedup, window_ns, stats })
    }

    /// Requests the phase issues.
    pub(crate) fn planned(&self) -> u64 {
        self.stats.sent
    }

    /// Whether rows carry their own model rather than taking one from the mix.
    pub(crate) fn has_models(&self) -> bool {
        self.items.iter().all(|i| i.model.is_some())
    }

    /// The phase's length after speedup, when the window has an end.
    pub(crate) fn duration(&self) -> Option<SimDuration> {
        self.window_ns.map(|n| scale(n, self.speedup))
    }

    /// Starts a pass over the requests.
    pub(crate) fn open(&self) -> ReplayCursor {
        ReplayCursor { items: Arc::clone(&self.items), pos: 0 }
    }
}

/// `offset_ns / speedup`, rounded to the nanosecond (exact for speedup 1).
pub(crate) fn scale(offset_ns: u64, speedup: f64) -> SimDuration {
    let ns = (offset_ns as f64 / speedup).round();
    SimDuration(if ns >= u64::MAX as f64 { u64::MAX } else { ns as u64 })
}

/// A pass over a replay plan's requests in issue order.
#[derive(Debug)]
pub(crate) struct ReplayCursor {
    items: Arc<[ReplayItem]>,
    pos: usize,
}

impl ReplayCursor {
    /// The next request, or `None` at the end.
    pub(crate) fn next_item(&mut self) -> Option<ReplayItem> {
        let item = self.items.get(self.pos).cloned()?;
        self.pos += 1;
        Some(item)
    }
}

/// The CSV file to read (a run dir's `requests.csv` for a directory) and its format: `named`,
/// or detected from the extension and the header.
fn detect(path: &Path, named: Option<TraceFormat>) -> Result<(PathBuf, TraceFormat), WorkloadError> {
    if path.is_dir() {
        let csv = path.join(crate::trace::files::REQUESTS_CSV);
        return match named {
            None | Some(TraceFormat::RunDir) => Ok((csv, TraceFormat::RunDir)),
            Some(f) => Err(WorkloadError::File {
                path: path.into(),
                reason: format!(
                    "format = \"{}\" but this is a directory (a run dir); name a file",
                    f.as_str()
                ),
            }),
        };
    }
    if let Some(f) = named {
        return Ok((path.into(), f));
    }
    let mut first = [0u8; 1];
    let first_byte = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut first))
        .map_err(|source| WorkloadError::Io { path: path.into(), source })?;
    if mooncake::matches(path, (first_byte == 1).then_some(first[0])) {
        return Ok((path.into(), TraceFormat::Mooncake));
    }
    let headers = csv_fields::headers(path)?;
    let format = if azure::matches(&headers) {
        TraceFormat::Azure
    } else if run_dir::matches(&headers) {
        TraceFormat::RunDir
    } else if burstgpt::matches(&headers) {
        TraceFormat::Burstgpt
    } else if generic::matches(&headers) {
        TraceFormat::Csv
    } else {
        return Err(WorkloadError::File {
            path: path.into(),
            reason: format!(
                "not a replay file: expected an Azure trace ({}), a run dir's requests.csv (with scheduled_s), a BurstGPT trace ({}), the generic CSV ({}) or Mooncake JSONL; found columns {headers:?}; or name the format with format = \"...\"",
                azure::COLUMNS.join(","),
                burstgpt::COLUMNS.join(","),
                generic::COLUMNS.join(","),
            ),
        });
    };
    Ok((path.into(), format))
}

/// Every row of the file, in time order.
fn read(path: &Path, format: TraceFormat) -> Result<Vec<TraceRow>, WorkloadError> {
    let rows = match format {
        TraceFormat::Azure => azure::read(path)?,
        // Sorted into issue order by the reader (its rows are in completion order).
        TraceFormat::RunDir => return run_dir::read(path),
        TraceFormat::Mooncake => mooncake::read(path)?,
        TraceFormat::Burstgpt => burstgpt::read(path)?,
        TraceFormat::Csv => generic::read(path)?,
    };
    if let Some(w) = rows.windows(2).find(|w| w[1].time_ns < w[0].time_ns) {
        return Err(WorkloadError::Line {
            path: path.into(),
            line: w[1].line,
            reason: format!(
                "its time is earlier than the row before (line {}); sort the file by time",
                w[0].line
            ),
        });
    }
    Ok(rows)
}

/// The scenario model of a row's model column (through `model_map`).
fn map_model(
    path: &Path,
    row: &TraceRow,
    opts: &ReplayOptions,
    model_keys: &[String],
) -> Result<ModelId, WorkloadError> {
    let name = row.model.as_deref().unwrap_or("");
    let key = opts.model_map.get(name).map_or(name, String::as_str);
    let index = model_keys.iter().position(|k| k == key).ok_or_else(|| WorkloadError::Line {
        path: path.into(),
        line: row.line,
        reason: if key == name {
            format!(
                "model {name:?} is not in this scenario (models: {model_keys:?}); map it with model_map = {{ {name:?} = \"<model key>\" }}, take models from the phase mix with models = \"mix\", or replay it in a scenario that serves it"
            )
        } else {
            format!("model_map maps model {name:?} to {key:?}, which is not a model of this scenario (models: {model_keys:?})")
        },
    })?;
    Ok(ModelId(index as u32))
}

/// Thins (`factor` < 1) or superposes `ceil(factor)` copies of the window, copy j shifted by
/// j/copies of the window `span` and wrapped around, each kept with probability
/// `factor / copies` (one draw per row and copy, copies outer). Returns the items in time order.
fn rate_scale(
    items: Vec<ReplayItem>,
    factor: f64,
    span: u64,
    seed: u64,
    phase: u32,
    stats: &mut ReplayStats,
) -> Vec<ReplayItem> {
    let copies = factor.ceil().max(1.0) as u32;
    let keep = factor / f64::from(copies);
    let mut draws = rng(seed, Stream::ReplayThinning { phase });
    let mut out = Vec::with_capacity((items.len() as f64 * factor).ceil() as usize);
    for j in 0..copies {
        let shift = (u128::from(span) * u128::from(j) / u128::from(copies)) as u64;
        for item in &items {
            if keep < 1.0 && draws.random::<f64>() >= keep {
                stats.thinned += 1;
                continue;
            }
            let offset_ns =
                ((u128::from(item.offset_ns) + u128::from(shift)) % u128::from(span.max(1))) as u64;
            out.push(ReplayItem { offset_ns, ..item.clone() });
        }
    }
    out.sort_by_key(|i| i.offset_ns);
    stats.copies = copies;
    out
}
