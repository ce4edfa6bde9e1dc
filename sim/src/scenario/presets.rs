//! Engine presets: vLLM's defaults per version (and the reference engine's, transformers
//! continuous batching), and how explicit knobs change the derived ones.
//!
//! vLLM derives some defaults from others (chunked prefill from `max_model_len`, the token budget
//! from chunked prefill, V1's batch sizes from the GPU), so a preset is a function of what the
//! user set, not a fixed table: `derive_engine` mirrors the order vLLM applies them in. This module
//! does not validate ranges or memory; `resolve` and `memory` do.

use super::raw::RawEngine;
use super::types::{
    AwqKernel, ElasticKvConfig, EngineConfig, EngineGeneration, EnginePreset, GpuSpec, KvCacheMode,
    ModelSpec, Quantization, WeightFormat,
};

const GIB: u64 = 1 << 30;

/// What differs between the releases the presets stand for, as far as the simulator models it.
/// Versions read: vLLM 0.6.4, 0.9.2, 0.11.0, 0.18.0, 0.19.0, 0.22.0, 0.23.0, 0.24.0, 0.33.0.
impl EnginePreset {
    /// Every preset, the vLLM releases oldest first, then the reference engine.
    pub const ALL: [EnginePreset; 5] = [
        EnginePreset::Vllm064,
        EnginePreset::Vllm092,
        EnginePreset::Vllm0190,
        EnginePreset::VllmV1,
        EnginePreset::TransformersCb,
    ];

    /// The preset's name in scenario and profile files.
    pub fn name(self) -> &'static str {
        match self {
            EnginePreset::Vllm064 => "vllm-0.6.4",
            EnginePreset::Vllm092 => "vllm-0.9.2",
            EnginePreset::Vllm0190 => "vllm-0.19.0",
            EnginePreset::VllmV1 => "vllm-v1",
            EnginePreset::TransformersCb => "transformers-cb",
        }
    }

    /// Whether the engine is vLLM (any release).
    pub fn is_vllm(self) -> bool {
        !matches!(self, EnginePreset::TransformersCb)
    }

    /// V0 for 0.6.4, V1 for the other vLLM releases. transformers-cb is not vLLM; it counts as V1,
    /// whose rules it follows where the simulator models them (V1's scheduler with its own free-block
    /// margin, V1's metric names and error bodies, always-chunked prefill, CUDA-graph memory);
    /// where it differs (batch defaults, prefix caching, launch command) the code matches on the
    /// preset itself.
    pub fn generation(self) -> EngineGeneration {
        match self {
            EnginePreset::Vllm064 => EngineGeneration::V0,
            EnginePreset::Vllm092
            | EnginePreset::Vllm0190
            | EnginePreset::VllmV1
            | EnginePreset::TransformersCb => EngineGeneration::V1,
        }
    }

    /// Whether the engine schedules step n+1 while step n runs unless told otherwise. vLLM V1: on
    /// in current releases (vllm 0.33.0 `VllmConfig.__post_init__`); an opt-in `False` up to vllm
    /// 0.11.0 `vllm/config/scheduler.py`, so off for 0.9.2; 0.19.0 is taken as on (not read: the
    /// default flipped between 0.11.0 and 0.33.0). 0.6.4: off (V0 has no async scheduling).
    /// transformers-cb: on (the reference engine's `use_async_batching`).
    pub fn async_scheduling_default(self) -> bool {
        match self {
            EnginePreset::Vllm064 | EnginePreset::Vllm092 => false,
            EnginePreset::Vllm0190 | EnginePreset::VllmV1 | EnginePreset::TransformersCb => true,
        }
    }

    /// Whether, with async scheduling on, a request arriving while step n runs first joins step
    /// n+2 (the scheduler already chose step n+1's batch); `cuda_graphs`: whether the engine
    /// replays CUDA graphs (its step-time source has capture sizes). vLLM V1: yes — `EngineCore.
    /// step_with_batch_queue` (vllm 0.11.0 v1/engine/core.py) schedules step n+1 and queues it
    /// while step n's forward runs on the GPU. transformers-cb: only with CUDA graphs — the
    /// reference engine's loop (`_generation_loop_body` in live/reference-engine/engine.py,
    /// transformers 5.17) prepares the next batch at the top of each iteration, after the previous
    /// step's launch returned. Run eagerly (`--no-cuda-graphs`), that launch is the step (Python
    /// issuing kernels keeps the loop CPU-bound), so a batch is chosen when the previous step ends
    /// and an arrival joins the next step; measured on the H200 (validation/README.md), the n+2
    /// join over-predicts eager Poisson TTFT p50 by 24-35%, the n+1 join with a fitted output
    /// delay does not. Replaying a graph, the launch returns at once, so the next batch is chosen
    /// while the step runs on the GPU, as in vLLM: with graphs (h200/llama8b-graphs) the n+1 join
    /// under-predicts every held-out TTFT p50 (-8..-23%). Its async batching processes step n's
    /// output after launching step n+1 either way (frees come a step later: kept with the
    /// `async_scheduling` flag).
    pub fn arrivals_skip_a_step(self, cuda_graphs: bool) -> bool {
        !matches!(self, EnginePreset::TransformersCb) || cuda_graphs
    }

    /// Whether the release has `--scheduler-reserve-full-isl` (`SchedulerConfig.
    /// scheduler_reserve_full_isl`, default True). Added in vLLM 0.19.0: absent from 0.18.0's
    /// vllm/config/scheduler.py, present (default True) in 0.19.0's, 0.20.0's and 0.33.0's. Before,
    /// V1's `Scheduler.schedule` (vllm 0.9.2 and 0.11.0 v1/core/sched/scheduler.py) admitted a
    /// waiting request once `KVCacheManager.allocate_slots` found blocks for its first chunk.
    /// transformers-cb has no such option (its admission is not modelled beyond V1's first-chunk
    /// rule and its free-block margin).
    pub fn has_reserve_full_isl(self) -> bool {
        match self {
            EnginePreset::Vllm064 | EnginePreset::Vllm092 | EnginePreset::TransformersCb => false,
            EnginePreset::Vllm0190 | EnginePreset::VllmV1 => true,
        }
    }

    /// Whether `--quantization awq` runs the legacy AWQ kernels on an AWQ checkpoint that Marlin
    /// could run. Up to vLLM 0.23.0, `AWQMarlinConfig.override_quantization_method`
    /// (model_executor/layers/quantization/awq_marlin.py, read in 0.6.4, 0.9.2, 0.11.0, 0.19.0,
    /// 0.22.0 and 0.23.0) converts to `awq_marlin` only when the user asked for nothing, `marlin`
    /// or `awq_marlin`, and logs "you specified quantization=awq explicitly, so forcing awq"
    /// otherwise. From 0.24.0 on, `awq` and `awq_marlin` both map to `AutoAWQConfig`
    /// (quantization/auto_awq.py `override_quantization_method` accepts "awq"), whose
    /// `get_quant_method` picks `AutoAWQMarlinLinearMethod` on CUDA when Marlin supports the layer.
    ///
    /// transformers-cb: taken as legacy (transformers' AWQ integration runs AutoAWQ's GEMM kernels,
    /// not Marlin, by default); a guess, unmeasured.
    pub fn awq_flag_runs_legacy_kernels(self) -> bool {
        match self {
            EnginePreset::Vllm064
            | EnginePreset::Vllm092
            | EnginePreset::Vllm0190
            | EnginePreset::TransformersCb => true,
            EnginePreset::VllmV1 => false,
        }
    }

    /// The kernels `--quantization q` selects on an AWQ checkpoint (on an H100-class GPU, where
    /// Marlin supports the 4-bit, group-128 layers of the catalogue's AWQ model).
    pub fn awq_kernel(self, q: Quantization) -> AwqKernel {
        match q {
            Quantization::Awq if self.awq_flag_runs_legacy_kernels() => AwqKernel::Legacy,
            Quantization::Awq | Quantization::AwqMarlin => AwqKernel::Marlin,
        }
    }
}

