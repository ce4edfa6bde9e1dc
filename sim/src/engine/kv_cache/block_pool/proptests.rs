//! Model-based test of [`BlockPool`]: random request lives (prefix hits, private allocations,
//! preemptions with resumption, finishes) run against the pool and against a reference written
//! the way vLLM does it (every block ref-counted and named, one LRU list). Block ids differ
//! between the two (the pool hands out anonymous blocks most-recent first); everything a
//! scheduler can observe must not: free-block counts, which content hashes are cached, and how
//! much of a preempted request's own blocks can still be hit. Content hashes stand for chained
//! hashes: block `index` of prefix `group` hashes to [`content_hash`]`(group, index)`.

use super::*;
use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};

/// vLLM's block pool, literally: per-block counts and hashes, a linked LRU free list (a deque).
struct Reference {
    ref_cnt: Vec<u32>,
    hash: Vec<Option<BlockHash>>,
    queue: VecDeque<u32>,
    map: HashMap<u64, u32>,
}

/// The chained hash of block `index` of prefix `group` (any injective function will do: the pool
/// only stores and compares hashes).
fn content_hash(group: u64, index: u32) -> u64 {
    (group << 32) | u64::from(index)
}

impl Reference {
    fn new(n: u32) -> Self {
        Reference {
            ref_cnt: vec![0; n as usize],
            hash: vec![None; n as usize],
            queue: (0..n).collect(),
            map: HashMap::new(),
        }
    }

    fn alloc(&mut self, out: &mut Vec<u32>) -> u32 {
        let b = self.queue.pop_front().expect("checked free count");
        if let Some(BlockHash::Content(h)) = self.hash[b as usize].take()
            && self.map.get(&h) == Some(&b)
        {
            self.map.remove(&h);
        }
        self.ref_cnt[b as usize] = 1;
        out.push(b);
        b
    }

    fn register(&mut self, b: u32, group: u64, index: u32) {
        let h = content_hash(group, index);
        if let Some(&other) = self.map.get(&h)
            && other != b
            && self.hash[other as usize] == Some(BlockHash::Content(h))
        {
            return;
        }
        self.map.insert(h, b);
        self.hash[b as usize] = Some(BlockHash::Content(h));
    }

    fn touch(&mut self, b: u32) {
        if self.ref_cnt[b as usize] == 0 {
            let pos = self.queue.iter().position(|&x| x == b).expect("free block is queued");
            self.queue.remove(pos);
        }
        self.ref_cnt[b as usize] += 1;
    }

    /// Drops a reference; a private block gets `content` as its identity when freed.
    fn free(&mut self, b: u32, content: Option<BlockHash>) {
        self.ref_cnt[b as usize] -= 1;
        if self.ref_cnt[b as usize] == 0 {
            if self.hash[b as usize].is_none() {
                self.hash[b as usize] = content;
            }
            self.queue.push_back(b);
        }
    }
}

/// One request in both systems: its prefix group, prefix and own block tables.
struct Life {
    group: u64,
    num_prefix: u32,
    num_own: u32,
    /// (pool, reference) blocks of the prefix region and of the own region.
    prefix: Vec<(BlockId, u32)>,
    own: Vec<(BlockId, u32)>,
    running: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Admit { group: u64, num_prefix: u32, num_own: u32 },
    Preempt(usize),
    Resume(usize),
    Finish(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..3, 0u32..5, 1u32..7).prop_map(|(group, num_prefix, num_own)| Op::Admit { group, num_prefix, num_own }),
        1 => (0usize..16).prop_map(Op::Preempt),
        1 => (0usize..16).prop_map(Op::Resume),
        2 => (0usize..16).prop_map(Op::Finish),
    ]
}

struct Both {
    pool: BlockPool,
    reference: Reference,
    lives: Vec<Life>,
}

impl Both {
    fn own_hash(&self, life: usize, index: u32) -> BlockHash {
        BlockHash::Own { request: RequestId(life as u64), index: self.lives[life].num_prefix + index }
    }

