//! The one error type of scenario loading: which file, which field, what is wrong.
//!
//! Every failure — TOML syntax, schema (unknown field, wrong type), semantics (a GPU index that does
//! not exist, a model that does not fit) and bad overrides — becomes a `ScenarioError` whose
//! `field` is a dotted path the user can find in the file (`instances[2].gpu`,
//! `workload.phases[0].arrival.rate`); an error about one `[[instances]]` entry also carries its
//! index (`instance`), so callers need not read it back out of the field. This module only builds
//! errors; it does not decide what is wrong.

use crate::ids::InstanceId;
use std::path::{Path, PathBuf};

/// A scenario file (or an override applied to it) is invalid.
///
/// Displays as `{file}: {field}: {reason}`; `reason` says what to do about it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
#[non_exhaustive]
pub struct ScenarioError {
    /// The scenario file (or `--set` for a malformed command-line override).
    pub file: PathBuf,
    /// Dotted path of the offending field, e.g. `instances[2].gpu`.
    pub field: String,
    /// What is wrong and what to do about it.
    pub reason: String,
    /// The `[[instances]]` entry the error is about (its index, which is also its `InstanceId`),
    /// when it is about one; the field may still name `[defaults.engine]`, where the offending
    /// knob was set.
    pub instance: Option<InstanceId>,
    /// The file the scenario names that does not exist (a replayed trace, a profile), when that is
    /// what is wrong: callers may skip or fetch it without reading `reason`. Boxed, to keep the
    /// error (held by value in other crates' errors) small.
    pub missing_file: Option<Box<Path>>,
}

impl ScenarioError {
    /// An error about `field` of `file`.
    pub fn new(file: &Path, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
            instance: None,
            missing_file: None,
        }
    }

    /// The same error, noted as being about `instances[index]` (unless it already names one).
    pub fn about_instance(mut self, index: usize) -> Self {
        if let (None, Ok(i)) = (self.instance, u32::try_from(index)) {
            self.instance = Some(InstanceId(i));
        }
        self
    }

    /// The same error, noted as being about `path`, a file the scenario names that does not exist.
    pub fn about_missing_file(mut self, path: &Path) -> Self {
        self.missing_file = Some(path.into());
        self
    }
}

/// Builds errors for one file, so resolution code does not thread the path everywhere.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    /// The scenario file errors are reported against.
    pub file: &'a Path,
    /// Directory relative paths in the file are resolved against.
    pub base_dir: &'a Path,
}

impl Ctx<'_> {
    /// An error about `field`.
    pub fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ScenarioError {
        ScenarioError::new(self.file, field, reason)
    }

    /// An error about `field` of instance `index`.
    pub fn instance_err(
        &self,
        index: usize,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> ScenarioError {
        self.err(field, reason).about_instance(index)
    }

    /// Resolves a path written in the file against the file's directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() { path.to_path_buf() } else { self.base_dir.join(path) }
    }
}

/// Formats bytes as GiB with two decimals, for messages.
pub(crate) fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / GIB)
}

/// Bytes per GiB.
pub(crate) const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `names` as a readable list: `"a", "b", "c"`.
pub(crate) fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}
