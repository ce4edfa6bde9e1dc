//! The resolved scenario: one variant of a scenario file, after presets, overrides and validation.
//!
//! Everything downstream (cluster, engines, router, workload, live harness) reads these types and
//! never the raw TOML. All lengths are tokens, all times seconds (`f64`) unless the name says
//! otherwise. These types serialize to JSON for `run.json` ("the full resolved scenario").

use crate::ids::{GpuId, ModelId};
use serde::{Deserialize, Serialize};

/// One fully resolved, validated variant of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Scenario name (from the file, defaults to the file stem).
    pub name: String,
    /// Variant name (`"default"` when the file defines no variants).
    pub variant: String,
    /// Free text from the file.
    pub description: String,
    /// Master seed; the request stream depends only on it and the workload, never on the variant.
    pub seed: u64,
    /// GPUs of the cluster, indexed by `GpuId`.
    pub gpus: Vec<GpuSpec>,
    /// Models served, indexed by `ModelId`.
    pub models: Vec<ModelSpec>,
    /// Engine instances, indexed by `InstanceId`.
    pub instances: Vec<InstanceSpec>,
    /// The load balancer in front of the instances.
    pub router: RouterSpec,
    /// The request stream.
    pub workload: WorkloadSpec,
    /// Service-level objectives used for goodput and `plan`.
    pub slo: SloSpec,
    /// Simulator output settings.
    pub output: OutputSpec,
    /// How colocated instances slow each other down (`[cluster] contention`).
    #[serde(default)]
    pub contention: ContentionSpec,
}

/// How the steps of instances sharing a GPU slow each other down: elastic KV shares memory, not
/// compute. Evaluated when a step begins, from how many co-tenants are busy then.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum ContentionSpec {
    /// Co-tenants never slow each other (e.g. MIG slices, or to isolate memory effects).
    None,
    /// Steps of busy co-tenants serialise on the SMs: a step with `n` busy co-tenants takes
    /// `(1 + n) x (1 + overhead)` times as long (time-slicing without MPS; measured on an H100:
    /// 2.15-2.22x for two busy tenants, i.e. overhead ~0.10). No slowdown while the others idle.
    Serialize {
        /// Extra time-slicing cost on top of serialisation (0.10 = 10 %).
        overhead: f64,
    },
    /// Only GPU-bound work contends: a step is slowed by
    /// `1 + slowdown x exposed x min(1, sum of busy co-tenants' GPU shares)`, where a step's
    /// prefill share `s` is its prefill-compute time over its modelled period, its GPU share is
    /// `s + (1 - s) x decode_gpu_share`, and its exposed share is `s` when its engine overlaps
    /// CPU and GPU work (async scheduling hides the GPU wait of the rest behind the CPU preparing
    /// the next step) and its GPU share otherwise. Measured on the reference engine (transformers
    /// continuous batching, eager, CPU-heavy steps) on an H200: a co-tenant that only decodes
    /// costs nothing measurable; one in prefill slows steps that compute prefill
    /// (`validation/h200/coloc_analysis.py`).
    GpuShare {
        /// Fractional stretch of the exposed share per unit of co-tenant GPU share
        /// ([`GPU_SHARE_SLOWDOWN_FITTED`] by default).
        slowdown: f64,
        /// GPU share of a step's non-prefill work ([`GPU_SHARE_DECODE_GUESS`] by default).
        decode_gpu_share: f64,
    },
    /// GPU-bound engines time-slice the GPU: a step that begins beside `n` busy co-tenants takes
    /// `1 + n x (decode x (1 - s) + prefill x s)` times as long, `s` its prefill share. Measured
    /// on the reference engine replaying CUDA graphs on one H200 (two and three engines): a
    /// decode step beside one busy co-tenant 2.0x the profile, beside two 3.0x; a step with
    /// prefill 1.6x and 2.3x (`validation/h200/graphs_contention.py`). Each tenant gets its turn
    /// on the SMs; small decode kernels wait whole turns, long prefill kernels less.
    TimeSlice {
        /// Stretch of a decode step per busy co-tenant ([`TIME_SLICE_DECODE_FITTED`] by default).
        decode: f64,
        /// Stretch of a step's prefill share per busy co-tenant ([`TIME_SLICE_PREFILL_FITTED`]
        /// by default).
        prefill: f64,
    },
}

