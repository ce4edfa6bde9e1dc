//! vLLM's `KVCacheManager` (`vllm/v1/core/kv_cache_manager.py`) for one full-attention KV cache
//! group: finds prefix-cache hits, allocates blocks for the tokens a step computes, registers
//! blocks as they fill, and frees a request's blocks.
//!
//! Prefix caching is by content, as in vLLM: a request's leading blocks are looked up by the
//! chained hashes of their tokens (`engine::content`, vLLM's `hash_block_tokens`), so two requests
//! share KV exactly where their leading blocks hold the same tokens, whoever produced them.
//! Requests without described content hash nothing and keep every block private (the fast path).
//!
//! The request owns its block table; the manager owns the [`BlockPool`]. The number of usable
//! blocks lives behind one seam, the manager's `capacity` (all blocks for static KV), which every
//! "is there room" decision reads through `num_free_blocks`. Elastic KV (kvcached, see
//! [`ElasticPages`]) groups the blocks in pages mapped on demand: its capacity is the page budget
//! the GPU's shared pool grants (`set_page_budget`), so an exhausted pool makes `allocate_slots`
//! fail and the scheduler preempt exactly as with static KV. It does not decide who runs (that is
//! the `Scheduler`) and has no notion of time.

mod block_pool;
mod elastic;

pub use block_pool::{
    BlockHash, BlockPool, ElasticOps, FreeKVCacheBlockQueue, IdentityHasher, KVCacheBlock, PoolKind, PoolOps,
    StaticOps,
};
pub use elastic::{ElasticPages, ElasticParams};

use crate::engine::content::{PrefixHashCache, PromptContent};
use crate::engine::request::Request;
use crate::ids::BlockId;

/// Allocates and frees one instance's KV blocks; see the module doc.
#[derive(Clone, Debug)]
pub struct KvCacheManager {
    block_size: u32,
    /// `log2(block_size)` when it is a power of two (always, in practice): divisions become
    /// shifts on the hot paths.
    block_shift: Option<u32>,
    enable_caching: bool,
    block_pool: BlockPool,
    /// Blocks that may be in use at once (the elastic-KV seam); `num_gpu_blocks` when static.
    capacity: u32,
    /// Blocks found by the last `get_computed_blocks`, consumed by the next `allocate_slots`
    /// (vLLM passes them as `new_computed_blocks`; a scratch buffer here avoids allocation).
    new_computed_blocks: Vec<BlockId>,
    /// Chained hashes of the synthetic prefix groups, computed once per group.
    prefix_hashes: PrefixHashCache,
}

