//! The pool of KV blocks of one instance: vLLM's `BlockPool` (`vllm/v1/core/block_pool.py`) and
//! `FreeKVCacheBlockQueue` (`vllm/v1/core/kv_cache_utils.py`).
//!
//! Blocks are ref-counted; a block whose count drops to zero goes to the tail of the free queue
//! but keeps its content hash, so a later request can still hit it (touching it takes it back out
//! of the queue). Allocation pops the least recently freed block from the head and evicts its
//! hash. This module does not know about requests or token counts: `KvCacheManager` does.
//!
//! Deviation from vLLM: content identity is a [`BlockHash`] (prefix group + index, or request +
//! index) instead of a chained hash of token ids, and only shared-prefix blocks are looked up
//! through the cached-hash map; a request's own blocks are found again through the block table it
//! held when preempted (see `KvCacheManager::get_computed_blocks`). Where two blocks get the same
//! prefix identity (two requests computed the same prefix concurrently), only the first is
//! registered; vLLM keeps both findable until both are evicted.
//!
//! Elastic KV (kvcached, see `elastic`): the pool's blocks are grouped in pages that are mapped
//! on demand. Free blocks then live on their pages ([`ElasticPages`]), and the free queue holds
//! only freed blocks kept for their prefix-cache content, at most
//! `ElasticParams::max_cached_free_blocks` of them (the oldest is evicted, and its block returned
//! to its page, beyond that): kvcached caps the prefix cache instead of keeping every free block
//! cached.

use super::elastic::{ElasticPages, ElasticParams};
use crate::ids::{BlockId, RequestId};
use std::collections::{BTreeMap, VecDeque};

/// Content identity of a full block: two blocks with equal hashes hold identical KV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockHash {
    /// Block `index` of shared prefix `group` (lies entirely inside the prefix).
    Prefix {
        /// The prefix group (`PrefixRef::group`).
        group: u64,
        /// Block index from the start of the prompt.
        index: u32,
    },
    /// Block `index` of one request's tokens (private to that request).
    Own {
        /// The request.
        request: RequestId,
        /// Block index from the start of the prompt.
        index: u32,
    },
}

/// One KV block's bookkeeping (vLLM's `KVCacheBlock`): reference count, content hash and, while
/// it waits in the free queue with its identity, where.
#[derive(Clone, Copy, Debug, Default)]
pub struct KVCacheBlock {
    /// Requests referencing the block; 0 means it is free.
    pub ref_cnt: u32,
    /// Content identity while the block is cached.
    pub block_hash: Option<BlockHash>,
    /// Absolute position of the block's entry in the free queue (see [`FreeKVCacheBlockQueue`]).
    queue_pos: u64,
}

/// An entry of the free queue: a block that keeps its identity, a run of anonymous blocks, or a
/// removed block's hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Block(BlockId),
    Anonymous(u32),
    Removed,
}

impl Entry {
    const REMOVED: u32 = u32::MAX;
    const ANONYMOUS: u32 = 1 << 31;
    /// Longest run one entry holds (the code below `REMOVED`).
    const MAX_RUN: u32 = Self::REMOVED - Self::ANONYMOUS - 1;

    #[inline]
    fn decode(code: u32) -> Entry {
        if code == Self::REMOVED {
            Entry::Removed
        } else if code & Self::ANONYMOUS != 0 {
            Entry::Anonymous(code & !Self::ANONYMOUS)
        } else {
            Entry::Block(BlockId(code))
        }
    }
}