/// `gpu_share`'s `slowdown` fitted on the reference engine on an H200 from the async-on ladder
/// (`validation/h200/coloc/probe`; `validation/h200/coloc_analysis.py` prints the fit).
pub const GPU_SHARE_SLOWDOWN_FITTED: f64 = 1.90;

/// `gpu_share`'s `decode_gpu_share` for the eager reference engine: reading the weights once
/// (~16 GB at 4.8 TB/s, ~3.3 ms) plus KV copies, of a ~40 ms decode step. A guess, NOT fitted
/// (async runs cannot show it: the CPU hides it).
pub const GPU_SHARE_DECODE_GUESS: f64 = 0.10;

/// `time_slice`'s `decode` fitted on two reference engines replaying CUDA graphs on one H200
/// (time-weighted least squares over the 3,385 steps that began beside a busy co-tenant in
/// `validation/h200/routing-graphs/round-robin`; `validation/h200/graphs_contention.py`).
pub const TIME_SLICE_DECODE_FITTED: f64 = 1.023;

/// `time_slice`'s `prefill`, fitted with [`TIME_SLICE_DECODE_FITTED`].
pub const TIME_SLICE_PREFILL_FITTED: f64 = 0.379;

impl ContentionSpec {
    /// `gpu_share` as measured on the reference engine on an H200: the default of scenarios
    /// whose instances all run the `transformers-cb` preset.
    pub const REFERENCE_ENGINE_H200: ContentionSpec = ContentionSpec::GpuShare {
        slowdown: GPU_SHARE_SLOWDOWN_FITTED,
        decode_gpu_share: GPU_SHARE_DECODE_GUESS,
    };

    /// `time_slice` as measured on reference engines replaying CUDA graphs on an H200: the
    /// default of scenarios whose instances all run `transformers-cb` with graphs. A graph
    /// replay is one launch the CPU then waits on, so the step is GPU work and busy co-tenants
    /// time-slice the SMs (eager engines, whose steps are mostly Python, contend only in prefill:
    /// [`ContentionSpec::REFERENCE_ENGINE_H200`]).
    pub const REFERENCE_ENGINE_GRAPHS_H200: ContentionSpec =
        ContentionSpec::TimeSlice { decode: TIME_SLICE_DECODE_FITTED, prefill: TIME_SLICE_PREFILL_FITTED };
}

impl Default for ContentionSpec {
    fn default() -> Self {
        ContentionSpec::Serialize { overhead: 0.10 }
    }
}

/// kvcached's knobs of an elastic-KV instance (ignored with static KV). Defaults follow kvcached
/// (`kvcached/utils.py`) and its published overheads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ElasticKvConfig {
    /// Empty pages the background pre-allocation keeps mapped (`KVCACHED_MIN_RESERVED_PAGES`, 5).
    pub min_reserve_pages: u32,
    /// Empty pages kept mapped when blocks are freed; more are unmapped
    /// (`KVCACHED_MAX_RESERVED_PAGES`, 10).
    pub max_reserve_pages: u32,
    /// Seconds added to a step per page it had to map because the reserve was empty (~0.2 ms per
    /// page id on an H100: one 2 MB page per layer for K and V).
    pub map_latency_s: f64,
    /// The most KV memory this instance may map, bytes (kvcached's per-instance limit; None: the
    /// whole pool).
    pub max_memory_bytes: Option<u64>,
    /// Every step of the instance takes this many times longer (kvcached's TPOT overhead on an
    /// H100 is +2..18 %; 1.05 is its middle for typical batches).
    pub step_overhead_factor: f64,
    /// With prefix caching on, the most tokens whose freed blocks are kept cached (kvcached caps
    /// its prefix cache; 16K tokens in its 2026 releases).
    pub prefix_cache_max_tokens: u32,
}

impl Default for ElasticKvConfig {
    fn default() -> Self {
        ElasticKvConfig {
            min_reserve_pages: 5,
            max_reserve_pages: 10,
            map_latency_s: 0.0002,
            max_memory_bytes: None,
            step_overhead_factor: 1.05,
            prefix_cache_max_tokens: 16384,
        }
    }
}

