//! The scenario file's schema as written: serde types for the TOML, every table `deny_unknown_fields`.
//!
//! These types mirror the file one to one (optional fields stay `Option`, defaults that depend on
//! other fields are left for resolution). They are deserialized with `serde_path_to_error` from the
//! TOML value tree after overrides are applied, so a misspelt or mistyped field is reported with
//! its dotted path. Nothing here checks meaning (ranges, cross references): see `resolve`.

use super::types::{EnginePreset, KvCacheMode, LoadScore, Quantization, RouterPolicy, WeightFormat};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file, minus `[variants]` (split off before overrides are applied).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub seed: u64,
    pub cluster: RawCluster,
    #[serde(default)]
    pub gpu_catalog: BTreeMap<String, RawGpu>,
    #[serde(default)]
    pub model_catalog: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModelSettings>,
    #[serde(default)]
    pub defaults: RawDefaults,
    pub instances: Vec<RawInstance>,
    #[serde(default)]
    pub router: RawRouter,
    pub workload: RawWorkload,
    #[serde(default)]
    pub slo: RawSlo,
    #[serde(default)]
    pub output: RawOutput,
    #[serde(default)]
    pub perf: RawPerf,
}

/// `[cluster]`: either `gpu` + `num_gpus` or a `gpus` list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub gpu: Option<String>,
    pub num_gpus: Option<u32>,
    pub gpus: Option<Vec<String>>,
    pub contention: Option<RawContention>,
}

/// `[cluster] contention = { model = "...", ... }`.
#[derive(Debug, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawContention {
    None,
    Serialize {
        #[serde(default = "default_contention_overhead")]
        overhead: f64,
    },
    GpuShare {
        #[serde(default = "default_gpu_share_slowdown")]
        slowdown: f64,
        #[serde(default = "default_decode_gpu_share")]
        decode_gpu_share: f64,
    },
    TimeSlice {
        #[serde(default = "default_time_slice_decode")]
        decode: f64,
        #[serde(default = "default_time_slice_prefill")]
        prefill: f64,
    },
}

fn default_contention_overhead() -> f64 {
    0.10
}

fn default_gpu_share_slowdown() -> f64 {
    super::types::GPU_SHARE_SLOWDOWN_FITTED
}

fn default_decode_gpu_share() -> f64 {
    super::types::GPU_SHARE_DECODE_GUESS
}

fn default_time_slice_decode() -> f64 {
    super::types::TIME_SLICE_DECODE_FITTED
}

fn default_time_slice_prefill() -> f64 {
    super::types::TIME_SLICE_PREFILL_FITTED
}

/// `[gpu_catalog."name"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGpu {
    pub memory_bytes: Option<u64>,
    pub memory_gib: Option<f64>,
    pub bf16_flops: f64,
    pub hbm_bytes_per_s: f64,
}

/// `[models."name"]`: serving settings of a catalogue model, without redefining its architecture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelSettings {
    pub model_path: Option<String>,
}

/// `[model_catalog."name"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub served_name: Option<String>,
    pub model_path: Option<String>,
    pub num_layers: u32,
    pub hidden_size: u32,
    pub num_attention_heads: u32,
    pub num_kv_heads: u32,
    pub head_dim: Option<u32>,
    pub intermediate_size: u32,
    pub vocab_size: u32,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_weight_format")]
    pub weight_format: WeightFormat,
    pub max_position_embeddings: u32,
    #[serde(default = "default_kv_dtype_bytes")]
    pub kv_cache_dtype_bytes: u32,
}

fn default_weight_format() -> WeightFormat {
    WeightFormat::Bf16
}

fn default_kv_dtype_bytes() -> u32 {
    2
}

/// `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    #[serde(default)]
    pub engine: RawEngine,
}

/// An engine table (`[defaults.engine]` or `[instances.engine]`): every knob optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngine {
    pub preset: Option<EnginePreset>,
    pub max_num_seqs: Option<u32>,
    pub max_num_batched_tokens: Option<u32>,
    pub block_size: Option<u32>,
    pub gpu_memory_utilization: Option<f64>,
    pub enable_prefix_caching: Option<bool>,
    pub enable_chunked_prefill: Option<bool>,
    pub max_model_len: Option<u32>,
    pub kv_cache: Option<KvCacheMode>,
    pub activation_reserve_bytes: Option<u64>,
    pub activation_reserve_gib: Option<f64>,
    pub num_gpu_blocks_override: Option<u32>,
    pub elastic: Option<RawElastic>,
    pub async_scheduling: Option<bool>,
    pub scheduler_reserve_full_isl: Option<bool>,
    pub quantization: Option<Quantization>,
}

