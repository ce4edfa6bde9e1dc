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
//!
//! Timing: [`Instance::begin_step`] returns the step's period from the step model (GPU and CPU
//! time overlapped with async scheduling, added without); the tokens of a step are stamped
//! `output_delay` after its end (`perf_model`), which is when the client sees them, so TTFT, ITL
//! and E2E come out as a client measures them.
//!
//! Async scheduling (vLLM V1's default, an engine knob): the engine schedules step n+1 while
//! step n runs (vllm 0.33.0 `vllm/v1/engine/core.py` `EngineCore.step_with_batch_queue`, batch
//! queue of 2; new requests enter the scheduler between two calls). So while steps run back to
//! back, the batch of the step beginning now was decided when the previous step began: a request
//! that arrived after that waits here, out of the scheduler's sight, and joins the step after
//! (a request arriving during step n joins step n+2). An idle engine schedules at once. Finished
//! requests' blocks come back a step later (`Scheduler`). The reference engine (`transformers-cb`)
//! overlaps output processing; run eagerly it chooses each batch when the previous step ends, so its
//! arrivals join the next step; replaying CUDA graphs it chooses while the step runs, as vLLM
//! (`EnginePreset::arrivals_skip_a_step`).
//!
//! Fast-forward (the simulation driver only): when the scheduler can open a decode stretch
//! (`engine::sched::fast_forward`), [`Instance::begin_stretch`] computes every step's duration of
//! the stretch up front and returns the end of its last step; the steps are applied lazily. A
//! driver that needs the state at an instant inside the stretch says so: [`Instance::sync`] before
//! reading gauges, [`Instance::interrupt`] before a new request joins,
//! [`Instance::close_stretch`] before a drain. Each leaves exactly the state the step-by-step
//! path has at that instant. Elastic instances alone on their GPU fast-forward too: the stretch
//! stays within the blocks of pages already mapped (no step maps a page on demand, so every step
//! takes `step_overhead_factor` times the model's time), and the pages are settled with the pool
//! wherever a step-by-step settle would change anything (after a step whose blocks reach into an
//! empty reserve page: the refill then maps as step by step). Colocated instances never
//! fast-forward: each step sees its co-tenants' contention and their pool activity as it begins.

use crate::cluster::{GpuPool, PageGeometry, PoolSlot, StepLoad, elastic_kv_plan, static_kv_budget};
use crate::engine::kv_cache::{ElasticParams, KvCacheManager};
use crate::engine::sched::DecodeStretch;
use crate::engine::{Rejection, Request, Scheduler, StepEvents};
use crate::ids::{GpuId, InstanceId};
use crate::metrics::LogHistogram;
use crate::perf_model::StepTimeModel;
use crate::scenario::Scenario;
use crate::time::{SimDuration, SimTime};
use std::collections::VecDeque;

/// Fewer steps than this are not worth a stretch.
const MIN_STRETCH_STEPS: u32 = 2;
/// Longest stretch, in steps.
const MAX_STRETCH_STEPS: u32 = 4096;
/// Step ends of a stretch are computed this many steps at a time: an arrival cuts a stretch after
/// the step in flight, and steps computed beyond it are wasted.
const STRETCH_CHUNK_STEPS: u32 = 16;

/// How an instance's KV cache is backed: the static-vs-elastic differences of stepping live in
/// its methods, so the instance's paths read as one.
#[derive(Clone, Copy, Debug)]
enum KvBacking {
    /// Stock vLLM: blocks sized once from `gpu_memory_utilization` (`static_kv_budget`).
    Static,
    /// kvcached: pages drawn from the GPU's shared pool ([`GpuPool`]).
    Elastic(ElasticLink),
}

impl KvBacking {
    /// The period of a step whose model time is `d`; elastic: the overhead factor and the map
    /// latency of the pages `kv` mapped on demand for it (taken from `kv`).
    #[inline]
    fn step_period(&self, d: SimDuration, kv: &mut KvCacheManager) -> SimDuration {
        match self {
            KvBacking::Static => d,
            KvBacking::Elastic(link) => link.step_period(d, kv.take_num_demand_maps()),
        }
    }

