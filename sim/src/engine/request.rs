//! One request inside an engine instance: vLLM's `vllm/v1/request.py` `Request`, reduced to token
//! counts (no token ids), plus the latency facts the driver reports.
//!
//! The request owns its KV block table (vLLM keeps it in a map keyed by request id inside the
//! KV cache manager; here it travels with the request). It does not schedule itself or touch the
//! block pool: `Scheduler` and `KvCacheManager` do.

use crate::engine::content::PromptContent;
use crate::ids::{BlockId, ModelId, RequestId};
use crate::time::{SimDuration, SimTime};
use crate::workload::RequestSpec;

/// Where a request is in its life (vLLM's `RequestStatus`, without the `FINISHED_*` variants:
/// here a request only ever finishes by reaching `max_tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    /// Queued, never scheduled yet.
    Waiting,
    /// In the running batch (holding KV blocks).
    Running,
    /// Evicted from the running batch (blocks freed), queued to be recomputed.
    Preempted,
    /// Produced `max_tokens` tokens; its blocks are freed.
    Finished,
}

/// One request as the engine sees it: vLLM's rule is that `num_computed_tokens` catches up with
/// `num_tokens()` step by step; whenever it has caught up the step samples one output token.
///
/// Layout: `repr(C)` with the fields every step reads or writes first, aligned to a 64-byte
/// cache line, so the per-step hot path touches one line per request.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Request {
    /// Tokens whose KV is computed (or was found in the prefix cache).
    pub num_computed_tokens: u32,
    /// Tokens scheduled in the step in flight (0 when not scheduled).
    pub(crate) num_scheduled_tokens: u32,
    /// Prompt length in tokens.
    pub num_prompt_tokens: u32,
    /// Output tokens sampled so far.
    pub num_output_tokens: u32,
    /// Output tokens to generate (the request finishes exactly there: `ignore_eos`).
    pub max_tokens: u32,
    /// Tokens this request can have computed without `allocate_slots` touching the block pool:
    /// those its blocks hold, and with prefix caching short of filling its next block (a
    /// derived value `KvCacheManager` keeps, for the decode fast path).
    pub(crate) alloc_limit: u32,
    /// Life-cycle state.
    pub status: RequestStatus,
    /// When the latest output token was sampled.
    pub last_token_time: Option<SimTime>,
    /// Sum of the gaps between consecutive output tokens.
    pub itl_sum: SimDuration,
    /// Largest gap between consecutive output tokens.
    pub itl_max: SimDuration,
    /// KV blocks holding this request's tokens, in token order (vLLM's `req_to_blocks`).
    pub(crate) block_table: Vec<BlockId>,
    /// Leading blocks of `block_table` already registered in the prefix cache
    /// (vLLM's `num_cached_block`).
    pub(crate) num_cached_blocks: u32,
    /// When the first output token was sampled.
    pub first_token_time: Option<SimTime>,
    /// Issue-order id.
    pub request_id: RequestId,
    /// When the request reached this engine.
    pub arrival_time: SimTime,
    /// What its leading tokens hold, for prefix caching: nothing shared (no block hashed), a
    /// shared prefix group, or described segments (see `engine::content`).
    pub content: PromptContent,
    /// Times this request was preempted (and later recomputed).
    pub num_preemptions: u32,
    /// The model asked for (for the driver's rows; the engine ignores it).
    pub model: ModelId,
    /// Workload phase that issued it (for the driver's rows; the engine ignores it).
    pub phase: u32,
    /// Prefix-cache hit tokens at the FIRST scheduling (vLLM's `num_cached_tokens`); `None` until
    /// then.
    pub num_cached_tokens: Option<u32>,
    /// The block table held when the request was last preempted: with prefix caching those
    /// blocks stay cached until evicted, so recomputation can hit them.
    pub(crate) preempted_blocks: Vec<BlockId>,
}

