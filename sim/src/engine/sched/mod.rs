//! vLLM's `Scheduler` (`vllm/v1/core/sched/scheduler.py`) for one engine instance: queues
//! requests, decides each step's batch, and applies a finished step.
//!
//! Two step rules, picked from the engine config:
//! - **V1** (every V1 config, vLLM 0.6.4 with chunked prefill, which orders work the same way,
//!   and transformers-cb, which adds a free-block margin to admission): no prefill/decode phases; running requests first, in order, each catching its
//!   `num_computed_tokens` up to `num_tokens` (one decode token or its next prompt chunk) within
//!   the token budget, preempting the newest running request when one needs a block; then waiting
//!   requests FCFS with head-of-line blocking, admitted by the release's [`Admission`] rule
//!   (`v1.rs`).
//! - **V0 phases** (vLLM 0.6.4 without chunked prefill, `vllm/core/scheduler.py`
//!   `_schedule_default`): a step is either a prefill step admitting whole prompts, or, when no
//!   waiting request can be admitted, a decode step over every running request (`v0.rs`).
//!
//! With async scheduling (vLLM V1's default) the engine schedules step n+1 while step n runs, so
//! the blocks of a request that finishes in step n are freed only after step n+1 is scheduled
//! (vllm 0.33.0 `vllm/v1/engine/core.py` `EngineCore.step_with_batch_queue`: `schedule()` of the
//! next batch comes before `update_from_output()` of the one in flight): `update_from_output`
//! reports such a request at once but keeps its blocks until the next `schedule()`. (New arrivals
//! joining step n+2 are the owner's: `Instance` holds them back.)
//!
//! Requests live in a slot arena; `running` and `waiting` hold slot numbers, so reordering the
//! batch moves 4-byte values. The scheduler has no clock: `update_from_output` is told when the
//! step ended. It does not compute step times (`perf_model`) nor route (`router`).

mod fast_forward;
mod output;
mod v0;
mod v1;

pub use fast_forward::DecodeStretch;
pub use output::{SchedulerOutput, StepEvents};

use crate::engine::kv_cache::KvCacheManager;
use crate::engine::request::{Request, RequestStatus};
use crate::ids::BlockId;
use crate::scenario::{EngineConfig, EngineGeneration, EnginePreset};
use crate::time::{SimDuration, SimTime};
use std::collections::VecDeque;

/// transformers-cb's FIFO scheduler keeps this fraction of KV blocks free before it admits new
/// prefills (see `Scheduler::new`).
const CB_SAFETY_MARGIN: f64 = 0.15;

/// Why a request was refused at `add_request` (it never enters the queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The prompt has no tokens.
    EmptyPrompt,
    /// `max_tokens` is 0.
    ZeroMaxTokens,
    /// Prompt plus `max_tokens` exceed `max_model_len`.
    ExceedsMaxModelLen,
    /// At its full length the request needs more KV blocks than the instance has.
    ExceedsKvCache,
    /// Chunked prefill is off and the request, recomputed at its full length, would not fit one
    /// step's `max_num_batched_tokens`.
    ExceedsBatchBudget,
}

/// A request refused by [`Scheduler::add_request`], handed back with the reason.
#[derive(Debug, thiserror::Error)]
#[error("request {} rejected: {reason}", request.request_id)]
pub struct Rejection {
    /// The request, untouched.
    pub request: Request,
    /// Human-readable reason, in the spirit of vLLM's error message.
    pub reason: String,
    /// Machine-readable reason.
    pub kind: RejectionKind,
}

/// A request's place in the scheduler's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot(u32);

/// Which step rule the scheduler follows (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepRule {
    V1,
    V0Phases,
}

/// When a waiting request may join the running batch under the V1 step rule (see `v1.rs` for the
/// vLLM source of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    /// V1 before 0.19.0: the blocks of this step's chunk are free.
    FirstChunk,
    /// V1 from 0.19.0 (`scheduler_reserve_full_isl`): the blocks of the whole sequence are free
    /// (checked; only the chunk's are allocated).
    FullSequence,
    /// vLLM 0.6.4 with chunked prefill: the whole sequence's blocks plus the watermark are free,
    /// and all of them are allocated at admission.
    V0WholeSequence,
}

