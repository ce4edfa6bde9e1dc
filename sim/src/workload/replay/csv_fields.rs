//! CSV plumbing shared by the CSV trace readers: opening, header lookup and field parsing whose
//! errors name the file, line and column.

use super::super::error::WorkloadError;
use std::fs::File;
use std::path::Path;

/// Turns a csv error into a workload error naming the file (and line when known).
pub(super) fn csv_err(path: &Path, e: csv::Error) -> WorkloadError {
    let line = e.position().map(|p| p.line());
    let reason = e.to_string();
    match (e.into_kind(), line) {
        (csv::ErrorKind::Io(source), _) => WorkloadError::Io { path: path.into(), source },
        (_, Some(line)) => WorkloadError::Line { path: path.into(), line, reason },
        (_, None) => WorkloadError::File { path: path.into(), reason },
    }
}

/// Opens a CSV file with a header row (fields trimmed).
pub(super) fn open(path: &Path) -> Result<csv::Reader<File>, WorkloadError> {
    let file = File::open(path).map_err(|source| WorkloadError::Io { path: path.into(), source })?;
    Ok(csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file))
}

/// The header row of a CSV file.
pub(super) fn headers(path: &Path) -> Result<Vec<String>, WorkloadError> {
    let mut r = open(path)?;
    let h = r.headers().map_err(|e| csv_err(path, e))?;
    Ok(h.iter().map(str::to_owned).collect())
}

/// A CSV file being read row by row, with the indices of the columns a reader needs.
pub(super) struct Table<'p> {
    path: &'p Path,
    reader: csv::Reader<File>,
    headers: Vec<String>,
    /// The current record.
    pub record: csv::StringRecord,
}

impl<'p> Table<'p> {
    /// Opens `path` and reads its header.
    pub fn open(path: &'p Path) -> Result<Self, WorkloadError> {
        let mut reader = open(path)?;
        let headers = reader.headers().map_err(|e| csv_err(path, e))?.iter().map(str::to_owned).collect();
        Ok(Table { path, reader, headers, record: csv::StringRecord::new() })
    }

    /// The index of column `name`, if present.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// The index of column `name`, or an error saying which columns `format` needs.
    pub fn column(&self, name: &str, format: &str) -> Result<usize, WorkloadError> {
        self.find(name).ok_or_else(|| WorkloadError::File {
            path: self.path.into(),
            reason: format!("no {name} column; {format}; found columns {:?}", self.headers),
        })
    }

    /// Reads the next record; `false` at the end.
    pub fn next(&mut self) -> Result<bool, WorkloadError> {
        self.reader.read_record(&mut self.record).map_err(|e| csv_err(self.path, e))
    }

    /// The current record's line in the file.
    pub fn line(&self) -> u64 {
        self.record.position().map_or(0, |p| p.line())
    }

    /// The current record's field at column `col` (empty when the row is short).
    pub fn field(&self, col: usize) -> &str {
        self.record.get(col).unwrap_or("")
    }

    /// An error about column `col` of the current record.
    pub fn err(&self, col: usize, reason: impl std::fmt::Display) -> WorkloadError {
        let name = self.headers.get(col).map_or("", String::as_str);
        WorkloadError::Line {
            path: self.path.into(),
            line: self.line(),
            reason: format!("column {} ({name}): {reason}", col + 1),
        }
    }

    /// Column `col` as a whole number of tokens (0 becomes 1: every request has a token).
    pub fn tokens(&self, col: usize) -> Result<u32, WorkloadError> {
        let v = self.field(col);
        v.parse::<u32>()
            .map(|n| n.max(1))
            .map_err(|_| self.err(col, format!("{v:?} is not a whole number of tokens")))
    }

    /// Column `col` as seconds (finite, >= 0), in nanoseconds.
    pub fn seconds_ns(&self, col: usize) -> Result<i128, WorkloadError> {
        let v = self.field(col);
        match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Ok((s * 1e9).round() as i128),
            _ => Err(self.err(col, format!("{v:?} is not a number of seconds >= 0"))),
        }
    }
}
