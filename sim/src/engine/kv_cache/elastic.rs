//! Elastic KV (kvcached): an instance's blocks grouped in pages that are mapped to physical GPU
//! memory only while some block on them is held.
//!
//! Mirrors kvcached's `KVCacheManager` + `PageAllocator` (`kvcached/kv_cache_manager.py`,
//! `kvcached/page_allocator.py`): block `b` lives on page `b / blocks_per_page`; allocation takes a
//! free block from an already-mapped page, preferring the page with the fewest free blocks (best
//! fit, so the others can drain and be unmapped), and maps a new page only when no mapped page
//! has a free block; a page whose blocks are all free is kept mapped as one of the instance's
//! reserve pages while fewer than `max_reserve_pages` are, and unmapped otherwise; a background
//! pre-allocation refills the reserve up to `min_reserve_pages`. How many pages may be mapped at
//! once (the page budget) is decided outside, from the GPU's shared pool (`cluster::GpuPool`).
//!
//! Deviations from kvcached: kvcached takes the most recently touched partial page
//! (`avail_pages.popitem()`), this takes the fullest one (ties: the page that reached that count
//! last); pages never
//! straddle blocks (`blocks_per_page = page / block`, the remainder of a page is unused, as in
//! kvcached's `Page.get_num_blocks`). This module only counts pages and blocks: reference counts,
//! content hashes and the prefix cache stay in `BlockPool`; it knows nothing about time or pools.

use crate::ids::BlockId;
use std::collections::VecDeque;

/// Shape and reserve policy of one instance's elastic block space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElasticParams {
    /// Blocks on one page (kvcached's `Page.get_num_blocks(PAGE_SIZE, block_mem_size)`), >= 1.
    pub blocks_per_page: u32,
    /// The background pre-allocation maps pages until this many mapped pages are empty
    /// (kvcached's `MIN_RESERVED_PAGES`).
    pub min_reserve_pages: u32,
    /// A page that becomes empty stays mapped while fewer empty pages are (kvcached's
    /// `MAX_RESERVED_PAGES`); beyond that it is unmapped.
    pub max_reserve_pages: u32,
    /// Free blocks kept only for their prefix-cache content at most (0: nothing is kept cached
    /// once freed). `prefix_cache_max_tokens / block_size` with prefix caching on.
    pub max_cached_free_blocks: u32,
}

/// The page table of one instance's elastic block space; see the module doc.
#[derive(Clone, Debug)]
pub struct ElasticPages {
    params: ElasticParams,
    /// `log2(blocks_per_page)` when it is a power of two (the common case): `page_of` shifts.
    page_shift: Option<u32>,
    num_pages: u32,
    /// Whether each page is mapped.
    mapped: Vec<bool>,
    /// Free blocks of each page that are not kept for the prefix cache (all of an unmapped page's).
    num_free: Vec<u32>,
    /// Page `p`'s free blocks are `stack[p * bpp .. p * bpp + num_free[p]]`, popped from the end.
    stack: Vec<BlockId>,
    /// Every mapped page with a free block, by its number of free blocks.
    avail: Buckets,
    /// Unmapped pages, mapped again first-in first-out (kvcached's `free_page_list`).
    unmapped: VecDeque<u32>,
    num_mapped: u32,
    /// Mapped pages with every block free (the reserve).
    num_empty_mapped: u32,
    /// Free blocks on mapped pages (not counting blocks kept for the prefix cache).
    num_free_mapped: u32,
    /// Pages that may be mapped at once.
    budget: u32,
    /// Pages mapped by allocations since the last `take_num_demand_maps` (the reserve was empty).
    num_demand_maps: u32,
}