/// A GPU model's hardware facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuSpec {
    /// Catalogue name, e.g. `"H100-80GB-SXM"`.
    pub name: String,
    /// Device memory in bytes, as `torch.cuda.mem_get_info` reports the total.
    pub memory_bytes: u64,
    /// Dense bf16 tensor throughput, FLOP/s.
    pub bf16_flops: f64,
    /// HBM bandwidth, bytes/s.
    pub hbm_bytes_per_s: f64,
}

/// How a model's weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightFormat {
    /// 16-bit weights.
    Bf16,
    /// AWQ 4-bit weights (group size 128, fp16 scales); embeddings and lm_head stay bf16.
    AwqInt4,
}

/// A model's architecture and serving identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Short key used in scenario files, e.g. `"llama-3.1-8b"`.
    pub name: String,
    /// The name clients send in the OpenAI `model` field (the HF path in the seed).
    pub served_name: String,
    /// The checkpoint vLLM loads (`vllm serve <model_path> --served-model-name <served_name>`): a
    /// Hugging Face repo id or a local directory. It must hold weights in `weight_format` (an AWQ
    /// checkpoint for an AWQ model: vLLM refuses `--quantization awq` on bf16 weights). Empty in
    /// runs recorded before it existed.
    #[serde(default)]
    pub model_path: String,
    /// Transformer layers.
    pub num_layers: u32,
    /// Hidden size.
    pub hidden_size: u32,
    /// Attention (query) heads.
    pub num_attention_heads: u32,
    /// KV heads (GQA).
    pub num_kv_heads: u32,
    /// Head dimension.
    pub head_dim: u32,
    /// MLP intermediate size.
    pub intermediate_size: u32,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Whether lm_head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Weight storage format.
    pub weight_format: WeightFormat,
    /// Longest context the model supports (vLLM's default `max_model_len`).
    pub max_position_embeddings: u32,
    /// Bytes per element of the KV cache (2 for bf16/fp16).
    pub kv_cache_dtype_bytes: u32,
}

/// Which vLLM release an instance's defaults and scheduling rules follow. A release gets a preset
/// of its own only where a behaviour the simulator models differs from its neighbours' (see
/// `presets.rs` for what differs, with the vLLM source each rule was read from). One preset is not
/// vLLM: `transformers-cb`, the reference engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnginePreset {
    /// vLLM 0.6.4 (V0 engine, the seed's baseline image).
    #[serde(rename = "vllm-0.6.4")]
    Vllm064,
    /// vLLM 0.9.2 (V1 engine; the release kvcached's published benchmarks ran): admits a request
    /// when its first chunk fits, and `--quantization awq` runs the legacy AWQ kernels.
    #[serde(rename = "vllm-0.9.2")]
    Vllm092,
    /// vLLM 0.19.0 (V1; the release in kvcached's `kvcached-vllm:latest` image): admits a request
    /// only when its whole sequence fits, and `--quantization awq` still runs the legacy kernels.
    #[serde(rename = "vllm-0.19.0")]
    Vllm0190,
    /// Current vLLM V1 (read: 0.33.0): whole-sequence admission, `awq` runs Marlin kernels.
    #[serde(rename = "vllm-v1")]
    VllmV1,
    /// Hugging Face transformers 5.17 continuous batching as the reference engine
    /// (`live/reference-engine/`) runs it: not vLLM.
    #[serde(rename = "transformers-cb")]
    TransformersCb,
}

/// vLLM's engine generation: V0 (`vllm/core/scheduler.py`) or V1 (`vllm/v1/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineGeneration {
    /// The V0 engine (vLLM <= 0.10; the seed's 0.6.4).
    V0,
    /// The V1 engine.
    V1,
}

/// vLLM's `--quantization` value for an AWQ checkpoint (the flag is left out for bf16 models).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    /// `--quantization awq` (the seed's flag): the legacy AWQ kernels up to vLLM 0.23, Marlin from
    /// 0.24 on (see `EnginePreset::awq_flag_runs_legacy_kernels`).
    Awq,
    /// `--quantization awq_marlin`: the Marlin int4 kernels.
    AwqMarlin,
}

