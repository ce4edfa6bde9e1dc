//! One engine instance: vLLM's scheduler plus the step-time model, stepping one batch at a time.
//!
//! The same `Instance` runs inside the discrete-event simulation (as fast as possible) and inside
//! the live emulator (paced by the wall clock): it knows nothing about events, routing or files.
//! A driver calls [`Instance::begin_step`] when the instance is idle and has work, waits the
//! returned duration (simulated or real), then calls [`Instance::end_step`].
//!
//! Elastic KV (kvcached): the instance's blocks are paged (`engine::kv_cache::ElasticPages`) and
//! its pages come from its GPU's shared [`GpuPool`]. A driver that shares a GPU between instances
//! uses the `_on` variants ([`Instance::begin_step_on`], [`Instance::end_step_on`],
//! [`Instance::abort_all_requests_on`]), which settle the pages mapped or unmapped with the pool
//! and take the page budget for the next schedule from it; the plain calls treat the instance as
//! alone with its pool (every page its own, no background reserve refill). An elastic step takes
//! `step_overhead_factor` times longer, plus `map_latency_s` per page it had to map because the
//! reserve was empty. Compute contention between co-tenants is the driver's (`cluster`).

use crate::cluster::{GpuPool, PageGeometry, PoolSlot, elastic_kv_plan, static_kv_budget};
use crate::engine::kv_cache::ElasticParams;
use crate::engine::{Rejection, Request, Scheduler, StepEvents};
use crate::ids::{GpuId, InstanceId};
use crate::perf_model::{BatchFeatures, StepTimeModel};
use crate::scenario::Scenario;
use crate::time::{SimDuration, SimTime};

/// An instance's link to its GPU's elastic pool.
#[derive(Clone, Copy, Debug)]
struct ElasticLink {
    slot: PoolSlot,
    geometry: PageGeometry,
    map_latency_s: f64,
    step_overhead_factor: f64,
}

/// An engine instance with its scheduler and step-time model.
pub struct Instance {
    /// Which instance of the scenario this is.
    pub id: InstanceId,
    scheduler: Scheduler,
    perf: StepTimeModel,
    in_step: bool,
    gpu: GpuId,
    /// Whether another instance runs on the same GPU (shares its compute, maybe its pool).
    colocated: bool,
    /// Bytes of one KV block (all layers, K and V).
    block_bytes: u64,
    elastic: Option<ElasticLink>,
}

impl Instance {
    /// Builds instance `id` of `scenario`: static KV sized like vLLM, or elastic KV paged like
    /// kvcached over its share of the GPU's pool; step times from its perf spec.
    pub fn new(scenario: &Scenario, id: InstanceId) -> Instance {
        let spec = &scenario.instances[id.index()];
        let model = &scenario.models[spec.model.index()];
        let gpu = &scenario.gpus[spec.gpu.index()];
        let e = &spec.engine;
        let block_bytes = model.kv_bytes_per_token() * u64::from(e.block_size.max(1));
        let (scheduler, elastic) = match elastic_kv_plan(scenario, id) {
            Some(plan) => {
                let mut scheduler = Scheduler::new(e, plan.num_blocks());
                let max_cached_free_blocks = if e.enable_prefix_caching {
                    e.elastic.prefix_cache_max_tokens / e.block_size.max(1)
                } else {
                    0
                };
                scheduler.kv_cache_manager_mut().enable_elastic(ElasticParams {
                    blocks_per_page: plan.geometry.blocks_per_page,
                    min_reserve_pages: e.elastic.min_reserve_pages,
                    max_reserve_pages: e.elastic.max_reserve_pages,
                    max_cached_free_blocks,
                });
                let link = ElasticLink {
                    slot: plan.slot,
                    geometry: plan.geometry,
                    map_latency_s: e.elastic.map_latency_s,
                    step_overhead_factor: e.elastic.step_overhead_factor,
                };
                (scheduler, Some(link))
            }
            None => (Scheduler::new(e, static_kv_budget(model, gpu, e).num_gpu_blocks), None),
        };
        Instance {
            id,
            scheduler,
            perf: StepTimeModel::from_spec(&spec.perf, model, gpu),
            in_step: false,
            gpu: spec.gpu,
            colocated: scenario.instances.iter().filter(|x| x.gpu == spec.gpu).count() > 1,
            block_bytes,
            elastic,
        }
    }

    /// Queues a request; rejected requests come back with the reason.
    pub fn add_request(&mut self, req: Request) -> Result<(), Box<Rejection>> {
        self.scheduler.add_request(req).map_err(Box::new)
    }

