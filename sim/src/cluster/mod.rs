//! The cluster: how much KV memory each instance gets from its GPU, how colocated instances share
//! it, and how they slow each other down.
//!
//! Static KV follows vLLM's profile-then-reserve rule: `num_gpu_blocks = (total x
//! gpu_memory_utilization - weights - activation/graph/context reserve) / block_bytes`
//! (vllm/v1/worker/gpu_worker.py `determine_available_memory`, v1/core/kv_cache_utils.py).
//! Elastic KV (kvcached) draws pages from one physical pool per GPU (`plan`, `pool`); colocated
//! instances share compute too (`contention`). [`Cluster`] is the run-time state a driver owns:
//! one [`GpuPool`] per GPU, indexed by `GpuId`. This module does not schedule requests.

mod contention;
mod plan;
mod pool;

pub use contention::{StepLoad, contention_factor};
pub use plan::{
    ElasticKvPlan, GpuKvPlan, KVCACHED_PAGE_SIZE, PageGeometry, elastic_kv_plan, elastic_kv_plan_in,
    gpu_kv_plan, gpu_kv_plans,
};
pub use pool::{GpuPool, PoolError, PoolSlot, PoolTenant};

use crate::ids::{GpuId, InstanceId};
use crate::scenario::{ContentionSpec, EngineConfig, GpuSpec, ModelSpec, Scenario};

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

/// The run-time state of the cluster a driver owns: the elastic pool of every GPU and who shares
/// which GPU. Single-threaded: instances get `&mut GpuPool` for the calls that map or unmap pages.
#[derive(Clone, Debug)]
pub struct Cluster {
    pools: Vec<GpuPool>,
    /// The GPU of each instance, by `InstanceId`.
    gpu_of: Vec<GpuId>,
    /// The instances of each GPU, by `GpuId`, in instance order.
    tenants: Vec<Vec<InstanceId>>,
    contention: ContentionSpec,
}

impl Cluster {
    /// The cluster of `scenario`: one pool per GPU sized by [`gpu_kv_plan`], with its elastic
    /// instances as tenants in instance order (the slot order [`elastic_kv_plan`] assigns).
    pub fn new(scenario: &Scenario) -> Cluster {
        let plans = gpu_kv_plans(scenario);
        let mut pools: Vec<GpuPool> = plans.iter().map(|p| GpuPool::new(p.gpu, p.pool_bytes)).collect();
        let mut tenants = vec![Vec::new(); scenario.gpus.len()];
        let mut gpu_of = Vec::with_capacity(scenario.instances.len());
        for (i, spec) in scenario.instances.iter().enumerate() {
            let id = InstanceId(i as u32);
            gpu_of.push(spec.gpu);
            tenants[spec.gpu.index()].push(id);
            if let Some(plan) = elastic_kv_plan(scenario, id) {
                let slot = pools[spec.gpu.index()].add_tenant(id, plan.geometry.page_bytes, plan.limit_pages);
                debug_assert_eq!(slot, plan.slot);
            }
        }
        Cluster { pools, gpu_of, tenants, contention: scenario.contention }
    }

    /// The pool of `gpu`.
    pub fn pool(&self, gpu: GpuId) -> &GpuPool {
        &self.pools[gpu.index()]
    }

    /// The pool of `gpu`, for an instance's calls that map or unmap pages.
    pub fn pool_mut(&mut self, gpu: GpuId) -> &mut GpuPool {
        &mut self.pools[gpu.index()]
    }

    /// Every pool, by `GpuId`.
    pub fn pools(&self) -> &[GpuPool] {
        &self.pools
    }

    /// The GPU `instance` runs on.
    pub fn gpu_of(&self, instance: InstanceId) -> GpuId {
        self.gpu_of[instance.index()]
    }

    /// The instances on `gpu`, in instance order.
    pub fn tenants(&self, gpu: GpuId) -> &[InstanceId] {
        &self.tenants[gpu.index()]
    }

    /// Whether `instance` shares its GPU with another instance.
    pub fn is_colocated(&self, instance: InstanceId) -> bool {
        self.tenants(self.gpu_of(instance)).len() > 1
    }

    /// The contention model.
    pub fn contention(&self) -> ContentionSpec {
        self.contention
    }

    /// How many times longer a step of `instance` (`own`) takes when it begins now, given the
    /// steps in flight on its co-tenants (`in_flight`: None when idle; `instance` itself is not
    /// asked).
    pub fn step_factor(
        &self,
        instance: InstanceId,
        own: StepLoad,
        in_flight: impl Fn(InstanceId) -> Option<StepLoad>,
    ) -> f64 {
        let tenants = self.tenants(self.gpu_of(instance));
        if tenants.len() < 2 {
            return 1.0;
        }
        let busy: Vec<StepLoad> =
            tenants.iter().filter(|&&o| o != instance).filter_map(|&o| in_flight(o)).collect();
        contention_factor(&self.contention, own, &busy)
    }
}

#[cfg(test)]
mod proptests;
