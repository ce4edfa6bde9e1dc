//! What one scheduling step decided (`SchedulerOutput`, the batch features the step-time model
//! reads) and what applying it produced (`StepEvents`).
//!
//! Both are reused across steps: the scheduler clears and refills its output, the driver clears
//! its events; neither allocates in steady state. They hold no per-request detail beyond ids.

use crate::engine::request::Request;
use crate::ids::RequestId;
use crate::perf_model::BatchFeatures;
use crate::time::SimDuration;

/// One step's decisions and batch features (vLLM's `SchedulerOutput`, summarised).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulerOutput {
    /// Requests given tokens this step.
    pub num_scheduled_requests: u32,
    /// Tokens computed this step (never above `max_num_batched_tokens`).
    pub total_num_scheduled_tokens: u32,
    /// Tokens of requests still catching up (a prompt chunk or a recomputation, and any request
    /// admitted this step): every scheduled request except those computing exactly their one
    /// next token.
    pub num_prefill_tokens: u32,
    /// Requests computing a prefill chunk (see `num_prefill_tokens`).
    pub num_prefill_seqs: u32,
    /// Requests computing exactly their one next token (decodes).
    pub num_decode_seqs: u32,
    /// Requests admitted from the waiting queue this step (new or resumed).
    pub num_new_requests: u32,
    /// Context attention reads: sum over scheduled requests of `num_computed_tokens +
    /// num_new_tokens`.
    pub num_kv_tokens_read: u64,
    /// Quadratic attention work of prefill chunks: sum of `num_new_tokens * (num_computed_tokens
    /// + num_new_tokens / 2)`.
    pub num_prefill_attn_pairs: u64,
    /// Requests preempted (blocks freed, sent back to the waiting queue) during this step's
    /// scheduling, in preemption order.
    pub preempted: Vec<RequestId>,
}

impl SchedulerOutput {
    /// Whether the step computes nothing (possible right after a preemption; schedule again).
    pub fn is_empty(&self) -> bool {
        self.total_num_scheduled_tokens == 0
    }

    /// What the step-time model needs of this step; `max_seq_len` is left 0 (it costs a pass
    /// over the batch: see `Scheduler::scheduled_max_seq_len`).
    #[inline]
    pub fn batch_features(&self) -> BatchFeatures {
        BatchFeatures {
            num_scheduled_requests: self.num_scheduled_requests,
            num_prefill_tokens: self.num_prefill_tokens,
            num_decode_seqs: self.num_decode_seqs,
            num_kv_tokens_read: self.num_kv_tokens_read,
            num_prefill_attn_pairs: self.num_prefill_attn_pairs,
            max_seq_len: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        let mut preempted = std::mem::take(&mut self.preempted);
        preempted.clear();
        *self = SchedulerOutput { preempted, ..SchedulerOutput::default() };
    }

    /// Adds `req`, about to compute `num_new_tokens` from its current `num_computed_tokens`;
    /// `admitted` when it joins the batch this step (always a prefill, even of one token).
    #[inline]
    pub(crate) fn add(&mut self, req: &Request, num_new_tokens: u32, admitted: bool) {
        let computed = u64::from(req.num_computed_tokens);
        let n = u64::from(num_new_tokens);
        self.num_scheduled_requests += 1;
        self.total_num_scheduled_tokens += num_new_tokens;
        self.num_kv_tokens_read += computed + n;
        if num_new_tokens == 1 && req.num_computed_tokens >= req.num_prompt_tokens && !admitted {
            self.num_decode_seqs += 1;
        } else {
            self.num_prefill_seqs += 1;
            self.num_prefill_tokens += num_new_tokens;
            self.num_prefill_attn_pairs += n * computed + n * n / 2;
        }
    }
}

/// What applying one step produced; the driver clears it between steps.
#[derive(Clone, Debug, Default)]
pub struct StepEvents {
    /// Requests that produced their last token this step (status `Finished`, blocks freed), in
    /// running order.
    pub finished: Vec<Request>,
    /// Gaps between consecutive output tokens sampled this step, run-length encoded:
    /// `(gap, count)`; consecutive equal gaps share one entry.
    pub itl_gaps: Vec<(SimDuration, u32)>,
    /// `(request, output token index from 0)` of every token sampled, only while token recording
    /// is on (`Scheduler::set_record_tokens`).
    pub tokens: Vec<(RequestId, u32)>,
    /// Output tokens sampled this step.
    pub num_tokens_sampled: u64,
}

impl StepEvents {
    /// Empties every list, keeping their capacity.
    pub fn clear(&mut self) {
        self.finished.clear();
        self.itl_gaps.clear();
        self.tokens.clear();
        self.num_tokens_sampled = 0;
    }

    /// Records `count` inter-token gaps of `gap`.
    #[inline]
    pub(crate) fn push_itl_gaps(&mut self, gap: SimDuration, count: u32) {
        match self.itl_gaps.last_mut() {
            Some((g, c)) if *g == gap => *c += count,
            _ => self.itl_gaps.push((gap, count)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ModelId;
    use crate::time::SimTime;
    use crate::workload::RequestSpec;

    #[test]
    fn one_new_token_is_a_decode_unless_the_request_joins_the_batch_this_step() {
        let spec = RequestSpec {
            id: RequestId(0),
            phase: 0,
            arrival: SimTime::ZERO,
            model: ModelId(0),
            num_prompt_tokens: 32,
            max_tokens: 9,
            content: Default::default(),
        };
        let mut req = Request::new(&spec, SimTime::ZERO);
        req.num_output_tokens = 1;
        req.num_computed_tokens = 32;
        let mut out = SchedulerOutput::default();
        out.add(&req, 1, false);
        assert_eq!((out.num_decode_seqs, out.num_prefill_tokens), (1, 0));
        // A resumed request whose whole context but one token hit the prefix cache.
        out.add(&req, 1, true);
        assert_eq!((out.num_decode_seqs, out.num_prefill_seqs, out.num_prefill_tokens), (1, 1, 1));
        assert_eq!(out.num_kv_tokens_read, 66);
    }

    #[test]
    fn equal_consecutive_gaps_are_run_length_encoded() {
        let mut ev = StepEvents::default();
        for (g, count) in [(5, 1), (5, 2), (7, 1), (5, 1)] {
            ev.push_itl_gaps(SimDuration(g), count);
        }
        assert_eq!(ev.itl_gaps, [(SimDuration(5), 3), (SimDuration(7), 1), (SimDuration(5), 1)]);
        ev.clear();
        assert!(ev.itl_gaps.is_empty());
    }
}