    /// Starts a step when idle and there is work; returns its duration. Elastic: within the page
    /// budget last taken from the pool (every page when never synced).
    pub fn begin_step(&mut self) -> Option<SimDuration> {
        if self.in_step || !self.scheduler.has_unfinished_requests() {
            return None;
        }
        let out = self.scheduler.schedule();
        if out.num_scheduled_requests == 0 {
            return None;
        }
        let batch = BatchFeatures {
            num_scheduled_requests: out.num_scheduled_requests,
            num_prefill_tokens: out.num_prefill_tokens,
            num_decode_seqs: out.num_decode_seqs,
            num_kv_tokens_read: out.num_kv_tokens_read,
            num_prefill_attn_pairs: out.num_prefill_attn_pairs,
        };
        self.in_step = true;
        let d = self.perf.step_time(&batch);
        Some(match self.elastic {
            None => d,
            Some(link) => {
                let maps = self.scheduler.kv_cache_manager_mut().take_num_demand_maps();
                let secs = d.as_secs_f64() * link.step_overhead_factor + f64::from(maps) * link.map_latency_s;
                SimDuration::from_secs_f64(secs)
            }
        })
    }

    /// [`Instance::begin_step`] with the GPU's pool: settles pages with it, schedules within what
    /// it grants, then records the pages the step mapped.
    pub fn begin_step_on(&mut self, pool: &mut GpuPool) -> Option<SimDuration> {
        self.sync_pool(pool);
        let d = self.begin_step();
        self.sync_pool(pool);
        d
    }

    /// Ends the running step at `now`, appending finished requests and tokens to `events`.
    pub fn end_step(&mut self, now: SimTime, events: &mut StepEvents) {
        if self.in_step {
            self.in_step = false;
            self.scheduler.update_from_output(now, events);
        }
    }

    /// [`Instance::end_step`] with the GPU's pool: pages freed by finished requests go back to it.
    pub fn end_step_on(&mut self, now: SimTime, events: &mut StepEvents, pool: &mut GpuPool) {
        self.end_step(now, events);
        self.sync_pool(pool);
    }

    /// Ends every request now and drops the step in flight (see
    /// `Scheduler::abort_all_requests`); their pages go back to the pool.
    pub fn abort_all_requests_on(&mut self, pool: &mut GpuPool) -> Vec<Request> {
        self.in_step = false;
        let left = self.scheduler.abort_all_requests();
        self.sync_pool(pool);
        left
    }

    /// Elastic: settles its pages with `pool` ([`GpuPool::settle`]: records what it mapped or
    /// unmapped, refills the reserve, takes the page budget of the next schedule). No-op for
    /// static KV. Call it right before scheduling and after anything that maps or frees blocks.
    pub fn sync_pool(&mut self, pool: &mut GpuPool) {
        let Some(link) = self.elastic else { return };
        let settled = pool.settle(link.slot, self.scheduler.kv_cache_manager_mut());
        debug_assert!(settled.is_ok(), "{settled:?}");
    }

    /// Elastic: unmaps every empty reserve page and settles with `pool` (kvcached's `trim`, as at
    /// shutdown). Returns the pages unmapped.
    pub fn trim_on(&mut self, pool: &mut GpuPool) -> u32 {
        let n = self.scheduler.kv_cache_manager_mut().trim();
        self.sync_pool(pool);
        n
    }

    /// True while a step is running.
    pub fn is_busy(&self) -> bool {
        self.in_step
    }

    /// The GPU it runs on.
    pub fn gpu(&self) -> GpuId {
        self.gpu
    }

    /// Whether its KV cache is elastic.
    pub fn is_elastic(&self) -> bool {
        self.elastic.is_some()
    }

    /// Whether another instance shares its GPU. Such an instance (and an elastic one, whose steps
    /// may have to map pages from the shared pool) must step one step at a time: the driver
    /// re-evaluates compute contention and settles pages at every step.
    pub fn shares_gpu(&self) -> bool {
        self.colocated
    }

    /// Elastic: pages mapped now, reserve included (None for static KV).
    pub fn mapped_pages(&self) -> Option<u32> {
        self.scheduler.kv_cache_manager().elastic().map(|e| e.num_mapped_pages())
    }

    /// Elastic: how its blocks group into pages (None for static KV).
    pub fn page_geometry(&self) -> Option<PageGeometry> {
        self.elastic.map(|l| l.geometry)
    }

    /// GPU memory its KV cache holds now: blocks in use x block bytes (static), mapped pages x
    /// page bytes (elastic, reserve included).
    pub fn kv_memory_bytes(&self) -> u64 {
        match (self.elastic, self.mapped_pages()) {
            (Some(link), Some(pages)) => u64::from(pages) * link.geometry.page_bytes,
            _ => {
                let used = self.scheduler.kv_cache_manager().block_pool().num_used_blocks();
                u64::from(used) * self.block_bytes
            }
        }
    }

    /// The scheduler, for metrics (`num_running`, `num_waiting`, `kv_cache_usage`, ...).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Mutable scheduler access (e.g. `set_record_tokens`).
    pub fn scheduler_mut(&mut self) -> &mut Scheduler {
        &mut self.scheduler
    }

    /// The step-time model.
    pub fn perf(&self) -> &StepTimeModel {
        &self.perf
    }
}