    /// Takes the blocks of `life` that are not held yet: prefix hits first (the shared map), then
    /// fresh blocks (prefix ones registered at once, as if filled), then own blocks.
    fn acquire(&mut self, life: usize) -> Result<(), TestCaseError> {
        let (group, num_prefix, num_own) = {
            let l = &self.lives[life];
            (l.group, l.num_prefix, l.num_own)
        };
        // Prefix hits, stopping at the first miss; both must see the same ones.
        let mut hits = Vec::new();
        for index in 0..num_prefix {
            let real = self.pool.get_cached_block(content_hash(group, index));
            let model = self.reference.map.get(&content_hash(group, index)).copied();
            prop_assert_eq!(real.is_some(), model.is_some(), "prefix ({}, {}) cached", group, index);
            match (real, model) {
                (Some(r), Some(m)) => hits.push((r, m)),
                _ => break,
            }
        }
        let fresh = num_prefix - hits.len() as u32 + num_own - self.lives[life].own.len() as u32;
        let evictable_hits = hits.iter().filter(|(r, _)| self.pool.ref_cnt(*r) == 0).count() as u32;
        if fresh + evictable_hits > self.pool.num_free_blocks() {
            return Ok(()); // not admitted now (the scheduler would wait)
        }
        for &(r, m) in &hits {
            self.pool.touch(r);
            self.reference.touch(m);
        }
        let mut prefix = hits;
        for index in prefix.len() as u32..num_prefix {
            let (mut r, mut m) = (Vec::new(), Vec::new());
            prop_assert!(self.pool.get_new_blocks(1, &mut r));
            let m = self.reference.alloc(&mut m);
            self.pool.cache_full_block(r[0], content_hash(group, index));
            self.reference.register(m, group, index);
            prefix.push((r[0], m));
        }
        let need = num_own - self.lives[life].own.len() as u32;
        let (mut r, mut m) = (Vec::new(), Vec::new());
        prop_assert!(self.pool.get_new_blocks(need, &mut r));
        for _ in 0..need {
            self.reference.alloc(&mut m);
        }
        let l = &mut self.lives[life];
        l.prefix = prefix;
        l.own.extend(r.into_iter().zip(m));
        l.running = true;
        Ok(())
    }

    /// Frees `life`'s blocks last first; a preemption keeps own identities, a finish does not
    /// (the pool drops them; the reference keeps them, as vLLM would: never looked up again).
    fn release(&mut self, life: usize, finished: bool) {
        let own: Vec<_> = self.lives[life].own.clone();
        let prefix: Vec<_> = self.lives[life].prefix.clone();
        if finished {
            let PoolOps::Static(mut pool) = self.pool.ops() else { panic!("a static pool") };
            let pool_own: Vec<BlockId> = own.iter().map(|&(r, _)| r).collect();
            pool.free_private_blocks_finished(&pool_own);
            let pool_prefix: Vec<BlockId> = prefix.iter().map(|&(r, _)| r).collect();
            pool.free_shareable_blocks_finished(&pool_prefix);
        } else {
            for (i, &(r, _)) in own.iter().enumerate().rev() {
                let content = Some(self.own_hash(life, i as u32));
                self.pool.free_private_block(r, content);
            }
            for &(r, _) in prefix.iter().rev() {
                if self.pool.is_shared(r) {
                    self.pool.free_shared_block(r);
                } else {
                    self.pool.free_private_block(r, None);
                }
            }
        }
        for (i, &(_, m)) in own.iter().enumerate().rev() {
            let content = Some(self.own_hash(life, i as u32));
            self.reference.free(m, content);
        }
        for &(_, m) in prefix.iter().rev() {
            self.reference.free(m, None);
        }
        let l = &mut self.lives[life];
        l.prefix.clear();
        l.running = false;
        if finished {
            l.own.clear();
        }
    }

    /// A preempted request takes back the leading own blocks still cached (both must agree on how
    /// many), then the rest.
    fn resume(&mut self, life: usize) -> Result<(), TestCaseError> {
        let own = std::mem::take(&mut self.lives[life].own);
        let mut kept = Vec::new();
        for (i, &(r, m)) in own.iter().enumerate() {
            let h = Some(self.own_hash(life, i as u32));
            let (in_pool, in_model) = (self.pool.block_hash(r) == h, self.reference.hash[m as usize] == h);
            prop_assert_eq!(in_pool, in_model, "own block {} of request {} cached", i, life);
            if !in_pool {
                break;
            }
            kept.push((r, m));
        }
        // Conservative: the kept blocks leave the free count when taken back.
        let need = self.lives[life].num_prefix + self.lives[life].num_own;
        if need > self.pool.num_free_blocks() {
            self.lives[life].own = own; // stays preempted
            return Ok(());
        }
        for &(r, m) in &kept {
            self.pool.touch(r);
            self.reference.touch(m);
        }
        self.lives[life].own = kept;
        self.acquire(life)
    }

