//! Where each instance's step times come from: a calibrated profile file or the roofline prior.
//!
//! Order: the instance's own `profile = "file.toml"`; else the first file (by name) in
//! `[perf] profiles_dir` whose `model`, `gpu` and `engine` keys match the instance; else
//! `Roofline` with the `[perf]` parameters and the engine preset's guessed CPU, CUDA-graph and
//! pipeline costs (`perf_model::prior_overheads`). The profile format (v1: `[coefficients]`
//! only; v2 adds `[cpu]`, `[pipeline]`, `[cuda_graphs]`, `[fit]`) is described in
//! `profiles/README.md`. This module reads profile files; it does not compute step times.

use super::error::{Ctx, ScenarioError};
use super::raw::{RawCoefficients, RawCpu, RawCudaGraphs, RawFit, RawPerf, RawPipeline, RawProfile};
use super::types::{
    CpuCost, CudaGraphSpec, EngineConfig, EnginePreset, FitInfo, ModelSpec, PerfSpec, StepCoefficients,
    StepOverheads,
};
use crate::perf_model::{MAX_CAPTURE_SIZE, cuda_graph_rule, prior_overheads};
use std::path::{Path, PathBuf};

/// Longest capture-size list a profile may give (vLLM captures ~50 by default).
const MAX_CAPTURE_SIZES: usize = 4096;
/// The longest `[pipeline] output_delay_s` a profile may hold, seconds: a pipeline delay is
/// milliseconds; more is a unit slip or a corrupt measurement (and would keep a simulation's
/// periodic events busy for as long).
pub const MAX_OUTPUT_DELAY_S: f64 = 60.0;

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
    /// The fitted GPU coefficients.
    pub coefficients: StepCoefficients,
    /// `[cpu]` (zeros when absent).
    pub cpu: CpuCost,
    /// `[pipeline] async_scheduling` (None: the preset's).
    pub async_scheduling: Option<bool>,
    /// `[pipeline] output_delay_s` (0 when absent).
    pub output_delay_s: f64,
    /// `[cuda_graphs]` sizes and eager cost (no graphs when absent).
    pub capture_sizes: Vec<u32>,
    /// `[cuda_graphs] eager_fixed_s`.
    pub eager_fixed_s: f64,
    /// `[fit]`.
    pub fit: Option<FitInfo>,
}

impl Profile {
    fn matches(&self, model: &str, gpu: &str, engine: EnginePreset) -> bool {
        self.model == model && self.gpu == gpu && self.engine == engine
    }

    /// The instance's perf spec from this profile; the CUDA-graph rule is the engine's.
    fn resolve(&self, engine: &EngineConfig) -> ResolvedPerf {
        let (decode_only, max_seq_len_to_capture) = cuda_graph_rule(engine);
        ResolvedPerf {
            spec: PerfSpec::Profile {
                path: self.path.display().to_string(),
                coefficients: self.coefficients.clone(),
                overheads: StepOverheads {
                    cpu: self.cpu.clone(),
                    cuda_graphs: CudaGraphSpec {
                        capture_sizes: self.capture_sizes.clone(),
                        eager_fixed_s: self.eager_fixed_s,
                        decode_only,
                        max_seq_len_to_capture,
                    },
                    output_delay_s: self.output_delay_s,
                },
                fit: self.fit.clone(),
            },
            async_scheduling: self.async_scheduling,
        }
    }
}

/// An instance's step-time source, and the async scheduling its profile was measured with.
pub(crate) struct ResolvedPerf {
    /// The perf spec.
    pub spec: PerfSpec,
    /// `[pipeline] async_scheduling` of the profile, if it sets one.
    pub async_scheduling: Option<bool>,
}

/// Seconds that must be finite and >= 0; the error names `path` and `field`.
fn seconds(path: &Path, field: &str, v: f64) -> Result<f64, ScenarioError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(ScenarioError::new(path, field, format!("must be a finite number >= 0 seconds, got {v}")))
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
        seconds(path, &format!("coefficients.{name}"), v)?;
    }
    let cpu = match raw.cpu {
        None => CpuCost::default(),
        Some(RawCpu { fixed_s, per_request_s }) => CpuCost {
            fixed_s: seconds(path, "cpu.fixed_s", fixed_s)?,
            per_request_s: seconds(path, "cpu.per_request_s", per_request_s)?,
        },
    };
    let (async_scheduling, output_delay_s) = match raw.pipeline {
        None => (None, 0.0),
        Some(RawPipeline { async_scheduling, output_delay_s }) => {
            let d = seconds(path, "pipeline.output_delay_s", output_delay_s)?;
            if d > MAX_OUTPUT_DELAY_S {
                return Err(ScenarioError::new(
                    path,
                    "pipeline.output_delay_s",
                    format!(
                        "{d} s is not a pipeline delay (at most {MAX_OUTPUT_DELAY_S} s; is it in milliseconds?)"
                    ),
                ));
            }
            (async_scheduling, d)
        }
    };
    let (capture_sizes, eager_fixed_s) = match raw.cuda_graphs {
        None => (Vec::new(), 0.0),
        Some(RawCudaGraphs { capture_sizes, eager_fixed_s }) => {
            check_capture_sizes(path, &capture_sizes)?;
            (capture_sizes, seconds(path, "cuda_graphs.eager_fixed_s", eager_fixed_s)?)
        }
    };
    let fit = raw.fit.map(|f| check_fit(path, f)).transpose()?;
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
        cpu,
        async_scheduling,
        output_delay_s,
        capture_sizes,
        eager_fixed_s,
        fit,
    })
}