impl Quantization {
    /// The value vLLM's `--quantization` takes.
    pub fn as_flag(self) -> &'static str {
        match self {
            Quantization::Awq => "awq",
            Quantization::AwqMarlin => "awq_marlin",
        }
    }
}

/// Which kernels an AWQ model's linear layers run on (what the step-time prior charges).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwqKernel {
    /// vLLM's legacy `AWQLinearMethod`: `awq_gemm` below 256 tokens per step, dequantise the whole
    /// weight to fp16 and multiply at or above.
    Legacy,
    /// The Marlin int4 GEMM (`AWQMarlinLinearMethod`).
    Marlin,
}

/// How an instance's KV cache memory is provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheMode {
    /// vLLM's static reservation sized by `gpu_memory_utilization`.
    Static,
    /// kvcached: pages mapped on demand from a per-GPU pool.
    Elastic,
}

/// One engine's settings after the preset and overrides are applied (vLLM's names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// The preset these values started from.
    pub preset: EnginePreset,
    /// Most sequences in one step's batch.
    pub max_num_seqs: u32,
    /// Token budget of one step.
    pub max_num_batched_tokens: u32,
    /// Tokens per KV block.
    pub block_size: u32,
    /// Fraction of GPU memory the instance may use (weights + activations + KV).
    pub gpu_memory_utilization: f64,
    /// Reuse KV blocks of identical prefixes.
    pub enable_prefix_caching: bool,
    /// Split long prompts across steps and mix them with decodes.
    pub enable_chunked_prefill: bool,
    /// Longest request (prompt + output) accepted.
    pub max_model_len: u32,
    /// Static or elastic KV.
    pub kv_cache: KvCacheMode,
    /// Memory held back for activations, CUDA graphs and the CUDA context, bytes.
    pub activation_reserve_bytes: u64,
    /// Forces the number of KV blocks (vLLM's `num_gpu_blocks_override`).
    pub num_gpu_blocks_override: Option<u32>,
    /// kvcached's knobs, used when `kv_cache` is elastic.
    #[serde(default)]
    pub elastic: ElasticKvConfig,
    /// Schedule step n+1 while step n runs (vLLM V1's `async_scheduling`, transformers'
    /// `use_async_batching`): CPU time overlaps GPU time, a request arriving during step n joins
    /// step n+2, and a finished request's blocks come back one step later. Off: the engine
    /// schedules, runs and processes each step in turn.
    #[serde(default)]
    pub async_scheduling: bool,
    /// vLLM's `scheduler_reserve_full_isl` (0.19.0 and later, on by default): a waiting request is
    /// admitted only when the KV blocks of its whole sequence are free, not just its first
    /// chunk's. Always false on presets without the option (their rules are in `presets.rs`).
    /// Runs recorded before this knob existed simulated first-chunk admission: false.
    #[serde(default)]
    pub scheduler_reserve_full_isl: bool,
    /// `--quantization` for an AWQ model (None for bf16 models).
    #[serde(default)]
    pub quantization: Option<Quantization>,
}

/// One engine instance: a model on a GPU at a port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Display name, e.g. `"llama-3.1-8b#0"`.
    pub name: String,
    /// The model it serves.
    pub model: ModelId,
    /// The GPU it runs on.
    pub gpu: GpuId,
    /// HTTP port (live harness and emulator).
    pub port: u16,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Step-time model for this instance.
    pub perf: PerfSpec,
    /// Command template the live launcher runs (None: `vllm serve` built from `engine`).
    pub launch_command: Option<String>,
}