    fn check(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.pool.num_free_blocks() as usize, self.reference.queue.len());
        prop_assert_eq!(self.pool.num_used_blocks() + self.pool.num_free_blocks(), self.pool.num_blocks());
        prop_assert_eq!(
            self.pool.free_blocks().count() as u32,
            self.pool.num_free_blocks(),
            "the queue holds every free block"
        );
        for group in 0..3 {
            for index in 0..5 {
                let h = content_hash(group, index);
                prop_assert_eq!(self.pool.get_cached_block(h).is_some(), self.reference.map.contains_key(&h));
            }
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn the_pool_evicts_and_counts_as_a_per_block_lru_pool_does(
        num_blocks in 8u32..48,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut both = Both {
            pool: BlockPool::new(num_blocks),
            reference: Reference::new(num_blocks),
            lives: Vec::new(),
        };
        for op in ops {
            match op {
                Op::Admit { group, num_prefix, num_own } => {
                    both.lives.push(Life {
                        group,
                        num_prefix,
                        num_own,
                        prefix: Vec::new(),
                        own: Vec::new(),
                        running: false,
                    });
                    let life = both.lives.len() - 1;
                    both.acquire(life)?;
                }
                Op::Preempt(_) | Op::Finish(_) | Op::Resume(_) if both.lives.is_empty() => {}
                Op::Preempt(k) => {
                    let life = k % both.lives.len();
                    if both.lives[life].running {
                        both.release(life, false);
                    }
                }
                Op::Finish(k) => {
                    let life = k % both.lives.len();
                    if both.lives[life].running {
                        both.release(life, true);
                    }
                }
                Op::Resume(k) => {
                    let life = k % both.lives.len();
                    if !both.lives[life].running && !both.lives[life].own.is_empty() {
                        both.resume(life)?;
                    }
                }
            }
            both.check()?;
        }
    }
}

/// One request's blocks in an elastic pool: prefix region and own region.
struct ElasticLife {
    group: u64,
    num_prefix: u32,
    num_own: u32,
    prefix: Vec<BlockId>,
    own: Vec<BlockId>,
    running: bool,
}

/// An elastic pool under random request lives, freed as `KvCacheManager` frees them (block by
/// block with their identities, or straight to the pages when nothing freed is kept cached).
struct ElasticHarness {
    pool: BlockPool,
    lives: Vec<ElasticLife>,
}

impl ElasticHarness {
    fn own_hash(&self, life: usize, index: u32) -> BlockHash {
        BlockHash::Own { request: RequestId(life as u64), index: self.lives[life].num_prefix + index }
    }

    /// Prefix hits (stopping at the first miss), then fresh prefix blocks registered at once, then
    /// the own blocks not held yet; nothing when the pool cannot allocate them all.
    fn acquire(&mut self, life: usize) -> Result<(), TestCaseError> {
        let (group, num_prefix, num_own) = {
            let l = &self.lives[life];
            (l.group, l.num_prefix, l.num_own)
        };
        let hits: Vec<BlockId> = (0..num_prefix)
            .map_while(|index| self.pool.get_cached_block(content_hash(group, index)))
            .collect();
        let fresh = num_prefix - hits.len() as u32 + num_own - self.lives[life].own.len() as u32;
        let evictable_hits = hits.iter().filter(|&&b| self.pool.ref_cnt(b) == 0).count() as u32;
        if fresh + evictable_hits > self.pool.num_allocatable_blocks() {
            return Ok(());
        }
        for &b in &hits {
            self.pool.touch(b);
        }
        let mut prefix = hits;
        for index in prefix.len() as u32..num_prefix {
            let mut got = Vec::new();
            prop_assert!(self.pool.get_new_blocks(1, &mut got));
            self.pool.cache_full_block(got[0], content_hash(group, index));
            prefix.push(got[0]);
        }
        let mut got = Vec::new();
        prop_assert!(self.pool.get_new_blocks(num_own - self.lives[life].own.len() as u32, &mut got));
        let l = &mut self.lives[life];
        l.prefix = prefix;
        l.own.extend(got);
        l.running = true;
        Ok(())
    }

    /// Frees `life`'s blocks last first, as `KvCacheManager::free` does on an elastic pool (a
    /// finish frees as a preemption does; it only forgets the own blocks).
    fn release(&mut self, life: usize, finished: bool) {
        let own = self.lives[life].own.clone();
        let prefix = std::mem::take(&mut self.lives[life].prefix);
        let PoolOps::Elastic(mut pool) = self.pool.ops() else { panic!("an elastic pool") };
        if pool.max_cached_free_blocks() == 0 {
            pool.free_private_blocks_to_pages(&own);
        } else {
            for (i, &b) in own.iter().enumerate().rev() {
                let content = Some(self.own_hash(life, i as u32));
                self.pool.free_private_block(b, content);
            }
        }
        for &b in prefix.iter().rev() {
            if self.pool.is_shared(b) {
                self.pool.free_shared_block(b);
            } else {
                self.pool.free_private_block(b, None);
            }
        }
        let l = &mut self.lives[life];
        l.running = false;
        if finished {
            l.own.clear();
        }
    }

