//! The V1 step rule (vLLM's `Scheduler.schedule` in `vllm/v1/core/sched/scheduler.py`): running
//! requests first, then waiting requests FCFS. vLLM 0.6.4 with chunked prefill orders a step the
//! same way (`vllm/core/scheduler.py` `_schedule_chunked_prefill`) and follows it here, with its own
//! admission rule.
//!
//! Admission of a waiting request, per release ([`Admission`]):
//! - **First chunk** (V1 up to 0.18; presets `vllm-0.9.2`, and any V1 preset with
//!   `scheduler_reserve_full_isl = false`): `KVCacheManager.allocate_slots` for the tokens of this
//!   step's chunk only (vllm 0.9.2 and 0.11.0 `Scheduler.schedule`). Long prompts arriving
//!   together under block pressure are all admitted, then preempted as their later chunks run out
//!   of blocks.
//! - **Full sequence** (V1 from 0.19.0 on, `scheduler_reserve_full_isl`, on by default; presets
//!   `vllm-0.19.0`, `vllm-v1`): before allocating the chunk, `KVCacheManager.can_fit_full_sequence`
//!   (vllm 0.19.0 v1/core/kv_cache_manager.py; folded into `allocate_slots(...,
//!   full_sequence_must_fit=True)` by 0.33.0) checks that the blocks of the whole `num_tokens`,
//!   prefix hits credited, are free. It is a check, not a reservation: only the chunk's blocks are
//!   allocated, so requests already admitted can still be preempted by decode growth.
//! - **V0 whole sequence** (vLLM 0.6.4 with chunked prefill, preset `vllm-0.6.4`):
//!   `BlockSpaceManager.can_allocate` (vllm 0.6.4 core/block_manager.py) wants the blocks of the
//!   whole sequence plus the 1% watermark free, prefix hits not credited, whether or not prefill is
//!   chunked (`_schedule_prefills` calls it for both), and `allocate` then takes all of them at
//!   admission (`BlockTable.allocate(seq.get_token_ids())`); the chunks that follow need none.
//!   0.6.4 admits even in a step that preempted, and puts the preempted requests back at the
//!   front of the queue only after admission (`self.waiting.extendleft(running_scheduled.
//!   preempted)` after `_schedule_prefills`).
//!
//! Not modelled: speculative decoding, `long_prefill_token_threshold` (0 by default), the
//! priority policy, encoder inputs, KV connectors, V1's `watermark` (0.33.0, default 0), V1
//! skipping (rather than waiting behind) a prompt over the budget when chunked prefill is off,
//! 0.6.4 rounding chunks down to whole blocks with prefix caching on. Async scheduling is modelled
//! around this rule (deferred frees in `mod.rs`, held-back arrivals in `Instance`).
//!
//! transformers-cb runs this rule (with first-chunk admission) plus its free-block margin
//! (`Scheduler::outside_free_margin`): once fewer than 15% of the blocks are free, a step that has
//! a request takes no still-prefilling or waiting one. Its other differences are not modelled: it
//! orders decodes before prefill chunks, skips (rather than stops at) a waiting request whose
//! blocks do not fit, and evicts starved requests newest-first to the back of the queue
//! (generation/continuous_batching/scheduler.py `FIFOScheduler.schedule_batch`,
//! offloading_manager.py `offload_requests`).

use super::{Admission, Scheduler, Slot};

