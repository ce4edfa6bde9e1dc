//! Static vs elastic block pools: [`PoolKind`] holds what differs between vLLM's `BlockPool` and
//! kvcached's `ElasticBlockPool` (where free blocks live, what an allocation or a page budget
//! does), and [`PoolOps`] the bulk frees only one kind has, so `BlockPool` and its callers read
//! as one path and a kind-specific method cannot be called on the other kind. Block bookkeeping
//! itself (counts, hashes, the free queue) stays in `BlockPool`.

use super::{BlockHash, FreeKVCacheBlockQueue, KVCacheBlock};
use crate::engine::kv_cache::ElasticPages;
use crate::ids::BlockId;

/// What backs a [`BlockPool`]'s blocks: the static-vs-elastic differences live in its methods
/// (and in [`PoolOps`], for what only one kind does), so the pool's callers read as one path.
#[derive(Clone, Debug)]
pub enum PoolKind {
    /// vLLM's `BlockPool` (`vllm/v1/core/block_pool.py`): every block's memory is reserved at
    /// start-up and every free block waits in the free queue.
    Static,
    /// kvcached's `ElasticBlockPool` (the `BlockPool` kvcached patches into vLLM's
    /// `vllm/v1/core/block_pool.py`): blocks are grouped in pages mapped on demand; free blocks
    /// live on their pages, and the free queue holds only those kept for their prefix-cache
    /// content (see the module doc).
    Elastic(Box<ElasticPages>),
}

impl PoolKind {
    /// The page table, when elastic.
    #[inline]
    pub fn pages(&self) -> Option<&ElasticPages> {
        match self {
            PoolKind::Static => None,
            PoolKind::Elastic(pages) => Some(pages),
        }
    }

    /// Whether the blocks are paged (kvcached).
    #[inline]
    pub fn is_elastic(&self) -> bool {
        matches!(self, PoolKind::Elastic(_))
    }

    /// Blocks an allocation can take before it maps a page: the free blocks on pages mapped now
    /// (the reserve included) when elastic; unbounded (`u32::MAX`) when static, which maps
    /// nothing.
    #[inline]
    pub fn num_blocks_before_mapping(&self) -> u32 {
        match self {
            PoolKind::Static => u32::MAX,
            PoolKind::Elastic(pages) => pages.num_free_mapped_blocks(),
        }
    }

    /// Blocks an allocation can take before it touches an empty (reserve) page: the free blocks
    /// on mapped pages that hold some block when elastic; unbounded (`u32::MAX`) when static.
    #[inline]
    pub fn num_blocks_before_reserve(&self) -> u32 {
        match self {
            PoolKind::Static => u32::MAX,
            PoolKind::Elastic(pages) => pages.num_free_blocks_on_used_pages(),
        }
    }

    /// Pages mapped now, reserve included (0 when static).
    #[inline]
    pub fn num_mapped_pages(&self) -> u32 {
        self.pages().map_or(0, ElasticPages::num_mapped_pages)
    }

    /// Blocks allocatable now, `queue_len` being the free queue's length: the queue's (every free
    /// block) when static; when elastic, also the free blocks on mapped pages and on the pages the
    /// budget still allows.
    #[inline]
    pub(super) fn num_allocatable_blocks(&self, queue_len: u32) -> u32 {
        match self {
            PoolKind::Static => queue_len,
            PoolKind::Elastic(pages) => pages.num_allocatable_blocks() + queue_len,
        }
    }

    /// Elastic: lets at most `pages` pages be mapped at once (the pages mapped now at least) and
    /// returns the blocks they hold, the pool's new capacity. Static (nothing paged): returns
    /// `capacity` unchanged.
    pub(in crate::engine::kv_cache) fn set_page_budget(&mut self, pages: u32, capacity: u32) -> u32 {
        match self {
            PoolKind::Static => capacity,
            PoolKind::Elastic(e) => {
                e.set_budget(pages.max(e.num_mapped_pages()));
                e.budget() * e.blocks_per_page()
            }
        }
    }

    /// Elastic: the background pre-allocation maps empty pages up to the reserve's minimum, at
    /// most `grant`; returns the pages mapped (0 when static).
    pub(in crate::engine::kv_cache) fn refill_reserve(&mut self, grant: u32) -> u32 {
        match self {
            PoolKind::Static => 0,
            PoolKind::Elastic(pages) => pages.refill_reserve(grant),
        }
    }

