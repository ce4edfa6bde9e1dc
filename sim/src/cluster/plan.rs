//! Memory plans: how a GPU's memory splits between static shares, weights, reserves and the
//! elastic pool, and how an elastic instance's block space is paged.
//!
//! kvcached maps one 2 MB page per layer for K and for V at a time (`kvcached/utils.py`
//! `PAGE_SIZE`), so one page id costs `2 MB x 2 x layers` of physical memory and holds
//! `2 MB / (block_size x bytes per token per layer)` blocks. Its engines draw pages first come
//! first served from the GPU's physical free memory above a headroom
//! (`PageAllocator.get_avail_physical_pages`): here the pool is `total x cap` minus every
//! co-tenant's weights and activation/graph reserve and every static co-tenant's whole share, with
//! `cap` the lowest `gpu_memory_utilization` of the GPU's elastic instances (kvcached's
//! `GPU_UTILIZATION`; set 0.95 to mirror its default). Both the scenario validation and the
//! run-time [`super::Cluster`] read these plans, so they agree. Nothing here changes state.

use super::pool::PoolSlot;
use super::static_kv_budget;
use crate::ids::{GpuId, InstanceId};
use crate::scenario::{GpuSpec, InstanceSpec, KvCacheMode, ModelSpec, Scenario};

/// kvcached's page: bytes per layer and per K or V tensor mapped at once (2 MiB).
pub const KVCACHED_PAGE_SIZE: u64 = 2 << 20;

/// How an elastic instance's KV blocks group into kvcached pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageGeometry {
    /// Physical bytes one page id maps: `2 MiB x 2 (K, V) x layers`.
    pub page_bytes: u64,
    /// Blocks on one page: `2 MiB / (block_size x KV bytes per token per layer per tensor)`.
    pub blocks_per_page: u32,
    /// Tokens per block.
    pub block_size: u32,
    /// Bytes of one block across all layers, K and V.
    pub block_bytes: u64,
}

impl PageGeometry {
    /// The paging of `model`'s KV cache in blocks of `block_size` tokens; `None` when one block
    /// of one layer is larger than a page (kvcached cannot serve it).
    pub fn new(model: &ModelSpec, block_size: u32) -> Option<PageGeometry> {
        let layers = u64::from(model.num_layers.max(1));
        let per_token_layer_tensor = model.kv_bytes_per_token() / (2 * layers);
        let block_mem = per_token_layer_tensor.checked_mul(u64::from(block_size))?;
        let blocks_per_page = u32::try_from(KVCACHED_PAGE_SIZE.checked_div(block_mem)?).ok()?;
        if blocks_per_page == 0 {
            return None;
        }
        Some(PageGeometry {
            page_bytes: KVCACHED_PAGE_SIZE * 2 * layers,
            blocks_per_page,
            block_size,
            block_bytes: model.kv_bytes_per_token() * u64::from(block_size),
        })
    }

    /// Tokens one page holds.
    pub fn tokens_per_page(&self) -> u64 {
        u64::from(self.blocks_per_page) * u64::from(self.block_size)
    }
}

/// How one GPU's memory splits (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuKvPlan {
    /// The GPU.
    pub gpu: GpuId,
    /// Its instances, in instance order.
    pub instances: Vec<InstanceId>,
    /// Device memory.
    pub memory_bytes: u64,
    /// `total x cap` when the GPU has elastic instances (`cap`: their lowest
    /// `gpu_memory_utilization`).
    pub elastic_usable_bytes: Option<u64>,
    /// Static shares (`total x gpu_memory_utilization` each) plus elastic weights and
    /// activation/graph reserves: what is taken before the pool.
    pub taken_bytes: u64,
    /// The elastic pool: `elastic_usable_bytes - taken_bytes` (0 without elastic instances or
    /// when the rest does not fit).
    pub pool_bytes: u64,
    /// Pages the elastic instances keep pre-mapped at least (`min_reserve_pages x page_bytes`).
    pub reserve_page_bytes: u64,
    /// KV bytes of the static instances (`num_gpu_blocks x block_bytes`).
    pub static_kv_bytes: u64,
}

impl GpuKvPlan {
    /// KV bytes the GPU can hold: the elastic pool plus the static instances' caches.
    pub fn kv_capacity_bytes(&self) -> u64 {
        self.pool_bytes.saturating_add(self.static_kv_bytes)
    }
}

fn usable(gpu: &GpuSpec, util: f64) -> u64 {
    (gpu.memory_bytes as f64 * util) as u64
}

