//! The V1 step rule (vLLM's `Scheduler.schedule` in `vllm/v1/core/sched/scheduler.py`): running
//! requests first, then waiting requests FCFS.
//!
//! Not modelled: speculative decoding, `long_prefill_token_threshold` (0 by default), the
//! priority policy, encoder inputs, KV connectors. Async scheduling is modelled around this rule
//! (deferred frees in `mod.rs`, held-back arrivals in `Instance`).
//!
//! transformers-cb runs this rule plus its free-block margin (`Scheduler::outside_free_margin`):
//! once fewer than 15% of the blocks are free, a step that has a request takes no still-prefilling
//! or waiting one. Its other differences are not modelled: it orders decodes before prefill
//! chunks, skips (rather than stops at) a waiting request whose blocks do not fit, and evicts
//! starved requests newest-first to the back of the queue (generation/continuous_batching/
//! scheduler.py `FIFOScheduler.schedule_batch`, offloading_manager.py `offload_requests`).

use super::Scheduler;

impl Scheduler {
    /// One V1 step. Running requests, in admission order, each get `num_tokens -
    /// num_computed_tokens` tokens capped by the remaining budget (a decode token or a prompt
    /// chunk); when one cannot get its blocks the newest running request is preempted and the
    /// allocation retried, and if it had to preempt itself the loop stops. Waiting requests are
    /// admitted only when nobody was preempted, while `max_num_seqs` and the budget allow, after
    /// their prefix-cache hit; the first that cannot get blocks (or, without chunked prefill,
    /// does not fit the remaining budget whole) stops admission (head-of-line blocking).
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
        if preempted_any {
            return;
        }
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
            let num_new_tokens = num_new_tokens.min(token_budget);
            if self.kv_cache_manager.allocate_slots(req, num_new_tokens, num_hit_tokens).is_none() {
                break;
            }
            token_budget -= num_new_tokens;
            self.admit_head(num_hit_tokens, num_new_tokens);
        }
    }
}
