//! Sweep spec files (`--spec sweep.toml`): a sweep written down once, so it can be re-run, shared
//! or split over a batch system without retyping its `--vary` arguments.
//!
//! ```toml
//! [sweep]
//! scenario = "seed-6xh100.toml"      # relative to this file
//! vary = ["workload.phases.1.arrival.rate=2..40:2", "router.policy=round_robin,queue_aware"]
//! zip = false
//! reps = 3
//! variants = ["baseline"]
//! set = ["workload.phases.1.num_requests=10000"]
//! ```
//!
//! Every key is optional; the entries use the command line's syntax and the command line adds to
//! them. This module only reads the file; it does not run anything.

use super::SweepError;
use super::axis::Axis;
use crate::scenario::Override;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The `[sweep]` table of a spec file, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepFile {
    /// Scenario file, resolved against the spec file's directory.
    pub scenario: Option<PathBuf>,
    /// Varied fields.
    pub axes: Vec<Axis>,
    /// Pair the axes instead of crossing them.
    pub zip: bool,
    /// Replications per point.
    pub reps: Option<u32>,
    /// Variants to run (empty: all).
    pub variants: Vec<String>,
    /// Overrides applied at every point.
    pub overrides: Vec<Override>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    sweep: RawSweep,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    scenario: Option<String>,
    #[serde(default)]
    vary: Vec<String>,
    #[serde(default)]
    zip: bool,
    reps: Option<u32>,
    #[serde(default)]
    variants: Vec<String>,
    #[serde(default)]
    set: Vec<String>,
}

/// Reads the spec file at `path`.
pub fn load_sweep_file(path: &Path) -> Result<SweepFile, SweepError> {
    let text = std::fs::read_to_string(path).map_err(SweepError::io(path))?;
    parse_sweep_file(&text, path)
}

/// Parses spec-file `text`; `path` names it in errors and anchors the relative scenario path.
pub fn parse_sweep_file(text: &str, path: &Path) -> Result<SweepFile, SweepError> {
    let bad = |reason: String| SweepError::Malformed { path: path.to_path_buf(), reason };
    let de = toml::de::Deserializer::parse(text).map_err(|e| bad(e.message().to_string()))?;
    let raw: RawFile = serde_path_to_error::deserialize(de)
        .map_err(|e| bad(format!("{}: {}", e.path(), e.inner().message())))?;
    let raw = raw.sweep;
    let base = path.parent().unwrap_or(Path::new("."));
    let overrides = raw
        .set
        .iter()
        .map(|s| s.parse::<Override>().map_err(|e| bad(format!("sweep.set `{s}`: {}", e.reason))))
        .collect::<Result<_, _>>()?;
    Ok(SweepFile {
        scenario: raw.scenario.map(|s| base.join(s)),
        axes: raw.vary.iter().map(|v| v.parse()).collect::<Result<_, _>>()?,
        zip: raw.zip,
        reps: raw.reps,
        variants: raw.variants,
        overrides,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_file_gives_the_sweep_with_the_scenario_beside_it() {
        let text = r#"
            [sweep]
            scenario = "seed.toml"
            vary = ["a.rate=2..6:2", "router.policy=round_robin,queue_aware"]
            reps = 2
            variants = ["baseline"]
            set = ["workload.phases.0.num_requests=100"]
        "#;
        let f = parse_sweep_file(text, Path::new("dir/sweep.toml")).unwrap();
        assert_eq!(f.scenario, Some(PathBuf::from("dir/seed.toml")));
        assert_eq!(f.axes.len(), 2);
        assert_eq!(f.axes[0].values.len(), 3);
        assert_eq!((f.reps, f.zip), (Some(2), false));
        assert_eq!(f.overrides[0].path, "workload.phases.0.num_requests");
    }

    #[test]
    fn unknown_keys_and_bad_axes_are_named() {
        let e = parse_sweep_file("[sweep]\nrepz = 2\n", Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.starts_with("s.toml: sweep.repz") || e.contains("repz"), "{e}");
        let e =
            parse_sweep_file("[sweep]\nvary = [\"x=3..1\"]\n", Path::new("s.toml")).unwrap_err().to_string();
        assert!(e.contains("--vary 'x=3..1'") && e.contains("empty"), "{e}");
    }
}