/// Where an instance's step times come from: the GPU part (a roofline prior or fitted
/// coefficients) and the rest of the step model (CPU time, CUDA graphs, output delay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PerfSpec {
    /// A roofline prior from architecture and GPU specs: uncalibrated.
    Roofline {
        /// Achieved fraction of peak FLOP/s.
        mfu: f64,
        /// Achieved fraction of peak HBM bandwidth.
        bandwidth_efficiency: f64,
        /// Fixed GPU time per step (sampling, launch gaps), seconds.
        step_overhead_s: f64,
        /// CPU time, CUDA graphs and output delay: the engine preset's documented guesses.
        #[serde(default)]
        overheads: StepOverheads,
    },
    /// Coefficients fitted from live traces (a profile file).
    Profile {
        /// File the coefficients were read from.
        path: String,
        /// GPU time coefficients.
        coefficients: StepCoefficients,
        /// CPU time, CUDA graphs and output delay from the file's `[cpu]`, `[cuda_graphs]` and
        /// `[pipeline]` sections.
        #[serde(default)]
        overheads: StepOverheads,
        /// The file's `[fit]` section (informational).
        #[serde(default)]
        fit: Option<FitInfo>,
    },
}

impl PerfSpec {
    /// CPU time, CUDA graphs and output delay of either source.
    pub fn overheads(&self) -> &StepOverheads {
        match self {
            PerfSpec::Roofline { overheads, .. } | PerfSpec::Profile { overheads, .. } => overheads,
        }
    }

    /// Whether the engine replays CUDA graphs (the source has capture sizes): its steps are
    /// GPU-bound, which decides when arrivals join and how co-tenants contend.
    pub fn replays_cuda_graphs(&self) -> bool {
        !self.overheads().cuda_graphs.capture_sizes.is_empty()
    }
}

/// GPU step time = fixed + per prefill token + per decoding sequence + per KV token read
/// (+ prefill tokens x context tokens for attention), all in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepCoefficients {
    /// Seconds per step regardless of batch.
    pub fixed_s: f64,
    /// Seconds per prompt token computed in the step.
    pub per_prefill_token_s: f64,
    /// Seconds per sequence decoding one token in the step (and per CUDA-graph padding token).
    pub per_decode_seq_s: f64,
    /// Seconds per KV-cache token read by attention in the step (context of every scheduled sequence).
    pub per_kv_token_s: f64,
    /// Seconds per (prefill token x its context length) pair: quadratic attention cost of long prompts.
    #[serde(default)]
    pub per_prefill_attn_pair_s: f64,
}

/// The parts of a step's cost besides the GPU's arithmetic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepOverheads {
    /// CPU time of a step (scheduling, input preparation, output processing).
    #[serde(default)]
    pub cpu: CpuCost,
    /// CUDA-graph padding and the cost of steps run without graphs.
    #[serde(default)]
    pub cuda_graphs: CudaGraphSpec,
    /// Seconds from a step's end until the client sees its tokens (the pipeline delay).
    #[serde(default)]
    pub output_delay_s: f64,
}

/// CPU time of one step: `fixed_s + per_request_s x scheduled requests`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuCost {
    /// Seconds per step regardless of batch.
    pub fixed_s: f64,
    /// Seconds per request scheduled in the step.
    pub per_request_s: f64,
}

/// When a step runs a CUDA graph, padded to a captured size, and what a step without one costs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CudaGraphSpec {
    /// Captured sizes in query tokens, ascending; empty: no graphs (no padding, no eager cost).
    pub capture_sizes: Vec<u32>,
    /// Seconds added to a step that runs without a graph (kernel launches).
    pub eager_fixed_s: f64,
    /// Graphs serve only pure-decode batches (vLLM 0.6.4); mixed prefill steps run eagerly.
    #[serde(default)]
    pub decode_only: bool,
    /// A batch whose longest context exceeds this runs eagerly (vLLM 0.6.4's
    /// `max_seq_len_to_capture`); `None`: no limit.
    #[serde(default)]
    pub max_seq_len_to_capture: Option<u32>,
}

/// How well a profile's coefficients fit the data they came from (a profile's `[fit]`, written by
/// `calibrate`; informational).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FitInfo {
    /// Steps in the fit.
    pub num_steps: u64,
    /// Coefficient of determination.
    pub r2: f64,
    /// Median relative residual `|pred - meas| / meas`.
    pub residual_p50: f64,
    /// 90th percentile relative residual.
    pub residual_p90: f64,
    /// 99th percentile relative residual.
    pub residual_p99: f64,
    /// Run dirs used.
    pub data: Vec<String>,
}