/// The per-instance scheduler; see the module doc.
#[derive(Clone, Debug)]
pub struct Scheduler {
    max_num_seqs: u32,
    max_num_batched_tokens: u32,
    max_model_len: u32,
    enable_chunked_prefill: bool,
    rule: StepRule,
    /// Admission under the V1 step rule (unused by `V0Phases`, which has its own).
    admission: Admission,
    /// V0's `watermark_blocks` (1% of the blocks): admission keeps this many blocks free.
    watermark_blocks: u32,
    /// transformers-cb's safety margin (15% of the blocks, rounded up): with fewer free blocks,
    /// a step that already has a request takes no new or still-prefilling one.
    free_block_margin: u32,
    /// Async scheduling: finished requests keep their blocks until the next `schedule()`.
    async_scheduling: bool,
    /// Finished requests (still in their slots) whose blocks wait for the next `schedule()`.
    deferred_frees: Vec<Slot>,
    kv_cache_manager: KvCacheManager,
    slots: Vec<Option<Request>>,
    free_slots: Vec<Slot>,
    /// Admission order; the last is the first preempted.
    running: Vec<Slot>,
    /// FCFS; preempted requests go back to the front.
    waiting: VecDeque<Slot>,
    output: SchedulerOutput,
    /// A `schedule()` whose `update_from_output` has not happened yet.
    step_in_flight: bool,
    num_preemptions_total: u64,
    record_tokens: bool,
    /// Block-table vectors of finished requests, reused by newly admitted ones.
    spare_block_tables: Vec<Vec<BlockId>>,
    /// The open decode stretch (`fast_forward.rs`), if any.
    stretch: Option<fast_forward::StretchState>,
    /// The stretch's block-allocation cycle (kept for its capacity between stretches).
    stretch_order: Vec<fast_forward::AllocEntry>,
    /// Scratch: blocks popped for a stretch's steps.
    stretch_blocks: Vec<BlockId>,
}

impl Scheduler {
    /// A scheduler with `config`'s limits over `num_gpu_blocks` KV blocks.
    pub fn new(config: &EngineConfig, num_gpu_blocks: u32) -> Scheduler {
        let v0 = config.preset.generation() == EngineGeneration::V0;
        let rule = if v0 && !config.enable_chunked_prefill { StepRule::V0Phases } else { StepRule::V1 };
        let admission = if v0 {
            Admission::V0WholeSequence
        } else if config.scheduler_reserve_full_isl {
            Admission::FullSequence
        } else {
            Admission::FirstChunk
        };
        // vLLM 0.6.4 CacheConfig default `watermark = 0.01`; BlockSpaceManager floors it.
        let watermark_blocks = if v0 { (f64::from(num_gpu_blocks) * 0.01) as u32 } else { 0 };
        // transformers 5.17 generation/continuous_batching/scheduler.py: FIFOScheduler's default
        // `safety_margin = 0.15`, checked in `Scheduler._process_candidates` as
        // `num_free_blocks < safety_margin * cache.num_blocks` (a strict bound on a real, so the
        // integer bound is its ceiling).
        let free_block_margin = match config.preset {
            EnginePreset::TransformersCb => (f64::from(num_gpu_blocks) * CB_SAFETY_MARGIN).ceil() as u32,
            EnginePreset::Vllm064 | EnginePreset::Vllm092 | EnginePreset::Vllm0190 | EnginePreset::VllmV1 => {
                0
            }
        };
        Scheduler {
            max_num_seqs: config.max_num_seqs.max(1),
            max_num_batched_tokens: config.max_num_batched_tokens.max(1),
            max_model_len: config.max_model_len,
            enable_chunked_prefill: config.enable_chunked_prefill,
            rule,
            admission,
            watermark_blocks,
            free_block_margin,
            async_scheduling: config.async_scheduling,
            deferred_frees: Vec::new(),
            kv_cache_manager: KvCacheManager::new(
                num_gpu_blocks,
                config.block_size,
                config.enable_prefix_caching,
            ),
            slots: Vec::new(),
            free_slots: Vec::new(),
            running: Vec::new(),
            waiting: VecDeque::new(),
            output: SchedulerOutput::default(),
            step_in_flight: false,
            num_preemptions_total: 0,
            record_tokens: false,
            spare_block_tables: Vec::new(),
            stretch: None,
            stretch_order: Vec::new(),
            stretch_blocks: Vec::new(),
        }
    }

