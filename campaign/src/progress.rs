//! Progress lines ("[ 3/14 +0:42] baseline: calibration ladder of llama-3.1-8b") on stderr and in
//! `campaign.log`, and each step's own log file.

use crate::error::CampaignError;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `m:ss`, or `h:mm:ss` from an hour on.
pub(crate) fn clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn open_append(path: &Path) -> Result<File, CampaignError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|source| CampaignError::Io { path: dir.to_path_buf(), source })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| CampaignError::Io { path: path.to_path_buf(), source })
}

/// The campaign's progress: step position, elapsed time, to stderr and `campaign.log`.
pub(crate) struct Progress {
    start: Instant,
    total: usize,
    log: File,
    stderr: bool,
}

impl Progress {
    /// Appends to `log`; prints on stderr too when `stderr`.
    pub fn new(log: &Path, total: usize, stderr: bool) -> Result<Progress, CampaignError> {
        Ok(Progress { start: Instant::now(), total, log: open_append(log)?, stderr })
    }

    /// `1/14`-style position of step index `i`.
    pub fn position(&self, i: usize) -> String {
        format!("{}/{}", i + 1, self.total)
    }

    /// Seconds since the campaign (this invocation) started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A line about step `i`.
    pub fn step(&mut self, i: usize, text: &str) {
        let w = self.total.to_string().len();
        let line = format!("[{:>w$}/{} +{}] {text}", i + 1, self.total, clock(self.elapsed()));
        self.emit(&line);
    }

    /// An unindented line.
    pub fn header(&mut self, text: &str) {
        self.emit(text);
    }

    /// An indented detail line.
    pub fn note(&mut self, text: &str) {
        self.emit(&format!("    {text}"));
    }

    fn emit(&mut self, line: &str) {
        if self.stderr {
            eprintln!("{line}");
        }
        let _ = writeln!(self.log, "{line}");
    }
}

/// One step's log: what it was given, what it wrote, and its error.
pub(crate) struct StepLog {
    /// The file.
    pub path: PathBuf,
    file: File,
}

impl StepLog {
    /// Opens (appends to) `logs/<NN>-<id>.log`.
    pub fn open(dir: &Path, index: usize, id: &str) -> Result<StepLog, CampaignError> {
        let path =
            dir.join(format!("{:02}-{}.log", index + 1, crate::layout::file_safe(&id.replace('/', "-"))));
        let file = open_append(&path)?;
        let mut log = StepLog { path, file };
        log.line(&format!("# {id}"));
        Ok(log)
    }

    /// Appends `text` and a newline.
    pub fn line(&mut self, text: &str) {
        let _ = writeln!(self.file, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn the_clock_reads_minutes_then_hours() {
        assert_eq!(clock(0.4), "0:00");
        assert_eq!(clock(61.0), "1:01");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}