/// The plan of GPU `gpu_id` (`gpu`) for `instances` of `models` (all instances of the scenario;
/// those on other GPUs are skipped).
pub fn gpu_kv_plan(
    gpu_id: GpuId,
    gpu: &GpuSpec,
    models: &[ModelSpec],
    instances: &[InstanceSpec],
) -> GpuKvPlan {
    let mut plan = GpuKvPlan {
        gpu: gpu_id,
        instances: Vec::new(),
        memory_bytes: gpu.memory_bytes,
        elastic_usable_bytes: None,
        taken_bytes: 0,
        pool_bytes: 0,
        reserve_page_bytes: 0,
        static_kv_bytes: 0,
    };
    let mut cap: Option<f64> = None;
    for (i, inst) in instances.iter().enumerate().filter(|(_, x)| x.gpu == gpu_id) {
        plan.instances.push(InstanceId(i as u32));
        let model = &models[inst.model.index()];
        let e = &inst.engine;
        match e.kv_cache {
            KvCacheMode::Static => {
                plan.taken_bytes = plan.taken_bytes.saturating_add(usable(gpu, e.gpu_memory_utilization));
                let b = static_kv_budget(model, gpu, e);
                plan.static_kv_bytes = plan
                    .static_kv_bytes
                    .saturating_add(u64::from(b.num_gpu_blocks).saturating_mul(b.block_bytes));
            }
            KvCacheMode::Elastic => {
                let own = model.weight_bytes().saturating_add(e.activation_reserve_bytes);
                plan.taken_bytes = plan.taken_bytes.saturating_add(own);
                cap = Some(cap.map_or(e.gpu_memory_utilization, |c: f64| c.min(e.gpu_memory_utilization)));
                if let Some(g) = PageGeometry::new(model, e.block_size) {
                    let reserve = u64::from(e.elastic.min_reserve_pages).saturating_mul(g.page_bytes);
                    plan.reserve_page_bytes = plan.reserve_page_bytes.saturating_add(reserve);
                }
            }
        }
    }
    if let Some(c) = cap {
        let u = usable(gpu, c);
        plan.elastic_usable_bytes = Some(u);
        plan.pool_bytes = u.saturating_sub(plan.taken_bytes);
    }
    plan
}

/// The plan of every GPU of `scenario`, by `GpuId`.
pub fn gpu_kv_plans(scenario: &Scenario) -> Vec<GpuKvPlan> {
    (0..scenario.gpus.len())
        .map(|g| gpu_kv_plan(GpuId(g as u32), &scenario.gpus[g], &scenario.models, &scenario.instances))
        .collect()
}

/// Where and how big an elastic instance's block space is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElasticKvPlan {
    /// Its GPU.
    pub gpu: GpuId,
    /// Its slot in the GPU's pool: its rank among the GPU's elastic instances.
    pub slot: PoolSlot,
    /// How its blocks group into pages.
    pub geometry: PageGeometry,
    /// Pages it may map at once: `min(pool, max_memory_bytes) / page_bytes` (its virtual size).
    pub limit_pages: u32,
    /// The GPU's pool, bytes.
    pub pool_bytes: u64,
}

impl ElasticKvPlan {
    /// KV blocks of its block space (`limit_pages x blocks_per_page`): vLLM's `num_gpu_blocks`.
    pub fn num_blocks(&self) -> u32 {
        self.limit_pages.saturating_mul(self.geometry.blocks_per_page)
    }
}

/// The elastic plan of instance `i` of `instances`, `None` when it is static or its blocks do not
/// fit a page (validation rejects that).
pub fn elastic_kv_plan_in(
    gpus: &[GpuSpec],
    models: &[ModelSpec],
    instances: &[InstanceSpec],
    i: usize,
) -> Option<ElasticKvPlan> {
    let inst = instances.get(i)?;
    if inst.engine.kv_cache != KvCacheMode::Elastic {
        return None;
    }
    let geometry = PageGeometry::new(&models[inst.model.index()], inst.engine.block_size)?;
    let gpu = inst.gpu;
    let plan = gpu_kv_plan(gpu, &gpus[gpu.index()], models, instances);
    let slot =
        instances[..i].iter().filter(|x| x.gpu == gpu && x.engine.kv_cache == KvCacheMode::Elastic).count();
    let limit_bytes =
        inst.engine.elastic.max_memory_bytes.map_or(plan.pool_bytes, |m| m.min(plan.pool_bytes));
    let limit_pages = u32::try_from(limit_bytes / geometry.page_bytes).unwrap_or(u32::MAX);
    // Block ids are u32: cap the space so every block has one.
    let limit_pages = limit_pages.min(u32::MAX / geometry.blocks_per_page);
    Some(ElasticKvPlan {
        gpu,
        slot: PoolSlot(slot as u32),
        geometry,
        limit_pages,
        pool_bytes: plan.pool_bytes,
    })
}

/// The elastic plan of `instance` of `scenario` (see [`elastic_kv_plan_in`]).
pub fn elastic_kv_plan(scenario: &Scenario, instance: InstanceId) -> Option<ElasticKvPlan> {
    elastic_kv_plan_in(&scenario.gpus, &scenario.models, &scenario.instances, instance.index())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::model_catalog;

    fn model(name: &str) -> ModelSpec {
        model_catalog().into_iter().find(|m| m.name == name).unwrap()
    }

    #[test]
    fn a_page_id_costs_2_mib_times_2_times_layers_and_holds_the_documented_tokens() {
        // kv-memory.md: 8B 128 MiB = 1024 tokens; Qwen 112 MiB = 2048 tokens; 70B 320 MiB = 1024.
        for (name, mib, tokens) in
            [("llama-3.1-8b", 128, 1024), ("qwen2.5-7b", 112, 2048), ("llama-3.3-70b-awq", 320, 1024)]
        {
            let g = PageGeometry::new(&model(name), 16).unwrap();
            assert_eq!(g.page_bytes, mib << 20, "{name}");
            assert_eq!(g.tokens_per_page(), tokens, "{name}");
            assert_eq!(g.page_bytes, g.block_bytes * u64::from(g.blocks_per_page), "{name}: no waste");
        }
    }
}
