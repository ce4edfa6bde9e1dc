//! The cluster: how much KV memory each instance gets from its GPU.
//!
//! Static KV follows vLLM's profile-then-reserve rule: `num_gpu_blocks = (total x
//! gpu_memory_utilization - weights - activation/graph/context reserve) / block_bytes`
//! (vllm/v1/worker/gpu_worker.py `determine_available_memory`, v1/core/kv_cache_utils.py).

use crate::scenario::{EngineConfig, GpuSpec, ModelSpec};

/// KV memory budget of one static instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvBudget {
    /// Bytes the instance may use in all (`total x gpu_memory_utilization`).
    pub usable_bytes: u64,
    /// Bytes of weights.
    pub weight_bytes: u64,
    /// Bytes held for activations, CUDA graphs and the context.
    pub reserve_bytes: u64,
    /// Bytes left for KV blocks (0 when the rest does not fit).
    pub kv_bytes: u64,
    /// Bytes of one KV block (all layers, K and V).
    pub block_bytes: u64,
    /// KV blocks (vLLM's `num_gpu_blocks`).
    pub num_gpu_blocks: u32,
}

impl KvBudget {
    /// Tokens the KV cache holds.
    pub fn capacity_tokens(&self, block_size: u32) -> u64 {
        u64::from(self.num_gpu_blocks) * u64::from(block_size)
    }
}

/// The static KV budget of an instance of `model` on `gpu` with `engine` settings.
pub fn static_kv_budget(model: &ModelSpec, gpu: &GpuSpec, engine: &EngineConfig) -> KvBudget {
    let usable_bytes = (gpu.memory_bytes as f64 * engine.gpu_memory_utilization) as u64;
    let weight_bytes = model.weight_bytes();
    let reserve_bytes = engine.activation_reserve_bytes;
    let kv_bytes = usable_bytes.saturating_sub(weight_bytes).saturating_sub(reserve_bytes);
    let block_bytes = model.kv_bytes_per_token() * u64::from(engine.block_size.max(1));
    let fitted = (kv_bytes / block_bytes.max(1)).min(u64::from(u32::MAX)) as u32;
    let num_gpu_blocks = engine.num_gpu_blocks_override.unwrap_or(fitted);
    KvBudget { usable_bytes, weight_bytes, reserve_bytes, kv_bytes, block_bytes, num_gpu_blocks }
}