impl Request {
    /// A fresh, waiting request for `spec`, arrived at `arrival_time`.
    pub fn new(spec: &RequestSpec, arrival_time: SimTime) -> Request {
        Request {
            request_id: spec.id,
            arrival_time,
            num_prompt_tokens: spec.num_prompt_tokens,
            max_tokens: spec.max_tokens,
            content: spec.content.clone(),
            model: spec.model,
            phase: spec.phase,
            num_computed_tokens: 0,
            num_output_tokens: 0,
            status: RequestStatus::Waiting,
            num_preemptions: 0,
            num_cached_tokens: None,
            first_token_time: None,
            last_token_time: None,
            itl_sum: SimDuration::ZERO,
            itl_max: SimDuration::ZERO,
            block_table: Vec::new(),
            preempted_blocks: Vec::new(),
            num_cached_blocks: 0,
            alloc_limit: 0,
            num_scheduled_tokens: 0,
        }
    }

    /// Prompt plus generated tokens (vLLM's `num_tokens`).
    #[inline]
    pub fn num_tokens(&self) -> u32 {
        self.num_prompt_tokens + self.num_output_tokens
    }

    /// Whether the request has produced all its tokens.
    pub fn is_finished(&self) -> bool {
        self.status == RequestStatus::Finished
    }

    /// Number of KV blocks the request holds now.
    pub fn num_blocks(&self) -> usize {
        self.block_table.len()
    }

    /// Records one sampled output token at `now`; returns the gap since the previous token, if
    /// any. Does not check `max_tokens`.
    pub(crate) fn append_output_token(&mut self, now: SimTime) -> Option<SimDuration> {
        self.num_output_tokens += 1;
        let gap = self.last_token_time.map(|last| now - last);
        if let Some(gap) = gap {
            self.itl_sum += gap;
            self.itl_max = self.itl_max.max(gap);
        } else {
            self.first_token_time = Some(now);
        }
        self.last_token_time = Some(now);
        gap
    }
}

#[cfg(test)]
impl Request {
    /// A waiting request for unit tests: `prompt` tokens, at most `max_tokens` output tokens,
    /// model 0, arrived at time zero.
    pub(crate) fn for_test(
        id: u64,
        prompt: u32,
        max_tokens: u32,
        prefix: Option<crate::workload::PrefixRef>,
    ) -> Request {
        let spec = RequestSpec {
            id: RequestId(id),
            phase: 0,
            arrival: SimTime::ZERO,
            model: ModelId(0),
            num_prompt_tokens: prompt,
            max_tokens,
            content: PromptContent::from(prefix),
        };
        Request::new(&spec, SimTime::ZERO)
    }

    /// `self` with its leading tokens described by `content`.
    pub(crate) fn with_content(mut self, content: PromptContent) -> Request {
        self.content = content;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RequestSpec {
        RequestSpec {
            id: RequestId(7),
            phase: 0,
            arrival: SimTime(5),
            model: ModelId(0),
            num_prompt_tokens: 100,
            max_tokens: 3,
            content: PromptContent::Unique,
        }
    }

    #[test]
    fn a_new_request_waits_with_nothing_computed() {
        let r = Request::new(&spec(), SimTime(9));
        assert_eq!(r.status, RequestStatus::Waiting);
        assert_eq!(r.num_tokens(), 100);
        assert_eq!(r.arrival_time, SimTime(9));
        assert_eq!(r.num_cached_tokens, None);
    }

    #[test]
    fn output_tokens_record_first_token_time_and_gaps() {
        let mut r = Request::new(&spec(), SimTime(0));
        assert_eq!(r.append_output_token(SimTime(10)), None);
        assert_eq!(r.append_output_token(SimTime(13)), Some(SimDuration(3)));
        assert_eq!(r.append_output_token(SimTime(20)), Some(SimDuration(7)));
        assert_eq!(r.first_token_time, Some(SimTime(10)));
        assert_eq!(r.last_token_time, Some(SimTime(20)));
        assert_eq!(r.itl_sum, SimDuration(10));
        assert_eq!(r.itl_max, SimDuration(7));
        assert_eq!(r.num_tokens(), 103);
    }
}