/// The load balancer's policy and parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterSpec {
    /// Which policy routes each request among its model's replicas.
    pub policy: RouterPolicy,
    /// How often the LB polls each instance's `/metrics`, seconds (queue-aware).
    pub poll_interval_s: f64,
    /// When the simulated LB polls within its interval: at `poll_offset_s + k x poll_interval_s`
    /// from the run's start (`router.poll_offset_s`, in `[0, poll_interval_s)`; default 0). A live
    /// LB's polls fall at whatever phase it started with, and a queue-aware policy herds on which
    /// bursts land just after a poll: sweep this knob for the range a live run can show.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub poll_offset_s: f64,
    /// What "busy" means for queue-aware routing.
    pub score: LoadScore,
    /// The prefix-aware policy's block hashing and index.
    #[serde(default)]
    pub prefix: PrefixRouting,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The prefix-aware router's approximate index (`router::PrefixAware`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixRouting {
    /// Tokens per hashed prompt block (llm-d auto-tunes it to the engine's block size, vLLM's
    /// default 16).
    pub block_tokens: u32,
    /// Blocks the router remembers per replica, least recently routed forgotten first
    /// (llm-d's `defaultLRUCapacityPerServer`).
    pub index_blocks: u32,
}

impl Default for PrefixRouting {
    fn default() -> Self {
        PrefixRouting { block_tokens: 16, index_blocks: 31_250 }
    }
}

/// Routing policies (identical in the simulator and the live proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterPolicy {
    /// Model-aware round-robin over the model's replicas.
    RoundRobin,
    /// Least busy replica by polled `/metrics` (stale between polls).
    QueueAware,
    /// Fewest requests the LB itself has in flight to the replica (always fresh).
    LeastOutstanding,
    /// Two random replicas, the less loaded (LB-local in-flight) wins.
    PowerOfTwo,
    /// Uniformly random replica.
    Random,
    /// The replica most likely to hold the prompt's leading blocks, balanced against its polled
    /// waiting queue (llm-d's prefix-cache + load-aware scorers; `router::PrefixAware`).
    PrefixAware,
}

/// The busy-ness score queue-aware routing minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadScore {
    /// `num_requests_running + num_requests_waiting` (the seed's smart LB).
    RunningPlusWaiting,
    /// `num_requests_waiting` only.
    Waiting,
    /// KV-cache usage fraction.
    KvUsage,
}

/// The request stream: phases run one after another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Phases in order.
    pub phases: Vec<PhaseSpec>,
    /// Shared-prefix (system prompt) structure per model, for prefix caching.
    pub prefix: PrefixSpec,
    /// Vocabulary range the live harness draws prompt token ids from: `[lo, hi)`.
    pub prompt_token_id_range: (u32, u32),
}

/// One phase of the workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpec {
    /// Phase label (for reports).
    pub name: String,
    /// Ends after this many seconds (open loop: no arrivals after it; closed loop: no new sends).
    pub duration_s: Option<f64>,
    /// Ends after this many requests are issued.
    pub num_requests: Option<u64>,
    /// How requests arrive.
    pub arrival: ArrivalSpec,
    /// Share of requests per model (open loop), normalised to 1.
    pub mix: Vec<(ModelId, f64)>,
    /// Prompt length distribution.
    pub input_tokens: LengthDist,
    /// Output length distribution (`max_tokens` = `min_tokens`).
    pub output_tokens: LengthDist,
    /// Per-model overrides of the length distributions.
    pub per_model_lengths: Vec<(ModelId, LengthDist, LengthDist)>,
}