impl EngineConfig {
    /// The kernels this engine runs an AWQ model's linear layers on (None: not quantized).
    pub fn awq_kernel(&self) -> Option<AwqKernel> {
        self.quantization.map(|q| self.preset.awq_kernel(q))
    }
}

/// vLLM's defaults for an instance of `model` under `preset`, with nothing set explicitly, on an
/// H100/H200-class GPU (V1's batch defaults depend on the GPU; scenario resolution applies the rule
/// to each instance's own GPU, see `derive_engine`).
///
/// Per field, with the vLLM source it follows:
/// - `max_model_len`: the model's `max_position_embeddings` (vllm/config.py
///   `_get_and_verify_max_len`, both versions).
/// - `enable_chunked_prefill`: 0.6.4: on only when `max_model_len > 32768` (vllm/engine/arg_utils.py
///   `EngineArgs.create_engine_config`, "Chunked prefill is enabled by default for models with
///   max_model_len > 32K"), so on for Llama-3.1-8B/3.3-70B at full length, off for Qwen2.5-7B.
///   V1: always on.
/// - `max_num_batched_tokens`: with chunked prefill, 0.6.4 uses 512 (vllm/config.py
///   `SchedulerConfig.__init__`) and V1 uses 8192 on GPUs with >= 70 GiB that are not A100s, else
///   2048 (vllm/engine/arg_utils.py `EngineArgs.get_batch_defaults`, `OPENAI_API_SERVER` context);
///   without chunked prefill both use `max(max_model_len, 2048)`.
/// - `max_num_seqs`: 0.6.4: 256 (`EngineArgs.max_num_seqs`); V1: 1024 on >= 70 GiB non-A100 GPUs,
///   else 256 (`get_batch_defaults`).
/// - `block_size`: 16 (`CacheConfig`, CUDA default). `gpu_memory_utilization`: 0.9.
/// - `enable_prefix_caching`: 0.6.4: off (opt-in `--enable-prefix-caching`); V1: on, except with
///   elastic KV (kvcached runs with `--no-enable-prefix-caching` unless told otherwise).
/// - `kv_cache`: static (stock vLLM; elastic means kvcached, which needs vLLM >= 0.8.4).
/// - `elastic`: kvcached's defaults (see `ElasticKvConfig`).
/// - `activation_reserve_bytes`: see [`default_activation_reserve_bytes`].
/// - `num_gpu_blocks_override`: none.
/// - `async_scheduling`: see [`EnginePreset::async_scheduling_default`]. Current V1: on (vllm
///   0.33.0 `vllm/config/vllm.py` `VllmConfig.__post_init__` turns `SchedulerConfig.
///   async_scheduling = None` on unless an incompatible option is set; it was an opt-in `False` up
///   to vllm 0.11.0 `vllm/config/scheduler.py`, so 0.9.2 is off); 0.6.4: off (the V0 engine has
///   no async scheduling: `LLMEngine.step` schedules, runs and processes in turn; its async output
///   processing overlaps only detokenization).
/// - `scheduler_reserve_full_isl`: on where the release has it (0.19.0 and later, see
///   [`EnginePreset::has_reserve_full_isl`]), off (absent) before.
/// - `quantization`: `awq` for an AWQ model (the seed's `--quantization awq`), none for bf16.
///
/// "V1" above means every V1 preset: 0.9.2's `get_batch_defaults` (vllm/engine/arg_utils.py) has
/// the same 8192 / 1024 H100 defaults as current V1 (async scheduling excepted, as above).
///
/// `transformers-cb` (transformers 5.17 `generation/configuration_utils.py`
/// `ContinuousBatchingConfig` as the reference engine sets it up): block_size 256, 8192 batch
/// tokens (`max_batch_tokens`), 1024 requests per batch (`max_requests_per_batch` fallback),
/// chunked prefill always (prompts longer than the token budget are split), no prefix caching
/// (the reference engine turns `allow_block_sharing` off), async batching on, no full-sequence
/// admission option. Its KV cache is `max_memory_percent` (0.9) of the memory left after the
/// weights; here it is sized with vLLM's rule at `gpu_memory_utilization` 0.9 (a guess: set
/// `num_gpu_blocks_override` to the engine's logged block count for an exact figure).
pub fn engine_preset_defaults(preset: EnginePreset, model: &ModelSpec) -> EngineConfig {
    derive_engine(preset, model, true, &RawEngine::default())
}