/// vLLM's `FreeKVCacheBlockQueue`: the free blocks in eviction order, head first (the least
/// recently freed, next to be reused).
///
/// vLLM threads a doubly linked list through the blocks; walking it reads a cold block per
/// allocation, which dominated the simulator's profile. Here the order is a ring of compact
/// entries and only blocks whose identity matters appear by name:
/// - a block freed with a content hash that may still be hit (a shared-prefix block, a preempted
///   request's block) is an entry of its own; a hit takes it out by marking its entry removed
///   (O(1), through the position the block remembers);
/// - a block with nothing to hit (never filled, or its request finished) is *anonymous*: it
///   joins a stack of interchangeable blocks, and the queue only counts it, in runs.
///
/// Popping an anonymous entry hands out the most recently freed anonymous block, still hot in
/// memory. Which block it is cannot be observed (it holds nothing anyone can hit), so the queue
/// evicts identities in exactly vLLM's order and the number of free blocks is the same at every
/// step. Removed entries are skipped when the head reaches them, and compacted away when they
/// outnumber the live entries.
#[derive(Clone, Debug, Default)]
pub struct FreeKVCacheBlockQueue {
    /// Encoded [`Entry`]s (see `Entry::decode`), head first.
    entries: VecDeque<u32>,
    /// Absolute position of `entries[0]`.
    head_pos: u64,
    /// The anonymous free blocks; the last is handed out first.
    anonymous: Vec<BlockId>,
    num_free_blocks: u32,
    num_removed: u32,
}

impl FreeKVCacheBlockQueue {
    /// A queue of all `blocks`, anonymous, to be handed out in id order.
    pub fn new(blocks: &mut [KVCacheBlock]) -> Self {
        let mut q = FreeKVCacheBlockQueue::default();
        for b in (0..blocks.len() as u32).rev() {
            q.append_anonymous(BlockId(b));
        }
        q
    }

    /// Number of blocks in the queue.
    #[inline]
    pub fn len(&self) -> u32 {
        self.num_free_blocks
    }

    /// Whether no block is free.
    pub fn is_empty(&self) -> bool {
        self.num_free_blocks == 0
    }

    /// Takes the head block: the least recently freed named block, or, where the head is a run
    /// of anonymous blocks, the most recently freed anonymous block.
    #[inline]
    pub fn popleft(&mut self) -> Option<BlockId> {
        loop {
            let code = self.entries.front_mut()?;
            match Entry::decode(*code) {
                Entry::Anonymous(n) if n > 1 => *code -= 1,
                Entry::Anonymous(_) => self.pop_front_entry(),
                Entry::Block(b) => {
                    self.pop_front_entry();
                    self.num_free_blocks -= 1;
                    return Some(b);
                }
                Entry::Removed => {
                    self.pop_front_entry();
                    self.num_removed -= 1;
                    continue;
                }
            }
            self.num_free_blocks -= 1;
            return self.anonymous.pop();
        }
    }

    #[inline]
    fn pop_front_entry(&mut self) {
        self.entries.pop_front();
        self.head_pos += 1;
    }

    /// Takes `block`, which must be in the queue under its own name, out of it.
    #[inline]
    pub fn remove(&mut self, blocks: &mut [KVCacheBlock], block: BlockId) {
        let i = (blocks[block.index()].queue_pos - self.head_pos) as usize;
        debug_assert_eq!(self.entries.get(i).map(|&c| Entry::decode(c)), Some(Entry::Block(block)));
        self.entries[i] = Entry::REMOVED;
        self.num_removed += 1;
        self.num_free_blocks -= 1;
        if self.num_removed as usize > 64 + self.entries.len() / 2 {
            self.compact(blocks);
        }
    }

    /// Drops the removed entries, renumbering the named blocks' positions.
    fn compact(&mut self, blocks: &mut [KVCacheBlock]) {
        let old = std::mem::take(&mut self.entries);
        self.head_pos += old.len() as u64;
        for code in old {
            match Entry::decode(code) {
                Entry::Removed => {}
                Entry::Block(b) => self.push_named(blocks, b),
                Entry::Anonymous(n) => self.push_anonymous_run(n),
            }
        }
        self.num_removed = 0;
    }

