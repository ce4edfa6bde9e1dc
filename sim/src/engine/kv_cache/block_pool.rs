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
use std::collections::BTreeMap;

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

/// One KV block's bookkeeping (vLLM's `KVCacheBlock`): reference count, content hash and the
/// free-queue links, kept together so touching a block costs one cache line.
#[derive(Clone, Copy, Debug, Default)]
pub struct KVCacheBlock {
    /// Requests referencing the block; 0 means it is in the free queue.
    pub ref_cnt: u32,
    /// Content identity while the block is cached.
    pub block_hash: Option<BlockHash>,
    prev_free_block: Option<BlockId>,
    next_free_block: Option<BlockId>,
}

/// vLLM's `FreeKVCacheBlockQueue`: a doubly linked list of free blocks threaded through the
/// blocks' own `prev_free_block`/`next_free_block` fields (indices into the pool's block `Vec`),
/// so removing a block from the middle (a cache hit on a free block) is O(1). The head is the
/// next block to evict. The queue owns only the ends; every operation takes the block array.
#[derive(Clone, Debug)]
pub struct FreeKVCacheBlockQueue {
    head: Option<BlockId>,
    tail: Option<BlockId>,
    num_free_blocks: u32,
}

impl FreeKVCacheBlockQueue {
    /// A queue holding no block.
    fn empty() -> Self {
        FreeKVCacheBlockQueue { head: None, tail: None, num_free_blocks: 0 }
    }

    /// Links all of `blocks` into one queue in id order.
    pub fn new(blocks: &mut [KVCacheBlock]) -> Self {
        let n = blocks.len() as u32;
        for (i, b) in (0..n).zip(blocks.iter_mut()) {
            b.prev_free_block = i.checked_sub(1).map(BlockId);
            b.next_free_block = (i + 1 < n).then_some(BlockId(i + 1));
        }
        FreeKVCacheBlockQueue {
            head: (n > 0).then_some(BlockId(0)),
            tail: n.checked_sub(1).map(BlockId),
            num_free_blocks: n,
        }
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

    /// Takes the head (least recently freed) block.
    #[inline]
    pub fn popleft(&mut self, blocks: &mut [KVCacheBlock]) -> Option<BlockId> {
        let block = self.head?;
        let next = blocks[block.index()].next_free_block.take();
        match next {
            Some(n) => blocks[n.index()].prev_free_block = None,
            None => self.tail = None,
        }
        self.head = next;
        self.num_free_blocks -= 1;
        Some(block)
    }

    /// Unlinks `block`, which must be in the queue.
    #[inline]
    pub fn remove(&mut self, blocks: &mut [KVCacheBlock], block: BlockId) {
        let b = &mut blocks[block.index()];
        let (prev, next) = (b.prev_free_block.take(), b.next_free_block.take());
        match prev {
            Some(p) => blocks[p.index()].next_free_block = next,
            None => self.head = next,
        }
        match next {
            Some(n) => blocks[n.index()].prev_free_block = prev,
            None => self.tail = prev,
        }
        self.num_free_blocks -= 1;
    }

    /// Puts `block`, which must not be in the queue, at the tail.
    #[inline]
    pub fn append(&mut self, blocks: &mut [KVCacheBlock], block: BlockId) {
        let b = &mut blocks[block.index()];
        b.prev_free_block = self.tail;
        b.next_free_block = None;
        match self.tail {
            Some(t) => blocks[t.index()].next_free_block = Some(block),
            None => self.head = Some(block),
        }
        self.tail = Some(block);
        self.num_free_blocks += 1;
    }

    /// Puts `block`, which must not be in the queue, at the head (next to be popped).
    #[inline]
    pub fn appendleft(&mut self, blocks: &mut [KVCacheBlock], block: BlockId) {
        let b = &mut blocks[block.index()];
        b.prev_free_block = None;
        b.next_free_block = self.head;
        match self.head {
            Some(h) => blocks[h.index()].prev_free_block = Some(block),
            None => self.tail = Some(block),
        }
        self.head = Some(block);
        self.num_free_blocks += 1;
    }

    /// The queued blocks from head to tail (for checks and tests; O(len)).
    pub fn iter<'a>(&self, blocks: &'a [KVCacheBlock]) -> impl Iterator<Item = BlockId> + 'a {
        std::iter::successors(self.head, |b| blocks[b.index()].next_free_block)
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
    /// Freed blocks go to the head instead of the tail: without prefix caching block identity
    /// is irrelevant, and reusing recently freed blocks keeps the simulator's memory hot.
    reuse_last_freed: bool,
    /// vLLM's `cached_block_hash_to_block`, for `BlockHash::Prefix` only: group -> block per index.
    cached_prefix_blocks: BTreeMap<u64, Vec<Option<BlockId>>>,
    /// Elastic KV: the page table (free blocks live there; the free queue holds cached ones).
    elastic: Option<Box<ElasticPages>>,
}