impl ElasticPages {
    /// `num_pages` unmapped pages of `params.blocks_per_page` blocks each (block ids
    /// `0..num_pages * blocks_per_page`), with a budget of every page.
    pub fn new(num_pages: u32, params: ElasticParams) -> Self {
        let bpp = params.blocks_per_page.max(1);
        let params = ElasticParams { blocks_per_page: bpp, ..params };
        let mut stack = Vec::with_capacity((num_pages * bpp) as usize);
        for p in 0..num_pages {
            // Popped from the end: the lowest block id of a page goes first.
            stack.extend((0..bpp).rev().map(|i| BlockId(p * bpp + i)));
        }
        ElasticPages {
            params,
            page_shift: bpp.is_power_of_two().then(|| bpp.trailing_zeros()),
            num_pages,
            mapped: vec![false; num_pages as usize],
            num_free: vec![bpp; num_pages as usize],
            stack,
            avail: Buckets::new(num_pages, bpp),
            unmapped: (0..num_pages).collect(),
            num_mapped: 0,
            num_empty_mapped: 0,
            num_free_mapped: 0,
            budget: num_pages,
            num_demand_maps: 0,
        }
    }

    /// The shape and reserve policy.
    pub fn params(&self) -> &ElasticParams {
        &self.params
    }

    /// Blocks per page.
    #[inline]
    pub fn blocks_per_page(&self) -> u32 {
        self.params.blocks_per_page
    }

    /// Pages of the block space (mapped or not).
    pub fn num_pages(&self) -> u32 {
        self.num_pages
    }

    /// Pages mapped now, reserve included.
    #[inline]
    pub fn num_mapped_pages(&self) -> u32 {
        self.num_mapped
    }

    /// Mapped pages with every block free (the reserve).
    pub fn num_empty_mapped_pages(&self) -> u32 {
        self.num_empty_mapped
    }

    /// Pages that may be mapped at once.
    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// Sets how many pages may be mapped at once (at most every page). A budget below the pages
    /// already mapped unmaps nothing; it only stops new mappings.
    pub fn set_budget(&mut self, pages: u32) {
        self.budget = pages.min(self.num_pages);
    }

    /// Free blocks on mapped pages, not counting blocks kept for the prefix cache.
    pub fn num_free_mapped_blocks(&self) -> u32 {
        self.num_free_mapped
    }

    /// Free blocks on every page, mapped or not, not counting blocks kept for the prefix cache.
    pub fn num_free_blocks_on_pages(&self) -> u32 {
        self.num_free_mapped + (self.num_pages - self.num_mapped) * self.params.blocks_per_page
    }

    /// Free blocks on mapped pages that are not empty: allocations take all of these (fullest
    /// page first) before any block of an empty page.
    #[inline]
    pub fn num_free_blocks_on_used_pages(&self) -> u32 {
        self.num_free_mapped - self.num_empty_mapped * self.params.blocks_per_page
    }

    /// Blocks an allocation can get without evicting cached blocks: free ones on mapped pages plus
    /// those of the pages the budget still allows to map.
    #[inline]
    pub fn num_allocatable_blocks(&self) -> u32 {
        let more_pages = self.budget.saturating_sub(self.num_mapped);
        self.num_free_mapped + more_pages * self.params.blocks_per_page
    }

    /// Pages mapped by allocations (the reserve was empty) since the last call; resets the count.
    pub fn take_num_demand_maps(&mut self) -> u32 {
        std::mem::take(&mut self.num_demand_maps)
    }

    /// The page block `b` lives on.
    #[inline]
    pub fn page_of(&self, b: BlockId) -> u32 {
        match self.page_shift {
            Some(shift) => b.0 >> shift,
            None => b.0 / self.params.blocks_per_page,
        }
    }

    /// Whether page `p` is mapped.
    pub fn is_mapped(&self, p: u32) -> bool {
        self.mapped[p as usize]
    }

    /// Takes a free block: from the fullest mapped page with one, else from a newly mapped page
    /// (counted as a demand map) when the budget allows; `None` otherwise (the caller may then
    /// evict a cached block).
    pub fn pop_block(&mut self) -> Option<BlockId> {
        let page = match self.avail.first() {
            Some((_, p)) => p,
            None => {
                if self.num_mapped >= self.budget {
                    return None;
                }
                let p = self.map_page()?;
                self.num_demand_maps += 1;
                p
            }
        };
        let bpp = self.params.blocks_per_page;
        let n = self.num_free[page as usize];
        debug_assert!(n > 0 && self.mapped[page as usize]);
        if n == bpp {
            self.num_empty_mapped -= 1;
        }
        self.avail.remove(n, page);
        if n > 1 {
            self.avail.insert(n - 1, page);
        }
        self.num_free[page as usize] = n - 1;
        self.num_free_mapped -= 1;
        Some(self.stack[(page * bpp + n - 1) as usize])
    }

