//! Where each instance's step times come from: a calibrated profile file or the roofline prior.
//!
//! Order: the instance's own `profile = "file.toml"`; else the first file (by name) in
//! `[perf] profiles_dir` whose `model`, `gpu` and `engine` keys match the instance; else
//! `Roofline` with the `[perf]` parameters. The profile format is described in
//! `profiles/README.md`. This module reads profile files; it does not compute step times.

use super::error::{Ctx, ScenarioError};
use super::raw::{RawCoefficients, RawPerf, RawProfile};
use super::types::{EnginePreset, PerfSpec, StepCoefficients};
use std::path::{Path, PathBuf};

/// A parsed profile file.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Catalogue name of the model it was fitted for.
    pub model: String,
    /// Catalogue name of the GPU.
    pub gpu: String,
    /// Engine preset.
    pub engine: EnginePreset,
    /// The fitted coefficients.
    pub coefficients: StepCoefficients,
}

impl Profile {
    fn matches(&self, model: &str, gpu: &str, engine: EnginePreset) -> bool {
        self.model == model && self.gpu == gpu && self.engine == engine
    }

    fn spec(&self) -> PerfSpec {
        PerfSpec::Profile { path: self.path.display().to_string(), coefficients: self.coefficients.clone() }
    }
}

/// Reads and checks one profile file; errors name the profile file and its field.
pub(crate) fn read_profile(path: &Path) -> Result<Profile, ScenarioError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ScenarioError::new(path, "(file)", format!("cannot read the profile: {e}")))?;
    let value: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ScenarioError::new(path, "(toml)", e.message().to_string()))?;
    let raw: RawProfile = serde_path_to_error::deserialize(toml::Value::Table(value))
        .map_err(|e| ScenarioError::new(path, e.path().to_string(), e.inner().message().to_string()))?;
    let RawCoefficients {
        fixed_s,
        per_prefill_token_s,
        per_decode_seq_s,
        per_kv_token_s,
        per_prefill_attn_pair_s,
    } = raw.coefficients;
    for (name, v) in [
        ("fixed_s", fixed_s),
        ("per_prefill_token_s", per_prefill_token_s),
        ("per_decode_seq_s", per_decode_seq_s),
        ("per_kv_token_s", per_kv_token_s),
        ("per_prefill_attn_pair_s", per_prefill_attn_pair_s),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(ScenarioError::new(
                path,
                format!("coefficients.{name}"),
                format!("must be a finite number >= 0 seconds, got {v}"),
            ));
        }
    }
    Ok(Profile {
        path: path.to_path_buf(),
        model: raw.model,
        gpu: raw.gpu,
        engine: raw.engine,
        coefficients: StepCoefficients {
            fixed_s,
            per_prefill_token_s,
            per_decode_seq_s,
            per_kv_token_s,
            per_prefill_attn_pair_s,
        },
    })
}

/// Every `*.toml` profile in `[perf] profiles_dir`, by file name (empty when no dir is set).
pub(crate) fn scan_profiles(ctx: Ctx<'_>, perf: &RawPerf) -> Result<Vec<Profile>, ScenarioError> {
    let Some(dir) = &perf.profiles_dir else { return Ok(Vec::new()) };
    let dir_path = ctx.resolve_path(dir);
    let entries = std::fs::read_dir(&dir_path).map_err(|e| {
        ctx.err("perf.profiles_dir", format!("cannot read directory {}: {e}", dir_path.display()))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| read_profile(p)).collect()
}

/// Checks the roofline parameters of `[perf]`.
pub(crate) fn check_perf(ctx: Ctx<'_>, perf: &RawPerf) -> Result<(), ScenarioError> {
    for (name, v) in [("mfu", perf.mfu), ("bandwidth_efficiency", perf.bandwidth_efficiency)] {
        if !(v.is_finite() && v > 0.0 && v <= 1.0) {
            return Err(ctx.err(format!("perf.{name}"), format!("must be in (0, 1], got {v}")));
        }
    }
    if !(perf.step_overhead_s.is_finite() && perf.step_overhead_s >= 0.0) {
        return Err(ctx.err(
            "perf.step_overhead_s",
            format!("must be a finite number >= 0 seconds, got {}", perf.step_overhead_s),
        ));
    }
    Ok(())
}

/// What one instance is asked to run: names used to match profiles.
pub(crate) struct PerfKey<'a> {
    /// Catalogue name of the instance's model.
    pub model: &'a str,
    /// Catalogue name of its GPU.
    pub gpu: &'a str,
    /// Its engine preset.
    pub engine: EnginePreset,
}

/// The step-time source of one instance (`field` is its `instances[i].profile` path).
pub(crate) fn perf_for_instance(
    ctx: Ctx<'_>,
    field: &str,
    explicit: Option<&str>,
    key: &PerfKey<'_>,
    scanned: &[Profile],
    perf: &RawPerf,
) -> Result<PerfSpec, ScenarioError> {
    if let Some(file) = explicit {
        let path = ctx.resolve_path(file);
        if !path.is_file() {
            return Err(ctx.err(field, format!("profile file {} does not exist", path.display())));
        }
        let profile = read_profile(&path)?;
        if !profile.matches(key.model, key.gpu, key.engine) {
            return Err(ctx.err(
                field,
                format!(
                    "{} was fitted for model \"{}\" on \"{}\" with {:?}, but this instance runs \
                     \"{}\" on \"{}\" with {:?}; use a matching profile or drop `profile` to fall \
                     back to the roofline prior",
                    path.display(),
                    profile.model,
                    profile.gpu,
                    profile.engine,
                    key.model,
                    key.gpu,
                    key.engine
                ),
            ));
        }
        return Ok(profile.spec());
    }
    if let Some(p) = scanned.iter().find(|p| p.matches(key.model, key.gpu, key.engine)) {
        return Ok(p.spec());
    }
    Ok(PerfSpec::Roofline {
        mfu: perf.mfu,
        bandwidth_efficiency: perf.bandwidth_efficiency,
        step_overhead_s: perf.step_overhead_s,
    })
}