    /// Turns the model times `gaps` of a decode stretch's steps into their periods (elastic: no
    /// step of a stretch maps a page on demand, the scheduler's bound; at least a nanosecond).
    #[inline]
    fn stretch_step_periods(&self, gaps: &mut [SimDuration]) {
        if let KvBacking::Elastic(link) = self {
            for d in gaps.iter_mut() {
                *d = link.step_period(*d, 0).max(SimDuration(1));
            }
        }
    }

    /// Elastic: settles `kv`'s pages with `pool` ([`GpuPool::settle`]). No-op when static.
    #[inline]
    fn settle(&self, pool: &mut GpuPool, kv: &mut KvCacheManager) {
        if let KvBacking::Elastic(link) = self {
            link.settle(pool, kv);
        }
    }

    /// Makes the block allocations of `scheduler`'s open stretch's first `through` steps;
    /// elastic: settling pages with `pool` after each step that allocated.
    fn allocate_decode_steps(&self, scheduler: &mut Scheduler, through: u32, pool: &mut GpuPool) {
        match self {
            KvBacking::Static => scheduler.allocate_decode_steps(through, None),
            KvBacking::Elastic(link) => {
                scheduler.allocate_decode_steps(
                    through,
                    Some(&mut |kv: &mut KvCacheManager| link.settle(pool, kv)),
                );
            }
        }
    }
}

/// An instance's link to its GPU's elastic pool.
#[derive(Clone, Copy, Debug)]
struct ElasticLink {
    slot: PoolSlot,
    geometry: PageGeometry,
    map_latency_s: f64,
    step_overhead_factor: f64,
}

impl ElasticLink {
    /// The period of an elastic step whose model time is `d` and which mapped `maps` pages on
    /// demand (the reserve was empty). The one formula of both the step-by-step path and decode
    /// stretches, so they agree bit for bit.
    #[inline]
    fn step_period(&self, d: SimDuration, maps: u32) -> SimDuration {
        let secs = d.as_secs_f64() * self.step_overhead_factor + f64::from(maps) * self.map_latency_s;
        SimDuration::from_secs_f64(secs)
    }

    /// Settles `kv`'s pages with `pool` ([`GpuPool::settle`]); an error is a bug (it mapped more
    /// than it was granted).
    #[inline]
    fn settle(&self, pool: &mut GpuPool, kv: &mut KvCacheManager) {
        let settled = pool.settle(self.slot, kv);
        debug_assert!(settled.is_ok(), "{settled:?}");
    }
}

