//! Streams a run's rows to CSV files as they happen; writes `run.json` first and `summary.json`
//! last. Rows are flushed when the writer finishes (or on `flush`), so a long run never holds its
//! rows in memory. A `PARTIAL` marker is written at the start and removed only by
//! [`RunDirWriter::finish`], so a run dir whose writer never finished says so.

use super::schema::{RunMeta, files};
use super::{InstanceRow, RequestRow, TokenRow};
use crate::metrics::RunSummary;
use crate::observe::Observer;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

/// Writes one run dir. Create it with [`RunDirWriter::create`], feed it rows as an [`Observer`],
/// then call [`RunDirWriter::finish`] with the summary.
pub struct RunDirWriter {
    dir: PathBuf,
    requests: csv::Writer<BufWriter<File>>,
    instances: csv::Writer<BufWriter<File>>,
    tokens: Option<csv::Writer<BufWriter<File>>>,
}

fn csv_writer(path: &Path) -> io::Result<csv::Writer<BufWriter<File>>> {
    let f = File::create(path).map_err(|e| annotate(path, e))?;
    Ok(csv::Writer::from_writer(BufWriter::with_capacity(1 << 16, f)))
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn csv_err(e: csv::Error) -> io::Error {
    io::Error::other(e)
}

impl RunDirWriter {
    /// Creates `dir` (and parents), writes `run.json`, and opens the CSV files.
    pub fn create(dir: &Path, meta: &RunMeta, tokens: bool) -> io::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| annotate(dir, e))?;
        let run_json = dir.join(files::RUN_JSON);
        let json = serde_json::to_string_pretty(meta).map_err(io::Error::other)?;
        fs::write(&run_json, json + "\n").map_err(|e| annotate(&run_json, e))?;
        write_partial(dir, UNFINISHED)?;
        // A stale summary.json from an earlier run in the same dir would pass for this run's.
        remove_if_present(&dir.join(files::SUMMARY_JSON))?;
        let tokens_path = dir.join(files::TOKENS_CSV);
        let tokens = if tokens {
            Some(csv_writer(&tokens_path)?)
        } else {
            // A stale tokens.csv from an earlier run in the same dir would mislead readers.
            remove_if_present(&tokens_path)?;
            None
        };
        Ok(RunDirWriter {
            dir: dir.to_path_buf(),
            requests: csv_writer(&dir.join(files::REQUESTS_CSV))?,
            instances: csv_writer(&dir.join(files::INSTANCES_CSV))?,
            tokens,
        })
    }

    /// The run dir's path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes every CSV (the live harness calls this as requests finish).
    pub fn flush(&mut self) -> io::Result<()> {
        self.requests.flush()?;
        self.instances.flush()?;
        if let Some(t) = self.tokens.as_mut() {
            t.flush()?;
        }
        Ok(())
    }

    /// Flushes the CSVs, writes `summary.json` and removes the `PARTIAL` marker: the run is
    /// complete.
    pub fn finish(mut self, summary: &RunSummary) -> io::Result<PathBuf> {
        self.flush()?;
        write_summary(&self.dir, summary)?;
        remove_if_present(&self.dir.join(files::PARTIAL))?;
        Ok(self.dir)
    }

    /// Flushes the CSVs, writes `summary.json` (over the rows recorded) and leaves the `PARTIAL`
    /// marker holding `reason`: the run stopped early and the dir holds only what it recorded.
    pub fn finish_partial(mut self, summary: &RunSummary, reason: &str) -> io::Result<PathBuf> {
        self.flush()?;
        write_summary(&self.dir, summary)?;
        write_partial(&self.dir, reason)?;
        Ok(self.dir)
    }
}

/// What the `PARTIAL` marker says until the writer finishes.
const UNFINISHED: &str = "the run did not finish: the process ended (killed?) before writing summary.json";

fn write_partial(dir: &Path, reason: &str) -> io::Result<()> {
    let path = dir.join(files::PARTIAL);
    let line = reason.replace(['\n', '\r'], " ");
    fs::write(&path, line + "\n").map_err(|e| annotate(&path, e))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(annotate(path, e)),
    }
}

/// Writes `summary.json` into `dir`.
pub fn write_summary(dir: &Path, summary: &RunSummary) -> io::Result<()> {
    let path = dir.join(files::SUMMARY_JSON);
    let json = serde_json::to_string_pretty(summary).map_err(io::Error::other)?;
    fs::write(&path, json + "\n").map_err(|e| annotate(&path, e))
}

impl Observer for RunDirWriter {
    fn on_request(&mut self, row: &RequestRow) -> io::Result<()> {
        self.requests.serialize(row).map_err(csv_err)
    }
    fn on_instance_sample(&mut self, row: &InstanceRow) -> io::Result<()> {
        self.instances.serialize(row).map_err(csv_err)
    }
    fn on_token(&mut self, row: &TokenRow) -> io::Result<()> {
        match self.tokens.as_mut() {
            Some(t) => t.serialize(row).map_err(csv_err),
            None => Ok(()),
        }
    }
    fn wants_tokens(&self) -> bool {
        self.tokens.is_some()
    }
}
