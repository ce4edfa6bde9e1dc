//! The prefix-cache hit rate a request stream allows: what a cache of a given size could serve if
//! requests ran one at a time in issue order. The simulator's (and vLLM's) rate can only be lower:
//! concurrent requests sharing a prefix that is still being computed miss it, and running
//! requests pin blocks the cache could otherwise keep. Used to check a replayed trace's simulated
//! hit rate against what its block ids allow (README, "Replaying traces").
//!
//! Counting follows vLLM (v1/core/kv_cache_manager.py `get_computed_blocks`, `free`): a request
//! queries its prompt tokens; hits are its leading full blocks already cached, capped at
//! `prompt - 1` tokens; afterwards every full block of its prompt and output is cached, and blocks
//! are evicted least recently used, a request's later blocks first.

use super::spec::RequestSpec;
use std::collections::{BTreeMap, HashMap};

/// Tokens a stream queries and the most a prefix cache could serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReuseBound {
    /// Prompt tokens of the requests counted.
    pub queried_tokens: u64,
    /// Of those, tokens in leading blocks some earlier request left in the cache.
    pub hit_tokens: u64,
}

impl ReuseBound {
    /// `hit_tokens / queried_tokens` (None when nothing was queried).
    pub fn hit_rate(&self) -> Option<f64> {
        (self.queried_tokens > 0).then(|| self.hit_tokens as f64 / self.queried_tokens as f64)
    }
}

/// An LRU set of block hashes holding at most `capacity` blocks (`None`: unbounded).
struct Lru {
    capacity: Option<u64>,
    stamp_of: HashMap<u64, u64>,
    by_stamp: BTreeMap<u64, u64>,
    next: u64,
}

impl Lru {
    fn touch(&mut self, hash: u64, stamp: u64) {
        if let Some(old) = self.stamp_of.insert(hash, stamp) {
            self.by_stamp.remove(&old);
        }
        self.by_stamp.insert(stamp, hash);
        while self.capacity.is_some_and(|c| self.stamp_of.len() as u64 > c) {
            let Some((_, h)) = self.by_stamp.pop_first() else { break };
            self.stamp_of.remove(&h);
        }
    }
}

/// The reuse bound of `requests` (in issue order) on a cache of `cache_blocks` blocks of
/// `block_size` tokens (`None`: infinite). Only requests `admit` accepts are counted (e.g. those
/// within `max_model_len`); a request's tokens past its described content are its own.
pub fn prefix_reuse_bound<'a>(
    requests: impl IntoIterator<Item = &'a RequestSpec>,
    block_size: u32,
    cache_blocks: Option<u64>,
    mut admit: impl FnMut(&RequestSpec) -> bool,
) -> ReuseBound {
    let block_size = block_size.max(1);
    let mut lru =
        Lru { capacity: cache_blocks, stamp_of: HashMap::new(), by_stamp: BTreeMap::new(), next: 0 };
    let mut bound = ReuseBound::default();
    for (n, r) in requests.into_iter().filter(|r| admit(r)).enumerate() {
        let shared: Vec<u64> = r.content.block_hashes(block_size).collect();
        let max_hit = ((r.num_prompt_tokens.saturating_sub(1)) / block_size) as usize;
        let hit = shared.iter().take(max_hit).take_while(|h| lru.stamp_of.contains_key(h)).count();
        bound.queried_tokens += u64::from(r.num_prompt_tokens);
        bound.hit_tokens += hit as u64 * u64::from(block_size);
        // Every full block of prompt + output is cached; blocks past the shared content get
        // identities no other request has. Later blocks get older stamps (evicted first).
        let total = ((r.num_prompt_tokens + r.max_tokens) / block_size) as u64;
        let unique = (0..total.saturating_sub(shared.len() as u64)).map(|i| own_hash(n as u64, i));
        let blocks: Vec<u64> = shared.into_iter().chain(unique).collect();
        let base = lru.next;
        lru.next += blocks.len() as u64;
        for (i, h) in blocks.iter().enumerate() {
            lru.touch(*h, base + (blocks.len() - 1 - i) as u64);
        }
    }
    bound
}

/// The reuse bounds of one model of a scenario (see [`scenario_reuse_bounds`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelReuse {
    /// The model's scenario key.
    pub model: String,
    /// With an infinite cache.
    pub infinite: ReuseBound,
    /// With one LRU cache as large as all the model's replicas' static KV caches together.
    pub finite: ReuseBound,
    /// That cache's size in blocks.
    pub cache_blocks: u64,
}