    /// Elastic: pages mapped by allocations since the last call (0 when static).
    #[inline]
    pub(in crate::engine::kv_cache) fn take_num_demand_maps(&mut self) -> u32 {
        match self {
            PoolKind::Static => 0,
            PoolKind::Elastic(pages) => pages.take_num_demand_maps(),
        }
    }

    /// Elastic: unmaps every empty page (kvcached's `trim`); returns how many (0 when static).
    pub(in crate::engine::kv_cache) fn trim(&mut self) -> u32 {
        match self {
            PoolKind::Static => 0,
            PoolKind::Elastic(pages) => pages.trim(),
        }
    }

    /// Elastic: takes up to `n` free blocks from mapped pages (mapping pages within the budget)
    /// onto `out`; returns how many. Static: none (its free blocks are all in the free queue).
    #[inline]
    pub(super) fn pop_page_blocks(&mut self, n: u32, out: &mut Vec<BlockId>) -> u32 {
        match self {
            PoolKind::Static => 0,
            PoolKind::Elastic(pages) => pages.pop_blocks(n, out),
        }
    }
}

/// What only one kind of pool does, reached through [`BlockPool::ops`]: matching on it is the
/// one place a caller picks a kind-specific path, and each path's methods exist only there.
pub enum PoolOps<'a> {
    /// A static pool's bulk frees.
    Static(StaticOps<'a>),
    /// An elastic pool's bulk frees.
    Elastic(ElasticOps<'a>),
}

/// The operations of a static pool (see [`PoolOps`]).
pub struct StaticOps<'a> {
    pub(super) blocks: &'a mut [KVCacheBlock],
    pub(super) free_block_queue: &'a mut FreeKVCacheBlockQueue,
    pub(super) num_used_blocks: &'a mut u32,
}

/// The operations of an elastic pool (see [`PoolOps`]).
pub struct ElasticOps<'a> {
    pub(super) blocks: &'a mut [KVCacheBlock],
    pub(super) num_used_blocks: &'a mut u32,
    pub(super) pages: &'a mut ElasticPages,
}

impl StaticOps<'_> {
    /// Its request, done for good, frees its private `blocks`, none holding anything anyone can
    /// hit: all go to the free queue's tail anonymously, the last first (one copy, no block
    /// touched). Elastic pools free block by block ([`BlockPool::free_private_block`]).
    #[inline]
    pub fn free_private_blocks_finished(&mut self, blocks: &[BlockId]) {
        *self.num_used_blocks -= blocks.len() as u32;
        self.free_block_queue.append_anonymous_rev(blocks);
    }

    /// Its request, done for good, frees the blocks of its shared-content region, last first:
    /// registered content blocks drop a reference (cached when it was the last), unregistered
    /// ones go back anonymously. [`BlockPool::free_shared_block`] and
    /// [`BlockPool::free_private_block`] one by one, in one pass.
    #[inline]
    pub fn free_shareable_blocks_finished(&mut self, blocks: &[BlockId]) {
        for &block in blocks.iter().rev() {
            let b = &mut self.blocks[block.index()];
            if let Some(BlockHash::Content(_)) = b.block_hash {
                debug_assert!(b.ref_cnt > 0, "freeing free block {block}");
                b.ref_cnt -= 1;
                if b.ref_cnt > 0 {
                    continue;
                }
                self.free_block_queue.append(self.blocks, block);
            } else {
                b.ref_cnt = 0;
                self.free_block_queue.append_anonymous(block);
            }
            *self.num_used_blocks -= 1;
        }
    }
}

impl ElasticOps<'_> {
    /// Free blocks kept only for their prefix-cache content at most (see
    /// `ElasticParams::max_cached_free_blocks`).
    #[inline]
    pub fn max_cached_free_blocks(&self) -> u32 {
        self.pages.params().max_cached_free_blocks
    }

    /// Its request frees its private `blocks` while the pool keeps no freed block for its content
    /// (prefix caching off, or a cache cap of 0): each goes straight back to its page, the last
    /// first, as [`BlockPool::free_private_block`] one by one would (page runs in bulk:
    /// `ElasticPages::release_blocks`).
    pub fn free_private_blocks_to_pages(&mut self, blocks: &[BlockId]) {
        *self.num_used_blocks -= blocks.len() as u32;
        for &b in blocks {
            let block = &mut self.blocks[b.index()];
            debug_assert!(block.block_hash.is_none(), "private block {b} holds an identity");
            block.ref_cnt = 0;
        }
        self.pages.release_blocks(blocks.iter().rev().copied());
    }
}
