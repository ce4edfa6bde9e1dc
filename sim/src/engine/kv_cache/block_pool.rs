//! The pool of KV blocks of one instance: vLLM's `BlockPool` (`vllm/v1/core/block_pool.py`) and
//! `FreeKVCacheBlockQueue` (`vllm/v1/core/kv_cache_utils.py`).
//!
//! A block whose last reference is dropped goes to the tail of the free queue but keeps its
//! content hash, so a later request can still hit it (touching it takes it back out of the queue).
//! Allocation pops the least recently freed block from the head and evicts its hash. This module
//! does not know about requests or token counts: `KvCacheManager` does.
//!
//! Shared and private blocks: in vLLM every block is ref-counted and hashed when full. Here only
//! blocks whose content another request can have (described content, see `engine::content`) are
//! registered under their chained content hash (`BlockHash::Content`), ref-counted and looked up
//! through the cached-hash map. A request's other blocks hold tokens unique to it and are
//! *private*: no count or hash is kept for them while it holds them (allocation and release move
//! block ids in bulk and touch no block); their identity (`BlockHash::Own`) is written when they
//! are freed for a preemption, the only case where they can be hit again (or kept cached by an
//! elastic pool). Which blocks are evicted when, and every count a scheduler reads, are as with
//! per-block counts.
//!
//! Deviations from vLLM: a request's own blocks are found again through the block table it held
//! when preempted (see `KvCacheManager::get_computed_blocks`), not through the map (their hashes
//! are unique to it, so the hits are the same). Where two blocks get the same content hash (two
//! requests computed the same content concurrently), only the first is registered; vLLM keeps
//! both findable until both are evicted.
//!
//! Elastic KV (kvcached, see `elastic`; the pool's [`PoolKind`]): the pool's blocks are grouped
//! in pages that are mapped on demand. Free blocks then live on their pages ([`ElasticPages`]),
//! and the free queue holds only freed blocks kept for their prefix-cache content, at most
//! `ElasticParams::max_cached_free_blocks` of them (the oldest is evicted, and its block returned
//! to its page, beyond that): kvcached caps the prefix cache instead of keeping every free block
//! cached.

mod kind;

pub use kind::{ElasticOps, PoolKind, PoolOps, StaticOps};

use super::elastic::{ElasticPages, ElasticParams};
use crate::ids::{BlockId, RequestId};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Content identity of a full block: two blocks with equal hashes hold identical KV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockHash {
    /// A block of described content: its chained hash (vLLM's `BlockHash`, see
    /// `engine::content`); shared by every request whose tokens up to the block's end are equal.
    Content(u64),
    /// Block `index` of one request's tokens (private to that request).
    Own {
        /// The request.
        request: RequestId,
        /// Block index from the start of the prompt.
        index: u32,
    },
}

