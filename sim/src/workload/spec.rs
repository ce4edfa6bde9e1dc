//! One generated request, as the simulator and the live harness both send it.

use crate::engine::PromptContent;
use crate::ids::{ModelId, RequestId};
use crate::time::SimTime;
use serde::{Deserialize, Serialize};

/// A shared prompt prefix (system prompt): requests with the same `group` start with the same
/// `num_tokens` tokens, so their full KV blocks over that span hash identically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrefixRef {
    /// Identity of the prefix, unique across models.
    pub group: u64,
    /// Length of the shared prefix in tokens (never more than the prompt).
    pub num_tokens: u32,
}

/// One request of the stream: the same for every variant of a scenario and for sim and live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// Issue-order id, from 0.
    pub id: RequestId,
    /// Workload phase index.
    pub phase: u32,
    /// Scheduled issue time.
    pub arrival: SimTime,
    /// Model asked for.
    pub model: ModelId,
    /// Prompt length in tokens.
    pub num_prompt_tokens: u32,
    /// Output tokens to generate (`max_tokens` = `min_tokens`, `ignore_eos`).
    pub max_tokens: u32,
    /// What its leading tokens share with other requests (a synthetic prefix group, a trace's
    /// block hash ids, a session's context): the engine's prefix cache hashes its blocks from
    /// this, and the live client draws the same token ids for the same described content.
    pub content: PromptContent,
}