/// `elastic = { ... }` inside an engine table: kvcached's knobs, every one optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawElastic {
    pub min_reserve_pages: Option<u32>,
    pub max_reserve_pages: Option<u32>,
    pub map_latency_s: Option<f64>,
    pub max_memory_gib: Option<f64>,
    pub step_overhead_factor: Option<f64>,
    pub prefix_cache_max_tokens: Option<u32>,
}

impl RawElastic {
    /// `self` with every knob `top` sets replaced by `top`'s value.
    fn overlaid_by(&self, top: &RawElastic) -> RawElastic {
        RawElastic {
            min_reserve_pages: top.min_reserve_pages.or(self.min_reserve_pages),
            max_reserve_pages: top.max_reserve_pages.or(self.max_reserve_pages),
            map_latency_s: top.map_latency_s.or(self.map_latency_s),
            max_memory_gib: top.max_memory_gib.or(self.max_memory_gib),
            step_overhead_factor: top.step_overhead_factor.or(self.step_overhead_factor),
            prefix_cache_max_tokens: top.prefix_cache_max_tokens.or(self.prefix_cache_max_tokens),
        }
    }

    /// Whether this table sets the knob called `knob`.
    fn sets(&self, knob: &str) -> bool {
        match knob {
            "min_reserve_pages" => self.min_reserve_pages.is_some(),
            "max_reserve_pages" => self.max_reserve_pages.is_some(),
            "map_latency_s" => self.map_latency_s.is_some(),
            "max_memory_gib" => self.max_memory_gib.is_some(),
            "step_overhead_factor" => self.step_overhead_factor.is_some(),
            "prefix_cache_max_tokens" => self.prefix_cache_max_tokens.is_some(),
            _ => false,
        }
    }
}

impl RawEngine {
    /// `self` with every knob `top` sets replaced by `top`'s value.
    pub fn overlaid_by(&self, top: &RawEngine) -> RawEngine {
        RawEngine {
            preset: top.preset.or(self.preset),
            max_num_seqs: top.max_num_seqs.or(self.max_num_seqs),
            max_num_batched_tokens: top.max_num_batched_tokens.or(self.max_num_batched_tokens),
            block_size: top.block_size.or(self.block_size),
            gpu_memory_utilization: top.gpu_memory_utilization.or(self.gpu_memory_utilization),
            enable_prefix_caching: top.enable_prefix_caching.or(self.enable_prefix_caching),
            enable_chunked_prefill: top.enable_chunked_prefill.or(self.enable_chunked_prefill),
            max_model_len: top.max_model_len.or(self.max_model_len),
            kv_cache: top.kv_cache.or(self.kv_cache),
            // The two spellings of the reserve are one knob: a layer that sets either replaces both.
            activation_reserve_bytes: if top.sets_reserve() {
                top.activation_reserve_bytes
            } else {
                self.activation_reserve_bytes
            },
            activation_reserve_gib: if top.sets_reserve() {
                top.activation_reserve_gib
            } else {
                self.activation_reserve_gib
            },
            num_gpu_blocks_override: top.num_gpu_blocks_override.or(self.num_gpu_blocks_override),
            elastic: match (&self.elastic, &top.elastic) {
                (Some(a), Some(b)) => Some(a.overlaid_by(b)),
                (a, b) => b.clone().or_else(|| a.clone()),
            },
            async_scheduling: top.async_scheduling.or(self.async_scheduling),
            scheduler_reserve_full_isl: top.scheduler_reserve_full_isl.or(self.scheduler_reserve_full_isl),
            quantization: top.quantization.or(self.quantization),
        }
    }

    /// Whether this table sets the knob called `knob` (its TOML name; `elastic.<knob>` for
    /// kvcached's).
    pub fn sets(&self, knob: &str) -> bool {
        if let Some(k) = knob.strip_prefix("elastic.") {
            return self.elastic.as_ref().is_some_and(|e| e.sets(k));
        }
        match knob {
            "preset" => self.preset.is_some(),
            "max_num_seqs" => self.max_num_seqs.is_some(),
            "max_num_batched_tokens" => self.max_num_batched_tokens.is_some(),
            "block_size" => self.block_size.is_some(),
            "gpu_memory_utilization" => self.gpu_memory_utilization.is_some(),
            "enable_prefix_caching" => self.enable_prefix_caching.is_some(),
            "enable_chunked_prefill" => self.enable_chunked_prefill.is_some(),
            "max_model_len" => self.max_model_len.is_some(),
            "kv_cache" => self.kv_cache.is_some(),
            "activation_reserve_bytes" => self.activation_reserve_bytes.is_some(),
            "activation_reserve_gib" => self.activation_reserve_gib.is_some(),
            "num_gpu_blocks_override" => self.num_gpu_blocks_override.is_some(),
            "elastic" => self.elastic.is_some(),
            "async_scheduling" => self.async_scheduling.is_some(),
            "scheduler_reserve_full_isl" => self.scheduler_reserve_full_isl.is_some(),
            "quantization" => self.quantization.is_some(),
            _ => false,
        }
    }