    /// A preempted request takes back its leading own blocks still cached, then the rest.
    fn resume(&mut self, life: usize) -> Result<(), TestCaseError> {
        let own = std::mem::take(&mut self.lives[life].own);
        let kept: Vec<BlockId> = own
            .iter()
            .enumerate()
            .take_while(|&(i, &b)| self.pool.block_hash(b) == Some(self.own_hash(life, i as u32)))
            .map(|(_, &b)| b)
            .collect();
        let need = self.lives[life].num_prefix + self.lives[life].num_own;
        if need > self.pool.num_allocatable_blocks() {
            self.lives[life].own = own;
            return Ok(());
        }
        for &b in &kept {
            self.pool.touch(b);
        }
        self.lives[life].own = kept;
        self.acquire(life)
    }

    /// Every block is in exactly one place: held by running requests (shared ones once), cached in
    /// the free queue (at most the cap), or free on its page; held blocks sit on mapped pages,
    /// and the cached-hash map names blocks holding that content.
    fn check(&self) -> Result<(), TestCaseError> {
        let Some(pages) = self.pool.kind().pages() else { panic!("an elastic pool") };
        pages.check_invariants();
        let mut held = std::collections::BTreeSet::new();
        for l in self.lives.iter().filter(|l| l.running) {
            held.extend(l.prefix.iter().chain(&l.own).copied());
        }
        let cached: Vec<BlockId> = self.pool.free_blocks().collect();
        prop_assert!(cached.len() as u32 <= pages.params().max_cached_free_blocks);
        prop_assert!(cached.iter().all(|b| !held.contains(b) && self.pool.block_hash(*b).is_some()));
        prop_assert_eq!(held.len() as u32, self.pool.num_used_blocks());
        prop_assert!(held.iter().all(|&b| pages.is_mapped(pages.page_of(b))), "a held block is unmapped");
        prop_assert_eq!(
            held.len() as u32 + cached.len() as u32 + pages.num_free_blocks_on_pages(),
            self.pool.num_blocks(),
            "blocks lost or counted twice"
        );
        prop_assert_eq!(self.pool.num_used_blocks() + self.pool.num_free_blocks(), self.pool.num_blocks());
        for group in 0..3 {
            for index in 0..5 {
                let h = content_hash(group, index);
                if let Some(b) = self.pool.get_cached_block(h) {
                    prop_assert_eq!(self.pool.block_hash(b), Some(BlockHash::Content(h)));
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn an_elastic_pool_conserves_its_blocks_and_keeps_held_ones_mapped(
        num_pages in 1u32..12,
        blocks_per_page in 1u32..6,
        min_reserve in 0u32..3,
        extra_reserve in 0u32..3,
        max_cached_free_blocks in prop_oneof![Just(0u32), 1u32..20],
        budget in proptest::option::of(1u32..12),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut pool = BlockPool::new(num_pages * blocks_per_page);
        pool.enable_elastic(ElasticParams {
            blocks_per_page,
            min_reserve_pages: min_reserve,
            max_reserve_pages: min_reserve + extra_reserve,
            max_cached_free_blocks,
        });
        if let Some(pages) = budget {
            pool.kind_mut().set_page_budget(pages, 0);
        }
        let mut h = ElasticHarness { pool, lives: Vec::new() };
        for op in ops {
            match op {
                Op::Admit { group, num_prefix, num_own } => {
                    h.lives.push(ElasticLife {
                        group,
                        num_prefix,
                        num_own,
                        prefix: Vec::new(),
                        own: Vec::new(),
                        running: false,
                    });
                    let life = h.lives.len() - 1;
                    h.acquire(life)?;
                }
                Op::Preempt(_) | Op::Finish(_) | Op::Resume(_) if h.lives.is_empty() => {}
                Op::Preempt(k) | Op::Finish(k) => {
                    let life = k % h.lives.len();
                    if h.lives[life].running {
                        h.release(life, matches!(op, Op::Finish(_)));
                    }
                }
                Op::Resume(k) => {
                    let life = k % h.lives.len();
                    if !h.lives[life].running && !h.lives[life].own.is_empty() {
                        h.resume(life)?;
                    }
                }
            }
            h.check()?;
        }
        for life in 0..h.lives.len() {
            if h.lives[life].running {
                h.release(life, true);
            }
        }
        h.check()?;
        prop_assert_eq!(h.pool.num_used_blocks(), 0);
    }
}