    /// Puts `block`, which keeps its identity, at the tail.
    #[inline]
    pub fn append(&mut self, blocks: &mut [KVCacheBlock], block: BlockId) {
        self.push_named(blocks, block);
        self.num_free_blocks += 1;
    }

    #[inline]
    fn push_named(&mut self, blocks: &mut [KVCacheBlock], block: BlockId) {
        blocks[block.index()].queue_pos = self.head_pos + self.entries.len() as u64;
        self.entries.push_back(block.0);
    }

    /// Puts `block`, which holds nothing anyone can hit, at the tail as an anonymous block.
    #[inline]
    pub fn append_anonymous(&mut self, block: BlockId) {
        self.anonymous.push(block);
        self.push_anonymous_run(1);
        self.num_free_blocks += 1;
    }

    #[inline]
    fn push_anonymous_run(&mut self, n: u32) {
        match self.entries.back_mut() {
            Some(code) if *code & Entry::ANONYMOUS != 0 && *code != Entry::REMOVED => {
                let run = *code & !Entry::ANONYMOUS;
                let add = n.min(Entry::MAX_RUN - run);
                *code += add;
                if add < n {
                    self.entries.push_back(Entry::ANONYMOUS | (n - add));
                }
            }
            _ => self.entries.push_back(Entry::ANONYMOUS | n),
        }
    }

    /// The blocks `popleft` would return from now on, in order (for checks and tests; O(len)).
    pub fn iter(&self) -> impl Iterator<Item = BlockId> + '_ {
        let mut anonymous = self.anonymous.iter().rev();
        self.entries.iter().flat_map(move |&code| {
            let run: Vec<BlockId> = match Entry::decode(code) {
                Entry::Block(b) => vec![b],
                Entry::Anonymous(n) => anonymous.by_ref().take(n as usize).copied().collect(),
                Entry::Removed => Vec::new(),
            };
            run
        })
    }
}

/// vLLM's `BlockPool`: every KV block of one instance, their reference counts and content hashes,
/// the free queue and the map from shared-prefix identity to cached block.
#[derive(Clone, Debug)]
pub struct BlockPool {
    blocks: Vec<KVCacheBlock>,
    free_block_queue: FreeKVCacheBlockQueue,
    /// Blocks with `ref_cnt > 0`, counted independently of the free queue (an invariant check).
    num_used_blocks: u32,
    /// vLLM's `cached_block_hash_to_block`, for `BlockHash::Prefix` only: group -> block per index.
    cached_prefix_blocks: BTreeMap<u64, Vec<Option<BlockId>>>,
    /// Elastic KV: the page table (free blocks live there; the free queue holds cached ones).
    elastic: Option<Box<ElasticPages>>,
}

impl BlockPool {
    /// A pool of `num_gpu_blocks` free, unhashed blocks (at most 2^31 - 1; more are dropped).
    pub fn new(num_gpu_blocks: u32) -> Self {
        let num_gpu_blocks = num_gpu_blocks.min(Entry::ANONYMOUS - 1);
        let mut blocks = vec![KVCacheBlock::default(); num_gpu_blocks as usize];
        let free_block_queue = FreeKVCacheBlockQueue::new(&mut blocks);
        BlockPool {
            blocks,
            free_block_queue,
            num_used_blocks: 0,
            cached_prefix_blocks: BTreeMap::new(),
            elastic: None,
        }
    }

    /// Turns this pool, which must have no block in use, into an elastic one: its blocks are
    /// grouped in pages of `params.blocks_per_page` (blocks past the last whole page are dropped),
    /// none mapped. Cached content is dropped.
    pub fn enable_elastic(&mut self, params: ElasticParams) {
        debug_assert_eq!(self.num_used_blocks, 0, "enable_elastic on a pool in use");
        let num_pages = self.num_blocks() / params.blocks_per_page.max(1);
        let pages = ElasticPages::new(num_pages, params);
        self.blocks.clear();
        self.blocks.resize((num_pages * pages.blocks_per_page()) as usize, KVCacheBlock::default());
        self.cached_prefix_blocks.clear();
        self.free_block_queue = FreeKVCacheBlockQueue::default();
        self.num_used_blocks = 0;
        self.elastic = Some(Box::new(pages));
    }