impl KvCacheManager {
    /// A manager over `num_gpu_blocks` blocks of `block_size` tokens (at least 1);
    /// `enable_caching` is vLLM's `enable_prefix_caching`.
    pub fn new(num_gpu_blocks: u32, block_size: u32, enable_caching: bool) -> Self {
        KvCacheManager {
            block_size: block_size.max(1),
            block_shift: block_size.max(1).is_power_of_two().then(|| block_size.max(1).trailing_zeros()),
            enable_caching,
            block_pool: BlockPool::new(num_gpu_blocks),
            capacity: num_gpu_blocks,
            new_computed_blocks: Vec::new(),
            prefix_hashes: PrefixHashCache::default(),
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Full blocks in `num_tokens` tokens (`num_tokens / block_size`).
    #[inline]
    pub fn num_full_blocks(&self, num_tokens: u32) -> u32 {
        match self.block_shift {
            Some(shift) => num_tokens >> shift,
            None => num_tokens / self.block_size,
        }
    }

    /// Blocks needed to hold `num_tokens` tokens (`ceil(num_tokens / block_size)`).
    #[inline]
    pub fn num_blocks_for(&self, num_tokens: u32) -> u32 {
        match self.block_shift {
            Some(shift) => (num_tokens >> shift) + u32::from(num_tokens & (self.block_size - 1) != 0),
            None => num_tokens.div_ceil(self.block_size),
        }
    }

    /// Whether prefix caching is on.
    pub fn enable_caching(&self) -> bool {
        self.enable_caching
    }

    /// Total blocks.
    pub fn num_gpu_blocks(&self) -> u32 {
        self.block_pool.num_blocks()
    }

    /// Blocks allocatable now (free, including cached-but-unreferenced ones), within the
    /// capacity.
    #[inline]
    pub fn num_free_blocks(&self) -> u32 {
        self.capacity.saturating_sub(self.block_pool.num_used_blocks())
    }

    /// Blocks an allocation can take without mapping a page: [`KvCacheManager::num_free_blocks`]
    /// when static; when elastic, only the free blocks on pages mapped now (the reserve
    /// included), which never evict a cached block either. Decode stretches stay within it.
    #[inline]
    pub fn num_free_blocks_without_mapping(&self) -> u32 {
        self.num_free_blocks().min(self.block_pool.kind().num_blocks_before_mapping())
    }

    /// Elastic: free blocks on mapped pages that hold some block, i.e. those allocations take
    /// before touching an empty (reserve) page; `u32::MAX` when static (no pages).
    #[inline]
    pub fn num_free_blocks_on_used_pages(&self) -> u32 {
        self.block_pool.kind().num_blocks_before_reserve()
    }

    /// Whether the KV cache is elastic (kvcached pages).
    #[inline]
    pub fn is_elastic(&self) -> bool {
        self.block_pool.kind().is_elastic()
    }

    /// Blocks that may be in use at once.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Sets how many blocks may be in use at once, at most `num_gpu_blocks` (the seam for elastic
    /// KV). Shrinking below the blocks in use frees nothing: it only refuses allocations until
    /// enough blocks are freed.
    pub fn set_capacity(&mut self, num_blocks: u32) {
        self.capacity = num_blocks.min(self.num_gpu_blocks());
    }

    /// Switches this manager, which must hold no block yet, to elastic KV (kvcached): the blocks
    /// are grouped in pages of `params.blocks_per_page`, none mapped, and the page budget is every
    /// page until [`KvCacheManager::set_page_budget`] says otherwise.
    pub fn enable_elastic(&mut self, params: ElasticParams) {
        self.block_pool.enable_elastic(params);
        self.capacity = self.num_gpu_blocks();
    }

    /// The page table, when elastic.
    pub fn elastic(&self) -> Option<&ElasticPages> {
        self.block_pool.kind().pages()
    }

    /// Elastic: lets at most `pages` pages be mapped at once (what the GPU's pool grants, pages
    /// already mapped included); the capacity becomes `pages x blocks_per_page`. No-op when static.
    pub fn set_page_budget(&mut self, pages: u32) {
        self.capacity = self.block_pool.kind_mut().set_page_budget(pages, self.capacity);
    }

    /// Elastic: the background pre-allocation maps empty pages up to the reserve's minimum, at most
    /// `grant`; returns the pages mapped (0 when static).
    pub fn refill_reserve(&mut self, grant: u32) -> u32 {
        self.block_pool.kind_mut().refill_reserve(grant)
    }

    /// Elastic: pages mapped by allocations since the last call, each paying the map latency
    /// (0 when static).
    pub fn take_num_demand_maps(&mut self) -> u32 {
        self.block_pool.kind_mut().take_num_demand_maps()
    }

    /// Elastic: unmaps every empty page (kvcached's `trim`); returns how many (0 when static).
    pub fn trim(&mut self) -> u32 {
        self.block_pool.kind_mut().trim()
    }

    /// KV cache usage in `0..=1` (vLLM's `usage`, the `kv_cache_usage_perc` gauge).
    pub fn usage(&self) -> f64 {
        self.block_pool.usage()
    }

    /// The block pool (read-only).
    pub fn block_pool(&self) -> &BlockPool {
        &self.block_pool
    }

    /// The longest run of cached full blocks at the start of `req`, capped so the last token is
    /// always recomputed (vLLM's `get_computed_blocks`, `max_cache_hit_length = num_tokens - 1`).
    /// Blocks of described content are looked up by their chained hashes, stopping at the first
    /// miss (`find_longest_cache_hit`); past them, only the request itself can hold its blocks
    /// (after a preemption). Returns the number of hit tokens (a multiple of the block size) and
    /// keeps the blocks for the next [`KvCacheManager::allocate_slots`]. Zero when prefix caching
    /// is off.
    pub fn get_computed_blocks(&mut self, req: &Request) -> u32 {
        self.new_computed_blocks.clear();
        if !self.enable_caching {
            return 0;
        }
        let max_blocks = self.num_full_blocks(req.num_tokens().saturating_sub(1));
        let shared_blocks = self.num_shared_blocks(req).min(max_blocks) as usize;
        if shared_blocks > 0 {
            // find_longest_cache_hit: leading blocks whose hashes are cached, up to the first miss.
            let pool = &self.block_pool;
            let found = &mut self.new_computed_blocks;
            let mut hit = |hash: u64| match pool.get_cached_block(hash) {
                Some(b) => {
                    found.push(b);
                    true
                }
                None => false,
            };
            match &req.content {
                PromptContent::Prefix(p) => {
                    let hashes = self.prefix_hashes.block_hashes(p.group, self.block_size, shared_blocks);
                    for &hash in hashes {
                        if !hit(hash) {
                            break;
                        }
                    }
                }
                content => {
                    for hash in content.block_hashes(self.block_size).take(shared_blocks) {
                        if !hit(hash) {
                            break;
                        }
                    }
                }
            }
            if self.new_computed_blocks.len() < shared_blocks {
                return self.num_new_computed_tokens();
            }
        }
        // Past the shared content only the request itself can hold its blocks: look them up in
        // the table it had when preempted, valid while the block still carries its identity.
        let start = self.new_computed_blocks.len();
        for index in start..max_blocks as usize {
            let Some(&b) = req.preempted_blocks.get(index) else { break };
            let expected = BlockHash::Own { request: req.request_id, index: index as u32 };
            if self.block_pool.block_hash(b) != Some(expected) {
                break;
            }
            self.new_computed_blocks.push(b);
        }
        self.num_new_computed_tokens()
    }

    fn num_new_computed_tokens(&self) -> u32 {
        self.new_computed_blocks.len() as u32 * self.block_size
    }

    /// Makes room for `num_new_tokens` more tokens of `req` (vLLM's `allocate_slots`). With
    /// `num_new_computed_tokens > 0` (admission after a hit) the blocks found by the last
    /// [`KvCacheManager::get_computed_blocks`] join the block table first. Returns the number of
    /// newly allocated blocks, or `None` — nothing changed — when too few blocks are free (a hit
    /// on a free cached block counts against the free blocks too). Blocks that are full once the
    /// step's tokens are computed get their content hash here, as in vLLM.
    #[inline]
    pub fn allocate_slots(
        &mut self,
        req: &mut Request,
        num_new_tokens: u32,
        num_new_computed_tokens: u32,
    ) -> Option<u32> {
        // Fast path (most decode steps): the tokens fit the blocks held and no block fills.
        if num_new_computed_tokens == 0 && req.num_computed_tokens + num_new_tokens <= req.alloc_limit {
            return Some(0);
        }
        let result = self.allocate_slots_slow(req, num_new_tokens, num_new_computed_tokens, 0);
        self.update_alloc_limit(req);
        result
    }

    /// [`KvCacheManager::allocate_slots`] that also takes the blocks of `num_lookahead_tokens`
    /// tokens past the step's, computed later (vLLM 0.6.4 allocates a whole sequence at admission:
    /// `BlockSpaceManager.allocate`; V1's `allocate_slots` has the same `num_lookahead_tokens`
    /// for speculative tokens). Only blocks the step's tokens fill are registered.
    pub fn allocate_slots_reserving(
        &mut self,
        req: &mut Request,
        num_new_tokens: u32,
        num_new_computed_tokens: u32,
        num_lookahead_tokens: u32,
    ) -> Option<u32> {
        let result =
            self.allocate_slots_slow(req, num_new_tokens, num_new_computed_tokens, num_lookahead_tokens);
        self.update_alloc_limit(req);
        result
    }

    /// Blocks `req` must take (new ones, plus free cached ones among the hits of the last
    /// [`KvCacheManager::get_computed_blocks`], which leave the free pool when touched) to hold
    /// `num_tokens` tokens (vLLM's `SingleTypeKVCacheManager.get_num_blocks_to_allocate`).
    fn num_blocks_to_allocate(&self, req: &Request, num_tokens: u32, num_hits: u32) -> u32 {
        let num_required = self.num_blocks_for(num_tokens);
        let num_new_blocks = num_required.saturating_sub(req.block_table.len() as u32 + num_hits);
        let num_evictable = self.new_computed_blocks[..num_hits as usize]
            .iter()
            .filter(|&&b| self.block_pool.ref_cnt(b) == 0)
            .count() as u32;
        num_new_blocks + num_evictable
    }

    /// Whether the free blocks could hold all of `req`'s `num_tokens` after a hit of
    /// `num_new_computed_tokens` found by the last [`KvCacheManager::get_computed_blocks`] (vLLM
    /// 0.19.0 v1/core/kv_cache_manager.py `KVCacheManager.can_fit_full_sequence`, the admission
    /// gate of `scheduler_reserve_full_isl`). Allocates nothing.
    pub fn can_fit_full_sequence(&self, req: &Request, num_new_computed_tokens: u32) -> bool {
        let num_hits = if num_new_computed_tokens > 0 { self.new_computed_blocks.len() as u32 } else { 0 };
        self.num_blocks_to_allocate(req, req.num_tokens(), num_hits) <= self.num_free_blocks()
    }

    /// Recomputes `req.alloc_limit` after its block table or cached-block count changed.
    #[inline]
    fn update_alloc_limit(&self, req: &mut Request) {
        let held = req.block_table.len() as u32 * self.block_size;
        req.alloc_limit = if self.enable_caching {
            held.min((req.num_cached_blocks + 1) * self.block_size - 1)
        } else {
            held
        };
    }

    fn allocate_slots_slow(
        &mut self,
        req: &mut Request,
        num_new_tokens: u32,
        num_new_computed_tokens: u32,
        num_lookahead_tokens: u32,
    ) -> Option<u32> {
        let num_hits = if num_new_computed_tokens > 0 {
            debug_assert!(req.block_table.is_empty() && req.num_computed_tokens == 0);
            debug_assert_eq!(num_new_computed_tokens, self.num_new_computed_tokens());
            self.new_computed_blocks.len() as u32
        } else {
            0
        };
        let total_computed = req.num_computed_tokens + num_new_computed_tokens;
        let num_required = self.num_blocks_for(total_computed + num_new_tokens + num_lookahead_tokens);
        let num_new_blocks = num_required.saturating_sub(req.block_table.len() as u32 + num_hits);
        if num_new_blocks > 0 || num_hits > 0 {
            let needed = self.num_blocks_to_allocate(
                req,
                total_computed + num_new_tokens + num_lookahead_tokens,
                num_hits,
            );
            if needed > self.num_free_blocks() {
                return None;
            }
            for &b in &self.new_computed_blocks[..num_hits as usize] {
                self.block_pool.touch(b);
            }
            if num_hits > 0 {
                req.block_table.extend_from_slice(&self.new_computed_blocks);
                req.num_cached_blocks = num_hits;
                self.new_computed_blocks.clear();
            }
            let ok = self.block_pool.get_new_blocks(num_new_blocks, &mut req.block_table);
            debug_assert!(ok);
        }
        if self.enable_caching {
            let num_full = self.num_full_blocks((total_computed + num_new_tokens).min(req.num_tokens()));
            // Blocks of shared content are registered when they fill, as in vLLM
            // (`cache_full_blocks`). A request's own blocks stay private: their identity is only
            // recorded when they are freed.
            let end = num_full.min(self.num_shared_blocks(req));
            if req.num_cached_blocks < end {
                let (start, end) = (req.num_cached_blocks as usize, end as usize);
                let table = &req.block_table;
                let pool = &mut self.block_pool;
                match &req.content {
                    PromptContent::Prefix(p) => {
                        let hashes = self.prefix_hashes.block_hashes(p.group, self.block_size, end);
                        for (index, &hash) in hashes.iter().enumerate().skip(start) {
                            pool.cache_full_block(table[index], hash);
                        }
                    }
                    content => {
                        let hashes = content.block_hashes(self.block_size).enumerate();
                        for (index, hash) in hashes.take(end).skip(start) {
                            pool.cache_full_block(table[index], hash);
                        }
                    }
                }
            }
            req.num_cached_blocks = req.num_cached_blocks.max(num_full);
        }
        Some(num_new_blocks)
    }

    /// Pops `n` free blocks onto `out` for decode steps applied in bulk (the scheduler's decode
    /// stretches): the blocks that `n` one-block `allocate_slots` calls would take, in the same
    /// order. Give each to its request with [`KvCacheManager::append_decode_block`], in the order
    /// the calls would have been made. Returns false, popping nothing, when fewer blocks are free.
    pub fn pop_decode_blocks(&mut self, n: u32, out: &mut Vec<BlockId>) -> bool {
        n <= self.num_free_blocks() && self.block_pool.get_new_blocks(n, out)
    }

    /// Appends `block` (from [`KvCacheManager::pop_decode_blocks`]) to `req`'s block table, as
    /// `allocate_slots` would (a decode block of a stretch lies past the shared content: it is
    /// private).
    /// `num_cached_blocks` and the allocation limit catch up in
    /// [`KvCacheManager::sync_decode_state`].
    #[inline]
    pub fn append_decode_block(&mut self, req: &mut Request, block: BlockId) {
        req.block_table.push(block);
    }

    /// Brings `req`'s `num_cached_blocks` and allocation limit to where `allocate_slots` leaves
    /// them after `req` computed its tokens one decode token per step up to
    /// `num_computed_tokens`, its blocks appended by [`KvCacheManager::append_decode_block`]:
    /// the blocks that filled are registered (its shared-content blocks were already, before the
    /// stretch).
    pub fn sync_decode_state(&mut self, req: &mut Request) {
        if self.enable_caching {
            debug_assert!(req.num_cached_blocks >= self.num_shared_blocks(req), "{req:?}");
            let num_full = self.num_full_blocks(req.num_computed_tokens.min(req.num_tokens()));
            req.num_cached_blocks = req.num_cached_blocks.max(num_full);
        }
        self.update_alloc_limit(req);
    }

    /// Blocks of `req` that lie entirely inside its described (shareable) content: 0 for a
    /// request whose tokens are all its own.
    #[inline]
    pub fn num_shared_blocks(&self, req: &Request) -> u32 {
        self.num_full_blocks(req.content.num_shared_tokens())
    }

    /// Frees all of `req`'s blocks, last block first so its tail is evicted first (vLLM's
    /// `free`), for a preemption: with prefix caching the table is kept as `preempted_blocks`, so
    /// the recomputation can hit what is still cached.
    pub fn free(&mut self, req: &mut Request) {
        self.free_blocks_one_by_one(req);
        if self.enable_caching {
            // Only full blocks are cached (a partial last block never is).
            req.block_table.truncate(req.num_cached_blocks as usize);
            std::mem::swap(&mut req.block_table, &mut req.preempted_blocks);
        }
        req.block_table.clear();
        req.num_cached_blocks = 0;
        req.alloc_limit = 0;
    }

    /// Frees all of `req`'s blocks, last block first, for a request that is done (finished or
    /// aborted). In a static pool its own blocks can never be hit again, so they go back at once,
    /// anonymously (see `FreeKVCacheBlockQueue`); shared-content blocks stay cached. Elastic pools
    /// keep its blocks cached as after a preemption (kvcached caps that cache).
    pub fn free_finished(&mut self, req: &mut Request) {
        let shareable = if self.enable_caching { self.num_shared_blocks(req) } else { 0 };
        match self.block_pool.ops() {
            PoolOps::Static(mut pool) => {
                let first_private = (shareable as usize).min(req.block_table.len());
                pool.free_private_blocks_finished(&req.block_table[first_private..]);
                pool.free_shareable_blocks_finished(&req.block_table[..first_private]);
            }
            PoolOps::Elastic(_) => self.free_blocks_one_by_one(req),
        }
        req.block_table.clear();
        req.preempted_blocks.clear();
        req.num_cached_blocks = 0;
        req.alloc_limit = 0;
    }

    /// Frees `req`'s blocks, last first: shared-content blocks drop a reference; private blocks
    /// past the shared content keep their identity (`Own`) when prefix caching is on.
    fn free_blocks_one_by_one(&mut self, req: &Request) {
        let first_private = self.num_shared_blocks(req);
        if let PoolOps::Elastic(mut pool) = self.block_pool.ops()
            && (!self.enable_caching || pool.max_cached_free_blocks() == 0)
        {
            // Nothing freed is kept for its content: the blocks past the shared content go
            // straight back to their pages (in bulk, same order), then the shared ones as below.
            // Without prefix caching no block is ever registered as shared: all go in bulk.
            let start =
                if self.enable_caching { (first_private as usize).min(req.block_table.len()) } else { 0 };
            pool.free_private_blocks_to_pages(&req.block_table[start..]);
            for &b in req.block_table[..start].iter().rev() {
                if self.block_pool.is_shared(b) {
                    self.block_pool.free_shared_block(b);
                } else {
                    self.block_pool.free_private_block(b, None);
                }
            }
            return;
        }
        // Blocks taken ahead of the tokens (vLLM 0.6.4 allocates a whole sequence at admission)
        // hold nothing yet.
        let filled = self.num_blocks_for(req.num_computed_tokens + req.num_scheduled_tokens);
        for (index, &b) in req.block_table.iter().enumerate().rev() {
            let index = index as u32;
            if index < first_private && self.block_pool.is_shared(b) {
                self.block_pool.free_shared_block(b);
            } else {
                let own = self.enable_caching && index >= first_private && index < filled;
                let content = own.then_some(BlockHash::Own { request: req.request_id, index });
                self.block_pool.free_private_block(b, content);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::PrefixRef;

    /// A waiting request of `prompt` tokens (4 output tokens); also used by `elastic_tests`.
    pub(super) fn request(id: u64, prompt: u32, prefix: Option<PrefixRef>) -> Request {
        Request::for_test(id, prompt, 4, prefix)
    }

    /// Admits `req` as the scheduler would: hit lookup, then allocation of the rest.
    fn admit(kv: &mut KvCacheManager, req: &mut Request) -> Option<u32> {
        let hits = kv.get_computed_blocks(req);
        kv.allocate_slots(req, req.num_tokens() - hits, hits)?;
        req.num_computed_tokens = hits;
        Some(hits)
    }

    proptest::proptest! {
        #[test]
        fn block_counts_by_shift_equal_division(block_size in 1u32..130, tokens in 0u32..1_000_000) {
            let kv = KvCacheManager::new(1, block_size, false);
            proptest::prop_assert_eq!(kv.num_full_blocks(tokens), tokens / block_size);
            proptest::prop_assert_eq!(kv.num_blocks_for(tokens), tokens.div_ceil(block_size));
        }
    }

    #[test]
    fn allocation_rounds_tokens_up_to_whole_blocks() {
        let mut kv = KvCacheManager::new(10, 16, false);
        let mut r = request(0, 33, None);
        assert_eq!(kv.allocate_slots(&mut r, 33, 0), Some(3));
        r.num_computed_tokens = 33;
        assert_eq!(kv.allocate_slots(&mut r, 15, 0), Some(0), "48 tokens fit in 3 blocks");
        assert_eq!(kv.allocate_slots(&mut r, 16, 0), Some(1));
        assert_eq!(kv.num_free_blocks(), 6);
    }

    #[test]
    fn allocation_fails_without_side_effects_when_blocks_are_short() {
        let mut kv = KvCacheManager::new(2, 16, true);
        let mut r = request(0, 40, None);
        assert_eq!(kv.allocate_slots(&mut r, 40, 0), None);
        assert!(r.block_table.is_empty());
        assert_eq!(kv.num_free_blocks(), 2);
    }

    #[test]
    fn a_shared_prefix_hits_its_full_blocks_and_shares_them() {
        let mut kv = KvCacheManager::new(20, 16, true);
        let prefix = Some(PrefixRef { group: 3, num_tokens: 40 });
        let mut a = request(0, 100, prefix);
        assert_eq!(admit(&mut kv, &mut a), Some(0));
        let mut b = request(1, 60, prefix);
        assert_eq!(admit(&mut kv, &mut b), Some(32), "40-token prefix = 2 full blocks");
        assert_eq!(a.block_table[..2], b.block_table[..2]);
        assert_eq!(kv.block_pool().ref_cnt(a.block_table[0]), 2);
        assert_eq!(kv.num_free_blocks(), 20 - 7 - 2);
    }

    #[test]
    fn the_last_prompt_token_is_always_recomputed() {
        let mut kv = KvCacheManager::new(20, 16, true);
        let prefix = Some(PrefixRef { group: 3, num_tokens: 32 });
        let mut a = request(0, 32, prefix);
        admit(&mut kv, &mut a);
        let mut b = request(1, 32, prefix);
        assert_eq!(admit(&mut kv, &mut b), Some(16), "capped at num_tokens - 1 = 31 -> 1 block");
    }

    #[test]
    fn a_preempted_request_hits_its_own_cached_blocks() {
        let mut kv = KvCacheManager::new(10, 16, true);
        let mut r = request(0, 50, None);
        admit(&mut kv, &mut r);
        r.num_computed_tokens = 50;
        kv.free(&mut r);
        r.num_computed_tokens = 0;
        assert_eq!(kv.num_free_blocks(), 10);
        assert_eq!(admit(&mut kv, &mut r), Some(48));
    }

    #[test]
    fn freed_blocks_are_evicted_tail_first() {
        let mut kv = KvCacheManager::new(6, 16, true);
        let mut r = request(0, 64, None);
        admit(&mut kv, &mut r);
        r.num_computed_tokens = 64;
        kv.free(&mut r);
        let order: Vec<u32> = kv.block_pool().free_blocks().map(|b| b.0).collect();
        assert_eq!(order, [4, 5, 3, 2, 1, 0]);
        // A newcomer needing 3 blocks evicts never-used 4 and 5, then r's tail block 3.
        let mut other = request(1, 48, None);
        admit(&mut kv, &mut other);
        assert_eq!(other.block_table, [BlockId(4), BlockId(5), BlockId(3)]);
        kv.free(&mut other);
        r.num_computed_tokens = 0;
        assert_eq!(admit(&mut kv, &mut r), Some(48), "blocks 0..3 of r are still cached");
    }

    #[test]
    fn allocation_respects_a_capacity_below_the_pool_size() {
        let mut kv = KvCacheManager::new(10, 16, false);
        kv.set_capacity(3);
        let mut r = request(0, 64, None);
        assert_eq!(kv.allocate_slots(&mut r, 64, 0), None, "4 blocks > capacity 3");
        assert_eq!(kv.allocate_slots(&mut r, 48, 0), Some(3));
        assert_eq!(kv.num_free_blocks(), 0);
        kv.set_capacity(2);
        assert_eq!(kv.num_free_blocks(), 0, "shrinking below use frees nothing");
        kv.set_capacity(100);
        assert_eq!((kv.capacity(), kv.num_free_blocks()), (10, 7));
    }

    #[test]
    fn a_partially_filled_block_is_never_hit() {
        let mut kv = KvCacheManager::new(10, 16, true);
        let mut r = request(0, 20, None);
        admit(&mut kv, &mut r);
        r.num_computed_tokens = 20;
        kv.free(&mut r);
        r.num_computed_tokens = 0;
        r.num_output_tokens = 13; // 33 tokens: blocks 0 and 1 could hit if block 1 were full
        assert_eq!(admit(&mut kv, &mut r), Some(16));
    }

    #[test]
    fn a_prefix_block_half_computed_by_a_chunk_is_not_shared_yet() {
        let mut kv = KvCacheManager::new(10, 16, true);
        let prefix = Some(PrefixRef { group: 1, num_tokens: 64 });
        let mut a = request(0, 100, prefix);
        assert_eq!(kv.get_computed_blocks(&a), 0);
        assert_eq!(kv.allocate_slots(&mut a, 40, 0), Some(3));
        let b = request(1, 100, prefix);
        assert_eq!(kv.get_computed_blocks(&b), 32);
    }
}

#[cfg(test)]
mod content_tests;
#[cfg(test)]
mod elastic_tests;