    /// Takes up to `n` free blocks onto `out`, exactly as `n` calls of
    /// [`ElasticPages::pop_block`] would (same blocks, same order, same pages mapped on demand),
    /// stopping at the first call that would return `None`; returns how many it took. Pages are
    /// drained whole: the page a block comes from is the fullest and stays the fullest until
    /// empty, so its blocks are taken in one go and its bucket moves once.
    pub fn pop_blocks(&mut self, n: u32, out: &mut Vec<BlockId>) -> u32 {
        let bpp = self.params.blocks_per_page;
        let mut left = n;
        while left > 0 {
            let page = match self.avail.first() {
                Some((_, p)) => p,
                None => {
                    if self.num_mapped >= self.budget {
                        break;
                    }
                    let Some(p) = self.map_page() else { break };
                    self.num_demand_maps += 1;
                    p
                }
            };
            let free = self.num_free[page as usize];
            debug_assert!(free > 0 && self.mapped[page as usize]);
            let take = free.min(left);
            if free == bpp {
                self.num_empty_mapped -= 1;
            }
            self.avail.remove(free, page);
            if free > take {
                self.avail.insert(free - take, page);
            }
            self.num_free[page as usize] = free - take;
            self.num_free_mapped -= take;
            // `pop_block` takes the top of the page's stack first.
            let base = (page * bpp) as usize;
            out.extend(self.stack[base + (free - take) as usize..base + free as usize].iter().rev());
            left -= take;
        }
        n - left
    }

    /// Gives `blocks` back, in order, exactly as [`ElasticPages::release`] one by one would: a
    /// run of consecutive blocks on one page fills its stack in one go and moves its bucket once
    /// (a page can only become empty with the last block of its run).
    pub fn release_blocks(&mut self, blocks: impl IntoIterator<Item = BlockId>) {
        let bpp = self.params.blocks_per_page;
        // The open run: its page and the page's free count before it.
        let mut run: Option<(u32, u32)> = None;
        for b in blocks {
            let page = self.page_of(b);
            match run {
                Some((p, _)) if p == page => {}
                Some((p, before)) => {
                    self.close_release_run(p, before);
                    run = Some((page, self.num_free[page as usize]));
                }
                None => run = Some((page, self.num_free[page as usize])),
            }
            let n = self.num_free[page as usize];
            debug_assert!(self.mapped[page as usize], "block {b} freed on unmapped page {page}");
            debug_assert!(n < bpp, "block {b} freed twice");
            self.stack[(page * bpp + n) as usize] = b;
            self.num_free[page as usize] = n + 1;
        }
        if let Some((p, before)) = run {
            self.close_release_run(p, before);
        }
    }

    /// Ends a run of releases on page `p`, which had `before` free blocks: counts and buckets as
    /// after the last [`ElasticPages::release`] of the run.
    fn close_release_run(&mut self, p: u32, before: u32) {
        let bpp = self.params.blocks_per_page;
        let now = self.num_free[p as usize];
        self.num_free_mapped += now - before;
        if before > 0 {
            self.avail.remove(before, p);
        }
        if now < bpp {
            self.avail.insert(now, p);
        } else if self.num_empty_mapped < self.params.max_reserve_pages {
            self.avail.insert(now, p);
            self.num_empty_mapped += 1;
        } else {
            self.unmap_page(p);
        }
    }

    /// Gives block `b` back to its page (it is no longer held, not even by the prefix cache). A
    /// page left with every block free stays mapped as a reserve page while fewer than
    /// `max_reserve_pages` are, and is unmapped otherwise (kvcached's `PageAllocator.free_pages`).
    pub fn release(&mut self, b: BlockId) {
        let bpp = self.params.blocks_per_page;
        let page = self.page_of(b);
        let n = self.num_free[page as usize];
        debug_assert!(self.mapped[page as usize], "block {b} freed on unmapped page {page}");
        debug_assert!(n < bpp, "block {b} freed twice");
        self.stack[(page * bpp + n) as usize] = b;
        self.num_free[page as usize] = n + 1;
        self.num_free_mapped += 1;
        if n > 0 {
            self.avail.remove(n, page);
        }
        if n + 1 < bpp {
            self.avail.insert(n + 1, page);
        } else if self.num_empty_mapped < self.params.max_reserve_pages {
            self.avail.insert(n + 1, page);
            self.num_empty_mapped += 1;
        } else {
            self.unmap_page(page);
        }
    }