    /// The page table, when elastic.
    pub fn elastic(&self) -> Option<&ElasticPages> {
        self.elastic.as_deref()
    }

    /// The page table, when elastic (to set the page budget or refill the reserve).
    pub fn elastic_mut(&mut self) -> Option<&mut ElasticPages> {
        self.elastic.as_deref_mut()
    }

    /// Blocks an allocation can get now: the free queue, or when elastic, free blocks on mapped
    /// pages, pages the budget still allows, and cached free blocks.
    #[inline]
    pub fn num_allocatable_blocks(&self) -> u32 {
        match &self.elastic {
            None => self.free_block_queue.len(),
            Some(e) => e.num_allocatable_blocks() + self.free_block_queue.len(),
        }
    }

    /// Total blocks in the pool.
    pub fn num_blocks(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// Blocks not in use (free, possibly still cached): vLLM's `get_num_free_blocks`. When
    /// elastic this counts unmapped blocks too; see [`BlockPool::num_allocatable_blocks`].
    #[inline]
    pub fn num_free_blocks(&self) -> u32 {
        match &self.elastic {
            None => self.free_block_queue.len(),
            Some(_) => self.num_blocks() - self.num_used_blocks,
        }
    }

    /// Blocks referenced by at least one request.
    pub fn num_used_blocks(&self) -> u32 {
        self.num_used_blocks
    }

    /// Fraction of blocks in use (vLLM's `get_usage`: `1 - free / total`).
    pub fn usage(&self) -> f64 {
        let total = self.num_blocks();
        if total == 0 { 0.0 } else { 1.0 - f64::from(self.num_free_blocks()) / f64::from(total) }
    }

    /// Requests referencing `block`.
    #[inline]
    pub fn ref_cnt(&self, block: BlockId) -> u32 {
        self.blocks[block.index()].ref_cnt
    }

    /// The content identity registered for `block`, if it is cached.
    #[inline]
    pub fn block_hash(&self, block: BlockId) -> Option<BlockHash> {
        self.blocks[block.index()].block_hash
    }

    /// The free blocks in the order allocation would take them (O(free blocks)); when elastic,
    /// only the cached ones.
    pub fn free_blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.free_block_queue.iter()
    }

    /// The cached blocks of prefix `group` by block index (vLLM's `get_cached_block` for a
    /// whole prefix at once); entries may be `None` where a block was evicted.
    pub fn cached_prefix_blocks(&self, group: u64) -> &[Option<BlockId>] {
        self.cached_prefix_blocks.get(&group).map_or(&[], Vec::as_slice)
    }

    /// Pops `num_blocks` blocks from the head of the free queue onto the block table `out`,
    /// evicting their hashes, each with `ref_cnt` 1 (vLLM's `get_new_blocks`). With
    /// `own = Some((request, first))`, every block landing at table index `>= first` takes the
    /// identity `BlockHash::Own { request, index }` at once (one memory touch per block). Returns
    /// false, allocating nothing, when fewer blocks are free.
    pub fn get_new_blocks(
        &mut self,
        num_blocks: u32,
        out: &mut Vec<BlockId>,
        own: Option<(RequestId, u32)>,
    ) -> bool {
        if num_blocks > self.num_allocatable_blocks() {
            return false;
        }
        for _ in 0..num_blocks {
            let popped = match self.elastic.as_deref_mut().and_then(ElasticPages::pop_block) {
                Some(b) => Some(b),
                None => self.free_block_queue.popleft(),
            };
            let Some(block) = popped else { return false };
            let index = out.len() as u32;
            let b = &mut self.blocks[block.index()];
            b.ref_cnt = 1;
            let new_hash = match own {
                Some((request, first)) if index >= first => Some(BlockHash::Own { request, index }),
                _ => None,
            };
            if let Some(old) = std::mem::replace(&mut b.block_hash, new_hash) {
                self.evict_cached_block(block, old);
            }
            self.num_used_blocks += 1;
            out.push(block);
        }
        true
    }