/// An engine instance with its scheduler and step-time model.
#[derive(Clone)]
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
    kv_backing: KvBacking,
    /// Whether decode stretches may open (see [`Instance::can_fast_forward`]).
    fast_forward: bool,
    /// The open stretch's step ends computed so far: step `s` (from 1) ends at
    /// `stretch_ends[s - 1]`; the instance is busy until the last one.
    stretch_ends: Vec<SimTime>,
    /// Step `s`'s duration (`stretch_gaps[s - 1]`): its tokens' inter-token gap from step 2 on.
    stretch_gaps: Vec<SimDuration>,
    /// The open stretch's start and shape (its length as when it opened).
    stretch_start: SimTime,
    stretch_shape: Option<DecodeStretch>,
    /// Inter-token gaps of every token generated here (see [`Instance::record_itl_gaps`]).
    itl: LogHistogram,
    /// Steps run inside stretches (applied or cut).
    num_stretch_steps: u64,
    /// Scratch events of stretch applications outside `end_stretch_step`.
    scratch: StepEvents,
    /// Async scheduling with arrivals joining step n+2 (see the module doc and
    /// `EnginePreset::arrivals_skip_a_step`).
    async_scheduling: bool,
    /// Async scheduling: arrived requests the step being scheduled could not see yet, in arrival
    /// order (already checked by `Scheduler::check_request`).
    staged: VecDeque<Request>,
    /// When the step in flight (or the last one) began.
    step_start: SimTime,
    /// Prefill-compute share of the step in flight (or the last one), for contention.
    step_prefill_share: f64,
    /// When the last step began and ended (steps of a stretch included once applied).
    last_step: Option<(SimTime, SimTime)>,
    /// When a step's tokens reach the client after it ends.
    output_delay: SimDuration,
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
        let (scheduler, kv_backing) = match elastic_kv_plan(scenario, id) {
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
                (scheduler, KvBacking::Elastic(link))
            }
            None => (Scheduler::new(e, static_kv_budget(model, gpu, e).num_gpu_blocks), KvBacking::Static),
        };
        let perf = StepTimeModel::from_spec(&spec.perf, model, gpu, e);
        Instance {
            id,
            scheduler,
            async_scheduling: e.async_scheduling
                && e.preset.arrivals_skip_a_step(spec.perf.replays_cuda_graphs()),
            staged: VecDeque::new(),
            step_start: SimTime::ZERO,
            step_prefill_share: 0.0,
            last_step: None,
            output_delay: perf.output_delay(),
            perf,
            in_step: false,
            gpu: spec.gpu,
            colocated: scenario.instances.iter().filter(|x| x.gpu == spec.gpu).count() > 1,
            block_bytes,
            kv_backing,
            fast_forward: false,
            stretch_ends: Vec::new(),
            stretch_gaps: Vec::new(),
            stretch_start: SimTime::ZERO,
            stretch_shape: None,
            itl: LogHistogram::new(),
            num_stretch_steps: 0,
            scratch: StepEvents::default(),
        }
    }

    /// Queues a request that arrived at its `arrival_time` (no earlier than the last step
    /// begun); rejected requests come back with the reason. With async scheduling an arrival the
    /// next step could not see waits here until the step after (see the module doc).
    #[inline]
    pub fn add_request(&mut self, req: Request) -> Result<(), Box<Rejection>> {
        if !self.async_scheduling {
            return self.scheduler.add_request(req).map_err(Box::new);
        }
        if let Err((kind, reason)) = self.scheduler.check_request(&req) {
            return Err(Box::new(Rejection { request: req, reason, kind }));
        }
        self.staged.push_back(req);
        Ok(())
    }

    /// Async scheduling: hands the scheduler the arrivals the step beginning at `now` sees. While
    /// steps run back to back, that step was scheduled when the previous one began; an idle
    /// engine schedules at `now`.
    #[inline]
    fn release_staged(&mut self, now: SimTime) {
        if self.staged.is_empty() {
            return;
        }
        let cutoff = match self.last_step {
            Some((start, end)) if end == now => start,
            _ => now,
        };
        self.release_staged_until(cutoff);
    }

    fn release_staged_until(&mut self, cutoff: SimTime) {
        while self.staged.front().is_some_and(|r| r.arrival_time <= cutoff) {
            if let Some(req) = self.staged.pop_front() {
                self.scheduler.enqueue(req);
            }
        }
    }

    /// Whether any request is running, waiting, or (async scheduling) arrived and held back.
    pub fn has_unfinished_requests(&self) -> bool {
        self.scheduler.has_unfinished_requests() || !self.staged.is_empty()
    }

    /// Requests waiting, those held back by async scheduling included (vLLM counts them: they
    /// are in its waiting queue, just not in the step already scheduled).
    pub fn num_waiting(&self) -> u32 {
        self.scheduler.num_waiting() + self.staged.len() as u32
    }

    /// Starts a step at `now` when idle and there is work; returns its period. Elastic: within
    /// the page budget last taken from the pool (every page when never synced).
    pub fn begin_step(&mut self, now: SimTime) -> Option<SimDuration> {
        if self.in_step {
            return None;
        }
        self.release_staged(now);
        if !self.scheduler.has_unfinished_requests() {
            if self.staged.is_empty() {
                self.scheduler.release_deferred_frees();
                return None;
            }
            // Nothing was scheduled ahead: the engine idled, and takes what has arrived now.
            self.release_staged_until(now);
        }
        let mut batch = self.scheduler.schedule().batch_features();
        if batch.num_scheduled_requests == 0 {
            // An empty decision (after a preemption, or nothing due yet): apply it and schedule
            // again with everything that has arrived.
            let mut events = std::mem::take(&mut self.scratch);
            self.scheduler.update_from_output(now, &mut events);
            debug_assert!(events.finished.is_empty() && events.num_tokens_sampled == 0);
            events.clear();
            self.scratch = events;
            self.release_staged_until(now);
            batch = self.scheduler.schedule().batch_features();
            if batch.num_scheduled_requests == 0 {
                return None;
            }
        }
        if self.perf.reads_max_seq_len(&batch) {
            batch.max_seq_len = self.scheduler.scheduled_max_seq_len();
        }
        self.in_step = true;
        self.step_start = now;
        if self.colocated {
            // Only co-tenants read it (`cluster` contention): no cost on a GPU of one's own.
            self.step_prefill_share = self.perf.prefill_share(&batch);
        }
        let d = self.perf.step_time(&batch);
        Some(self.kv_backing.step_period(d, self.scheduler.kv_cache_manager_mut()))
    }

    /// [`Instance::begin_step`] with the GPU's pool: settles pages with it, schedules within what
    /// it grants, then records the pages the step mapped.
    pub fn begin_step_on(&mut self, now: SimTime, pool: &mut GpuPool) -> Option<SimDuration> {
        self.sync_pool(pool);
        let d = self.begin_step(now);
        self.sync_pool(pool);
        d
    }

    /// Ends the running step at `now`, appending finished requests and tokens to `events`; the
    /// tokens are stamped `now + output_delay`, when the client sees them.
    pub fn end_step(&mut self, now: SimTime, events: &mut StepEvents) {
        if self.in_step {
            self.in_step = false;
            self.last_step = Some((self.step_start, now));
            self.scheduler.update_from_output(now + self.output_delay, events);
        }
    }

    /// What the contention model needs of the step in flight (or the last one): its
    /// prefill-compute share and whether the engine overlaps CPU and GPU work. A decode stretch
    /// has no prefill (colocated instances never open one).
    pub fn step_load(&self) -> StepLoad {
        StepLoad { prefill_share: self.step_prefill_share, async_scheduling: self.perf.async_scheduling() }
    }

    /// How long after a step ends its tokens reach the client.
    pub fn output_delay(&self) -> SimDuration {
        self.output_delay
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
        let mut left = self.scheduler.abort_all_requests();
        left.extend(self.staged.drain(..));
        self.sync_pool(pool);
        left
    }

    /// Elastic: settles its pages with `pool` ([`GpuPool::settle`]: records what it mapped or
    /// unmapped, refills the reserve, takes the page budget of the next schedule). No-op for
    /// static KV. Call it right before scheduling and after anything that maps or frees blocks.
    pub fn sync_pool(&mut self, pool: &mut GpuPool) {
        self.kv_backing.settle(pool, self.scheduler.kv_cache_manager_mut());
    }

    /// Elastic: unmaps every empty reserve page and settles with `pool` (kvcached's `trim`, as at
    /// shutdown). Returns the pages unmapped.
    pub fn trim_on(&mut self, pool: &mut GpuPool) -> u32 {
        let n = self.scheduler.kv_cache_manager_mut().trim();
        self.sync_pool(pool);
        n
    }

    /// True while a step or stretch is running.
    pub fn is_busy(&self) -> bool {
        self.in_step || self.in_stretch()
    }

    /// Turns fast-forward of pure-decode stretches on or off (results are identical either way;
    /// off by default).
    pub fn set_fast_forward(&mut self, on: bool) {
        self.fast_forward = on;
    }

    /// Whether the next step may open a decode stretch. This is the seam where conditions
    /// outside the scheduler veto fast-forward: an instance sharing its GPU's compute or KV pages
    /// with another (each of its steps sees the co-tenants' contention and pool activity as it
    /// begins). Elastic KV that would have to map a page mid-stretch is bounded by the scheduler,
    /// which also refuses while tokens are recorded or anything but pure decode is due.
    pub fn can_fast_forward(&self) -> bool {
        self.fast_forward && !self.shares_gpu()
    }

    /// Whether a decode stretch is open.
    pub fn in_stretch(&self) -> bool {
        self.scheduler.decode_stretch().is_some()
    }

    /// Opens a decode stretch at `now` when idle, allowed ([`Instance::can_fast_forward`]) and the
    /// scheduler can; returns when the last step computed so far ends (see
    /// [`Instance::end_stretch_step`]). `None`: step one step at a time
    /// ([`Instance::begin_step_on`]). `pool` is its GPU's (settled first, as a step would).
    pub fn begin_stretch(&mut self, now: SimTime, pool: &mut GpuPool) -> Option<SimTime> {
        if self.in_step || self.in_stretch() || !self.can_fast_forward() {
            return None;
        }
        self.sync_pool(pool);
        self.release_staged(now);
        if !self.scheduler.has_unfinished_requests() || !self.staged.is_empty() {
            return None;
        }
        let stretch = self.scheduler.begin_decode_stretch(MIN_STRETCH_STEPS, MAX_STRETCH_STEPS)?;
        self.stretch_ends.clear();
        self.stretch_gaps.clear();
        self.stretch_start = now;
        self.stretch_shape = Some(stretch);
        self.extend_stretch();
        self.stretch_ends.last().copied()
    }

    /// Computes the ends of the open stretch's next steps (at most a chunk, none past its
    /// length). Steps take at least a nanosecond, as the driver's single steps.
    fn extend_stretch(&mut self) {
        let (Some(shape), Some(open)) = (self.stretch_shape, self.scheduler.decode_stretch()) else {
            return;
        };
        let done = self.stretch_ends.len() as u32;
        let count = open.num_steps.min(done + STRETCH_CHUNK_STEPS).saturating_sub(done) as usize;
        let mut gaps = [SimDuration::ZERO; STRETCH_CHUNK_STEPS as usize];
        let gaps = &mut gaps[..count];
        let next = done + 1;
        self.perf.decode_step_times(
            shape.num_seqs,
            shape.kv_tokens_read(next),
            shape.max_seq_len(next),
            gaps,
        );
        self.kv_backing.stretch_step_periods(gaps);
        let mut t = self.stretch_ends.last().copied().unwrap_or(self.stretch_start);
        self.stretch_ends.extend(gaps.iter().map(|&d| {
            t += d;
            t
        }));
        self.stretch_gaps.extend_from_slice(gaps);
    }

    /// The open stretch's last computed step ended at `now`: either computes the next steps and
    /// returns when they end (nothing applied, the instance stays busy), or applies the whole
    /// stretch, appending finished requests and tokens to `events`, and returns `None` (idle).
    /// Inter-token gaps go to [`Instance::itl_histogram`]. `pool` is its GPU's.
    pub fn end_stretch_step(
        &mut self,
        now: SimTime,
        events: &mut StepEvents,
        pool: &mut GpuPool,
    ) -> Option<SimTime> {
        let open = self.scheduler.decode_stretch()?;
        debug_assert_eq!(self.stretch_ends.last(), Some(&now));
        if (self.stretch_ends.len() as u32) < open.num_steps {
            self.extend_stretch();
            return self.stretch_ends.last().copied();
        }
        self.finish_stretch(self.stretch_ends.len() as u32, events, pool);
        None
    }

    /// Moves a single step's inter-token gaps from `events` into [`Instance::itl_histogram`].
    pub fn record_itl_gaps(&mut self, events: &mut StepEvents) {
        for &(gap, count) in &events.itl_gaps {
            self.itl.add_duration(gap, u64::from(count));
        }
        events.itl_gaps.clear();
    }

    /// Brings the block pool to its state at `now` inside a stretch (the steps begun before `now`
    /// have their blocks; elastic: and their pages, settled with `pool`, its GPU's), so the
    /// scheduler's gauges and the pool read as step by step. Call before reading
    /// `kv_cache_usage` and friends during event handling at `now`. No-op outside a stretch.
    pub fn sync(&mut self, now: SimTime, pool: &mut GpuPool) {
        if self.in_stretch() {
            let begun = self.steps_begun_before(now);
            self.allocate_stretch_steps(begun, pool);
        }
    }

    /// Makes the block allocations of the open stretch's first `through` steps; elastic: settling
    /// pages with `pool` after each step that allocated, as [`Instance::begin_step_on`] does.
    fn allocate_stretch_steps(&mut self, through: u32, pool: &mut GpuPool) {
        self.kv_backing.allocate_decode_steps(&mut self.scheduler, through, pool);
    }

    /// A request is about to join at `now` (call right after adding it): a stretch is cut after
    /// the step in flight at `now` (or closed, when a step ends exactly at `now`), so the newcomer
    /// joins the next step as it would step by step. With async scheduling the step after that
    /// was already scheduled without the newcomer: the cut comes one step later. Returns when the
    /// stretch's work in flight ends (`None`: idle). Outside a stretch, returns `None` and does
    /// nothing. `pool` is its GPU's.
    pub fn interrupt(&mut self, now: SimTime, pool: &mut GpuPool) -> Option<SimTime> {
        if !self.in_stretch() {
            return None;
        }
        let ended = self.stretch_ends.partition_point(|&e| e <= now);
        let boundary = ended > 0 && self.stretch_ends[ended - 1] == now;
        if self.async_scheduling {
            // The step beginning after `now` was scheduled before the arrival.
            let keep = if boundary { ended + 1 } else { ended + 2 };
            self.scheduler.truncate_decode_stretch(keep as u32);
            self.stretch_ends.truncate(keep);
            self.stretch_gaps.truncate(keep);
            return self.stretch_ends.last().copied();
        }
        if boundary {
            let mut events = std::mem::take(&mut self.scratch);
            self.finish_stretch(ended as u32, &mut events, pool);
            // A request finishes only in a stretch's last step, applied when it ends.
            debug_assert!(events.finished.is_empty(), "a finish applied outside end_stretch_step");
            events.clear();
            self.scratch = events;
            None
        } else {
            self.scheduler.truncate_decode_stretch(ended as u32 + 1);
            self.stretch_ends.truncate(ended + 1);
            self.stretch_gaps.truncate(ended + 1);
            self.stretch_ends.last().copied()
        }
    }

    /// The driver's drain deadline is `now`: applies the open stretch up to `now` and closes it
    /// (the step in flight keeps its blocks), as the step-by-step path stands then. No-op outside
    /// a stretch. `pool` is its GPU's.
    pub fn close_stretch(&mut self, now: SimTime, pool: &mut GpuPool) {
        if self.in_stretch() {
            self.sync(now, pool);
            let ended = self.stretch_ends.partition_point(|&e| e <= now);
            let mut events = std::mem::take(&mut self.scratch);
            self.finish_stretch(ended as u32, &mut events, pool);
            // A request finishes only in a stretch's last step, applied when it ends.
            debug_assert!(events.finished.is_empty(), "a finish applied outside end_stretch_step");
            events.clear();
            self.scratch = events;
        }
    }

    /// Steps of the open stretch that began before `now` (step 1 began at the stretch's start,
    /// which is before any instant a driver asks about).
    fn steps_begun_before(&self, now: SimTime) -> u32 {
        let ended_before = self.stretch_ends.partition_point(|&e| e < now);
        (ended_before + 1).min(self.stretch_ends.len()) as u32
    }

    /// Applies the first `n` steps of the open stretch and closes it, recording their gaps;
    /// elastic: settles with `pool` as the step-by-step path does after each step and its end
    /// (pages freed by requests finishing in the last step go back).
    fn finish_stretch(&mut self, n: u32, events: &mut StepEvents, pool: &mut GpuPool) {
        self.allocate_stretch_steps(n, pool);
        let begun = self.scheduler.decode_stretch_allocated().max(n);
        let num_seqs = self.scheduler.decode_stretch().map_or(0, |s| s.num_seqs);
        self.num_stretch_steps += u64::from(begun);
        let n = n as usize;
        if n == 0 {
            self.scheduler.finish_decode_stretch(0, SimTime::ZERO, SimTime::ZERO, SimDuration::ZERO, events);
        } else {
            let ends = &self.stretch_ends;
            let last_start = if n >= 2 { ends[n - 2] } else { self.stretch_start };
            self.last_step = Some((last_start, ends[n - 1]));
            // Steps 2..=n: every request's gap is the step's duration.
            let later = &self.stretch_gaps[1..n];
            let max_later_gap = later.iter().copied().max().unwrap_or(SimDuration::ZERO);
            events.itl_gaps.clear();
            let delay = self.output_delay;
            self.scheduler.finish_decode_stretch(
                n as u32,
                ends[0] + delay,
                ends[n - 1] + delay,
                max_later_gap,
                events,
            );
            for &(g, count) in &events.itl_gaps {
                self.itl.add_duration(g, u64::from(count));
            }
            events.itl_gaps.clear();
            self.itl.add_durations(later, u64::from(num_seqs));
        }
        self.stretch_ends.clear();
        self.stretch_gaps.clear();
        self.stretch_shape = None;
        self.sync_pool(pool);
    }

    /// Steps run inside decode stretches so far (a stretch's steps count once applied or cut).
    pub fn num_stretch_steps(&self) -> u64 {
        self.num_stretch_steps
    }

    /// Inter-token gaps recorded here: every stretch's, and single steps' passed to
    /// [`Instance::record_itl_gaps`].
    pub fn itl_histogram(&self) -> &LogHistogram {
        &self.itl
    }

    /// The GPU it runs on.
    pub fn gpu(&self) -> GpuId {
        self.gpu
    }

    /// Whether its KV cache is elastic.
    pub fn is_elastic(&self) -> bool {
        matches!(self.kv_backing, KvBacking::Elastic(_))
    }

    /// Whether another instance shares its GPU. Such an instance must step one step at a time:
    /// the driver re-evaluates compute contention and settles pages with the shared pool at every
    /// step.
    pub fn shares_gpu(&self) -> bool {
        self.colocated
    }

    /// Elastic: pages mapped now, reserve included (None for static KV).
    pub fn mapped_pages(&self) -> Option<u32> {
        self.scheduler.kv_cache_manager().elastic().map(|e| e.num_mapped_pages())
    }

    /// Elastic: how its blocks group into pages (None for static KV).
    pub fn page_geometry(&self) -> Option<PageGeometry> {
        match self.kv_backing {
            KvBacking::Static => None,
            KvBacking::Elastic(link) => Some(link.geometry),
        }
    }

    /// GPU memory its KV cache holds now: blocks in use x block bytes (static), mapped pages x
    /// page bytes (elastic, reserve included).
    pub fn kv_memory_bytes(&self) -> u64 {
        let pool = self.scheduler.kv_cache_manager().block_pool();
        match self.kv_backing {
            KvBacking::Static => u64::from(pool.num_used_blocks()) * self.block_bytes,
            KvBacking::Elastic(link) => u64::from(pool.kind().num_mapped_pages()) * link.geometry.page_bytes,
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
