//! Loads `write_report`'s inputs: tells run dirs (`run.json`) from sweep dirs (`sweep.json`), reads
//! them, and gives each run a short unique label and a colour slot. It does not interpret metrics.

use crate::error::ReportError;
use crate::sweep_schema::{self, SweepMeta, SweepRow};
use sim::trace::{RunDir, Source, files, read_run_dir};
use std::path::{Path, PathBuf};

/// A sweep dir loaded in memory.
#[derive(Clone, Debug)]
pub(crate) struct SweepDir {
    /// Where it was read from.
    pub path: PathBuf,
    /// `sweep.json`.
    pub meta: SweepMeta,
    /// `sweep.csv`.
    pub rows: Vec<SweepRow>,
}

/// One run dir with its label; `index` is its position among the run dirs (0 = reference) and
/// picks its colour.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    /// The data.
    pub dir: RunDir,
    /// Short unique name for legends and tables.
    pub label: String,
    /// Position among the run dirs.
    pub index: usize,
}

/// Everything `write_report` was given, in input order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inputs {
    /// Run dirs; the first is the reference for relative differences.
    pub runs: Vec<Run>,
    /// Sweep dirs.
    pub sweeps: Vec<SweepDir>,
}

/// Reads every input, detecting its kind.
pub(crate) fn load(paths: &[PathBuf]) -> Result<Inputs, ReportError> {
    if paths.is_empty() {
        return Err(ReportError::NoInputs);
    }
    let mut dirs = Vec::new();
    let mut sweeps = Vec::new();
    for p in paths {
        if p.join(files::RUN_JSON).is_file() {
            dirs.push(read_run_dir(p)?);
        } else if p.join(sweep_schema::files::SWEEP_JSON).is_file() {
            let (meta, rows) = sweep_schema::read_sweep_dir(p)?;
            sweeps.push(SweepDir { path: p.clone(), meta, rows });
        } else if !p.exists() {
            // Let the trace reader word the "no such directory" error, naming the path.
            dirs.push(read_run_dir(p)?);
        } else {
            return Err(ReportError::NotAnInput { path: p.clone() });
        }
    }
    let labels = unique_labels(&dirs);
    let runs = dirs
        .into_iter()
        .zip(labels)
        .enumerate()
        .map(|(index, (dir, label))| Run { dir, label, index })
        .collect();
    Ok(Inputs { runs, sweeps })
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Sim => "sim",
        Source::Live => "live",
    }
}

/// The shortest naming scheme that tells every run apart: variant; variant (source);
/// scenario/variant (source); then the directory name appended.
fn unique_labels(dirs: &[RunDir]) -> Vec<String> {
    let schemes: [&dyn Fn(&RunDir) -> String; 3] = [
        &|d| d.meta.variant.clone(),
        &|d| format!("{} ({})", d.meta.variant, source_name(d.meta.source)),
        &|d| format!("{}/{} ({})", d.meta.scenario_name, d.meta.variant, source_name(d.meta.source)),
    ];
    for scheme in schemes {
        let labels: Vec<String> = dirs.iter().map(scheme).collect();
        if all_distinct(&labels) {
            return labels;
        }
    }
    let mut labels: Vec<String> = dirs
        .iter()
        .map(|d| format!("{} ({}) {}", d.meta.variant, source_name(d.meta.source), dir_name(&d.path)))
        .collect();
    if !all_distinct(&labels) {
        for (i, l) in labels.iter_mut().enumerate() {
            l.push_str(&format!(" #{}", i + 1));
        }
    }
    labels
}

fn all_distinct(labels: &[String]) -> bool {
    labels.iter().enumerate().all(|(i, l)| !labels[..i].contains(l))
}

/// The last component of a path, for labels.
pub(crate) fn dir_name(p: &Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// A label turned into a file-name fragment: lowercase ASCII letters, digits, `-` and `_`.
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let t = out.trim_matches('_').to_string();
    if t.is_empty() { "x".into() } else { t }
}

/// The models of `runs`, in first-seen order (scenario order of each run's summary, then any
/// model seen only in requests).
pub(crate) fn models(runs: &[Run]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in runs {
        let names =
            r.dir.summary.models.iter().map(|m| &m.model).chain(r.dir.requests.iter().map(|q| &q.model));
        for m in names {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_file_names() {
        assert_eq!(slug("Llama-3.1-8B#0 (sim)"), "llama-3.1-8b_0_sim");
        assert_eq!(slug("///"), "x");
    }
}
