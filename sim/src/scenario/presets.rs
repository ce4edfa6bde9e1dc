//! Engine presets: vLLM's defaults per version (and the reference engine's, transformers
//! continuous batching), and how explicit knobs change the derived ones.
//!
//! vLLM derives some defaults from others (chunked prefill from `max_model_len`, the token budget
//! from chunked prefill, V1's batch sizes from the GPU), so a preset is a function of what the
//! user set, not a fixed table: `derive_engine` mirrors the order vLLM applies them in. This module
//! does not validate ranges or memory; `resolve` and `memory` do.

use super::raw::RawEngine;
use super::types::{ElasticKvConfig, EngineConfig, EnginePreset, GpuSpec, KvCacheMode, ModelSpec};

const GIB: u64 = 1 << 30;

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
/// - `async_scheduling`: V1: on (vllm 0.33.0 `vllm/config/vllm.py` `VllmConfig.__post_init__`
///   turns `SchedulerConfig.async_scheduling = None` on unless an incompatible option is set; it
///   was an opt-in `False` up to vllm 0.11.0 `vllm/config/scheduler.py`); 0.6.4: off (the V0
///   engine has no async scheduling: `LLMEngine.step` schedules, runs and processes in turn; its
///   async output processing overlaps only detokenization).
///
/// `transformers-cb` (transformers 5.17 `generation/configuration_utils.py`
/// `ContinuousBatchingConfig` as the reference engine sets it up): block_size 256, 8192 batch
/// tokens (`max_batch_tokens`), 1024 requests per batch (`max_requests_per_batch` fallback),
/// chunked prefill always (prompts longer than the token budget are split), no prefix caching
/// (the reference engine turns `allow_block_sharing` off), async batching on. Its KV cache is
/// `max_memory_percent` (0.9) of the memory left after the weights; here it is sized with vLLM's
/// rule at `gpu_memory_utilization` 0.9 (a guess: set `num_gpu_blocks_override` to the engine's
/// logged block count for an exact figure).
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
    let graphs = match preset {
        EnginePreset::Vllm064 => 0,
        // transformers-cb: a guess, as V1 (graphs of up to 512 tokens, captured while serving).
        EnginePreset::VllmV1 | EnginePreset::TransformersCb => GIB / 2,
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
    let enable_chunked_prefill = set.enable_chunked_prefill.unwrap_or(match preset {
        EnginePreset::Vllm064 => max_model_len > 32768,
        EnginePreset::VllmV1 | EnginePreset::TransformersCb => true,
    });
    let (v1_budget, v1_seqs) = if large_gpu { (8192, 1024) } else { (2048, 256) };
    let max_num_batched_tokens =
        set.max_num_batched_tokens.unwrap_or(match (preset, enable_chunked_prefill) {
            (EnginePreset::TransformersCb, _) => 8192,
            (EnginePreset::Vllm064, true) => 512,
            (EnginePreset::VllmV1, true) => v1_budget,
            (_, false) => max_model_len.max(2048),
        });
    let max_num_seqs = set.max_num_seqs.unwrap_or(match preset {
        EnginePreset::Vllm064 => 256,
        EnginePreset::VllmV1 => v1_seqs,
        EnginePreset::TransformersCb => 1024,
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
            EnginePreset::Vllm064 | EnginePreset::VllmV1 => 16,
        }),
        gpu_memory_utilization: set.gpu_memory_utilization.unwrap_or(0.9),
        enable_prefix_caching: set.enable_prefix_caching.unwrap_or(match (preset, kv_cache) {
            (_, KvCacheMode::Elastic) | (EnginePreset::Vllm064 | EnginePreset::TransformersCb, _) => false,
            (EnginePreset::VllmV1, KvCacheMode::Static) => true,
        }),
        enable_chunked_prefill,
        max_model_len,
        kv_cache,
        activation_reserve_bytes,
        num_gpu_blocks_override: set.num_gpu_blocks_override,
        elastic: derive_elastic(set),
        async_scheduling: set.async_scheduling.unwrap_or(match preset {
            EnginePreset::Vllm064 => false,
            EnginePreset::VllmV1 | EnginePreset::TransformersCb => true,
        }),
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
