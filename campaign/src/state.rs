//! The campaign's memory between runs: `campaign.json` (the settings a rerun must share) and one
//! marker per finished step, each written atomically (a temporary file renamed into place) so a
//! crash never leaves a marker for an unfinished step.

use crate::error::CampaignError;
use crate::layout::{Layout, file_safe};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a campaign was started with; a rerun must match it to reuse finished steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// The scenario file, as given.
    pub scenario: String,
    /// Its text when the campaign started.
    pub scenario_text: String,
    /// Overrides, as `path=value`.
    pub overrides: Vec<String>,
    /// Variants run, in order.
    pub variants: Vec<String>,
    /// The `--quick` factor.
    pub quick: Option<f64>,
    /// Engines emulated.
    pub emulate: bool,
}

/// A finished step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// The step's id.
    pub step: String,
    /// When it finished, Unix seconds.
    pub finished_unix_s: u64,
    /// Its outputs, relative to the campaign dir; the step counts as finished while all exist.
    pub outputs: Vec<PathBuf>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CampaignError + '_ {
    move |source| CampaignError::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically: a sibling temporary file renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CampaignError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Checks `settings` against the campaign dir's `campaign.json` and records them when there is
/// none. With `fresh`, forgets every finished step and the old settings first.
pub(crate) fn check_settings(layout: &Layout, settings: &Settings, fresh: bool) -> Result<(), CampaignError> {
    let path = layout.settings();
    if fresh {
        for p in [layout.state_dir()] {
            match std::fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CampaignError::Io { path: p, source: e }),
            }
        }
    } else if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let old: Settings = serde_json::from_str(&text).map_err(|e| CampaignError::Settings {
            path: path.clone(),
            reason: format!("not a campaign settings file ({e})"),
        })?;
        let mut diffs = Vec::new();
        if old.scenario_text != settings.scenario_text {
            diffs.push(format!("the scenario file {} changed", settings.scenario));
        }
        if old.overrides != settings.overrides {
            diffs.push(format!("--set was {:?}, now {:?}", old.overrides, settings.overrides));
        }
        if old.variants != settings.variants {
            diffs.push(format!("the variants were {:?}, now {:?}", old.variants, settings.variants));
        }
        if old.quick != settings.quick {
            let q = |f: Option<f64>| f.map_or("no --quick".to_string(), |f| format!("--quick {f}"));
            diffs.push(format!("{} then, {} now", q(old.quick), q(settings.quick)));
        }
        if old.emulate != settings.emulate {
            let e = |on: bool| if on { "--emulate" } else { "no --emulate" };
            diffs.push(format!("{} then, {} now", e(old.emulate), e(settings.emulate)));
        }
        if !diffs.is_empty() {
            return Err(CampaignError::Settings {
                path,
                reason: format!(
                    "this campaign dir was started with other settings ({}); its finished steps would \
                     not match: rerun with the same settings to resume, pass --fresh to start over \
                     here, or give another --out",
                    diffs.join("; ")
                ),
            });
        }
        return Ok(());
    }
    let json = serde_json::to_string_pretty(settings).map_err(|e| CampaignError::Settings {
        path: path.clone(),
        reason: format!("cannot serialise the settings: {e}"),
    })?;
    write_atomic(&path, (json + "\n").as_bytes())
}

/// The campaign dir's lock: `campaign.lock` holding the pid of the campaign using it; removed on
/// drop. A lock whose process is gone (killed) is taken over.
pub(crate) struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Takes the campaign dir's lock, or says which process holds it.
pub(crate) fn lock(layout: &Layout) -> Result<Lock, CampaignError> {
    let path = layout.root.join("campaign.lock");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(pid) = text.trim().parse::<u32>()
        && pid != std::process::id()
        && Path::new(&format!("/proc/{pid}")).exists()
    {
        return Err(CampaignError::Settings {
            path,
            reason: format!(
                "another `live campaign` (pid {pid}) is using this campaign dir; wait for it, stop it \
                 (Ctrl-C), or give another --out"
            ),
        });
    }
    write_atomic(&path, format!("{}\n", std::process::id()).as_bytes())?;
    Ok(Lock(path))
}

