//! Routing across the replicas of a model: one trait, used by the simulator and by the live LB.
//!
//! A router sees a snapshot of the candidate replicas and returns the index of its choice; it never
//! polls, sleeps or does I/O. The caller owns the snapshot: the simulator refreshes the polled part
//! every `poll_interval_s` of simulated time, the live proxy every poll of `/metrics`, and both keep
//! `in_flight` (the LB's own count) exact. That split is what makes stale-metric herding real in
//! both worlds. (vidur's global scheduler vs replica scheduler: this is the global one.)

mod policies;
mod prefix;

pub use policies::{LeastOutstanding, PowerOfTwo, QueueAware, RandomChoice, RoundRobin};
pub use prefix::{MAX_PREFIX_BLOCKS, PrefixAware};

use crate::engine::PromptContent;
use crate::ids::{InstanceId, ModelId};
use crate::scenario::{RouterPolicy, RouterSpec};

/// The request facts a router may look at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RouteRequest<'a> {
    /// The model asked for.
    pub model: ModelId,
    /// Prompt length in tokens.
    pub num_prompt_tokens: u32,
    /// Chained hashes of the prompt's leading blocks of `router.prefix_block_tokens` tokens (see
    /// [`route_block_hashes`]); empty unless the policy is prefix-aware.
    pub block_hashes: &'a [u64],
}

/// The block hashes a prefix-aware router of `spec` looks at for a prompt of `content` (the
/// simulator passes the request's described content, the LB and the emulator
/// [`PromptContent::from_token_ids`] of the ids they receive); empty for other policies, which
/// never look at them.
pub fn route_block_hashes(spec: &RouterSpec, content: &PromptContent) -> Vec<u64> {
    match spec.policy {
        RouterPolicy::PrefixAware => {
            content.block_hashes(spec.prefix.block_tokens).take(MAX_PREFIX_BLOCKS).collect()
        }
        _ => Vec::new(),
    }
}

/// Load figures last polled from an instance's `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PolledLoad {
    /// `vllm:num_requests_running`.
    pub running: u32,
    /// `vllm:num_requests_waiting`.
    pub waiting: u32,
    /// `vllm:kv_cache_usage_perc`, 0..1.
    pub kv_usage: f64,
}

/// One candidate replica as the LB sees it at routing time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicaSnapshot {
    /// The instance.
    pub instance: InstanceId,
    /// False while health checks have ejected it.
    pub healthy: bool,
    /// Requests this LB has sent to it and not yet seen finish (always fresh).
    pub in_flight: u32,
    /// Last poll of its `/metrics`, if any poll has succeeded yet.
    pub polled: Option<PolledLoad>,
}

/// A routing policy. `route` returns an index into `replicas`, or `None` when no healthy replica
/// exists. Implementations must be deterministic given their seed.
pub trait Router: Send {
    /// Picks a replica for `req` among `replicas` (all serve `req.model`).
    fn route(&mut self, req: &RouteRequest<'_>, replicas: &[ReplicaSnapshot]) -> Option<usize>;
}

/// Builds the router a scenario asks for. `seed` feeds the randomised policies.
pub fn build_router(spec: &RouterSpec, num_models: usize, seed: u64) -> Box<dyn Router> {
    match spec.policy {
        RouterPolicy::RoundRobin => Box::new(RoundRobin::new(num_models)),
        RouterPolicy::QueueAware => Box::new(QueueAware::new(spec.score)),
        RouterPolicy::LeastOutstanding => Box::new(LeastOutstanding),
        RouterPolicy::PowerOfTwo => Box::new(PowerOfTwo::new(seed)),
        RouterPolicy::Random => Box::new(RandomChoice::new(seed)),
        RouterPolicy::PrefixAware => {
            Box::new(PrefixAware::new(spec.prefix.block_tokens, spec.prefix.index_blocks))
        }
    }
}