/// Memory vLLM's startup profile holds back from the KV cache besides the weights, in bytes.
///
/// `0.5 GiB` CUDA context and non-torch allocations + (V1 only) `0.5 GiB` of CUDA graphs + the
/// profile run's peak activations, `max_num_batched_tokens x (4 x hidden + 2 x intermediate) x 2`
/// bytes (residual, attention and MLP buffers in bf16) + the sampler's logits,
/// `max_num_seqs x vocab x 4` bytes (fp32). vLLM measures this (vllm/worker/worker.py
/// `determine_num_available_blocks` in 0.6.4, vllm/v1/worker/gpu_worker.py
/// `determine_available_memory` in V1); this is an estimate of the measurement. 0.6.4 captures CUDA
/// graphs after the KV cache is sized, out of the headroom above `gpu_memory_utilization`, so they
/// do not count here; V1 counts them. For Llama-3.1-8B on an H100 at 0.9 this leaves ~54-55 GiB of
/// KV, as vLLM reports.
pub fn default_activation_reserve_bytes(
    preset: EnginePreset,
    model: &ModelSpec,
    max_num_batched_tokens: u32,
    max_num_seqs: u32,
) -> u64 {
    let context = GIB / 2;
    let graphs = match preset.generation() {
        EngineGeneration::V0 => 0,
        // transformers-cb counts as V1 here: a guess (graphs of up to 512 tokens, captured while
        // serving).
        EngineGeneration::V1 => GIB / 2,
    };
    let width = 4 * u64::from(model.hidden_size) + 2 * u64::from(model.intermediate_size);
    let activations = u64::from(max_num_batched_tokens).saturating_mul(width).saturating_mul(2);
    let logits = u64::from(max_num_seqs).saturating_mul(u64::from(model.vocab_size)).saturating_mul(4);
    context.saturating_add(graphs).saturating_add(activations).saturating_add(logits)
}