    /// The background pre-allocation (kvcached's `_prealloc_worker`): maps empty pages until
    /// `min_reserve_pages` are, at most `grant` of them (what the GPU's pool can give). Returns
    /// the pages mapped; they cost no map latency.
    pub fn refill_reserve(&mut self, grant: u32) -> u32 {
        let want = self.params.min_reserve_pages.saturating_sub(self.num_empty_mapped).min(grant);
        let mut done = 0;
        while done < want && self.map_page().is_some() {
            done += 1;
        }
        done
    }

    /// Unmaps every empty mapped page (kvcached's `trim`, e.g. at shutdown); returns how many.
    pub fn trim(&mut self) -> u32 {
        let bpp = self.params.blocks_per_page;
        let empty = self.avail.pages_in(bpp);
        for &p in &empty {
            self.avail.remove(bpp, p);
            self.num_empty_mapped -= 1;
            self.unmap_page(p);
        }
        empty.len() as u32
    }

    /// Maps the next unmapped page (every block free, so an empty one) and lists it as available.
    fn map_page(&mut self) -> Option<u32> {
        let p = self.unmapped.pop_front()?;
        let bpp = self.params.blocks_per_page;
        debug_assert!(!self.mapped[p as usize] && self.num_free[p as usize] == bpp);
        self.mapped[p as usize] = true;
        self.num_mapped += 1;
        self.num_empty_mapped += 1;
        self.num_free_mapped += bpp;
        self.avail.insert(bpp, p);
        Some(p)
    }

    /// Unmaps page `p`, whose blocks are all free and which is not listed as available.
    fn unmap_page(&mut self, p: u32) {
        self.mapped[p as usize] = false;
        self.num_mapped -= 1;
        self.num_free_mapped -= self.params.blocks_per_page;
        self.unmapped.push_back(p);
    }

    /// Checks the page table's own counts (tests and debug builds).
    pub fn check_invariants(&self) {
        let bpp = self.params.blocks_per_page;
        let mapped = self.mapped.iter().filter(|&&m| m).count() as u32;
        assert_eq!(mapped, self.num_mapped);
        assert_eq!(self.unmapped.len() as u32 + mapped, self.num_pages);
        let mut free_mapped = 0;
        let mut empty = 0;
        for p in 0..self.num_pages {
            let n = self.num_free[p as usize];
            if self.mapped[p as usize] {
                free_mapped += n;
                empty += u32::from(n == bpp);
                assert_eq!(self.avail.contains(n, p), n > 0, "page {p}");
            } else {
                assert_eq!(n, bpp, "unmapped page {p} holds blocks");
            }
        }
        assert_eq!(free_mapped, self.num_free_mapped);
        assert_eq!(empty, self.num_empty_mapped);
        assert!(self.num_empty_mapped <= self.params.max_reserve_pages.max(self.params.min_reserve_pages));
    }
}

/// Pages bucketed by their number of free blocks (1..=blocks per page): intrusive doubly linked
/// lists, so moving a page between buckets is O(1), and a bitset of the non-empty buckets, so the
/// best fit (lowest non-empty bucket) is a few word scans.
#[derive(Clone, Debug)]
struct Buckets {
    head: Vec<Option<u32>>,
    prev: Vec<Option<u32>>,
    next: Vec<Option<u32>>,
    nonempty: Vec<u64>,
}

impl Buckets {
    fn new(num_pages: u32, blocks_per_page: u32) -> Buckets {
        let n = blocks_per_page as usize + 1;
        Buckets {
            head: vec![None; n],
            prev: vec![None; num_pages as usize],
            next: vec![None; num_pages as usize],
            nonempty: vec![0; n.div_ceil(64)],
        }
    }

    /// Puts page `p` (in no bucket) first in bucket `k`.
    #[inline]
    fn insert(&mut self, k: u32, p: u32) {
        let old = self.head[k as usize].replace(p);
        self.prev[p as usize] = None;
        self.next[p as usize] = old;
        if let Some(o) = old {
            self.prev[o as usize] = Some(p);
        }
        self.nonempty[k as usize / 64] |= 1 << (k % 64);
    }