    /// Gives a block just taken by `get_new_blocks` without identity the identity `Own {
    /// request, index }`, as `get_new_blocks` with `own` would have (decode stretches, see
    /// `engine::sched::fast_forward`).
    #[inline]
    pub fn set_own_hash(&mut self, block: BlockId, request: RequestId, index: u32) {
        let b = &mut self.blocks[block.index()];
        debug_assert!(b.block_hash.is_none() && b.ref_cnt == 1, "block {block} is not fresh");
        b.block_hash = Some(BlockHash::Own { request, index });
    }

    /// Drops `block`'s entry in the cached-hash map (vLLM's `_maybe_evict_cached_block`; the
    /// block's own hash is already cleared).
    fn evict_cached_block(&mut self, block: BlockId, hash: BlockHash) {
        if let BlockHash::Prefix { group, index } = hash
            && let Some(slot) =
                self.cached_prefix_blocks.get_mut(&group).and_then(|v| v.get_mut(index as usize))
            && *slot == Some(block)
        {
            *slot = None;
        }
    }

    /// Takes a reference on a cached block found by a prefix-cache hit; a free block leaves the
    /// free queue (vLLM's `touch`).
    pub fn touch(&mut self, block: BlockId) {
        if self.blocks[block.index()].ref_cnt == 0 {
            self.free_block_queue.remove(&mut self.blocks, block);
            self.num_used_blocks += 1;
        }
        self.blocks[block.index()].ref_cnt += 1;
    }

    /// Drops one reference; a block nobody references goes to the free-queue tail, keeping its
    /// hash (vLLM's `free_blocks`, one block at a time: callers pass a request's blocks in
    /// reverse order so its tail blocks are evicted first). `owner_finished` says the request
    /// freeing it is done for good: its own blocks can never be hit again, so a static pool
    /// queues them anonymously (see [`FreeKVCacheBlockQueue`]).
    #[inline]
    pub fn free_block(&mut self, block: BlockId, owner_finished: bool) {
        let b = &mut self.blocks[block.index()];
        debug_assert!(b.ref_cnt > 0, "freeing free block {block}");
        b.ref_cnt -= 1;
        if b.ref_cnt > 0 {
            return;
        }
        self.num_used_blocks -= 1;
        if self.elastic.is_some() {
            self.free_elastic_block(block);
            return;
        }
        let keeps_identity = match b.block_hash {
            Some(BlockHash::Prefix { .. }) => true,
            Some(BlockHash::Own { .. }) => !owner_finished,
            None => false,
        };
        if keeps_identity {
            self.free_block_queue.append(&mut self.blocks, block);
        } else {
            // An own hash is in no map: clearing it evicts nothing.
            b.block_hash = None;
            self.free_block_queue.append_anonymous(block);
        }
    }

    /// Elastic: a block nobody references is kept for its cached content (free-queue tail) when it
    /// has one and the cache cap allows, evicting the oldest cached block beyond the cap; a block
    /// not kept goes back to its page (which may unmap it).
    fn free_elastic_block(&mut self, block: BlockId) {
        let Some(pages) = self.elastic.as_deref_mut() else { return };
        let cap = pages.params().max_cached_free_blocks;
        let release = if self.blocks[block.index()].block_hash.is_some() && cap > 0 {
            self.free_block_queue.append(&mut self.blocks, block);
            if self.free_block_queue.len() > cap { self.free_block_queue.popleft() } else { None }
        } else {
            Some(block)
        };
        if let Some(b) = release {
            if let Some(old) = self.blocks[b.index()].block_hash.take() {
                self.evict_cached_block(b, old);
            }
            if let Some(pages) = self.elastic.as_deref_mut() {
                pages.release(b);
            }
        }
    }

