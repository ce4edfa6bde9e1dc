//! Profile format v2 as `calibrate` writes it (`profiles/<gpu>-<model>-<engine>.toml`; the shared
//! step-model spec, "Profile TOML v2"). This is the writer's own mirror of the format: the
//! simulator reads profiles with its own loader (`sim::scenario`), which also accepts v1 files
//! (only `[coefficients]`). Every section but `[coefficients]` is optional; the keys are exactly
//! the spec's, because the loader rejects unknown keys. Fit details that have no key of their own
//! go into `source` and the fit report.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// GPU time of a step, seconds (`[coefficients]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coefficients {
    /// Per step, whatever the batch.
    pub fixed_s: f64,
    /// Per prompt (or recompute) token computed in the step.
    pub per_prefill_token_s: f64,
    /// Per sequence decoding one token (and per CUDA-graph padding token).
    pub per_decode_seq_s: f64,
    /// Per KV-cache token read by attention (context of every scheduled sequence, new tokens
    /// included).
    pub per_kv_token_s: f64,
    /// Per prefill attention pair (new token x its context).
    #[serde(default)]
    pub per_prefill_attn_pair_s: f64,
}

/// CPU time of a step (`[cpu]`): scheduling, input preparation and output processing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuCoefficients {
    /// Per step.
    pub fixed_s: f64,
    /// Per scheduled request.
    pub per_request_s: f64,
}

/// Step period and token visibility (`[pipeline]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// CPU overlaps GPU (left out: the engine preset's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_scheduling: Option<bool>,
    /// How long after a step ends its tokens reach the client, seconds.
    #[serde(default)]
    pub output_delay_s: f64,
}

/// CUDA graphs (`[cuda_graphs]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CudaGraphs {
    /// Token counts graphs were captured for, ascending; empty = no graphs.
    pub capture_sizes: Vec<u32>,
    /// Extra time of a step run eagerly (above the largest capture size), seconds.
    #[serde(default)]
    pub eager_fixed_s: f64,
}

/// How well the coefficients explain the data (`[fit]`, informational): the simulator's own type.
pub use sim::scenario::FitInfo as FitSummary;

/// One profile file, v2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Model catalogue name.
    pub model: String,
    /// GPU catalogue name.
    pub gpu: String,
    /// Engine preset name (`"vllm-v1"`, `"vllm-0.6.4"`, `"transformers-cb"`).
    pub engine: String,
    /// Where the data came from, how it was fitted, what was assumed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// GPU time.
    pub coefficients: Coefficients,
    /// CPU time (left out: zeros).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuCoefficients>,
    /// Pipeline (left out: the preset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Pipeline>,
    /// CUDA graphs (left out: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_graphs: Option<CudaGraphs>,
    /// Fit quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<FitSummary>,
}

impl Profile {
    /// The file's TOML text, with a header comment.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let body = toml::to_string(self)?;
        Ok(format!(
            "# Step-time profile (format v2) written by `modelsguard calibrate`; see profiles/README.md.\n\
             # Measured on {} with {} serving {}.\n{body}",
            self.gpu, self.engine, self.model
        ))
    }

    /// Parses a profile file's text.
    pub fn from_toml(text: &str) -> Result<Profile, toml::de::Error> {
        toml::from_str(text)
    }
}

/// The file name a profile of `model` on `gpu` with `engine` ships under:
/// `<gpu>-<model>-<engine>.toml` (characters other than letters, digits, `.`, `_` and `-` become
/// `_`).
pub fn profile_file_name(gpu: &str, model: &str, engine: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
    };
    format!("{}-{}-{}.toml", clean(gpu), clean(model), clean(engine))
}

/// `profiles/<gpu>-<model>-<engine>.toml` under `dir`.
pub fn default_profile_path(dir: &Path, gpu: &str, model: &str, engine: &str) -> PathBuf {
    dir.join(profile_file_name(gpu, model, engine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_through_toml_with_the_spec_sections() {
        let p = Profile {
            model: "llama-3.1-8b".into(),
            gpu: "H200".into(),
            engine: "transformers-cb".into(),
            source: "test".into(),
            coefficients: Coefficients {
                fixed_s: 0.0105,
                per_prefill_token_s: 3e-5,
                per_decode_seq_s: 1e-4,
                per_kv_token_s: 2.7e-7,
                per_prefill_attn_pair_s: 0.0,
            },
            cpu: Some(CpuCoefficients::default()),
            pipeline: Some(Pipeline { async_scheduling: None, output_delay_s: 0.011 }),
            cuda_graphs: Some(CudaGraphs { capture_sizes: vec![1, 2, 4, 512], eager_fixed_s: 0.002 }),
            fit: Some(FitSummary {
                num_steps: 10,
                r2: 0.99,
                residual_p50: 0.01,
                residual_p90: 0.02,
                residual_p99: 0.05,
                data: vec!["runs/a".into()],
            }),
        };
        let text = p.to_toml().unwrap();
        for section in ["[coefficients]", "[cpu]", "[pipeline]", "[cuda_graphs]", "[fit]"] {
            assert!(text.contains(section), "{section} missing in\n{text}");
        }
        assert!(!text.contains("async_scheduling"), "left out means the preset's default");
        assert_eq!(Profile::from_toml(&text).unwrap(), p);
    }

    #[test]
    fn profile_files_are_named_by_card_model_and_engine() {
        assert_eq!(
            profile_file_name("H200", "llama-3.1-8b", "transformers-cb"),
            "H200-llama-3.1-8b-transformers-cb.toml"
        );
        assert_eq!(profile_file_name("My GPU/2", "m", "e"), "My_GPU_2-m-e.toml");
    }
}