    /// Takes page `p` out of bucket `k`, where it is.
    #[inline]
    fn remove(&mut self, k: u32, p: u32) {
        let (prev, next) = (self.prev[p as usize].take(), self.next[p as usize].take());
        match prev {
            Some(q) => self.next[q as usize] = next,
            None => self.head[k as usize] = next,
        }
        if let Some(q) = next {
            self.prev[q as usize] = prev;
        }
        if self.head[k as usize].is_none() {
            self.nonempty[k as usize / 64] &= !(1 << (k % 64));
        }
    }

    /// The first page of the lowest non-empty bucket, with the bucket.
    #[inline]
    fn first(&self) -> Option<(u32, u32)> {
        let (w, bits) = self.nonempty.iter().enumerate().find(|(_, b)| **b != 0)?;
        let k = w as u32 * 64 + bits.trailing_zeros();
        self.head[k as usize].map(|p| (k, p))
    }

    /// The pages of bucket `k`, first to last.
    fn pages_in(&self, k: u32) -> Vec<u32> {
        std::iter::successors(self.head[k as usize], |&p| self.next[p as usize]).collect()
    }

    /// Whether page `p` is in bucket `k` (O(bucket)).
    fn contains(&self, k: u32, p: u32) -> bool {
        k > 0 && (k as usize) < self.head.len() && self.pages_in(k).contains(&p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One operation on a page table, applied in bulk to one copy and block by block to another.
    #[derive(Clone, Debug)]
    enum Op {
        /// Take this many blocks.
        Pop(u32),
        /// Give back this many held blocks, starting at this offset into the held list (mod).
        Release(usize, usize),
        Budget(u32),
        Refill(u32),
        Trim,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..40).prop_map(Op::Pop),
            4 => (0usize..1000, 0usize..40).prop_map(|(at, n)| Op::Release(at, n)),
            1 => (0u32..12).prop_map(Op::Budget),
            1 => (0u32..4).prop_map(Op::Refill),
            1 => Just(Op::Trim),
        ]
    }

    proptest! {
        #[test]
        fn the_page_of_a_block_by_shift_equals_division(bpp in 1u32..300, block in 0u32..1_000_000) {
            let p = ElasticParams {
                blocks_per_page: bpp,
                min_reserve_pages: 0,
                max_reserve_pages: 0,
                max_cached_free_blocks: 0,
            };
            prop_assert_eq!(ElasticPages::new(1, p).page_of(BlockId(block)), block / bpp);
        }

        #[test]
        fn bulk_pops_and_releases_match_one_block_at_a_time(
            num_pages in 1u32..10,
            bpp in 1u32..9,
            min in 0u32..3,
            extra in 0u32..3,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let p = ElasticParams {
                blocks_per_page: bpp,
                min_reserve_pages: min,
                max_reserve_pages: min + extra,
                max_cached_free_blocks: 0,
            };
            let (mut bulk, mut one) = (ElasticPages::new(num_pages, p), ElasticPages::new(num_pages, p));
            let mut held: Vec<BlockId> = Vec::new();
            for op in ops {
                match op {
                    Op::Pop(n) => {
                        let mut got = Vec::new();
                        let k = bulk.pop_blocks(n, &mut got);
                        let want: Vec<BlockId> = (0..n).map_while(|_| one.pop_block()).collect();
                        prop_assert_eq!(k as usize, got.len());
                        prop_assert_eq!(&got, &want);
                        held.extend(got);
                    }
                    Op::Release(at, n) if !held.is_empty() => {
                        // A contiguous slice of the held blocks (often runs on one page), in order.
                        let at = at % held.len();
                        let n = n.min(held.len() - at);
                        let gone: Vec<BlockId> = held.drain(at..at + n).collect();
                        bulk.release_blocks(gone.iter().copied());
                        for &b in &gone {
                            one.release(b);
                        }
                    }
                    Op::Release(..) => {}
                    Op::Budget(b) => {
                        bulk.set_budget(b);
                        one.set_budget(b);
                    }
                    Op::Refill(g) => prop_assert_eq!(bulk.refill_reserve(g), one.refill_reserve(g)),
                    Op::Trim => prop_assert_eq!(bulk.trim(), one.trim()),
                }
                bulk.check_invariants();
                prop_assert_eq!(format!("{bulk:?}"), format!("{one:?}"));
                prop_assert_eq!(bulk.take_num_demand_maps(), one.take_num_demand_maps());
            }
        }
    }