    /// Registers a just-filled block under `hash` (vLLM's `cache_full_blocks`, one block). A
    /// prefix identity already held by another cached block is not registered twice.
    #[inline]
    pub fn cache_full_block(&mut self, block: BlockId, hash: BlockHash) {
        debug_assert!(self.blocks[block.index()].block_hash.is_none(), "block {block} cached twice");
        if let BlockHash::Prefix { group, index } = hash {
            let slots = self.cached_prefix_blocks.entry(group).or_default();
            let i = index as usize;
            if slots.len() <= i {
                slots.resize(i + 1, None);
            }
            if let Some(other) = slots[i]
                && other != block
                && self.blocks[other.index()].block_hash == Some(hash)
            {
                return;
            }
            slots[i] = Some(block);
        }
        self.blocks[block.index()].block_hash = Some(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_ids(pool: &BlockPool) -> Vec<u32> {
        pool.free_blocks().map(|b| b.0).collect()
    }

    /// A pool of `n` blocks with blocks `0..held` allocated, each given identity `Own { 7, i }`.
    fn pool_with_own_blocks(n: u32, held: u32) -> (BlockPool, Vec<BlockId>) {
        let mut pool = BlockPool::new(n);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(held, &mut got, Some((RequestId(7), 0))));
        (pool, got)
    }

    #[test]
    fn the_free_queue_starts_in_id_order_and_hands_out_from_the_head() {
        let mut blocks = vec![KVCacheBlock::default(); 4];
        let mut q = FreeKVCacheBlockQueue::new(&mut blocks);
        assert_eq!(q.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!((q.popleft(), q.popleft(), q.len()), (Some(BlockId(0)), Some(BlockId(1)), 2));
        q.append(&mut blocks, BlockId(1));
        q.append_anonymous(BlockId(0));
        q.remove(&mut blocks, BlockId(1));
        // Three anonymous slots remain; the most recently freed anonymous block comes first.
        assert_eq!(q.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 2, 3]);
        let popped: Vec<_> = std::iter::from_fn(|| q.popleft()).collect();
        assert_eq!(popped, [BlockId(0), BlockId(2), BlockId(3)]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_preempted_requests_blocks_are_evicted_in_lru_order_tail_first() {
        let (mut pool, got) = pool_with_own_blocks(5, 3);
        for &b in got.iter().rev() {
            pool.free_block(b, false);
        }
        // Never-used blocks 3 and 4 first, then the request's tail block first.
        assert_eq!(queue_ids(&pool), [3, 4, 2, 1, 0]);
        assert_eq!(pool.num_used_blocks() + pool.num_free_blocks(), 5);
        let mut again = Vec::new();
        assert!(pool.get_new_blocks(3, &mut again, None));
        assert_eq!(again, [BlockId(3), BlockId(4), BlockId(2)]);
        assert_eq!(pool.block_hash(BlockId(2)), None, "evicted");
        assert_eq!(pool.block_hash(BlockId(1)), Some(BlockHash::Own { request: RequestId(7), index: 1 }));
    }

    #[test]
    fn a_finished_requests_own_blocks_lose_their_identity_and_are_reused_hot_first() {
        let (mut pool, got) = pool_with_own_blocks(5, 3);
        for &b in got.iter().rev() {
            pool.free_block(b, true);
        }
        assert!(got.iter().all(|&b| pool.block_hash(b).is_none()));
        assert_eq!(queue_ids(&pool), [0, 1, 2, 3, 4], "the last freed (block 0) comes back first");
        let mut again = Vec::new();
        assert!(pool.get_new_blocks(1, &mut again, None));
        assert_eq!(again, [BlockId(0)]);
    }

    #[test]
    fn named_and_anonymous_blocks_keep_their_places_in_the_queue() {
        let mut pool = BlockPool::new(4);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(4, &mut got, None));
        let h = BlockHash::Prefix { group: 1, index: 0 };
        pool.cache_full_block(got[2], h);
        for b in [0, 2, 1] {
            pool.free_block(BlockId(b), true);
        }
        // Queue: anonymous 0, named 2, anonymous 1. The prefix block is evicted second.
        let mut again = Vec::new();
        assert!(pool.get_new_blocks(1, &mut again, None));
        assert_eq!(pool.cached_prefix_blocks(1), [Some(BlockId(2))]);
        assert!(pool.get_new_blocks(1, &mut again, None));
        assert_eq!(pool.cached_prefix_blocks(1), [None]);
        assert_eq!(again[1], BlockId(2));
    }

    #[test]
    fn removed_entries_are_compacted_without_losing_order() {
        let n = 400;
        let mut pool = BlockPool::new(n);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(n, &mut got, None));
        for (i, &b) in got.iter().enumerate() {
            pool.cache_full_block(b, BlockHash::Prefix { group: 0, index: i as u32 });
            pool.free_block(b, true);
        }
        // Hit and release every block twice over: 800 removals force compactions.
        for _ in 0..2 {
            for &b in &got {
                pool.touch(b);
                pool.free_block(b, true);
            }
        }
        assert!(pool.free_block_queue.entries.len() < 2 * n as usize);
        assert_eq!(queue_ids(&pool), got.iter().map(|b| b.0).collect::<Vec<_>>());
        assert_eq!(pool.num_free_blocks(), n);
    }

    #[test]
    fn allocation_evicts_the_hash_of_a_reused_block() {
        let mut pool = BlockPool::new(1);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(1, &mut got, None));
        let h = BlockHash::Prefix { group: 9, index: 0 };
        pool.cache_full_block(got[0], h);
        assert_eq!(pool.cached_prefix_blocks(9), [Some(BlockId(0))]);
        pool.free_block(got[0], false);
        assert_eq!(pool.block_hash(BlockId(0)), Some(h), "a free block stays cached");
        got.clear();
        assert!(pool.get_new_blocks(1, &mut got, None));
        assert_eq!(pool.block_hash(BlockId(0)), None);
        assert_eq!(pool.cached_prefix_blocks(9), [None]);
    }

