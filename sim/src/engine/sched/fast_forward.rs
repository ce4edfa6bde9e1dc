//! Fast-forward of pure-decode stretches: when the next steps' batches are known in advance, the
//! scheduler applies many of them at once instead of one `schedule()` + `update_from_output()`
//! per step, leaving every request, block and counter exactly as the step-by-step path would.
//! vLLM has no such path: this is a simulator shortcut for repeated `Scheduler.schedule()` +
//! `update_from_output()` (`vllm/v1/core/sched/scheduler.py`) over decode-only batches.
//!
//! A *decode stretch* starts where every running request is in pure decode
//! (`num_computed_tokens == num_tokens - 1`, at least one output token), nothing waits and the
//! whole batch fits `max_num_batched_tokens` (with async scheduling, also no finished request's
//! blocks still waiting to be freed): then under both step rules every step schedules the
//! whole running batch, one decode token each, in running order, and the only things that vary
//! are the KV read (it grows by the batch size per step) and, every `block_size` steps per
//! request, one block allocation. The stretch ends with the first step in which a request reaches
//! `max_tokens` (applying it finishes those requests as `update_from_output` does) and before the
//! first step whose allocations would not fit the free blocks (preemption is left to a normal
//! step). With elastic KV (kvcached) only the free blocks on pages already mapped count: the
//! stretch ends before a step that would have to map a page on demand (whose map latency
//! lengthens that step), and the owner's pool settles run between the steps where the
//! step-by-step driver's would change something (the background reserve refill then maps pages
//! exactly when it would have: see [`Scheduler::allocate_decode_steps`]).
//!
//! Block allocations take the blocks `allocate_slots` would, in exactly the order the
//! step-by-step path makes them (by step, then running order), so block ids, the free queue's LRU
//! order and prefix-cache identities come out identical. Requests allocate every `block_size`
//! steps from their own first allocation step, so the global order is a fixed cycle over the
//! requests sorted by that first step: the blocks of many steps are popped at once
//! (`KvCacheManager::pop_decode_blocks`) and handed out along the cycle. The other slow-path
//! calls of `allocate_slots` during decode only move `num_cached_blocks` (the shared-content
//! blocks are all registered by then: a precondition), and are folded into one
//! `KvCacheManager::sync_decode_state` when the counters are applied.
//!
//! The scheduler knows nothing of time: the owner (`Instance`) computes step durations from the
//! stretch's [`DecodeStretch`] and passes step end times when applying. While a stretch is open,
//! `schedule()` and `update_from_output()` must not be called; `add_request` may be (the owner
//! then truncates the stretch so the newcomer joins the next normal step).

use super::{Scheduler, StepEvents};
use crate::engine::kv_cache::KvCacheManager;
use crate::engine::request::{Request, RequestStatus};
use crate::time::{SimDuration, SimTime};

/// The shape of an open decode stretch (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeStretch {
    /// Requests in every step: the whole running batch, one decode token each.
    pub num_seqs: u32,
    /// `num_kv_tokens_read` of the first step; step `s` (from 1) reads
    /// `first_kv_tokens_read + (s - 1) * num_seqs`.
    pub first_kv_tokens_read: u64,
    /// Steps in the stretch, at least 1.
    pub num_steps: u32,
    /// `max_seq_len` of the first step (the longest context); step `s` has `s - 1` more.
    pub first_max_seq_len: u32,
}

impl DecodeStretch {
    /// `num_kv_tokens_read` of step `s` (from 1).
    #[inline]
    pub fn kv_tokens_read(&self, s: u32) -> u64 {
        self.first_kv_tokens_read + u64::from(s - 1) * u64::from(self.num_seqs)
    }

    /// `max_seq_len` of step `s` (from 1).
    #[inline]
    pub fn max_seq_len(&self, s: u32) -> u32 {
        self.first_max_seq_len.saturating_add(s - 1)
    }
}

/// Bookkeeping of the open stretch.
#[derive(Clone, Copy, Debug)]
pub(super) struct StretchState {
    shape: DecodeStretch,
    /// Steps whose block allocations are done (they have begun).
    allocated: u32,
    /// Position of the next allocation in the cycle over `stretch_order`: round and index.
    round: u32,
    pos: u32,
}

/// One entry of the allocation cycle: a running request and the step (from 1, at most
/// `block_size`) of its first block allocation in the stretch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct AllocEntry {
    first_step: u32,
    running_index: u32,
}