    fn sets_reserve(&self) -> bool {
        self.activation_reserve_bytes.is_some() || self.activation_reserve_gib.is_some()
    }
}

/// One `[[instances]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstance {
    pub name: Option<String>,
    pub model: String,
    pub gpu: u32,
    pub port: Option<u16>,
    #[serde(default)]
    pub engine: RawEngine,
    pub launch_command: Option<String>,
    pub profile: Option<String>,
}

/// `[router]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouter {
    #[serde(default = "default_policy")]
    pub policy: RouterPolicy,
    #[serde(default = "one")]
    pub poll_interval_s: f64,
    #[serde(default)]
    pub poll_offset_s: f64,
    #[serde(default = "default_score")]
    pub score: LoadScore,
    /// Prefix-aware routing: tokens per hashed block.
    pub prefix_block_tokens: Option<u32>,
    /// Prefix-aware routing: blocks remembered per replica.
    pub prefix_index_blocks: Option<u32>,
}

impl Default for RawRouter {
    fn default() -> Self {
        Self {
            policy: default_policy(),
            poll_interval_s: one(),
            poll_offset_s: 0.0,
            score: default_score(),
            prefix_block_tokens: None,
            prefix_index_blocks: None,
        }
    }
}

fn default_policy() -> RouterPolicy {
    RouterPolicy::RoundRobin
}

fn default_score() -> LoadScore {
    LoadScore::RunningPlusWaiting
}

fn one() -> f64 {
    1.0
}

/// `[workload]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    #[serde(default = "default_token_id_range")]
    pub prompt_token_id_range: (u32, u32),
    #[serde(default)]
    pub prefix: RawPrefix,
    pub phases: Vec<RawPhase>,
}

fn default_token_id_range() -> (u32, u32) {
    (1000, 30000)
}

/// `[workload.prefix]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrefix {
    #[serde(default)]
    pub tokens: u32,
    #[serde(default = "one_u32")]
    pub groups: u32,
    #[serde(default = "one")]
    pub fraction: f64,
}

impl Default for RawPrefix {
    fn default() -> Self {
        Self { tokens: 0, groups: 1, fraction: 1.0 }
    }
}

fn one_u32() -> u32 {
    1
}

/// One `[[workload.phases]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPhase {
    pub name: Option<String>,
    pub duration_s: Option<f64>,
    pub num_requests: Option<u64>,
    pub arrival: Option<RawArrival>,
    pub mix: Option<BTreeMap<String, f64>>,
    pub input_tokens: Option<RawDist>,
    pub output_tokens: Option<RawDist>,
    #[serde(default)]
    pub per_model: BTreeMap<String, RawLengths>,
    pub custom_json: Option<String>,
}

/// `[workload.phases.per_model."model"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLengths {
    pub input_tokens: Option<RawDist>,
    pub output_tokens: Option<RawDist>,
}

/// `arrival = { process = "...", ... }`.
#[derive(Debug, Deserialize)]
#[serde(tag = "process", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawArrival {
    Poisson {
        rate: f64,
    },
    Gamma {
        rate: f64,
        burstiness: f64,
    },
    Constant {
        rate: f64,
    },
    Ramp {
        start_rate: f64,
        end_rate: f64,
    },
    ClosedLoop {
        concurrency: u32,
        reissue_delay_s: Option<RawDelay>,
    },
    Replay {
        path: String,
        #[serde(default = "one")]
        speedup: f64,
        format: Option<super::TraceFormat>,
        start_s: Option<f64>,
        end_s: Option<f64>,
        rate_scale: Option<f64>,
        models: Option<super::ReplayModels>,
        model_map: Option<std::collections::BTreeMap<String, String>>,
        block_size: Option<u32>,
    },
    /// Multi-turn sessions (see `SessionSpec`): exactly one of `concurrency` and `rate`.
    Sessions {
        concurrency: Option<u32>,
        rate: Option<f64>,
        turns: RawDist,
        think_time_s: Option<RawDelay>,
        user_tokens: RawDist,
        num_sessions: Option<u64>,
        max_context_tokens: Option<u32>,
    },
}

/// A closed-loop client's re-issue delay: seconds, or a distribution of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDelay {
    Fixed(f64),
    Dist(RawDelayDist),
}

/// `reissue_delay_s = { dist = "...", ... }`.
#[derive(Debug, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawDelayDist {
    Fixed { value: f64 },
    Uniform { min: f64, max: f64 },
    Exponential { mean: f64 },
}