    #[test]
    fn touching_a_free_cached_block_takes_it_out_of_the_free_queue() {
        let (mut pool, got) = pool_with_own_blocks(3, 1);
        pool.free_block(got[0], false);
        assert_eq!(queue_ids(&pool), [1, 2, 0]);
        pool.touch(BlockId(0));
        pool.touch(BlockId(0));
        assert_eq!(pool.ref_cnt(BlockId(0)), 2);
        assert_eq!(queue_ids(&pool), [1, 2]);
        pool.free_block(BlockId(0), false);
        assert_eq!(queue_ids(&pool), [1, 2]);
        pool.free_block(BlockId(0), false);
        assert_eq!(queue_ids(&pool), [1, 2, 0]);
    }

    #[test]
    fn a_second_block_with_the_same_prefix_identity_is_not_registered() {
        let mut pool = BlockPool::new(2);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(2, &mut got, None));
        let h = BlockHash::Prefix { group: 1, index: 0 };
        pool.cache_full_block(got[0], h);
        pool.cache_full_block(got[1], h);
        assert_eq!(pool.cached_prefix_blocks(1), [Some(got[0])]);
        assert_eq!(pool.block_hash(got[1]), None);
    }

    #[test]
    fn asking_for_more_blocks_than_free_allocates_nothing() {
        let mut pool = BlockPool::new(2);
        let mut got = Vec::new();
        assert!(!pool.get_new_blocks(3, &mut got, None));
        assert!(got.is_empty());
        assert_eq!(pool.num_free_blocks(), 2);
    }
}