/// Sorts by first allocation step, then running order (the entries come in running order).
fn sort_alloc_entries(entries: &mut [AllocEntry]) {
    if entries.len() > 24 {
        entries.sort_unstable();
        return;
    }
    // Insertion sort: batches are small and often nearly sorted.
    for i in 1..entries.len() {
        let e = entries[i];
        let mut j = i;
        while j > 0 && entries[j - 1].first_step > e.first_step {
            entries[j] = entries[j - 1];
            j -= 1;
        }
        entries[j] = e;
    }
}

impl Scheduler {
    /// Opens a decode stretch of at most `max_steps` steps when the next steps are pure decode
    /// (see the module doc) and at least `min_steps` of them can be fast-forwarded; `None`
    /// changes nothing. Token recording and a step in flight rule a stretch out.
    pub fn begin_decode_stretch(&mut self, min_steps: u32, max_steps: u32) -> Option<DecodeStretch> {
        if self.step_in_flight
            || self.stretch.is_some()
            || self.record_tokens
            || !self.deferred_frees.is_empty()
            || !self.waiting.is_empty()
            || self.running.is_empty()
            || self.running.len() as u32 > self.max_num_batched_tokens
        {
            return None;
        }
        let block_size = self.kv_cache_manager.block_size();
        let caching = self.kv_cache_manager.enable_caching();
        let kv = &self.kv_cache_manager;
        let fits = |req: &Request| {
            req.num_output_tokens >= 1
                && req.num_computed_tokens + 1 == req.num_tokens()
                && req.num_scheduled_tokens == 0
                && (!caching || req.num_cached_blocks >= kv.num_shared_blocks(req))
        };
        // The newest request is the likeliest to be still in prefill: look at it first.
        let newest = self.running.last().and_then(|s| self.slots[s.0 as usize].as_ref());
        if !newest.is_some_and(fits) {
            return None;
        }
        let mut min_remaining = u32::MAX;
        let mut kv = 0u64;
        let mut max_seq_len = 0u32;
        self.stretch_order.clear();
        for (i, slot) in self.running.iter().enumerate() {
            let req = self.slots[slot.0 as usize].as_ref()?;
            if !fits(req) {
                return None;
            }
            min_remaining = min_remaining.min(req.max_tokens.saturating_sub(req.num_output_tokens));
            kv += u64::from(req.num_tokens());
            max_seq_len = max_seq_len.max(req.num_tokens());
            // The block table covers exactly the computed tokens, so the first allocation falls
            // within `block_size` steps.
            let held = req.block_table.len() as u32 * block_size;
            let first_step = held + 1 - req.num_computed_tokens;
            debug_assert!((1..=block_size).contains(&first_step), "{req:?}");
            self.stretch_order.push(AllocEntry { first_step, running_index: i as u32 });
        }
        sort_alloc_entries(&mut self.stretch_order);
        // Allocations through step k = q * n + #(first_step <= r) for k = q * block_size + r.
        // Elastic KV: only blocks on pages mapped now count, so no step of the stretch maps a
        // page on demand (which would lengthen that step by the map latency).
        let n = self.running.len() as u32;
        let free = self.kv_cache_manager.num_free_blocks_without_mapping();
        let (q, spare) = (free / n, free % n);
        let block_limit = match self.stretch_order.get(spare as usize) {
            Some(e) => u64::from(q) * u64::from(block_size) + u64::from(e.first_step) - 1,
            None => u64::MAX,
        };
        let num_steps = u64::from(max_steps).min(u64::from(min_remaining)).min(block_limit) as u32;
        if num_steps == 0 || num_steps < min_steps {
            return None;
        }
        let shape = DecodeStretch {
            num_seqs: n,
            first_kv_tokens_read: kv,
            num_steps,
            first_max_seq_len: max_seq_len,
        };
        self.stretch = Some(StretchState { shape, allocated: 0, round: 0, pos: 0 });
        Some(shape)
    }

    /// The open decode stretch, if any.
    pub fn decode_stretch(&self) -> Option<DecodeStretch> {
        self.stretch.map(|s| s.shape)
    }

    /// Steps of the open stretch whose block allocations are done (0 without a stretch).
    pub fn decode_stretch_allocated(&self) -> u32 {
        self.stretch.map_or(0, |s| s.allocated)
    }