/// One KV block's bookkeeping (vLLM's `KVCacheBlock`): reference count and content hash (kept for
/// shared and free blocks, not for private ones: see the module doc) and, while it waits in the
/// free queue with its identity, where.
#[derive(Clone, Copy, Debug, Default)]
pub struct KVCacheBlock {
    /// Requests referencing a shared block; 0 while free; not kept for a private block.
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
    /// A queue of blocks `0..num_blocks`, all anonymous, to be handed out in id order.
    pub fn new(num_blocks: u32) -> Self {
        let mut q = FreeKVCacheBlockQueue::default();
        for b in (0..num_blocks).rev() {
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

    /// Takes up to `max` blocks from the anonymous run at the head (skipping removed entries)
    /// onto `out`, in the order `popleft` would hand them out; returns how many (0 when the head
    /// is a named block or the queue is empty).
    #[inline]
    pub fn pop_anonymous_run(&mut self, max: u32, out: &mut Vec<BlockId>) -> u32 {
        while let Some(&code) = self.entries.front() {
            let n = match Entry::decode(code) {
                Entry::Removed => {
                    self.pop_front_entry();
                    self.num_removed -= 1;
                    continue;
                }
                Entry::Block(_) => return 0,
                Entry::Anonymous(n) => n,
            };
            let m = n.min(max);
            if m == n {
                self.pop_front_entry();
            } else if let Some(front) = self.entries.front_mut() {
                *front -= m;
            }
            let split = self.anonymous.len() - m as usize;
            out.extend(self.anonymous.drain(split..).rev());
            self.num_free_blocks -= m;
            return m;
        }
        0
    }

    /// Puts `blocks`, none of which holds anything anyone can hit, at the tail as anonymous
    /// blocks, the last of them first (as `append_anonymous` one by one from the last).
    #[inline]
    pub fn append_anonymous_rev(&mut self, blocks: &[BlockId]) {
        if blocks.is_empty() {
            return;
        }
        self.anonymous.extend(blocks.iter().rev());
        self.push_anonymous_run(blocks.len() as u32);
        self.num_free_blocks += blocks.len() as u32;
    }

    /// Takes `block`, which must be in the queue under its own name, out of it.
    #[inline]
    pub fn remove(&mut self, blocks: &mut [KVCacheBlock], block: BlockId) {
        let i = (blocks[block.index()].queue_pos - self.head_pos) as usize;
        debug_assert_eq!(self.entries.get(i).map(|&c| Entry::decode(c)), Some(Entry::Block(block)));
        self.num_free_blocks -= 1;
        if i + 1 == self.entries.len() {
            // The most recently freed block (a prefix block hit again soon): no hole to leave.
            self.entries.pop_back();
            while self.entries.back() == Some(&Entry::REMOVED) {
                self.entries.pop_back();
                self.num_removed -= 1;
            }
            return;
        }
        self.entries[i] = Entry::REMOVED;
        self.num_removed += 1;
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

/// Hashes a key that is already a well-mixed 64-bit hash (a chained block hash) by itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// vLLM's `cached_block_hash_to_block`: content hash to the cached block holding it.
type CachedBlockMap = HashMap<u64, BlockId, BuildHasherDefault<IdentityHasher>>;

/// Drops `block`'s entry in the cached-hash map `map` (vLLM's `_maybe_evict_cached_block`; the
/// block's own hash, `hash`, is already cleared).
#[inline]
fn evict_cached_block(map: &mut CachedBlockMap, block: BlockId, hash: BlockHash) {
    if let BlockHash::Content(h) = hash
        && map.get(&h) == Some(&block)
    {
        map.remove(&h);
    }
}

/// vLLM's `BlockPool`: every KV block of one instance, the reference counts and content hashes
/// of the shared ones, the free queue and the map from content hash to cached block.
#[derive(Clone, Debug)]
pub struct BlockPool {
    blocks: Vec<KVCacheBlock>,
    free_block_queue: FreeKVCacheBlockQueue,
    /// Blocks in use (private or referenced), counted independently of the free queue.
    num_used_blocks: u32,
    /// vLLM's `cached_block_hash_to_block`, for `BlockHash::Content` only (never iterated, so
    /// its order cannot leak into results).
    cached_block_hash_to_block: CachedBlockMap,
    /// Static or elastic: where the free blocks that no prefix-cache content keeps live.
    kind: PoolKind,
}

impl BlockPool {
    /// A pool of `num_gpu_blocks` free, unhashed blocks (at most 2^31 - 1; more are dropped).
    pub fn new(num_gpu_blocks: u32) -> Self {
        let num_gpu_blocks = num_gpu_blocks.min(Entry::ANONYMOUS - 1);
        let blocks = vec![KVCacheBlock::default(); num_gpu_blocks as usize];
        let free_block_queue = FreeKVCacheBlockQueue::new(num_gpu_blocks);
        BlockPool {
            blocks,
            free_block_queue,
            num_used_blocks: 0,
            cached_block_hash_to_block: HashMap::default(),
            kind: PoolKind::Static,
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
        self.cached_block_hash_to_block.clear();
        self.free_block_queue = FreeKVCacheBlockQueue::default();
        self.num_used_blocks = 0;
        self.kind = PoolKind::Elastic(Box::new(pages));
    }

    /// Static or elastic, with the page table when elastic.
    #[inline]
    pub fn kind(&self) -> &PoolKind {
        &self.kind
    }

    /// The kind, to set the page budget or refill the reserve of an elastic pool.
    #[inline]
    pub(super) fn kind_mut(&mut self) -> &mut PoolKind {
        &mut self.kind
    }

    /// What only this pool's kind does (its bulk frees); see [`PoolOps`].
    #[inline]
    pub fn ops(&mut self) -> PoolOps<'_> {
        match &mut self.kind {
            PoolKind::Static => PoolOps::Static(StaticOps {
                blocks: &mut self.blocks,
                free_block_queue: &mut self.free_block_queue,
                num_used_blocks: &mut self.num_used_blocks,
            }),
            PoolKind::Elastic(pages) => PoolOps::Elastic(ElasticOps {
                blocks: &mut self.blocks,
                num_used_blocks: &mut self.num_used_blocks,
                pages,
            }),
        }
    }

    /// Blocks an allocation can get now: the free queue, or when elastic, free blocks on mapped
    /// pages, pages the budget still allows, and cached free blocks.
    #[inline]
    pub fn num_allocatable_blocks(&self) -> u32 {
        self.kind.num_allocatable_blocks(self.free_block_queue.len())
    }

    /// Total blocks in the pool.
    pub fn num_blocks(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// Blocks not in use (free, possibly still cached): vLLM's `get_num_free_blocks`, which for a
    /// static pool are the free queue's. When elastic this counts unmapped blocks too; see
    /// [`BlockPool::num_allocatable_blocks`].
    #[inline]
    pub fn num_free_blocks(&self) -> u32 {
        self.num_blocks() - self.num_used_blocks
    }

    /// Blocks in use by at least one request.
    pub fn num_used_blocks(&self) -> u32 {
        self.num_used_blocks
    }

    /// Fraction of blocks in use (vLLM's `get_usage`: `1 - free / total`).
    pub fn usage(&self) -> f64 {
        let total = self.num_blocks();
        if total == 0 { 0.0 } else { 1.0 - f64::from(self.num_free_blocks()) / f64::from(total) }
    }

    /// Requests referencing `block`, for a shared block or a free one (0); a private block's
    /// count is not kept.
    #[inline]
    pub fn ref_cnt(&self, block: BlockId) -> u32 {
        self.blocks[block.index()].ref_cnt
    }

    /// The content identity of `block` while it is shared (a registered prefix block) or free and
    /// cached; `None` for a private block and an anonymous free one.
    #[inline]
    pub fn block_hash(&self, block: BlockId) -> Option<BlockHash> {
        self.blocks[block.index()].block_hash
    }

    /// Whether `block` is a registered content block (ref-counted).
    #[inline]
    pub fn is_shared(&self, block: BlockId) -> bool {
        matches!(self.blocks[block.index()].block_hash, Some(BlockHash::Content(_)))
    }

    /// The free blocks in the order allocation would take them (O(free blocks)); when elastic,
    /// only the cached ones.
    pub fn free_blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.free_block_queue.iter()
    }

    /// The cached block holding the content whose chained hash is `hash`, if any (vLLM's
    /// `get_cached_block`).
    #[inline]
    pub fn get_cached_block(&self, hash: u64) -> Option<BlockId> {
        self.cached_block_hash_to_block.get(&hash).copied()
    }

    /// Content blocks registered in the cached-hash map (in use or free).
    pub fn num_cached_content_blocks(&self) -> usize {
        self.cached_block_hash_to_block.len()
    }

    /// Takes `num_blocks` free blocks from the head of the free queue onto the block table `out`,
    /// evicting the identities they held (vLLM's `get_new_blocks`). They are *private* to the
    /// request owning `out`: no count or identity is kept for them until it frees them or one
    /// becomes a shared content block ([`BlockPool::cache_full_block`]). Returns false,
    /// allocating nothing, when fewer blocks are free.
    pub fn get_new_blocks(&mut self, num_blocks: u32, out: &mut Vec<BlockId>) -> bool {
        if num_blocks > self.num_allocatable_blocks() {
            return false;
        }
        // Elastic: free blocks on pages first (they hold no identity: it was evicted when they
        // went back to their page); once the pages have none, none come back during this call
        // (popping a cached block touches no page), so the rest are cached blocks. An elastic
        // queue holds no anonymous block: its runs are a static pool's.
        let start = out.len();
        let mut left = num_blocks - self.kind.pop_page_blocks(num_blocks, out);
        debug_assert!(out[start..].iter().all(|b| self.blocks[b.index()].block_hash.is_none()));
        while left > 0 {
            let n = self.free_block_queue.pop_anonymous_run(left, out);
            if n > 0 {
                left -= n;
                continue;
            }
            let Some(block) = self.free_block_queue.popleft() else { return false };
            if let Some(old) = self.blocks[block.index()].block_hash.take() {
                evict_cached_block(&mut self.cached_block_hash_to_block, block, old);
            }
            out.push(block);
            left -= 1;
        }
        self.num_used_blocks += num_blocks;
        true
    }

    /// Takes a reference on a block found by a prefix-cache hit: a shared content block, or a
    /// preempted request's own cached block (which becomes private to it again). A free block
    /// leaves the free queue (vLLM's `touch`).
    #[inline]
    pub fn touch(&mut self, block: BlockId) {
        let b = &mut self.blocks[block.index()];
        b.ref_cnt += 1;
        if b.ref_cnt > 1 {
            return;
        }
        if let Some(BlockHash::Own { .. }) = b.block_hash {
            b.block_hash = None;
        }
        self.free_block_queue.remove(&mut self.blocks, block);
        self.num_used_blocks += 1;
    }

    /// Drops one reference to the shared content `block`; when nobody references it any more it
    /// goes to the free-queue tail keeping its identity (vLLM's `free_blocks`, one block).
    #[inline]
    pub fn free_shared_block(&mut self, block: BlockId) {
        let b = &mut self.blocks[block.index()];
        debug_assert!(b.ref_cnt > 0 && b.block_hash.is_some(), "freeing unshared block {block}");
        b.ref_cnt -= 1;
        if b.ref_cnt == 0 {
            self.num_used_blocks -= 1;
            self.queue_free_block(block);
        }
    }

    /// Its request frees the private `block`. With `content` (the identity it holds, which its
    /// request may hit again after a preemption, or which kvcached keeps cached) it goes to the
    /// free-queue tail under that identity; without, it is anonymous. Callers free a request's
    /// blocks in reverse order so its tail blocks are evicted first.
    #[inline]
    pub fn free_private_block(&mut self, block: BlockId, content: Option<BlockHash>) {
        self.num_used_blocks -= 1;
        self.blocks[block.index()].block_hash = content;
        self.queue_free_block(block);
    }

    /// A block nobody uses any more, its identity (if any) set: static pools queue it, named by
    /// its identity or anonymous; elastic ones keep it for its cached content when it has one and
    /// the cache cap allows (evicting the oldest cached block beyond the cap) and return the rest
    /// to their pages (which may unmap them).
    #[inline]
    fn queue_free_block(&mut self, block: BlockId) {
        self.blocks[block.index()].ref_cnt = 0;
        let has_content = self.blocks[block.index()].block_hash.is_some();
        let pages = match &mut self.kind {
            PoolKind::Static => {
                if has_content {
                    self.free_block_queue.append(&mut self.blocks, block);
                } else {
                    self.free_block_queue.append_anonymous(block);
                }
                return;
            }
            PoolKind::Elastic(pages) => pages,
        };
        let cap = pages.params().max_cached_free_blocks;
        let release = if has_content && cap > 0 {
            self.free_block_queue.append(&mut self.blocks, block);
            if self.free_block_queue.len() > cap { self.free_block_queue.popleft() } else { None }
        } else {
            Some(block)
        };
        if let Some(b) = release {
            if let Some(old) = self.blocks[b.index()].block_hash.take() {
                evict_cached_block(&mut self.cached_block_hash_to_block, b, old);
            }
            pages.release(b);
        }
    }

    /// Registers a just-filled block of the request owning it under its content hash (vLLM's
    /// `cache_full_blocks`, one block): it becomes shared, referenced once. A hash already held by
    /// another cached block is not registered twice (the block stays private).
    #[inline]
    pub fn cache_full_block(&mut self, block: BlockId, hash: u64) {
        debug_assert!(self.blocks[block.index()].block_hash.is_none(), "block {block} cached twice");
        match self.cached_block_hash_to_block.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => return,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(block);
            }
        }
        let b = &mut self.blocks[block.index()];
        b.block_hash = Some(BlockHash::Content(hash));
        b.ref_cnt = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_ids(pool: &BlockPool) -> Vec<u32> {
        pool.free_blocks().map(|b| b.0).collect()
    }

    fn own(index: u32) -> Option<BlockHash> {
        Some(BlockHash::Own { request: RequestId(7), index })
    }

    /// A pool of `n` blocks with blocks `0..held` allocated to one request.
    fn pool_with_blocks(n: u32, held: u32) -> (BlockPool, Vec<BlockId>) {
        let mut pool = BlockPool::new(n);
        let mut got = Vec::new();
        assert!(pool.get_new_blocks(held, &mut got));
        (pool, got)
    }

    #[test]
    fn the_free_queue_starts_in_id_order_and_hands_out_from_the_head() {
        let mut blocks = vec![KVCacheBlock::default(); 4];
        let mut q = FreeKVCacheBlockQueue::new(4);
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
    fn bulk_anonymous_pops_and_appends_match_one_at_a_time() {
        let mut bulk = FreeKVCacheBlockQueue::new(8);
        let mut single = bulk.clone();
        let mut got = Vec::new();
        assert_eq!(bulk.pop_anonymous_run(5, &mut got), 5);
        let one: Vec<_> = (0..5).filter_map(|_| single.popleft()).collect();
        assert_eq!(got, one);
        bulk.append_anonymous_rev(&got[1..4]);
        for &b in got[1..4].iter().rev() {
            single.append_anonymous(b);
        }
        assert_eq!(bulk.iter().collect::<Vec<_>>(), single.iter().collect::<Vec<_>>());
        assert_eq!(bulk.len(), single.len());
    }

    #[test]
    fn a_preempted_requests_blocks_are_evicted_in_lru_order_tail_first() {
        let (mut pool, got) = pool_with_blocks(5, 3);
        for (i, &b) in got.iter().enumerate().rev() {
            pool.free_private_block(b, own(i as u32));
        }
        // Never-used blocks 3 and 4 first, then the request's tail block first.
        assert_eq!(queue_ids(&pool), [3, 4, 2, 1, 0]);
        assert_eq!(pool.num_used_blocks() + pool.num_free_blocks(), 5);
        let mut again = Vec::new();
        assert!(pool.get_new_blocks(3, &mut again));
        assert_eq!(again, [BlockId(3), BlockId(4), BlockId(2)]);
        assert_eq!(pool.block_hash(BlockId(2)), None, "evicted");
        assert_eq!(pool.block_hash(BlockId(1)), own(1));
    }

    #[test]
    fn a_hit_on_an_own_cached_block_makes_it_private_again() {
        let (mut pool, got) = pool_with_blocks(3, 1);
        pool.free_private_block(got[0], own(0));
        assert_eq!((queue_ids(&pool), pool.ref_cnt(got[0])), (vec![1, 2, 0], 0));
        pool.touch(got[0]);
        assert_eq!(queue_ids(&pool), [1, 2]);
        assert_eq!((pool.block_hash(got[0]), pool.num_used_blocks()), (None, 1));
        pool.free_private_block(got[0], None);
        assert_eq!(queue_ids(&pool), [0, 1, 2], "anonymous, handed out first");
    }

    #[test]
    fn a_finished_requests_blocks_go_back_anonymously_and_are_reused_hot_first() {
        let (mut pool, got) = pool_with_blocks(5, 3);
        let PoolOps::Static(mut ops) = pool.ops() else { panic!("a new pool is static") };
        ops.free_private_blocks_finished(&got);
        assert!(got.iter().all(|&b| pool.block_hash(b).is_none()));
        assert_eq!(queue_ids(&pool), [0, 1, 2, 3, 4], "the last freed (block 0) comes back first");
        assert_eq!(pool.num_used_blocks(), 0);
        let mut again = Vec::new();
        assert!(pool.get_new_blocks(1, &mut again));
        assert_eq!(again, [BlockId(0)]);
    }

    #[test]
    fn named_and_anonymous_blocks_keep_their_places_in_the_queue() {
        let (mut pool, got) = pool_with_blocks(4, 4);
        pool.cache_full_block(got[2], 10);
        pool.free_private_block(BlockId(0), None);
        pool.free_shared_block(BlockId(2));
        pool.free_private_block(BlockId(1), None);
        // Queue: anonymous 0, named 2, anonymous 1. The prefix block is evicted second.
        let mut again = Vec::new();
        assert!(pool.get_new_blocks(1, &mut again));
        assert_eq!(pool.get_cached_block(10), Some(BlockId(2)));
        assert!(pool.get_new_blocks(1, &mut again));
        assert_eq!(pool.get_cached_block(10), None);
        assert_eq!(again[1], BlockId(2));
    }

    #[test]
    fn removed_entries_are_compacted_without_losing_order() {
        let n = 400;
        let (mut pool, got) = pool_with_blocks(n, n);
        for (i, &b) in got.iter().enumerate() {
            pool.cache_full_block(b, 1000 + i as u64);
            pool.free_shared_block(b);
        }
        // Hit and release every block twice over: 800 removals force compactions.
        for _ in 0..2 {
            for &b in &got {
                pool.touch(b);
                pool.free_shared_block(b);
            }
        }
        assert!(pool.free_block_queue.entries.len() < 2 * n as usize);
        assert_eq!(queue_ids(&pool), got.iter().map(|b| b.0).collect::<Vec<_>>());
        assert_eq!(pool.num_free_blocks(), n);
    }

    #[test]
    fn allocation_evicts_the_hash_of_a_reused_block() {
        let (mut pool, got) = pool_with_blocks(1, 1);
        let h = BlockHash::Content(9);
        pool.cache_full_block(got[0], 9);
        assert_eq!(pool.get_cached_block(9), Some(BlockId(0)));
        pool.free_shared_block(got[0]);
        assert_eq!(pool.block_hash(BlockId(0)), Some(h), "a free block stays cached");
        let mut again = Vec::new();
        assert!(pool.get_new_blocks(1, &mut again));
        assert_eq!(pool.block_hash(BlockId(0)), None);
        assert_eq!(pool.get_cached_block(9), None);
    }

    #[test]
    fn a_shared_block_is_counted_per_reference() {
        let (mut pool, got) = pool_with_blocks(3, 1);
        pool.cache_full_block(got[0], 2);
        pool.touch(got[0]);
        assert_eq!(pool.ref_cnt(got[0]), 2);
        pool.free_shared_block(got[0]);
        assert_eq!((queue_ids(&pool), pool.num_used_blocks()), (vec![1, 2], 1));
        pool.free_shared_block(got[0]);
        assert_eq!(queue_ids(&pool), [1, 2, 0]);
        pool.touch(got[0]);
        assert_eq!((queue_ids(&pool), pool.ref_cnt(got[0])), (vec![1, 2], 1));
    }

    #[test]
    fn a_second_block_with_the_same_content_hash_is_not_registered() {
        let (mut pool, got) = pool_with_blocks(2, 2);
        pool.cache_full_block(got[0], 1);
        pool.cache_full_block(got[1], 1);
        assert_eq!(pool.get_cached_block(1), Some(got[0]));
        assert!(pool.is_shared(got[0]) && !pool.is_shared(got[1]));
    }

    #[test]
    fn asking_for_more_blocks_than_free_allocates_nothing() {
        let mut pool = BlockPool::new(2);
        let mut got = Vec::new();
        assert!(!pool.get_new_blocks(3, &mut got));
        assert!(got.is_empty());
        assert_eq!(pool.num_free_blocks(), 2);
    }
}

#[cfg(test)]
mod proptests;
