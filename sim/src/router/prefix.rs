//! Prefix-aware routing: send a request to the replica most likely to hold its leading KV blocks,
//! balanced against load, as llm-d's inference scheduler does in its "estimate" mode.
//!
//! What it follows (llm-d/llm-d-inference-scheduler, read at its default branch):
//! - `pkg/epp/framework/plugins/requestcontrol/dataproducer/approximateprefix/plugin.go` and
//!   `indexer.go`: the router keeps its *own approximate index* of which replica holds which
//!   prompt block hash, filled from what it routed (every block hash of the request is added to
//!   the chosen replica), an LRU of `lruCapacityPerServer` blocks per replica (default 31250,
//!   `types.go`), matched greedily from the first block (`matchLongestPrefix`), at most
//!   `defaultMaxPrefixBlocks` = 256 blocks. It never asks the engines what they hold, so it goes
//!   stale the same way the real cache diverges: evictions, preemptions and restarts are unseen.
//!   That is this policy's staleness, as the polled load is the queue-aware policy's.
//! - `scheduling/scorer/prefix/README.md`: prefix score = matched blocks / total blocks, in [0, 1].
//! - `scheduling/scorer/loadaware/load_aware.go`: load score = 0.5 when the last polled waiting
//!   queue is empty, down to 0 at `threshold` (default 128) waiting requests; stale between polls.
//! - `deploy/config/epp-estimate-prefix-cache-config.yaml`: both scorers with weight 1.0, then
//!   `max-score-picker`. Ties, which llm-d breaks at random, go here to the replica with the
//!   fewest LB-local in-flight requests, then the lowest index, so the policy is deterministic and
//!   first turns (which match nowhere) spread like least-outstanding.
//!
//! vLLM's production-stack router (`src/vllm_router/routers/routing_logic.py`,
//! `PrefixAwareRouter`) instead picks at random among the endpoints with the longest prefix match
//! in a hash trie of characters, with no eviction and no load term (its `SessionRouter` pins a
//! session id to an endpoint by consistent hashing). We follow llm-d because it balances against
//! load and models eviction; a request's prompt is what identifies its session here, no header.
//!
//! Block hashes come from the caller: the simulator hashes the request's described content, the
//! LB the prompt's token ids (both through `PromptContent::block_hashes`, so identical leading
//! blocks hash identically).

use super::{ReplicaSnapshot, RouteRequest, Router};
use crate::ids::InstanceId;
use std::collections::{BTreeMap, HashMap};

/// llm-d's `defaultMaxPrefixBlocks`: blocks of a request considered at most.
pub const MAX_PREFIX_BLOCKS: usize = 256;
/// llm-d's `QueueThresholdDefault` of the load-aware scorer (waiting requests scoring 0).
const QUEUE_THRESHOLD: f64 = 128.0;
/// Weights of the prefix and load scorers in llm-d's estimate-mode sample config.
const PREFIX_WEIGHT: f64 = 1.0;
const LOAD_WEIGHT: f64 = 1.0;

/// One replica's approximate cache: block hashes, least recently routed evicted first.
#[derive(Clone, Debug, Default)]
struct BlockLru {
    /// Hash -> last use tick.
    tick_of: HashMap<u64, u64>,
    /// Tick -> hash, oldest first.
    by_tick: BTreeMap<u64, u64>,
}

impl BlockLru {
    fn contains(&self, h: u64) -> bool {
        self.tick_of.contains_key(&h)
    }

    fn touch(&mut self, h: u64, tick: u64, capacity: usize) {
        if let Some(old) = self.tick_of.insert(h, tick) {
            self.by_tick.remove(&old);
        }
        self.by_tick.insert(tick, h);
        while self.tick_of.len() > capacity {
            let Some((_, evicted)) = self.by_tick.pop_first() else { break };
            self.tick_of.remove(&evicted);
        }
    }
}

/// Prefix-cache affinity balanced against the polled waiting queue (see the module doc).
#[derive(Clone, Debug)]
pub struct PrefixAware {
    /// Tokens per hashed block (the caller hashes by this size).
    block_tokens: u32,
    /// Blocks remembered per replica.
    capacity: usize,
    index: HashMap<InstanceId, BlockLru>,
    tick: u64,
}

impl PrefixAware {
    /// An empty index remembering `index_blocks` blocks of `block_tokens` tokens per replica.
    pub fn new(block_tokens: u32, index_blocks: u32) -> Self {
        PrefixAware {
            block_tokens: block_tokens.max(1),
            capacity: index_blocks.max(1) as usize,
            index: HashMap::new(),
            tick: 0,
        }
    }

    /// Leading blocks of `hashes` the index places on `instance`.
    pub fn matched_blocks(&self, instance: InstanceId, hashes: &[u64]) -> usize {
        self.index.get(&instance).map_or(0, |lru| hashes.iter().take_while(|&&h| lru.contains(h)).count())
    }