/// Arrival processes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "process", rename_all = "snake_case")]
pub enum ArrivalSpec {
    /// Exponential inter-arrival times at `rate` requests/s.
    Poisson {
        /// Requests per second.
        rate: f64,
    },
    /// Gamma inter-arrivals as `vllm bench serve --burstiness k`: shape k, scale 1/(rate k).
    Gamma {
        /// Requests per second.
        rate: f64,
        /// Shape k (1 = Poisson, <1 burstier); CV = 1/sqrt(k).
        burstiness: f64,
    },
    /// Evenly spaced arrivals.
    Constant {
        /// Requests per second.
        rate: f64,
    },
    /// Poisson with a rate rising linearly from `start_rate` to `end_rate` over the phase.
    Ramp {
        /// Rate at the phase start, requests/s.
        start_rate: f64,
        /// Rate at the phase end, requests/s.
        end_rate: f64,
    },
    /// genai-perf `--concurrency`: each model keeps this many requests in flight.
    ClosedLoop {
        /// In-flight requests per model of the mix.
        concurrency: u32,
        /// How long a client waits after its request ends before it sends the next (0: at once).
        #[serde(default)]
        reissue_delay_s: DelayDist,
    },
    /// Multi-turn chat sessions (`workload::sessions`): each turn's prompt repeats the previous
    /// turn's prompt and answer, the next turn is sent a think time after the answer ends.
    Sessions(SessionSpec),
    /// Arrivals, models, lengths and prefix blocks replayed from a trace (see
    /// [`TraceFormat`](super::TraceFormat)).
    Replay {
        /// Path of the trace file or run dir.
        path: String,
        /// Time compression: inter-arrival gaps are divided by this.
        speedup: f64,
        /// Format, source window, rate scaling, models.
        #[serde(default)]
        options: super::ReplayOptions,
    },
}

impl ArrivalSpec {
    /// Closed loop with `concurrency` clients per model that re-send at once.
    pub fn closed_loop(concurrency: u32) -> ArrivalSpec {
        ArrivalSpec::ClosedLoop { concurrency, reissue_delay_s: DelayDist::default() }
    }
}

/// Multi-turn sessions: how sessions start, how many turns each has, how long its user thinks
/// and how many new tokens each later turn adds. The phase's `input_tokens` is the first turn's
/// prompt, its `output_tokens` every turn's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Closed loop (a fixed number of concurrent sessions) or open loop (a session arrival rate).
    pub start: SessionStart,
    /// Turns per session.
    pub turns: LengthDist,
    /// Seconds between a turn's answer ending and the next turn's send.
    pub think_time_s: DelayDist,
    /// New user tokens appended by each turn after the first.
    pub user_tokens: LengthDist,
    /// No session starts after this many (in the phase).
    pub num_sessions: Option<u64>,
    /// A session ends early rather than send a turn whose prompt + answer exceed this.
    pub max_context_tokens: Option<u32>,
}

/// How sessions start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStart {
    /// Closed loop: this many sessions per model of the mix run at once; a session that ends is
    /// replaced by a new one at once.
    Concurrent(u32),
    /// Open loop: new sessions arrive as a Poisson process of this many sessions per second.
    Rate(f64),
}

/// A distribution of delays in seconds (a closed-loop client's re-issue delay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case")]
pub enum DelayDist {
    /// Always `value` seconds.
    Fixed {
        /// Seconds.
        value: f64,
    },
    /// Uniform on `[min, max]` seconds.
    Uniform {
        /// Shortest.
        min: f64,
        /// Longest.
        max: f64,
    },
    /// Exponential with this mean, seconds.
    Exponential {
        /// Mean seconds.
        mean: f64,
    },
}

impl Default for DelayDist {
    fn default() -> Self {
        DelayDist::Fixed { value: 0.0 }
    }
}

impl DelayDist {
    /// Whether every draw is zero (a client re-sends at the instant its request ends).
    pub fn is_zero(&self) -> bool {
        matches!(self, DelayDist::Fixed { value } if *value == 0.0)
    }
}

/// Token-length distributions; samples are rounded and clamped to `[min, max]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case")]
pub enum LengthDist {
    /// Always `value`.
    Fixed {
        /// Tokens.
        value: u32,
    },
    /// Uniform on `[min, max]`.
    Uniform {
        /// Smallest.
        min: u32,
        /// Largest.
        max: u32,
    },
    /// Normal, clamped.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
        /// Clamp low.
        min: u32,
        /// Clamp high.
        max: u32,
    },
    /// Log-normal given by its mean and standard deviation in tokens, clamped.
    Lognormal {
        /// Mean in tokens.
        mean: f64,
        /// Standard deviation in tokens.
        std: f64,
        /// Clamp low.
        min: u32,
        /// Clamp high.
        max: u32,
    },
    /// Drawn uniformly from a list of observed lengths (loaded from a CSV column).
    Empirical {
        /// Source file and column, for the record.
        source: String,
        /// The values.
        values: Vec<u32>,
    },
}