impl BlockPool {
    /// A pool of `num_gpu_blocks` free, unhashed blocks. With `enable_caching` off, freed blocks
    /// are reused last-freed-first (no observable difference: nothing is ever hit).
    pub fn new(num_gpu_blocks: u32, enable_caching: bool) -> Self {
        let mut blocks = vec![KVCacheBlock::default(); num_gpu_blocks as usize];
        let free_block_queue = FreeKVCacheBlockQueue::new(&mut blocks);
        BlockPool {
            blocks,
            free_block_queue,
            num_used_blocks: 0,
            reuse_last_freed: !enable_caching,
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
        self.free_block_queue = FreeKVCacheBlockQueue::empty();
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

    /// The free blocks from the next to evict to the most recently freed (O(free blocks)); when
    /// elastic, only the cached ones.
    pub fn free_blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.free_block_queue.iter(&self.blocks)
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
                None => self.free_block_queue.popleft(&mut self.blocks),
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
    /// reverse order so its tail blocks are evicted first).
    #[inline]
    pub fn free_block(&mut self, block: BlockId) {
        let rc = &mut self.blocks[block.index()].ref_cnt;
        debug_assert!(*rc > 0, "freeing free block {block}");
        *rc -= 1;
        if *rc == 0 {
            self.num_used_blocks -= 1;
            if self.elastic.is_some() {
                self.free_elastic_block(block);
            } else if self.reuse_last_freed {
                self.free_block_queue.appendleft(&mut self.blocks, block);
            } else {
                self.free_block_queue.append(&mut self.blocks, block);
            }
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
            if self.free_block_queue.len() > cap {
                self.free_block_queue.popleft(&mut self.blocks)
            } else {
                None
            }
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

    #[test]
    fn the_free_queue_starts_in_id_order_and_pops_from_the_head() {
        let mut blocks = vec![KVCacheBlock::default(); 4];
        let mut q = FreeKVCacheBlockQueue::new(&mut blocks);
        let ids = |q: &FreeKVCacheBlockQueue, b: &[KVCacheBlock]| q.iter(b).map(|b| b.0).collect::<Vec<_>>();
        assert_eq!(ids(&q, &blocks), [0, 1, 2, 3]);
        assert_eq!(q.popleft(&mut blocks), Some(BlockId(0)));
        q.remove(&mut blocks, BlockId(2));
        q.append(&mut blocks, BlockId(0));
        assert_eq!(ids(&q, &blocks), [1, 3, 0]);
        assert_eq!(q.len(), 3);
        q.remove(&mut blocks, BlockId(0));
        q.remove(&mut blocks, BlockId(1));
        q.remove(&mut blocks, BlockId(3));
        assert!(q.is_empty());
        assert_eq!(q.popleft(&mut blocks), None);
        q.append(&mut blocks, BlockId(2));
        q.appendleft(&mut blocks, BlockId(1));
        q.append(&mut blocks, BlockId(3));
        assert_eq!(ids(&q, &blocks), [1, 2, 3]);
        assert_eq!(q.popleft(&mut blocks), Some(BlockId(1)));
        assert_eq!(ids(&q, &blocks), [2, 3]);
    }

    #[test]
    fn freed_blocks_go_to_the_tail_and_allocation_takes_the_oldest_free() {
        let mut pool = BlockPool::new(4, true);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(3, &mut got, None));
        assert_eq!(got, [BlockId(0), BlockId(1), BlockId(2)]);
        for &b in got.iter().rev() {
            pool.free_block(b);
        }
        assert_eq!(queue_ids(&pool), [3, 2, 1, 0]);
        assert_eq!(pool.num_used_blocks() + pool.num_free_blocks(), 4);
    }

    #[test]
    fn without_caching_the_last_freed_block_is_reused_first() {
        let mut pool = BlockPool::new(4, false);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(2, &mut got, None));
        for &b in got.iter().rev() {
            pool.free_block(b);
        }
        assert_eq!(queue_ids(&pool), [0, 1, 2, 3]);
    }

    #[test]
    fn allocation_evicts_the_hash_of_a_reused_block() {
        let mut pool = BlockPool::new(1, true);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(1, &mut got, None));
        let h = BlockHash::Prefix { group: 9, index: 0 };
        pool.cache_full_block(got[0], h);
        assert_eq!(pool.cached_prefix_blocks(9), [Some(BlockId(0))]);
        pool.free_block(got[0]);
        assert_eq!(pool.block_hash(BlockId(0)), Some(h), "a free block stays cached");
        got.clear();
        assert!(pool.get_new_blocks(1, &mut got, None));
        assert_eq!(pool.block_hash(BlockId(0)), None);
        assert_eq!(pool.cached_prefix_blocks(9), [None]);
    }

    #[test]
    fn touching_a_free_cached_block_takes_it_out_of_the_free_queue() {
        let mut pool = BlockPool::new(3, true);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(1, &mut got, None));
        pool.free_block(got[0]);
        assert_eq!(queue_ids(&pool), [1, 2, 0]);
        pool.touch(BlockId(0));
        pool.touch(BlockId(0));
        assert_eq!(pool.ref_cnt(BlockId(0)), 2);
        assert_eq!(queue_ids(&pool), [1, 2]);
        pool.free_block(BlockId(0));
        assert_eq!(queue_ids(&pool), [1, 2]);
        pool.free_block(BlockId(0));
        assert_eq!(queue_ids(&pool), [1, 2, 0]);
    }

    #[test]
    fn a_second_block_with_the_same_prefix_identity_is_not_registered() {
        let mut pool = BlockPool::new(2, true);
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
        let mut pool = BlockPool::new(2, true);
        let mut got = Vec::new();
        assert!(!pool.get_new_blocks(3, &mut got, None));
        assert!(got.is_empty());
        assert_eq!(pool.num_free_blocks(), 2);
    }
}