impl Scheduler {
    /// One V1 step. Running requests, in admission order, each get `num_tokens -
    /// num_computed_tokens` tokens capped by the remaining budget (a decode token or a prompt
    /// chunk); when one cannot get its blocks the newest running request is preempted and the
    /// allocation retried, and if it had to preempt itself the loop stops. Waiting requests are
    /// then admitted by the instance's [`Admission`] rule (see the module doc).
    pub(super) fn schedule_v1(&mut self) {
        let mut token_budget = self.max_num_batched_tokens;
        let mut req_index = 0;
        let mut preempted_any = false;
        let has_margin = self.free_block_margin > 0;
        'running: while req_index < self.running.len() && token_budget > 0 {
            let slot = self.running[req_index];
            loop {
                let outside_margin = has_margin && self.outside_free_margin();
                let Some(req) = self.slots[slot.0 as usize].as_mut() else { break 'running };
                let num_new_tokens = (req.num_tokens() - req.num_computed_tokens).min(token_budget);
                if num_new_tokens == 0 {
                    break;
                }
                if outside_margin && req.num_tokens() - req.num_computed_tokens > 1 {
                    break; // transformers-cb: a prefill chunk waits for free blocks
                }
                if self.kv_cache_manager.allocate_slots(req, num_new_tokens, 0).is_some() {
                    req.num_scheduled_tokens = num_new_tokens;
                    self.output.add(req, num_new_tokens, false);
                    token_budget -= num_new_tokens;
                    break;
                }
                // No room: preempt the most recently admitted request and retry.
                let Some(victim) = self.running.pop() else { break 'running };
                self.preempt(victim);
                preempted_any = true;
                if victim == slot {
                    break 'running;
                }
            }
            req_index += 1;
        }
        match self.admission {
            Admission::V0WholeSequence => self.admit_v0_chunked(token_budget),
            Admission::FirstChunk | Admission::FullSequence if !preempted_any => self.admit_v1(token_budget),
            Admission::FirstChunk | Admission::FullSequence => {}
        }
    }

    /// V1 admission: waiting requests FCFS while `max_num_seqs` and the budget allow, after their
    /// prefix-cache hit; the first that cannot get blocks (for its whole sequence under
    /// [`Admission::FullSequence`], for its chunk otherwise) or, without chunked prefill, does not
    /// fit the remaining budget whole, stops admission (head-of-line blocking).
    fn admit_v1(&mut self, mut token_budget: u32) {
        let full_sequence = self.admission == Admission::FullSequence;
        while token_budget > 0 && (self.running.len() as u32) < self.max_num_seqs {
            if self.outside_free_margin() {
                break;
            }
            let Some(&slot) = self.waiting.front() else { break };
            let Some(req) = self.slots[slot.0 as usize].as_mut() else { break };
            Self::provide_block_table(&mut self.spare_block_tables, req);
            let num_hit_tokens = self.kv_cache_manager.get_computed_blocks(req);
            let num_new_tokens = req.num_tokens() - num_hit_tokens;
            if !self.enable_chunked_prefill && num_new_tokens > token_budget {
                break;
            }
            if full_sequence && !self.kv_cache_manager.can_fit_full_sequence(req, num_hit_tokens) {
                break;
            }
            let num_new_tokens = num_new_tokens.min(token_budget);
            if self.kv_cache_manager.allocate_slots(req, num_new_tokens, num_hit_tokens).is_none() {
                break;
            }
            token_budget -= num_new_tokens;
            self.admit_head(num_hit_tokens, num_new_tokens);
        }
    }

    /// vLLM 0.6.4's `_schedule_prefills` with chunking: FCFS while `max_num_seqs` and the budget
    /// allow, each request needing the blocks of its whole sequence plus the watermark free
    /// (`can_allocate`, hits not credited) and getting all of them at once; its first chunk is
    /// scheduled now. Requests preempted earlier in this step wait behind the admission.
    fn admit_v0_chunked(&mut self, mut token_budget: u32) {
        let num_preempted = self.output.preempted.len().min(self.waiting.len());
        let held: Vec<Slot> = self.waiting.drain(..num_preempted).collect();
        while token_budget > 0 && (self.running.len() as u32) < self.max_num_seqs {
            let Some(&slot) = self.waiting.front() else { break };
            let Some(req) = self.slots[slot.0 as usize].as_mut() else { break };
            let num_tokens = req.num_tokens();
            let num_required_blocks = self.kv_cache_manager.num_blocks_for(num_tokens);
            if self.kv_cache_manager.num_free_blocks()
                < num_required_blocks.saturating_add(self.watermark_blocks)
            {
                break;
            }
            Self::provide_block_table(&mut self.spare_block_tables, req);
            let num_hit_tokens = self.kv_cache_manager.get_computed_blocks(req);
            let num_new_tokens = (num_tokens - num_hit_tokens).min(token_budget);
            let num_rest = num_tokens - num_hit_tokens - num_new_tokens;
            let allocated =
                self.kv_cache_manager.allocate_slots_reserving(req, num_new_tokens, num_hit_tokens, num_rest);
            if allocated.is_none() {
                break;
            }
            token_budget -= num_new_tokens;
            self.admit_head(num_hit_tokens, num_new_tokens);
        }
        for slot in held.into_iter().rev() {
            self.waiting.push_front(slot);
        }
    }
}