/// Shared system prompts: a fraction of requests start with one of `groups` prefixes of `tokens`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrefixSpec {
    /// Tokens of the shared prefix (0 = no shared prefix).
    pub tokens: u32,
    /// Distinct prefixes per model.
    pub groups: u32,
    /// Fraction of requests that carry a shared prefix.
    pub fraction: f64,
}

/// Service-level objectives (seconds); a request meets the SLO when every set bound holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SloSpec {
    /// Per-request TTFT bound for goodput.
    pub ttft_s: Option<f64>,
    /// Per-request TPOT bound for goodput.
    pub tpot_s: Option<f64>,
    /// Per-request E2E bound for goodput.
    pub e2e_s: Option<f64>,
    /// Percentile targets used by `plan`: p90 TTFT per model.
    pub ttft_p90_s: Option<f64>,
    /// Percentile targets used by `plan`: p90 TPOT per model.
    pub tpot_p90_s: Option<f64>,
}

/// What the simulator writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Interval of `instances.csv` samples, seconds.
    pub sample_interval_s: f64,
    /// Write `tokens.csv` (one row per generated token; large).
    pub tokens_csv: bool,
    /// Give up on requests still unfinished this long after the last arrival, seconds.
    pub drain_timeout_s: f64,
    /// `instances.csv` rows a run may write (`output.max_samples`): checked on the plan before
    /// work starts and enforced while the run goes, for what no plan shows (a closed loop, steps
    /// far longer than the plan assumed).
    #[serde(default = "default_max_samples")]
    pub max_samples: u64,
}

fn default_max_samples() -> u64 {
    super::limits::DEFAULT_MAX_SAMPLES
}

impl ModelSpec {
    /// Parameter count (embeddings, attention, MLP, lm_head; norms and biases are negligible and
    /// ignored).
    pub fn num_params(&self) -> u64 {
        let (h, l) = (u64::from(self.hidden_size), u64::from(self.num_layers));
        let q = u64::from(self.num_attention_heads) * u64::from(self.head_dim);
        let kv = u64::from(self.num_kv_heads) * u64::from(self.head_dim);
        let attn = h * q + 2 * h * kv + q * h;
        let mlp = 3 * h * u64::from(self.intermediate_size);
        self.embedding_params() + l * (attn + mlp)
    }

    /// Parameters of the embedding matrix and (when untied) lm_head.
    pub fn embedding_params(&self) -> u64 {
        let e = u64::from(self.vocab_size) * u64::from(self.hidden_size);
        if self.tie_word_embeddings { e } else { 2 * e }
    }

    /// Bytes of weights in GPU memory. AWQ int4 stores linear layers at 4 bits plus one fp16 scale
    /// and one 4-bit zero per group of 128 (4.156 bits/weight); embeddings stay bf16.
    pub fn weight_bytes(&self) -> u64 {
        let linear = self.num_params() - self.embedding_params();
        let emb = self.embedding_params() * 2;
        match self.weight_format {
            WeightFormat::Bf16 => linear * 2 + emb,
            WeightFormat::AwqInt4 => (linear as f64 * (4.0 + 20.0 / 128.0) / 8.0).round() as u64 + emb,
        }
    }

    /// KV-cache bytes per token across all layers: 2 (K and V) x layers x KV heads x head dim x dtype.
    pub fn kv_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.num_layers)
            * u64::from(self.num_kv_heads)
            * u64::from(self.head_dim)
            * u64::from(self.kv_cache_dtype_bytes)
    }

    /// Forward-pass FLOPs per token through the weights (2 x non-embedding params + lm_head).
    pub fn flops_per_token(&self) -> f64 {
        let lm_head = u64::from(self.vocab_size) * u64::from(self.hidden_size);
        2.0 * (self.num_params() - self.embedding_params() + lm_head) as f64
    }
}
