//! Before `live up` starts anything: does each instance's `--quantization` agree with its model's
//! weights? vLLM refuses `--quantization awq` on a checkpoint without an AWQ quantization config
//! (and a bf16 model in the scenario served from a quantized checkpoint would make every memory
//! and step-time prediction wrong), but only after the engine has started loading.
//!
//! Two checks: the scenario against itself (the flag is set exactly for AWQ models), and, when the
//! checkpoint's `config.json` is on this machine (`model_path` a local directory, or a repo id
//! already in the Hugging Face cache), its `quantization_config.quant_method` against the model's
//! weight format. A checkpoint not found locally cannot be checked here (vLLM downloads it at
//! start); that is reported as a note, not an error. This module reads files; it starts nothing.

use crate::launcher::LaunchError;
use sim::ids::InstanceId;
use sim::scenario::{Scenario, WeightFormat};
use std::path::{Path, PathBuf};

/// What one instance's checkpoint check found (beyond errors, which stop `live up`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointNote {
    /// The checkpoint's config.json was read and agrees.
    Checked {
        /// Instance name.
        instance: String,
        /// The config.json read.
        config: PathBuf,
    },
    /// The checkpoint is not on this machine: only the scenario was checked.
    NotLocal {
        /// Instance name.
        instance: String,
        /// The checkpoint named.
        model_path: String,
        /// A warning when the name does not look like it matches the weight format.
        warning: Option<String>,
    },
}

/// Checks instances `ids` of `scenario` (see the module doc).
pub fn check_quantization(
    scenario: &Scenario,
    ids: &[InstanceId],
) -> Result<Vec<CheckpointNote>, LaunchError> {
    let mut notes = Vec::new();
    for &id in ids {
        let inst = scenario.instances.get(id.index()).ok_or(LaunchError::NoSuchInstance(id))?;
        let Some(model) = scenario.models.get(inst.model.index()) else {
            return Err(LaunchError::NoSuchInstance(id));
        };
        let fail = |reason: String| LaunchError::Quantization { instance: inst.name.clone(), reason };
        let awq = model.weight_format == WeightFormat::AwqInt4;
        if let (Some(q), false) = (inst.engine.quantization, awq) {
            return Err(fail(format!(
                "engine.quantization = \"{}\" but model \"{}\" has bf16 weights: drop the knob",
                q.as_flag(),
                model.name
            )));
        }
        let path = &model.model_path;
        let Some(config) = find_config(path) else {
            let looks_awq = path.to_lowercase().contains("awq");
            let warning = (awq && !looks_awq).then(|| {
                format!(
                    "model \"{}\" is AWQ but its model_path \"{path}\" does not name an AWQ checkpoint; \
                     vLLM will refuse --quantization on bf16 weights (set [models.\"{}\"] model_path)",
                    model.name, model.name
                )
            });
            notes.push(CheckpointNote::NotLocal {
                instance: inst.name.clone(),
                model_path: path.clone(),
                warning,
            });
            continue;
        };
        let method =
            read_quant_method(&config).map_err(|reason| fail(format!("{}: {reason}", config.display())))?;
        match (awq, method.as_deref()) {
            (true, Some("awq")) | (false, None) => {}
            (true, other) => {
                let found = other.map_or("no quantization_config (unquantized weights)".to_string(), |m| {
                    format!("quant_method \"{m}\"")
                });
                return Err(fail(format!(
                    "model \"{}\" is AWQ (--quantization {}) but checkpoint {} has {found}; vLLM would \
                     refuse it: set [models.\"{}\"] model_path to an AWQ checkpoint",
                    model.name,
                    inst.engine.quantization.map_or("(auto)", |q| q.as_flag()),
                    config.display(),
                    model.name
                )));
            }
            (false, Some(m)) => {
                return Err(fail(format!(
                    "model \"{}\" has bf16 weights in the scenario but checkpoint {} is quantized \
                     (quant_method \"{m}\"): predictions would be for the wrong weights; use a bf16 \
                     checkpoint or a catalogue model with this weight_format",
                    model.name,
                    config.display()
                )));
            }
        }
        notes.push(CheckpointNote::Checked { instance: inst.name.clone(), config });
    }
    Ok(notes)
}

/// `quantization_config.quant_method` of a `config.json`, lowercased (None when absent).
fn read_quant_method(config: &Path) -> Result<Option<String>, String> {
    let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    Ok(v.get("quantization_config")
        .and_then(|q| q.get("quant_method"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_lowercase))
}

/// The `config.json` of checkpoint `model_path` on this machine: `<dir>/config.json` for a
/// directory, else the first snapshot (by name) holding one in the Hugging Face hub cache
/// (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`).
pub fn find_config(model_path: &str) -> Option<PathBuf> {
    let dir = Path::new(model_path);
    if dir.is_dir() {
        let c = dir.join("config.json");
        return c.is_file().then_some(c);
    }
    let (org, name) = model_path.split_once('/')?;
    let cache = hub_cache()?;
    let snapshots = cache.join(format!("models--{org}--{name}")).join("snapshots");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(snapshots).ok()?.filter_map(|e| Some(e.ok()?.path())).collect();
    dirs.sort();
    dirs.into_iter().map(|d| d.join("config.json")).find(|c| c.is_file())
}

fn hub_cache() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
}