    /// Queues `req` at the back of the waiting queue (FCFS), or hands it back when it can never
    /// run: empty prompt or `max_tokens` 0; prompt + `max_tokens` > `max_model_len`; more KV
    /// blocks at its full length than the cache has (vLLM refuses to start when `max_model_len`
    /// exceeds the KV capacity, so this cannot happen there); with chunked prefill off, a full
    /// length beyond `max_num_batched_tokens` (vLLM requires `max_num_batched_tokens >=
    /// max_model_len` then). "Full length" is prompt + `max_tokens` - 1: the last token is never
    /// fed back. The last two checks keep a preempted request from blocking the queue forever.
    #[expect(
        clippy::result_large_err,
        reason = "a rejection hands the request back by value; it is moved either way and rare"
    )]
    pub fn add_request(&mut self, req: Request) -> Result<(), Rejection> {
        if let Err((kind, reason)) = self.check_request(&req) {
            return Err(Rejection { request: req, reason, kind });
        }
        self.enqueue(req);
        Ok(())
    }

    /// Why `req` can never run here (the checks of [`Scheduler::add_request`]), if it cannot.
    /// They depend only on the request and the configuration, so a request that passes may be
    /// queued later ([`Scheduler::enqueue`]).
    #[inline]
    pub fn check_request(&self, req: &Request) -> Result<(), (RejectionKind, String)> {
        let prompt = req.num_prompt_tokens;
        let max_tokens = req.max_tokens;
        if prompt == 0 {
            return Err((RejectionKind::EmptyPrompt, "the prompt is empty".to_string()));
        }
        if max_tokens == 0 {
            return Err((RejectionKind::ZeroMaxTokens, "max_tokens must be at least 1".into()));
        }
        let total = u64::from(prompt) + u64::from(max_tokens);
        if total > u64::from(self.max_model_len) {
            let reason = format!(
                "this model's maximum context length is {} tokens, but {total} tokens were \
                 requested ({prompt} in the prompt, {max_tokens} in the completion)",
                self.max_model_len
            );
            return Err((RejectionKind::ExceedsMaxModelLen, reason));
        }
        let full_len = prompt + max_tokens - 1;
        let block_size = self.kv_cache_manager.block_size();
        let blocks_needed = self.kv_cache_manager.num_blocks_for(full_len);
        let blocks_usable = self.num_gpu_blocks().saturating_sub(self.watermark_blocks);
        if blocks_needed > blocks_usable {
            let reason = format!(
                "{full_len} tokens need {blocks_needed} KV blocks of {block_size} but the cache \
                 has {blocks_usable} usable blocks; raise gpu_memory_utilization or lower \
                 max_model_len"
            );
            return Err((RejectionKind::ExceedsKvCache, reason));
        }
        if !self.enable_chunked_prefill && full_len > self.max_num_batched_tokens {
            let reason = format!(
                "{full_len} tokens exceed max_num_batched_tokens = {} with chunked prefill off; \
                 vLLM requires max_num_batched_tokens >= max_model_len then",
                self.max_num_batched_tokens
            );
            return Err((RejectionKind::ExceedsBatchBudget, reason));
        }
        Ok(())
    }

    /// Queues `req` at the back of the waiting queue without the checks of
    /// [`Scheduler::check_request`] (the caller ran them).
    #[inline]
    pub fn enqueue(&mut self, mut req: Request) {
        req.status = RequestStatus::Waiting;
        req.num_computed_tokens = 0;
        req.num_scheduled_tokens = 0;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot.0 as usize] = Some(req);
                slot
            }
            None => {
                self.slots.push(Some(req));
                Slot(self.slots.len() as u32 - 1)
            }
        };
        self.waiting.push_back(slot);
    }

    /// Decides the next step: which requests compute how many tokens. Allocates their KV blocks
    /// and may preempt (see the module doc for the rule). Calling it again before
    /// [`Scheduler::update_from_output`] returns the same decision unchanged. The output may be
    /// empty right after a preemption even with requests queued; apply it and schedule again.
    pub fn schedule(&mut self) -> &SchedulerOutput {
        debug_assert!(self.stretch.is_none(), "schedule() inside a decode stretch");
        if !self.step_in_flight {
            self.output.clear();
            match self.rule {
                StepRule::V1 => self.schedule_v1(),
                StepRule::V0Phases => self.schedule_v0(),
            }
            self.step_in_flight = true;
            if !self.deferred_frees.is_empty() {
                self.release_deferred_frees();
            }
            #[cfg(debug_assertions)]
            self.check_invariants();
        }
        &self.output
    }

    /// Applies the last [`Scheduler::schedule`] as if the step ended at `now` (vLLM's
    /// `update_from_output`): scheduled requests advance `num_computed_tokens`; each one that
    /// caught up with its `num_tokens` samples one token (first token, or the next with its
    /// inter-token gap); requests reaching `max_tokens` free their blocks, become `Finished` and
    /// move to `events.finished`. Does nothing without a step in flight.
    pub fn update_from_output(&mut self, now: SimTime, events: &mut StepEvents) {
        if !self.step_in_flight {
            return;
        }
        self.step_in_flight = false;
        let mut any_finished = false;
        let mut num_sampled = 0u64;
        // The current run of equal gaps, kept in registers until it changes.
        let mut gap_run: Option<(SimDuration, u32)> = None;
        for &slot in &self.running {
            let Some(req) = self.slots[slot.0 as usize].as_mut() else { continue };
            let n = req.num_scheduled_tokens;
            if n == 0 {
                continue;
            }
            req.num_scheduled_tokens = 0;
            req.num_computed_tokens += n;
            if req.num_computed_tokens < req.num_tokens() {
                continue;
            }
            if let Some(gap) = req.append_output_token(now) {
                match &mut gap_run {
                    Some((g, count)) if *g == gap => *count += 1,
                    run => {
                        if let Some((g, count)) = run.replace((gap, 1)) {
                            events.push_itl_gaps(g, count);
                        }
                    }
                }
            }
            num_sampled += 1;
            if self.record_tokens {
                events.tokens.push((req.request_id, req.num_output_tokens - 1));
            }
            if req.num_output_tokens >= req.max_tokens {
                req.status = RequestStatus::Finished;
                any_finished = true;
            }
        }
        if let Some((g, count)) = gap_run {
            events.push_itl_gaps(g, count);
        }
        events.num_tokens_sampled += num_sampled;
        if any_finished {
            self.remove_finished(events);
        }
    }

    /// Moves finished requests out of `running` (keeping the order of the rest) into `events`.
    /// With async scheduling their blocks stay held until the next `schedule()` (see the module
    /// doc): `events` gets a copy without the block table, the request stays in its slot.
    fn remove_finished(&mut self, events: &mut StepEvents) {
        let mut kept = 0;
        for i in 0..self.running.len() {
            let slot = self.running[i];
            let idx = slot.0 as usize;
            let finished = self.slots[idx].as_ref().is_none_or(Request::is_finished);
            if !finished {
                self.running[kept] = slot;
                kept += 1;
                continue;
            }
            if self.async_scheduling {
                if let Some(req) = self.slots[idx].as_mut() {
                    let tables =
                        (std::mem::take(&mut req.block_table), std::mem::take(&mut req.preempted_blocks));
                    // Empty vectors: the copy allocates nothing.
                    events.finished.push(req.clone());
                    (req.block_table, req.preempted_blocks) = tables;
                    self.deferred_frees.push(slot);
                }
                continue;
            }
            if let Some(mut req) = self.slots[idx].take() {
                self.kv_cache_manager.free_finished(&mut req);
                self.recycle_block_tables(&mut req);
                events.finished.push(req);
            }
            self.free_slots.push(slot);
        }
        self.running.truncate(kept);
    }

    /// Frees the blocks of requests that finished before the last `schedule()` (async
    /// scheduling) and releases their slots.
    pub fn release_deferred_frees(&mut self) {
        for k in 0..self.deferred_frees.len() {
            let slot = self.deferred_frees[k];
            if let Some(mut req) = self.slots[slot.0 as usize].take() {
                self.kv_cache_manager.free_finished(&mut req);
                self.recycle_block_tables(&mut req);
            }
            self.free_slots.push(slot);
        }
        self.deferred_frees.clear();
    }

    /// The longest context of a request in the step in flight (`num_computed_tokens +` its
    /// scheduled tokens), 0 without one.
    pub fn scheduled_max_seq_len(&self) -> u32 {
        self.running_requests()
            .filter(|r| r.num_scheduled_tokens > 0)
            .map(|r| r.num_computed_tokens + r.num_scheduled_tokens)
            .max()
            .unwrap_or(0)
    }

    /// Whether finished requests still hold blocks (async scheduling, until the next
    /// `schedule()`).
    pub fn has_deferred_frees(&self) -> bool {
        !self.deferred_frees.is_empty()
    }

    /// transformers-cb: whether the step being scheduled already has a request and fewer blocks
    /// than the safety margin are free, so it takes no new or still-prefilling request
    /// (`Scheduler._process_candidates`, `outside_safety_margin`). Always false for vLLM.
    #[inline]
    fn outside_free_margin(&self) -> bool {
        self.free_block_margin > 0
            && self.output.num_scheduled_requests > 0
            && self.kv_cache_manager.num_free_blocks() < self.free_block_margin
    }

    fn recycle_block_tables(&mut self, req: &mut Request) {
        let cap = 2 * self.max_num_seqs as usize;
        for table in [&mut req.block_table, &mut req.preempted_blocks] {
            if table.capacity() > 0 && self.spare_block_tables.len() < cap {
                let mut t = std::mem::take(table);
                t.clear();
                self.spare_block_tables.push(t);
            }
        }
    }

    /// Gives a newly admitted request a reused block-table vector.
    #[inline]
    fn provide_block_table(spares: &mut Vec<Vec<BlockId>>, req: &mut Request) {
        if req.block_table.capacity() == 0
            && let Some(t) = spares.pop()
        {
            req.block_table = t;
        }
    }

    /// Preempts the request in `slot` (already removed from `running`): frees its blocks, resets
    /// it for recomputation and puts it at the front of the waiting queue (vLLM's
    /// `_preempt_request`).
    fn preempt(&mut self, slot: Slot) {
        let Some(req) = self.slots[slot.0 as usize].as_mut() else { return };
        self.kv_cache_manager.free(req);
        req.status = RequestStatus::Preempted;
        req.num_computed_tokens = 0;
        req.num_scheduled_tokens = 0;
        req.num_preemptions += 1;
        self.output.preempted.push(req.request_id);
        self.num_preemptions_total += 1;
        self.waiting.push_front(slot);
    }

    /// Moves the head of `waiting` to `running` after its blocks were allocated: it computes
    /// `num_new_tokens` from `num_hit_tokens` (prefix-cache hits) this step.
    fn admit_head(&mut self, num_hit_tokens: u32, num_new_tokens: u32) {
        let Some(slot) = self.waiting.pop_front() else { return };
        let Some(req) = self.slots[slot.0 as usize].as_mut() else { return };
        req.status = RequestStatus::Running;
        req.num_computed_tokens = num_hit_tokens;
        req.num_cached_tokens.get_or_insert(num_hit_tokens);
        req.num_scheduled_tokens = num_new_tokens;
        self.output.add(req, num_new_tokens, true);
        self.output.num_new_requests += 1;
        self.running.push(slot);
    }

    /// Checks vLLM's scheduling invariants after `schedule()`.
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        let out = &self.output;
        debug_assert!(out.num_scheduled_requests <= self.max_num_seqs);
        debug_assert!(self.running.len() <= self.max_num_seqs as usize);
        debug_assert!(out.total_num_scheduled_tokens <= self.max_num_batched_tokens);
        let pool = self.kv_cache_manager.block_pool();
        debug_assert_eq!(pool.num_used_blocks() + pool.num_free_blocks(), pool.num_blocks());
        let block_size = self.kv_cache_manager.block_size();
        let mut scheduled = 0;
        for &slot in &self.running {
            let Some(req) = self.slots[slot.0 as usize].as_ref() else {
                debug_assert!(false, "running slot {slot:?} is empty");
                continue;
            };
            let end = req.num_computed_tokens + req.num_scheduled_tokens;
            debug_assert!(end <= req.num_tokens(), "{req:?} computes past its tokens");
            let held = req.block_table.len() as u32;
            if self.admission == Admission::V0WholeSequence {
                // Blocks of the whole sequence were taken at admission.
                let most = self.kv_cache_manager.num_blocks_for(end.max(req.num_tokens()));
                debug_assert!(held >= self.kv_cache_manager.num_blocks_for(end) && held <= most, "{req:?}");
            } else {
                debug_assert_eq!(held, self.kv_cache_manager.num_blocks_for(end), "{req:?}");
            }
            debug_assert!(req.alloc_limit <= req.block_table.len() as u32 * block_size);
            scheduled += u32::from(req.num_scheduled_tokens > 0);
        }
        debug_assert_eq!(scheduled, out.num_scheduled_requests);
    }

    /// Ends every running and waiting request now (the driver's drain deadline): frees their blocks
    /// and returns them, running ones first in admission order, then the queue. Drops any step in
    /// flight and any open decode stretch (vLLM's `finish_requests` with `FINISHED_ABORTED`).
    pub fn abort_all_requests(&mut self) -> Vec<Request> {
        self.step_in_flight = false;
        self.stretch = None;
        self.release_deferred_frees();
        let order: Vec<Slot> = self.running.drain(..).chain(self.waiting.drain(..)).collect();
        let mut out = Vec::with_capacity(order.len());
        for slot in order {
            if let Some(mut req) = self.slots[slot.0 as usize].take() {
                self.kv_cache_manager.free_finished(&mut req);
                req.num_scheduled_tokens = 0;
                self.recycle_block_tables(&mut req);
                out.push(req);
            }
            self.free_slots.push(slot);
        }
        out
    }

    /// Whether any request is running or waiting.
    pub fn has_unfinished_requests(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Requests in the running batch (vLLM's `num_requests_running` gauge).
    pub fn num_running(&self) -> u32 {
        self.running.len() as u32
    }

    /// Requests queued, preempted ones included (vLLM's `num_requests_waiting` gauge).
    pub fn num_waiting(&self) -> u32 {
        self.waiting.len() as u32
    }

    /// Fraction of KV blocks in use, `0..=1` (vLLM's `kv_cache_usage_perc` gauge).
    pub fn kv_cache_usage(&self) -> f64 {
        self.kv_cache_manager.usage()
    }

    /// Preemptions since the start.
    pub fn num_preemptions_total(&self) -> u64 {
        self.num_preemptions_total
    }

    /// KV blocks of this instance.
    pub fn num_gpu_blocks(&self) -> u32 {
        self.kv_cache_manager.num_gpu_blocks()
    }

    /// The KV cache manager (read-only).
    pub fn kv_cache_manager(&self) -> &KvCacheManager {
        &self.kv_cache_manager
    }

    /// The KV cache manager, for an owner that resizes its capacity (elastic KV).
    pub fn kv_cache_manager_mut(&mut self) -> &mut KvCacheManager {
        &mut self.kv_cache_manager
    }

    /// When on, `update_from_output` lists every sampled token in `StepEvents::tokens`.
    pub fn set_record_tokens(&mut self, on: bool) {
        self.record_tokens = on;
    }

    /// The running requests in admission order (for samplers and tests).
    pub fn running_requests(&self) -> impl Iterator<Item = &Request> + '_ {
        self.running.iter().filter_map(|s| self.slots[s.0 as usize].as_ref())
    }

    /// The waiting requests in queue order (for samplers and tests).
    pub fn waiting_requests(&self) -> impl Iterator<Item = &Request> + '_ {
        self.waiting.iter().filter_map(|s| self.slots[s.0 as usize].as_ref())
    }
}

#[cfg(test)]
mod admission_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