/// The reuse bounds of every model served with prefix caching on, for a scenario whose phases
/// are all open loop and whose requests carry described content (a trace's block ids or the
/// synthetic prefix); empty otherwise. Requests longer than the model's smallest `max_model_len`
/// are left out (rejected). Several replicas are taken as one cache of their summed size: an
/// upper bound for any routing.
pub fn scenario_reuse_bounds(
    scenario: &crate::scenario::Scenario,
    base_dir: &std::path::Path,
) -> Result<Vec<ModelReuse>, super::WorkloadError> {
    use crate::scenario::ArrivalSpec;
    if scenario.workload.phases.iter().any(|p| matches!(p.arrival, ArrivalSpec::ClosedLoop { .. })) {
        return Ok(Vec::new());
    }
    let mut g = crate::simulation::scenario_workload(scenario, base_dir)?;
    let requests: Vec<RequestSpec> = std::iter::from_fn(|| g.pop()).collect();
    if requests.iter().all(|r| r.content.num_shared_tokens() == 0) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (m, model) in scenario.models.iter().enumerate() {
        let replicas: Vec<_> = scenario
            .instances
            .iter()
            .filter(|i| i.model.index() == m && i.engine.enable_prefix_caching)
            .collect();
        let Some(first) = replicas.first() else { continue };
        let block_size = first.engine.block_size;
        let max_len = replicas.iter().map(|i| i.engine.max_model_len).min().unwrap_or(0);
        let cache_blocks: u64 = replicas
            .iter()
            .map(|i| {
                let budget =
                    crate::cluster::static_kv_budget(model, &scenario.gpus[i.gpu.index()], &i.engine);
                u64::from(budget.num_gpu_blocks)
            })
            .sum();
        let mine = || requests.iter().filter(|r| r.model.index() == m);
        let admit = |r: &RequestSpec| r.num_prompt_tokens.saturating_add(r.max_tokens) <= max_len;
        out.push(ModelReuse {
            model: model.name.clone(),
            infinite: prefix_reuse_bound(mine(), block_size, None, admit),
            finite: prefix_reuse_bound(mine(), block_size, Some(cache_blocks), admit),
            cache_blocks,
        });
    }
    Ok(out)
}

/// An identity for block `index` of the `n`-th request's own (unshared) tokens.
fn own_hash(n: u64, index: u64) -> u64 {
    // Odd constant multiply + rotate: distinct (n, index) pairs give distinct values with
    // overwhelming probability against the content hashes' 64-bit mixes.
    (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index.rotate_left(40)).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PromptContent;
    use crate::ids::{ModelId, RequestId};
    use crate::time::SimTime;

    fn req(id: u64, blocks: &[u64], prompt: u32, output: u32) -> RequestSpec {
        RequestSpec {
            id: RequestId(id),
            phase: 0,
            arrival: SimTime::ZERO,
            model: ModelId(0),
            num_prompt_tokens: prompt,
            max_tokens: output,
            content: PromptContent::trace_blocks(blocks, 32, prompt),
        }
    }

    #[test]
    fn with_an_infinite_cache_hits_are_the_leading_blocks_seen_before() {
        let reqs = [req(0, &[1, 2, 3], 96, 1), req(1, &[1, 2, 4], 96, 1), req(2, &[5, 2, 3], 96, 1)];
        let b = prefix_reuse_bound(&reqs, 16, None, |_| true);
        // Request 1 shares trace blocks 1, 2 = 64 tokens = 4 engine blocks; request 2 nothing.
        assert_eq!(b, ReuseBound { queried_tokens: 288, hit_tokens: 64 });
        let again = [req(0, &[1, 2], 64, 1), req(1, &[1, 2], 64, 1)];
        assert_eq!(prefix_reuse_bound(&again, 16, None, |_| true).hit_tokens, 48, "capped at prompt - 1");
        assert_eq!(
            prefix_reuse_bound(&again, 16, None, |r| r.id.0 == 1).hit_tokens,
            0,
            "only admitted count"
        );
    }

    #[test]
    fn a_small_cache_evicts_the_least_recently_used_blocks() {
        let reqs = [req(0, &[1], 32, 1), req(1, &[2], 32, 1), req(2, &[1], 32, 1)];
        assert_eq!(prefix_reuse_bound(&reqs, 16, None, |_| true).hit_tokens, 16);
        // Two blocks of room: request 1's blocks push request 0's out.
        assert_eq!(prefix_reuse_bound(&reqs, 16, Some(2), |_| true).hit_tokens, 0);
        assert_eq!(prefix_reuse_bound(&reqs, 16, Some(4), |_| true).hit_tokens, 16);
    }
}