    fn params(bpp: u32, min: u32, max: u32) -> ElasticParams {
        ElasticParams {
            blocks_per_page: bpp,
            min_reserve_pages: min,
            max_reserve_pages: max,
            max_cached_free_blocks: 0,
        }
    }

    #[test]
    fn the_first_block_maps_a_page_on_demand_and_the_next_ones_fill_it() {
        let mut e = ElasticPages::new(4, params(4, 0, 0));
        assert_eq!(e.pop_block(), Some(BlockId(0)));
        assert_eq!((e.num_mapped_pages(), e.take_num_demand_maps()), (1, 1));
        assert_eq!(e.pop_block(), Some(BlockId(1)));
        assert_eq!(e.take_num_demand_maps(), 0, "the page was already mapped");
        assert_eq!(e.num_allocatable_blocks(), 2 + 3 * 4);
        e.check_invariants();
    }

    #[test]
    fn allocation_prefers_the_fullest_mapped_page() {
        let mut e = ElasticPages::new(4, params(4, 0, 4));
        let blocks: Vec<BlockId> = (0..8).map(|_| e.pop_block().unwrap()).collect();
        assert_eq!(e.num_mapped_pages(), 2);
        // Page 0 keeps 1 block, page 1 keeps 3: the next block comes from page 1.
        for &b in &[blocks[0], blocks[1], blocks[2], blocks[4]] {
            e.release(b);
        }
        let b = e.pop_block().unwrap();
        assert_eq!(e.page_of(b), 1);
        e.check_invariants();
    }

    #[test]
    fn an_empty_page_beyond_the_reserve_is_unmapped() {
        let mut e = ElasticPages::new(4, params(2, 0, 1));
        let blocks: Vec<BlockId> = (0..6).map(|_| e.pop_block().unwrap()).collect();
        assert_eq!(e.num_mapped_pages(), 3);
        for &b in &blocks {
            e.release(b);
        }
        assert_eq!((e.num_mapped_pages(), e.num_empty_mapped_pages()), (1, 1), "one page kept as reserve");
        e.check_invariants();
    }

    #[test]
    fn a_page_with_one_held_block_stays_mapped() {
        let mut e = ElasticPages::new(2, params(4, 0, 0));
        let a = e.pop_block().unwrap();
        let b = e.pop_block().unwrap();
        e.release(a);
        assert_eq!(e.num_mapped_pages(), 1);
        e.release(b);
        assert_eq!(e.num_mapped_pages(), 0);
        e.check_invariants();
    }

    #[test]
    fn the_budget_caps_mapping_and_the_reserve_refill_costs_no_demand_map() {
        let mut e = ElasticPages::new(8, params(2, 3, 5));
        e.set_budget(2);
        assert_eq!(e.refill_reserve(2), 2);
        assert_eq!(e.take_num_demand_maps(), 0);
        assert_eq!(e.num_allocatable_blocks(), 4);
        let got: Vec<_> = (0..5).map(|_| e.pop_block()).collect();
        assert_eq!(got.iter().flatten().count(), 4, "the 5th block needs a third page: over budget");
        assert_eq!(e.take_num_demand_maps(), 0, "both pages came from the reserve");
        e.check_invariants();
    }

    #[test]
    fn trim_unmaps_every_empty_page_and_keeps_the_held_ones() {
        let mut e = ElasticPages::new(8, params(2, 4, 8));
        e.refill_reserve(8);
        let b = e.pop_block().unwrap();
        assert_eq!(e.num_mapped_pages(), 4);
        assert_eq!(e.trim(), 3);
        assert_eq!(e.num_mapped_pages(), 1);
        e.release(b);
        assert_eq!(e.trim(), 1);
        assert_eq!(e.num_mapped_pages(), 0);
        e.check_invariants();
    }
}
