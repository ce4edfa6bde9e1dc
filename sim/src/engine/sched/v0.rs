//! The vLLM 0.6.4 step rule without chunked prefill (`vllm/core/scheduler.py`
//! `_schedule_default`): a step is a prefill step or a decode step, never both.
//!
//! Modelled as in 0.6.4: admission needs the whole sequence's blocks plus the 1% watermark free
//! (`BlockSpaceManager.can_allocate`, prefix hits not credited) and counts the whole prompt in the
//! token budget, cached tokens included (before vLLM PR #10128); decodes need one free block when
//! they cross a block boundary (`can_append_slots`, no watermark); preemption is by recompute of
//! the newest running request. Not modelled: swapping (only used for beam search / n > 1),
//! `scheduler_delay_factor` (0 by default), multi-step scheduling. Prefix-cache hits use the V1
//! lookup, whose cap (`num_tokens - 1`) matches V0's "all computed blocks but the last".

use super::Scheduler;

impl Scheduler {
    /// One V0 step: admit waiting requests whole (FCFS; stop at the first that does not fit the
    /// blocks, the budget or `max_num_seqs`); if none was admitted, decode every running request
    /// in order, preempting the newest when one needs a block.
    pub(super) fn schedule_v0(&mut self) {
        let mut num_batched_tokens = 0u32;
        let mut num_curr_seqs = self.running.len() as u32;
        while let Some(&slot) = self.waiting.front() {
            let Some(req) = self.slots[slot.0 as usize].as_mut() else { break };
            let num_tokens = req.num_tokens();
            let num_required_blocks = self.kv_cache_manager.num_blocks_for(num_tokens);
            if self.kv_cache_manager.num_free_blocks()
                < num_required_blocks.saturating_add(self.watermark_blocks)
            {
                break;
            }
            if num_batched_tokens.saturating_add(num_tokens) > self.max_num_batched_tokens
                || num_curr_seqs + 1 > self.max_num_seqs
            {
                break;
            }
            Self::provide_block_table(&mut self.spare_block_tables, req);
            let num_hit_tokens = self.kv_cache_manager.get_computed_blocks(req);
            let num_new_tokens = num_tokens - num_hit_tokens;
            if self.kv_cache_manager.allocate_slots(req, num_new_tokens, num_hit_tokens).is_none() {
                break;
            }
            num_batched_tokens += num_tokens;
            num_curr_seqs += 1;
            self.admit_head(num_hit_tokens, num_new_tokens);
        }
        if self.output.num_new_requests > 0 {
            return;
        }
        let mut index = 0;
        'running: while index < self.running.len() {
            let slot = self.running[index];
            loop {
                let Some(req) = self.slots[slot.0 as usize].as_mut() else { break 'running };
                let num_new_tokens = req.num_tokens() - req.num_computed_tokens;
                if num_new_tokens == 0 {
                    break;
                }
                if num_batched_tokens + num_new_tokens > self.max_num_batched_tokens {
                    break 'running;
                }
                if self.kv_cache_manager.allocate_slots(req, num_new_tokens, 0).is_some() {
                    req.num_scheduled_tokens = num_new_tokens;
                    self.output.add(req, num_new_tokens, false);
                    num_batched_tokens += num_new_tokens;
                    break;
                }
                let Some(victim) = self.running.pop() else { break 'running };
                self.preempt(victim);
                if victim == slot {
                    break 'running;
                }
            }
            index += 1;
        }
    }
}