    /// Shortens the open stretch to `num_steps` steps (at least those already allocated, at most
    /// its length): a request arrived and joins the step after.
    pub fn truncate_decode_stretch(&mut self, num_steps: u32) {
        if let Some(st) = self.stretch.as_mut() {
            debug_assert!(num_steps >= st.allocated && num_steps >= 1);
            st.shape.num_steps = st.shape.num_steps.min(num_steps.max(st.allocated).max(1));
        }
    }

    /// Makes the block allocations of the open stretch's steps up to `through_step` (those that
    /// have begun), in the step-by-step order, so `kv_cache_usage` and the block pool are as the
    /// step-by-step path would have them.
    ///
    /// With `settle` (elastic KV), `settle` runs where the step-by-step driver's settle right
    /// after scheduling a step could change anything (its reserve refill decides which page later
    /// blocks come from): after each step whose blocks reach into an empty (reserve) page. Steps
    /// whose blocks all come from partly used pages map nothing and leave the reserve as it is, so the
    /// settles between them are no-ops and they are allocated in one go, settled once at the end;
    /// steps that allocate nothing change nothing either.
    pub fn allocate_decode_steps(
        &mut self,
        through_step: u32,
        settle: Option<&mut dyn FnMut(&mut KvCacheManager)>,
    ) {
        let Some(mut st) = self.stretch else { return };
        let through = through_step.min(st.shape.num_steps);
        if through <= st.allocated {
            return;
        }
        match settle {
            None => self.allocate_decode_blocks_through(&mut st, through),
            Some(settle) => {
                let block_size = self.kv_cache_manager.block_size();
                loop {
                    // The step of the next allocation due in the cycle.
                    let next = self.stretch_order[st.pos as usize].first_step + st.round * block_size;
                    if next > through {
                        break;
                    }
                    // Steps whose blocks all come from partly used mapped pages map nothing and
                    // leave the reserve alone: the settles between them change nothing, so they
                    // are allocated in one go (one pop per page); the step that reaches into an
                    // empty page is allocated on its own, then settled.
                    let safe = self.kv_cache_manager.num_free_blocks_on_used_pages();
                    let upto = self.last_decode_step_within(&st, through, safe).unwrap_or(next);
                    self.allocate_decode_blocks_through(&mut st, upto);
                    settle(&mut self.kv_cache_manager);
                }
            }
        }
        st.allocated = through;
        self.stretch = Some(st);
    }

    /// The last step (at most `through`) such that the allocations not yet made from `st`'s
    /// cycle position through it number at most `max_blocks`; `None` when the next step's alone
    /// exceed it.
    fn last_decode_step_within(&self, st: &StretchState, through: u32, max_blocks: u32) -> Option<u32> {
        let block_size = self.kv_cache_manager.block_size();
        let n = self.stretch_order.len() as u32;
        let (mut pos, mut round) = (st.pos, st.round);
        let mut count = 0u32;
        let mut current: Option<u32> = None;
        let mut complete = None;
        // Due steps never decrease along the cycle, and a step's allocations are consecutive.
        loop {
            let due = self.stretch_order[pos as usize].first_step + round * block_size;
            if current != Some(due) {
                complete = current.or(complete);
                if due > through {
                    return complete;
                }
                current = Some(due);
            }
            count += 1;
            if count > max_blocks {
                return complete;
            }
            pos += 1;
            if pos == n {
                pos = 0;
                round += 1;
            }
        }
    }

    /// Makes the stretch's allocations due through step `through` not yet made (advancing `st`'s
    /// cycle position): counts them, takes their blocks in one go, then hands them out in the
    /// step-by-step order.
    fn allocate_decode_blocks_through(&mut self, st: &mut StretchState, through: u32) {
        let block_size = self.kv_cache_manager.block_size();
        let n = self.stretch_order.len() as u32;
        // The allocations are a cycle over `stretch_order`, one round per `block_size` steps:
        // count those due, take their blocks in one go, then hand them out in the same order.
        let (round, pos) = (st.round, st.pos);
        let mut count = 0;
        while self.stretch_order[st.pos as usize].first_step + st.round * block_size <= through {
            count += 1;
            st.pos += 1;
            if st.pos == n {
                st.pos = 0;
                st.round += 1;
            }
        }
        if count == 0 {
            return;
        }
        let mut blocks = std::mem::take(&mut self.stretch_blocks);
        blocks.clear();
        let popped = self.kv_cache_manager.pop_decode_blocks(count, &mut blocks);
        debug_assert!(popped, "a decode stretch ran out of blocks");
        let (mut r, mut p) = (round, pos);
        for &block in &blocks {
            let e = self.stretch_order[p as usize];
            debug_assert!(e.first_step + r * block_size <= through);
            let slot = self.running[e.running_index as usize];
            if let Some(req) = self.slots[slot.0 as usize].as_mut() {
                self.kv_cache_manager.append_decode_block(req, block);
            }
            p += 1;
            if p == n {
                p = 0;
                r += 1;
            }
        }
        self.stretch_blocks = blocks;
    }