/// Whether V1's larger batch defaults apply to `gpu`: vLLM's rule is total memory >= 70 GiB and a
/// device name without "a100" (`EngineArgs.get_batch_defaults`).
pub(crate) fn gets_large_batch_defaults(gpu: &GpuSpec) -> bool {
    gpu.memory_bytes >= 70 * GIB && !gpu.name.to_lowercase().contains("a100")
}

/// The engine config of `preset` for `model` with the knobs in `set` fixed and every other one
/// derived as vLLM derives it, in vLLM's order: `max_model_len`, then chunked prefill, then the
/// token budget and `max_num_seqs`, then the memory reserve (which depends on the budget).
/// `large_gpu` selects V1's H100-class batch defaults (see [`gets_large_batch_defaults`]).
pub(crate) fn derive_engine(
    preset: EnginePreset,
    model: &ModelSpec,
    large_gpu: bool,
    set: &RawEngine,
) -> EngineConfig {
    let max_model_len = set.max_model_len.unwrap_or(model.max_position_embeddings);
    let v0 = preset.generation() == EngineGeneration::V0;
    let enable_chunked_prefill =
        set.enable_chunked_prefill.unwrap_or(if v0 { max_model_len > 32768 } else { true });
    let (v1_budget, v1_seqs) = if large_gpu { (8192, 1024) } else { (2048, 256) };
    let max_num_batched_tokens =
        set.max_num_batched_tokens.unwrap_or(match (preset, enable_chunked_prefill) {
            (EnginePreset::TransformersCb, _) => 8192,
            (_, true) if v0 => 512,
            (_, true) => v1_budget,
            (_, false) => max_model_len.max(2048),
        });
    let max_num_seqs = set.max_num_seqs.unwrap_or(match preset {
        EnginePreset::TransformersCb => 1024,
        _ if v0 => 256,
        _ => v1_seqs,
    });
    let activation_reserve_bytes = match (set.activation_reserve_bytes, set.activation_reserve_gib) {
        (Some(bytes), _) => bytes,
        (None, Some(g)) => (g.max(0.0) * GIB as f64) as u64,
        (None, None) => default_activation_reserve_bytes(preset, model, max_num_batched_tokens, max_num_seqs),
    };
    let kv_cache = set.kv_cache.unwrap_or(KvCacheMode::Static);
    EngineConfig {
        preset,
        max_num_seqs,
        max_num_batched_tokens,
        block_size: set.block_size.unwrap_or(match preset {
            EnginePreset::TransformersCb => 256,
            EnginePreset::Vllm064 | EnginePreset::Vllm092 | EnginePreset::Vllm0190 | EnginePreset::VllmV1 => {
                16
            }
        }),
        gpu_memory_utilization: set.gpu_memory_utilization.unwrap_or(0.9),
        enable_prefix_caching: set
            .enable_prefix_caching
            .unwrap_or(!v0 && preset.is_vllm() && kv_cache == KvCacheMode::Static),
        enable_chunked_prefill,
        max_model_len,
        kv_cache,
        activation_reserve_bytes,
        num_gpu_blocks_override: set.num_gpu_blocks_override,
        elastic: derive_elastic(set),
        async_scheduling: set.async_scheduling.unwrap_or(preset.async_scheduling_default()),
        scheduler_reserve_full_isl: set.scheduler_reserve_full_isl.unwrap_or(preset.has_reserve_full_isl())
            && preset.has_reserve_full_isl(),
        quantization: match model.weight_format {
            WeightFormat::Bf16 => None,
            // The seed's launch passes `--quantization awq` for its AWQ model.
            WeightFormat::AwqInt4 => Some(set.quantization.unwrap_or(Quantization::Awq)),
        },
    }
}

/// kvcached's knobs: its defaults, then whatever `set.elastic` sets.
fn derive_elastic(set: &RawEngine) -> ElasticKvConfig {
    let d = ElasticKvConfig::default();
    let Some(e) = &set.elastic else { return d };
    // Setting one end of the reserve moves the other default out of its way.
    let min_reserve_pages =
        e.min_reserve_pages.unwrap_or(d.min_reserve_pages.min(e.max_reserve_pages.unwrap_or(u32::MAX)));
    ElasticKvConfig {
        min_reserve_pages,
        max_reserve_pages: e.max_reserve_pages.unwrap_or(d.max_reserve_pages.max(min_reserve_pages)),
        map_latency_s: e.map_latency_s.unwrap_or(d.map_latency_s),
        max_memory_bytes: e.max_memory_gib.map(|g| (g.max(0.0) * GIB as f64) as u64),
        step_overhead_factor: e.step_overhead_factor.unwrap_or(d.step_overhead_factor),
        prefix_cache_max_tokens: e.prefix_cache_max_tokens.unwrap_or(d.prefix_cache_max_tokens),
    }
}