/// Capture sizes: strictly ascending token counts >= 1.
fn check_capture_sizes(path: &Path, sizes: &[u32]) -> Result<(), ScenarioError> {
    if sizes.len() > MAX_CAPTURE_SIZES {
        return Err(ScenarioError::new(
            path,
            "cuda_graphs.capture_sizes",
            format!("{} sizes; at most {MAX_CAPTURE_SIZES}", sizes.len()),
        ));
    }
    if sizes.first() == Some(&0) {
        return Err(ScenarioError::new(
            path,
            "cuda_graphs.capture_sizes[0]",
            "a capture size is at least 1 token",
        ));
    }
    if let Some(i) = sizes.iter().position(|&s| s > MAX_CAPTURE_SIZE) {
        return Err(ScenarioError::new(
            path,
            format!("cuda_graphs.capture_sizes[{i}]"),
            format!("{} tokens; graphs are captured up to {MAX_CAPTURE_SIZE} tokens at most", sizes[i]),
        ));
    }
    if let Some(i) = sizes.windows(2).position(|w| w[0] >= w[1]) {
        return Err(ScenarioError::new(
            path,
            format!("cuda_graphs.capture_sizes[{}]", i + 1),
            format!("sizes must be strictly ascending, but {} follows {}", sizes[i + 1], sizes[i]),
        ));
    }
    Ok(())
}

/// `[fit]`: finite figures, residuals >= 0.
fn check_fit(path: &Path, f: RawFit) -> Result<FitInfo, ScenarioError> {
    if !f.r2.is_finite() {
        return Err(ScenarioError::new(path, "fit.r2", format!("must be a finite number, got {}", f.r2)));
    }
    for (name, v) in
        [("residual_p50", f.residual_p50), ("residual_p90", f.residual_p90), ("residual_p99", f.residual_p99)]
    {
        if !(v.is_finite() && v >= 0.0) {
            return Err(ScenarioError::new(
                path,
                format!("fit.{name}"),
                format!("a relative residual must be a finite number >= 0, got {v}"),
            ));
        }
    }
    Ok(FitInfo {
        num_steps: f.num_steps,
        r2: f.r2,
        residual_p50: f.residual_p50,
        residual_p90: f.residual_p90,
        residual_p99: f.residual_p99,
        data: f.data,
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

/// What one instance is asked to run: names used to match profiles, and the engine whose preset
/// gives the prior's costs and the CUDA-graph rule.
pub(crate) struct PerfKey<'a> {
    /// The instance's model.
    pub model: &'a ModelSpec,
    /// The scenario's model catalogue (an explicit profile of another model of the same shape is
    /// accepted: [`same_shape`]).
    pub catalog: &'a [ModelSpec],
    /// Catalogue name of its GPU.
    pub gpu: &'a str,
    /// Its engine, preset and knobs resolved.
    pub engine: &'a EngineConfig,
}

/// The step-time source of one instance (`field` is its `instances[i].profile` path).
pub(crate) fn perf_for_instance(
    ctx: Ctx<'_>,
    field: &str,
    explicit: Option<&str>,
    key: &PerfKey<'_>,
    scanned: &[Profile],
    perf: &RawPerf,
) -> Result<ResolvedPerf, ScenarioError> {
    let preset = key.engine.preset;
    if let Some(file) = explicit {
        let path = ctx.resolve_path(file);
        if !path.is_file() {
            return Err(ctx
                .err(field, format!("profile file {} does not exist", path.display()))
                .about_missing_file(&path));
        }
        let profile = read_profile(&path)?;
        // A profile of another catalogue model of the same shape (e.g. a second copy of a model
        // served under its own name) describes the same step costs on the same card and engine.
        let shape_twin = key.catalog.iter().any(|m| m.name == profile.model && same_shape(m, key.model));
        let model = if shape_twin { profile.model.as_str() } else { key.model.name.as_str() };
        if !profile.matches(model, key.gpu, preset) {
            return Err(ctx.err(
                field,
                format!(
                    "{} was fitted for model \"{}\" on \"{}\" with \"{}\", but this instance runs \
                     \"{}\" on \"{}\" with \"{}\"; use a matching profile (or one of a catalogue \
                     model of the same shape) or drop `profile` to fall back to the roofline prior",
                    path.display(),
                    profile.model,
                    profile.gpu,
                    profile.engine.name(),
                    key.model.name,
                    key.gpu,
                    preset.name()
                ),
            ));
        }
        return Ok(profile.resolve(key.engine));
    }
    if let Some(p) = scanned.iter().find(|p| p.matches(&key.model.name, key.gpu, preset)) {
        return Ok(p.resolve(key.engine));
    }
    Ok(ResolvedPerf {
        spec: PerfSpec::Roofline {
            mfu: perf.mfu,
            bandwidth_efficiency: perf.bandwidth_efficiency,
            step_overhead_s: perf.step_overhead_s,
            overheads: prior_overheads(key.model, key.engine),
        },
        async_scheduling: None,
    })
}

/// Whether two catalogue models have the same shape and weight format (so the same step costs):
/// names, served names and context limits may differ.
pub(crate) fn same_shape(a: &ModelSpec, b: &ModelSpec) -> bool {
    (a.num_layers, a.hidden_size, a.num_attention_heads, a.num_kv_heads, a.head_dim)
        == (b.num_layers, b.hidden_size, b.num_attention_heads, b.num_kv_heads, b.head_dim)
        && (a.intermediate_size, a.vocab_size, a.tie_word_embeddings)
            == (b.intermediate_size, b.vocab_size, b.tie_word_embeddings)
        && (a.weight_format, a.kv_cache_dtype_bytes) == (b.weight_format, b.kv_cache_dtype_bytes)
}