    /// Closes the open stretch after applying its first `num_steps` steps (those that ended) as
    /// `update_from_output` would: each running request gains `num_steps` computed and output
    /// tokens, its gaps are `first_end - last_token_time` and then the step durations. The step
    /// ends are `first_end` (step 1), `last_end` (step `num_steps`); `max_later_gap` is the
    /// longest duration among steps 2..=`num_steps` (zero for one step). Step 1's gaps go to
    /// `events.itl_gaps` run-length encoded in running order as `update_from_output` does; the
    /// later steps' gaps (each duration, once per request) are the caller's to record. Requests
    /// that reach `max_tokens` (in the stretch's last step) finish: their blocks are freed and they
    /// move to `events.finished`, in running order. Steps allocated beyond `num_steps` (a step in
    /// flight at a drain) keep their blocks.
    pub fn finish_decode_stretch(
        &mut self,
        num_steps: u32,
        first_end: SimTime,
        last_end: SimTime,
        max_later_gap: SimDuration,
        events: &mut StepEvents,
    ) {
        let Some(st) = self.stretch else { return };
        let num_steps = num_steps.min(st.shape.num_steps);
        debug_assert!(
            st.allocated >= num_steps || !self.kv_cache_manager.is_elastic(),
            "elastic KV: allocate the applied steps with their settles first"
        );
        self.allocate_decode_steps(num_steps, None);
        self.stretch = None;
        if num_steps == 0 {
            return;
        }
        let mut gap_run: Option<(SimDuration, u32)> = None;
        let mut any_finished = false;
        for &slot in &self.running {
            let Some(req) = self.slots[slot.0 as usize].as_mut() else { continue };
            let last = req.last_token_time.unwrap_or(first_end);
            let first_gap = first_end - last;
            req.num_computed_tokens += num_steps;
            req.num_output_tokens += num_steps;
            req.itl_sum += last_end - last;
            req.itl_max = req.itl_max.max(first_gap).max(max_later_gap);
            req.last_token_time = Some(last_end);
            if req.num_output_tokens >= req.max_tokens {
                req.status = RequestStatus::Finished;
                any_finished = true;
            } else {
                self.kv_cache_manager.sync_decode_state(req);
            }
            match &mut gap_run {
                Some((g, count)) if *g == first_gap => *count += 1,
                run => {
                    if let Some((g, count)) = run.replace((first_gap, 1)) {
                        events.push_itl_gaps(g, count);
                    }
                }
            }
        }
        if let Some((g, count)) = gap_run {
            events.push_itl_gaps(g, count);
        }
        events.num_tokens_sampled += u64::from(num_steps) * u64::from(st.shape.num_seqs);
        if any_finished {
            self.remove_finished(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, request};
    use super::*;
    use crate::cluster::{GpuPool, PoolSlot};
    use crate::engine::kv_cache::ElasticParams;
    use crate::ids::{GpuId, InstanceId};
    use crate::scenario::EnginePreset;

    /// Steps `s` one step at a time for `n` steps of duration `d` from `t`; returns the end.
    fn step_by_step(s: &mut Scheduler, n: u32, t: &mut u64, d: u64, ev: &mut StepEvents) {
        for _ in 0..n {
            s.schedule();
            *t += d;
            s.update_from_output(SimTime(*t), ev);
        }
    }

    fn state(s: &Scheduler) -> String {
        let reqs: Vec<String> = s.running_requests().map(|r| format!("{r:?}")).collect();
        let free: Vec<u32> = s.kv_cache_manager().block_pool().free_blocks().map(|b| b.0).collect();
        format!("{reqs:?} {free:?} {}", s.kv_cache_usage())
    }

    #[test]
    fn a_stretch_leaves_requests_and_blocks_as_step_by_step_decoding_does() {
        for (preset, chunked, caching) in [
            (EnginePreset::VllmV1, true, true),
            (EnginePreset::VllmV1, true, false),
            (EnginePreset::Vllm064, false, true),
        ] {
            let build = || {
                let mut s = Scheduler::new(&config(preset, chunked, caching), 64);
                for (id, prompt) in [(0, 37), (1, 16), (2, 50)] {
                    s.add_request(request(id, prompt, 60, None)).unwrap();
                }
                s
            };
            let (mut a, mut b) = (build(), build());
            let (mut ta, mut tb) = (0, 0);
            let (mut ea, mut eb) = (StepEvents::default(), StepEvents::default());
            // Prefill (one or more steps) until everyone decodes.
            step_by_step(&mut a, 3, &mut ta, 10, &mut ea);
            step_by_step(&mut b, 3, &mut tb, 10, &mut eb);
            assert_eq!(state(&a), state(&b));
            step_by_step(&mut a, 40, &mut ta, 7, &mut ea);
            let shape = b.begin_decode_stretch(2, 40).expect("pure decode");
            assert_eq!((shape.num_seqs, shape.num_steps), (3, 40));
            b.allocate_decode_steps(17, None);
            b.finish_decode_stretch(40, SimTime(tb + 7), SimTime(tb + 280), SimDuration(7), &mut eb);
            assert_eq!(state(&a), state(&b), "{preset:?} chunked={chunked} caching={caching}");
        }
    }

    /// Elastic KV: the scheduler, its pool tenant and the pool's settles as `Instance` makes them.
    struct Elastic {
        s: Scheduler,
        pool: GpuPool,
        slot: PoolSlot,
    }

    impl Elastic {
        fn new(min: u32, max: u32) -> Elastic {
            let mut s = Scheduler::new(&config(EnginePreset::VllmV1, true, false), 64);
            s.kv_cache_manager_mut().enable_elastic(ElasticParams {
                blocks_per_page: 4,
                min_reserve_pages: min,
                max_reserve_pages: max,
                max_cached_free_blocks: 0,
            });
            for (id, prompt) in [(0, 37), (1, 16), (2, 50), (3, 5)] {
                s.add_request(request(id, prompt, 400, None)).unwrap();
            }
            let mut pool = GpuPool::new(GpuId(0), 16 * 100);
            let slot = pool.add_tenant(InstanceId(0), 100, 16);
            Elastic { s, pool, slot }
        }

        fn settle(&mut self) {
            self.pool.settle(self.slot, self.s.kv_cache_manager_mut()).unwrap();
        }

        /// `n` steps of duration `d` from `t`, settling before and after scheduling and after
        /// each step (`Instance::begin_step_on`, `end_step_on`).
        fn steps(&mut self, n: u32, t: &mut u64, d: u64, ev: &mut StepEvents) {
            for _ in 0..n {
                self.settle();
                self.s.schedule();
                self.settle();
                *t += d;
                self.s.update_from_output(SimTime(*t), ev);
                self.settle();
            }
        }

        /// The state, less the demand-map count (`Instance::begin_step` takes it every step).
        fn state(&mut self) -> String {
            self.s.kv_cache_manager_mut().take_num_demand_maps();
            let kv = self.s.kv_cache_manager();
            format!(
                "{} {:?} {} {:?}",
                state(&self.s),
                kv.elastic(),
                self.pool.mapped_bytes(),
                self.pool.tenants()
            )
        }
    }

    #[test]
    fn an_elastic_stretch_takes_the_blocks_and_maps_the_pages_step_by_step_decoding_does() {
        for (min, max) in [(0, 0), (1, 1), (1, 3), (3, 3)] {
            let (mut a, mut b) = (Elastic::new(min, max), Elastic::new(min, max));
            let (mut ta, mut tb) = (0, 0);
            let (mut ea, mut eb) = (StepEvents::default(), StepEvents::default());
            a.steps(4, &mut ta, 10, &mut ea);
            b.steps(4, &mut tb, 10, &mut eb);
            assert_eq!(a.state(), b.state());
            let mut total = 0;
            // Several stretches: each ends before a step that would map a page on demand.
            while total < 150 {
                b.settle();
                let Some(shape) = b.s.begin_decode_stretch(1, 150) else {
                    // A step that maps on demand (or nothing to stretch): one step each.
                    a.steps(1, &mut ta, 7, &mut ea);
                    b.steps(1, &mut tb, 7, &mut eb);
                    total += 1;
                    continue;
                };
                let k = shape.num_steps;
                // `Instance::begin_step` takes the count every step.
                a.s.kv_cache_manager_mut().take_num_demand_maps();
                a.steps(k, &mut ta, 7, &mut ea);
                assert_eq!(a.s.kv_cache_manager_mut().take_num_demand_maps(), 0, "a stretch step mapped");
                assert_eq!(
                    a.s.kv_cache_manager_mut().take_num_demand_maps(),
                    0,
                    "min {min}: a stretch step mapped"
                );
                let Elastic { s, pool, slot } = &mut b;
                let mut settle = |kv: &mut KvCacheManager| pool.settle(*slot, kv).unwrap();
                s.allocate_decode_steps(k / 2, Some(&mut settle));
                s.allocate_decode_steps(k, Some(&mut settle));
                s.finish_decode_stretch(
                    k,
                    SimTime(tb + 7),
                    SimTime(tb + 7 * u64::from(k)),
                    SimDuration(7),
                    &mut eb,
                );
                tb += 7 * u64::from(k);
                b.settle();
                assert_eq!(a.state(), b.state(), "min {min} max {max} after {total} steps + {k}");
                total += k;
            }
        }
    }

    #[test]
    fn a_stretch_ends_with_the_step_a_request_finishes_in_and_before_blocks_run_out() {
        let mut s = Scheduler::new(&config(EnginePreset::VllmV1, true, false), 6);
        s.add_request(request(0, 16, 30, None)).unwrap();
        s.add_request(request(1, 16, 9, None)).unwrap();
        let mut ev = StepEvents::default();
        let mut t = 0;
        step_by_step(&mut s, 1, &mut t, 1, &mut ev);
        // Both decode with 1 output token; request 1 finishes at its 9th, 8 steps on: the stretch
        // ends with that step. 2 blocks held, 4 free: each request needs a block every 16 steps.
        assert_eq!(s.begin_decode_stretch(1, 100).map(|d| d.num_steps), Some(8));
        s.finish_decode_stretch(0, SimTime(2), SimTime(2), SimDuration::ZERO, &mut ev);
        let mut s = Scheduler::new(&config(EnginePreset::VllmV1, true, false), 3);
        s.add_request(request(0, 16, 17, None)).unwrap();
        s.add_request(request(1, 16, 17, None)).unwrap();
        step_by_step(&mut s, 1, &mut t, 1, &mut ev);
        // 1 free block: request 0 takes it at step 1, request 1 would need one at step 1 too.
        assert_eq!(s.begin_decode_stretch(1, 100), None);
    }

    #[test]
    fn requests_finishing_in_a_stretchs_last_step_end_as_step_by_step() {
        let build = || {
            let mut s = Scheduler::new(&config(EnginePreset::VllmV1, true, true), 64);
            for (id, prompt, max_tokens) in [(0, 37, 20), (1, 16, 12), (2, 50, 12), (3, 20, 40)] {
                s.add_request(request(id, prompt, max_tokens, None)).unwrap();
            }
            s
        };
        let (mut a, mut b) = (build(), build());
        let (mut ta, mut tb) = (0, 0);
        let (mut ea, mut eb) = (StepEvents::default(), StepEvents::default());
        step_by_step(&mut a, 2, &mut ta, 10, &mut ea);
        step_by_step(&mut b, 2, &mut tb, 10, &mut eb);
        assert!(ea.finished.is_empty());
        // Requests 1 and 2 have 2 output tokens of 12: both finish 10 steps on.
        step_by_step(&mut a, 10, &mut ta, 7, &mut ea);
        let shape = b.begin_decode_stretch(2, 100).expect("pure decode");
        assert_eq!(shape.num_steps, 10);
        b.finish_decode_stretch(10, SimTime(tb + 7), SimTime(tb + 70), SimDuration(7), &mut eb);
        let ids =
            |e: &StepEvents| e.finished.iter().map(|r| (r.request_id, format!("{r:?}"))).collect::<Vec<_>>();
        assert_eq!(ids(&ea), ids(&eb));
        assert_eq!(ea.finished.len(), 2);
        assert_eq!(state(&a), state(&b));
        assert_eq!(a.num_running(), 2);
    }
}