    fn score(&self, req: &RouteRequest<'_>, hashes: &[u64], r: &ReplicaSnapshot) -> f64 {
        // Total blocks of the prompt: the simulator hashes only described content, the LB all.
        let total =
            hashes.len().max((req.num_prompt_tokens / self.block_tokens) as usize).min(MAX_PREFIX_BLOCKS);
        let prefix =
            if total == 0 { 0.0 } else { self.matched_blocks(r.instance, hashes) as f64 / total as f64 };
        let waiting = r.polled.map_or(0.0, |p| f64::from(p.waiting)).min(QUEUE_THRESHOLD);
        let load = 0.5 * (1.0 - waiting / QUEUE_THRESHOLD);
        PREFIX_WEIGHT * prefix + LOAD_WEIGHT * load
    }
}

impl Router for PrefixAware {
    fn route(&mut self, req: &RouteRequest<'_>, replicas: &[ReplicaSnapshot]) -> Option<usize> {
        let hashes = &req.block_hashes[..req.block_hashes.len().min(MAX_PREFIX_BLOCKS)];
        let mut best: Option<(usize, f64, u32)> = None;
        for (i, r) in replicas.iter().enumerate() {
            if !r.healthy {
                continue;
            }
            let s = self.score(req, hashes, r);
            let better = best.is_none_or(|(_, bs, bf)| s > bs || (s == bs && r.in_flight < bf));
            if better {
                best = Some((i, s, r.in_flight));
            }
        }
        let (pick, _, _) = best?;
        // llm-d's PreRequest: the chosen replica now holds every block of the request.
        let lru = self.index.entry(replicas[pick].instance).or_default();
        for &h in hashes {
            self.tick += 1;
            lru.touch(h, self.tick, self.capacity);
        }
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PromptContent;
    use crate::ids::ModelId;
    use crate::router::PolledLoad;

    fn replicas(in_flight: &[u32], waiting: &[u32]) -> Vec<ReplicaSnapshot> {
        in_flight
            .iter()
            .zip(waiting)
            .enumerate()
            .map(|(i, (&f, &w))| ReplicaSnapshot {
                instance: InstanceId(i as u32),
                healthy: true,
                in_flight: f,
                polled: Some(PolledLoad { running: 0, waiting: w, kv_usage: 0.0 }),
            })
            .collect()
    }

    fn prompt(stream: u32, len: u32) -> Vec<u64> {
        let ids: Vec<u32> = (0..len).map(|t| t.wrapping_mul(31).wrapping_add(stream * 1000)).collect();
        PromptContent::from_token_ids(&ids, 16).block_hashes(16).collect()
    }

    fn req(h: &[u64]) -> RouteRequest<'_> {
        RouteRequest { model: ModelId(0), num_prompt_tokens: (h.len() * 16) as u32, block_hashes: h }
    }

    #[test]
    fn a_repeated_prefix_goes_where_it_went_before_even_when_that_replica_is_busier() {
        let mut p = PrefixAware::new(16, 1000);
        let a = prompt(1, 640);
        assert_eq!(p.route(&req(&a), &replicas(&[0, 0], &[0, 0])), Some(0));
        // Replica 0 now has more in flight and a few waiting, but holds the prefix.
        assert_eq!(p.route(&req(&a), &replicas(&[5, 0], &[3, 0])), Some(0));
        // A new prompt matches nowhere: the tie goes to the fewest in flight.
        let b = prompt(2, 640);
        assert_eq!(p.route(&req(&b), &replicas(&[5, 0], &[0, 0])), Some(1));
    }

    #[test]
    fn a_long_waiting_queue_outweighs_a_weak_match() {
        let mut p = PrefixAware::new(16, 1000);
        let a = prompt(1, 64);
        p.route(&req(&a), &replicas(&[0, 1], &[0, 0]));
        // Only 4 of 40 blocks match on replica 0, whose queue is at the threshold.
        let mut longer = a.clone();
        longer.extend(prompt(3, 576));
        assert_eq!(p.route(&req(&longer), &replicas(&[0, 0], &[128, 0])), Some(1));
    }

    #[test]
    fn the_index_forgets_the_least_recently_routed_blocks_beyond_its_capacity() {
        let mut p = PrefixAware::new(16, 8);
        let a = prompt(1, 128);
        let b = prompt(2, 128);
        p.route(&req(&a), &replicas(&[0], &[0]));
        assert_eq!(p.matched_blocks(InstanceId(0), &a), 8);
        p.route(&req(&b), &replicas(&[0], &[0]));
        assert_eq!(p.matched_blocks(InstanceId(0), &a), 0, "a's blocks were evicted by b's");
        assert_eq!(p.matched_blocks(InstanceId(0), &b), 8);
    }

    #[test]
    fn unhealthy_replicas_are_skipped_even_when_they_hold_the_prefix() {
        let mut p = PrefixAware::new(16, 100);
        let a = prompt(1, 160);
        p.route(&req(&a), &replicas(&[0, 0], &[0, 0]));
        let mut r = replicas(&[0, 3], &[0, 0]);
        r[0].healthy = false;
        assert_eq!(p.route(&req(&a), &r), Some(1));
        r[1].healthy = false;
        assert_eq!(p.route(&req(&a), &r), None);
    }
}
