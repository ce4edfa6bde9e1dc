//! Where everything goes in a campaign dir.
//!
//! ```text
//! <out>/campaign.json                    settings of the campaign (a rerun must match them)
//! <out>/campaign.log                     every step's start, end, skip or failure
//! <out>/summary.md                       validation tables and variant differences, sim vs live
//! <out>/state/<step>.json                a finished step's marker (its outputs listed)
//! <out>/logs/<NN>-<step>.log             what each step did, and its error
//! <out>/variants/<v>/engines/            `live up` run dir: live-state.json, logs/<instance>.log
//! <out>/variants/<v>/calibration-<model>/  live run dir of the calibration ladder (tokens.csv)
//! <out>/variants/<v>/live/               live run dir of the scenario's request stream
//! <out>/variants/<v>/validation/         `validate`: sim/ run dir, validation.csv/.json, charts
//! <out>/profiles/<gpu>-<model>-<engine>.toml   fitted profiles
//! <out>/calibrate/<gpu>-<model>-<engine>/      fit reports (fit.md, fit.png)
//! <out>/report/                          report.md and charts of every variant, sim and live
//! ```

use std::path::{Path, PathBuf};

/// The paths of one campaign dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The campaign dir.
    pub root: PathBuf,
}

/// A name made safe for one path component: ASCII letters, digits, `.`, `_`, `-`; the rest `_`.
pub(crate) fn file_safe(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with('.') { format!("_{s}") } else { s }
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// `campaign.json`.
    pub fn settings(&self) -> PathBuf {
        self.root.join("campaign.json")
    }

    /// `campaign.log`.
    pub fn campaign_log(&self) -> PathBuf {
        self.root.join("campaign.log")
    }

    /// `summary.md`.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.md")
    }

    /// The markers' directory.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The step logs' directory.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Everything of variant `v`.
    pub fn variant(&self, v: &str) -> PathBuf {
        self.root.join("variants").join(file_safe(v))
    }

    /// The `live up` run dir of variant `v` (state file and engine logs).
    pub fn engines(&self, v: &str) -> PathBuf {
        self.variant(v).join("engines")
    }

    /// The calibration run dir of `model` in variant `v`.
    pub fn calibration_run(&self, v: &str, model: &str) -> PathBuf {
        self.variant(v).join(format!("calibration-{}", file_safe(model)))
    }

    /// The live run dir of variant `v`'s scenario.
    pub fn live_run(&self, v: &str) -> PathBuf {
        self.variant(v).join("live")
    }

    /// `validate`'s output for variant `v`.
    pub fn validation(&self, v: &str) -> PathBuf {
        self.variant(v).join("validation")
    }

    /// Where fitted profiles go.
    pub fn profiles(&self) -> PathBuf {
        self.root.join("profiles")
    }

    /// The fit report of the profile `profile_file` (`<gpu>-<model>-<engine>.toml`).
    pub fn fit_report(&self, profile_file: &str) -> PathBuf {
        let stem = Path::new(profile_file).file_stem().map(|s| s.to_string_lossy().into_owned());
        self.root.join("calibrate").join(stem.unwrap_or_else(|| file_safe(profile_file)))
    }

    /// The report of every variant, sim and live.
    pub fn report(&self) -> PathBuf {
        self.root.join("report")
    }

    /// `path` relative to the campaign dir when it is inside it.
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_file_safe_name_is_one_harmless_path_component(name in ".{0,40}") {
            let s = file_safe(&name);
            prop_assert!(!s.is_empty());
            prop_assert!(!s.starts_with('.'));
            prop_assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
            let p = Layout::new("/c").variant(&name);
            prop_assert_eq!(p.parent(), Some(Path::new("/c/variants")));
        }
    }
}