/// `input_tokens = { dist = "...", ... }`.
#[derive(Debug, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawDist {
    Fixed {
        value: u32,
    },
    Uniform {
        min: u32,
        max: u32,
    },
    Normal {
        mean: f64,
        std: f64,
        #[serde(default = "one_u32")]
        min: u32,
        max: u32,
    },
    Lognormal {
        mean: f64,
        std: f64,
        #[serde(default = "one_u32")]
        min: u32,
        max: u32,
    },
    Empirical {
        file: Option<String>,
        column: Option<String>,
        values: Option<Vec<u32>>,
    },
}

/// `[slo]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlo {
    pub ttft_s: Option<f64>,
    pub tpot_s: Option<f64>,
    pub e2e_s: Option<f64>,
    pub ttft_p90_s: Option<f64>,
    pub tpot_p90_s: Option<f64>,
}

/// `[output]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    #[serde(default = "one")]
    pub sample_interval_s: f64,
    #[serde(default)]
    pub tokens_csv: bool,
    #[serde(default = "default_drain")]
    pub drain_timeout_s: f64,
    #[serde(default = "default_max_requests")]
    pub max_requests: u64,
    #[serde(default = "default_max_samples")]
    pub max_samples: u64,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u64,
}

impl Default for RawOutput {
    fn default() -> Self {
        Self {
            sample_interval_s: one(),
            tokens_csv: false,
            drain_timeout_s: default_drain(),
            max_requests: default_max_requests(),
            max_samples: default_max_samples(),
            max_tokens: default_max_tokens(),
        }
    }
}

fn default_max_requests() -> u64 {
    super::limits::DEFAULT_MAX_REQUESTS
}

fn default_max_samples() -> u64 {
    super::limits::DEFAULT_MAX_SAMPLES
}

fn default_max_tokens() -> u64 {
    super::limits::DEFAULT_MAX_TOKENS
}

fn default_drain() -> f64 {
    600.0
}

/// `[perf]`: where calibrated profiles live and the roofline prior's parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPerf {
    pub profiles_dir: Option<String>,
    #[serde(default = "default_mfu")]
    pub mfu: f64,
    #[serde(default = "default_bw")]
    pub bandwidth_efficiency: f64,
    #[serde(default = "default_overhead")]
    pub step_overhead_s: f64,
}

impl Default for RawPerf {
    fn default() -> Self {
        Self {
            profiles_dir: None,
            mfu: default_mfu(),
            bandwidth_efficiency: default_bw(),
            step_overhead_s: default_overhead(),
        }
    }
}

fn default_mfu() -> f64 {
    0.5
}

fn default_bw() -> f64 {
    0.8
}

fn default_overhead() -> f64 {
    0.002
}

/// One `[variants."name"]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariant {
    pub description: Option<String>,
    #[serde(default)]
    pub set: toml::Table,
}

/// A step-time profile file (`profiles/*.toml`), format v1 (`[coefficients]` only) or v2.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    pub model: String,
    pub gpu: String,
    pub engine: EnginePreset,
    /// Where the coefficients came from (for people; accepted, not used).
    #[serde(default)]
    #[allow(dead_code)]
    pub source: String,
    pub coefficients: RawCoefficients,
    pub cpu: Option<RawCpu>,
    pub pipeline: Option<RawPipeline>,
    pub cuda_graphs: Option<RawCudaGraphs>,
    pub fit: Option<RawFit>,
}

/// `[coefficients]` of a profile file: GPU time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCoefficients {
    pub fixed_s: f64,
    pub per_prefill_token_s: f64,
    pub per_decode_seq_s: f64,
    pub per_kv_token_s: f64,
    #[serde(default)]
    pub per_prefill_attn_pair_s: f64,
}

/// `[cpu]` of a profile file: CPU time per step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCpu {
    #[serde(default)]
    pub fixed_s: f64,
    #[serde(default)]
    pub per_request_s: f64,
}

/// `[pipeline]` of a profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    pub async_scheduling: Option<bool>,
    #[serde(default)]
    pub output_delay_s: f64,
}

/// `[cuda_graphs]` of a profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCudaGraphs {
    #[serde(default)]
    pub capture_sizes: Vec<u32>,
    #[serde(default)]
    pub eager_fixed_s: f64,
}

/// `[fit]` of a profile file (written by `calibrate`; informational).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFit {
    #[serde(default)]
    pub num_steps: u64,
    #[serde(default)]
    pub r2: f64,
    #[serde(default)]
    pub residual_p50: f64,
    #[serde(default)]
    pub residual_p90: f64,
    #[serde(default)]
    pub residual_p99: f64,
    #[serde(default)]
    pub data: Vec<String>,
}