fn marker_path(layout: &Layout, step: &str) -> PathBuf {
    layout.state_dir().join(format!("{}.json", file_safe(step)))
}

/// Whether `step` finished: its marker parses, names it, and every output it lists exists.
pub(crate) fn is_finished(layout: &Layout, step: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(marker_path(layout, step)) else { return false };
    let Ok(m) = serde_json::from_str::<Marker>(&text) else { return false };
    m.step == step && m.outputs.iter().all(|o| layout.root.join(o).exists())
}

/// Records `step` as finished with `outputs` (paths inside the campaign dir).
pub(crate) fn mark_finished(layout: &Layout, step: &str, outputs: &[PathBuf]) -> Result<(), CampaignError> {
    let finished_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let m = Marker {
        step: step.to_string(),
        finished_unix_s,
        outputs: outputs.iter().map(|p| layout.relative(p).to_path_buf()).collect(),
    };
    let path = marker_path(layout, step);
    let json = serde_json::to_string_pretty(&m).map_err(|e| CampaignError::Settings {
        path: path.clone(),
        reason: format!("cannot serialise the marker: {e}"),
    })?;
    write_atomic(&path, (json + "\n").as_bytes())
}

/// Forgets `step` (before it reruns).
pub(crate) fn clear(layout: &Layout, step: &str) -> Result<(), CampaignError> {
    let path = marker_path(layout, step);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CampaignError::Io { path, source }),
    }
}

/// Removes a step's output directory before it reruns (only ever a path inside the campaign dir).
pub(crate) fn remove_dir(layout: &Layout, dir: &Path) -> Result<(), CampaignError> {
    if !dir.starts_with(&layout.root) {
        return Ok(());
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CampaignError::Io { path: dir.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings() -> Settings {
        Settings {
            scenario: "s.toml".into(),
            scenario_text: "name = \"s\"".into(),
            overrides: vec!["seed=3".into()],
            variants: vec!["a".into(), "b".into()],
            quick: Some(0.1),
            emulate: true,
        }
    }

    #[test]
    fn a_marker_counts_only_while_its_outputs_exist() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let out = dir.path().join("variants/a/live");
        std::fs::create_dir_all(&out).unwrap();
        assert!(!is_finished(&layout, "a/run"));
        mark_finished(&layout, "a/run", std::slice::from_ref(&out)).unwrap();
        assert!(is_finished(&layout, "a/run"));
        assert!(!is_finished(&layout, "b/run"), "another step's marker is not this one's");
        std::fs::remove_dir(&out).unwrap();
        assert!(!is_finished(&layout, "a/run"), "an output went missing");
        std::fs::create_dir_all(&out).unwrap();
        clear(&layout, "a/run").unwrap();
        assert!(!is_finished(&layout, "a/run"));
        let leftovers: Vec<_> = std::fs::read_dir(layout.state_dir()).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary files left: {leftovers:?}");
    }

    #[test]
    fn a_dir_locked_by_a_running_process_is_refused_and_a_dead_ones_lock_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let path = dir.path().join("campaign.lock");
        std::fs::write(&path, "1\n").unwrap();
        let err = lock(&layout).err().unwrap().to_string();
        assert!(err.contains("pid 1") && err.contains("--out"), "{err}");
        std::fs::write(&path, format!("{}\n", u32::MAX)).unwrap();
        let held = lock(&layout).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), std::process::id().to_string());
        drop(held);
        assert!(!path.exists(), "released on drop");
    }

    #[test]
    fn other_settings_are_refused_naming_what_changed_unless_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        check_settings(&layout, &settings(), false).unwrap();
        check_settings(&layout, &settings(), false).unwrap();
        mark_finished(&layout, "a/run", &[]).unwrap();
        let mut other = settings();
        other.quick = None;
        let err = check_settings(&layout, &other, false).unwrap_err().to_string();
        assert!(err.contains("--quick") && err.contains("--fresh"), "{err}");
        assert!(is_finished(&layout, "a/run"), "a refused rerun forgets nothing");
        check_settings(&layout, &other, true).unwrap();
        assert!(!is_finished(&layout, "a/run"), "--fresh forgets finished steps");
        check_settings(&layout, &other, false).unwrap();
    }
}
