//! Property tests of elastic KV: several instances' `KvCacheManager`s drawing pages from one
//! `GpuPool` under random allocations and frees keep the pool's invariants.

use super::pool::{GpuPool, PoolSlot};
use crate::engine::kv_cache::{ElasticParams, KvCacheManager};
use crate::engine::request::Request;
use crate::ids::{GpuId, InstanceId};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Admit a request of `prompt` tokens on tenant `t`.
    Add { t: usize, prompt: u32 },
    /// Grow request `i` (mod the live ones) of tenant `t` by `tokens`.
    Grow { t: usize, i: usize, tokens: u32 },
    /// Free request `i` of tenant `t`.
    Free { t: usize, i: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..120u32).prop_map(|(t, prompt)| Op::Add { t, prompt }),
        (0..3usize, 0..8usize, 1..40u32).prop_map(|(t, i, tokens)| Op::Grow { t, i, tokens }),
        (0..3usize, 0..8usize).prop_map(|(t, i)| Op::Free { t, i }),
    ]
}

struct Tenant {
    kv: KvCacheManager,
    slot: PoolSlot,
    live: Vec<Request>,
    max_reserve: u32,
}

fn request(id: u64, prompt: u32) -> Request {
    Request::for_test(id, prompt, 200, None)
}

fn check(pool: &GpuPool, tenants: &[Tenant]) {
    assert!(pool.mapped_bytes() <= pool.capacity_bytes(), "pages mapped exceed the pool");
    let mut sum = 0;
    for t in tenants {
        let info = pool.tenant(t.slot);
        let pages = t.kv.elastic().unwrap();
        pages.check_invariants();
        assert_eq!(info.mapped_pages, pages.num_mapped_pages(), "the pool and the instance disagree");
        assert!(info.mapped_pages <= info.limit_pages, "an instance exceeds its limit");
        let used = t.kv.block_pool().num_used_blocks();
        assert!(used <= pages.num_mapped_pages() * pages.blocks_per_page(), "a used block is unmapped");
        sum += u64::from(info.mapped_pages) * info.page_bytes;
    }
    assert_eq!(sum, pool.mapped_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn colocated_elastic_instances_never_overcommit_the_pool_and_free_every_page(
        capacity in 300u64..3000,
        limits in proptest::collection::vec(1u32..12, 3),
        reserves in proptest::collection::vec((0u32..3, 0u32..4), 3),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let (mut pool, mut tenants) = three_tenants(capacity, &limits, &reserves);
        for t in &mut tenants {
            pool.settle(t.slot, &mut t.kv).unwrap();
        }
        let mut next_id = 0;
        for op in ops {
            match op {
                Op::Add { t, prompt } => {
                    let tn = &mut tenants[t];
                    pool.settle(tn.slot, &mut tn.kv).unwrap();
                    let mut r = request(next_id, prompt);
                    next_id += 1;
                    if tn.kv.allocate_slots(&mut r, prompt, 0).is_some() {
                        r.num_computed_tokens = prompt;
                        tn.live.push(r);
                    }
                    pool.settle(tn.slot, &mut tn.kv).unwrap();
                }
                Op::Grow { t, i, tokens } => {
                    let tn = &mut tenants[t];
                    if tn.live.is_empty() {
                        continue;
                    }
                    pool.settle(tn.slot, &mut tn.kv).unwrap();
                    let i = i % tn.live.len();
                    let r = &mut tn.live[i];
                    if tn.kv.allocate_slots(r, tokens, 0).is_some() {
                        r.num_computed_tokens += tokens;
                    }
                    pool.settle(tn.slot, &mut tn.kv).unwrap();
                }
                Op::Free { t, i } => {
                    let tn = &mut tenants[t];
                    if tn.live.is_empty() {
                        continue;
                    }
                    let i = i % tn.live.len();
                    let mut r = tn.live.swap_remove(i);
                    tn.kv.free(&mut r);
                    pool.settle(tn.slot, &mut tn.kv).unwrap();
                }
            }
            check(&pool, &tenants);
        }
        for tn in &mut tenants {
            for mut r in tn.live.drain(..) {
                tn.kv.free(&mut r);
            }
            pool.settle(tn.slot, &mut tn.kv).unwrap();
            let pages = tn.kv.elastic().unwrap();
            prop_assert_eq!(tn.kv.block_pool().num_used_blocks(), 0);
            prop_assert_eq!(pages.num_mapped_pages(), pages.num_empty_mapped_pages(), "a page is still in use");
            prop_assert!(pages.num_mapped_pages() <= tn.max_reserve.max(pages.params().min_reserve_pages));
        }
        check(&pool, &tenants);
        for tn in &mut tenants {
            tn.kv.trim();
            pool.settle(tn.slot, &mut tn.kv).unwrap();
            // Settling refills the reserve again; trimming after it must leave nothing mapped.
            tn.kv.trim();
            let mapped = tn.kv.elastic().unwrap().num_mapped_pages();
            prop_assert_eq!(mapped, 0);
            pool.set_mapped(tn.slot, 0).unwrap();
        }
        prop_assert_eq!(pool.mapped_bytes(), 0, "every page is back in the pool");
    }
}

/// A pool of `capacity` bytes with three elastic tenants of different page sizes (page bytes,
/// blocks per page): `limits` pages each, reserves of `min` to `min + extra` pages. Not settled.
fn three_tenants(capacity: u64, limits: &[u32], reserves: &[(u32, u32)]) -> (GpuPool, Vec<Tenant>) {
    let shapes = [(100u64, 4u32), (150, 2), (100, 8)];
    let mut pool = GpuPool::new(GpuId(0), capacity);
    let tenants: Vec<Tenant> = (0..3)
        .map(|i| {
            let (page_bytes, bpp) = shapes[i];
            let (min, extra) = reserves[i];
            let mut kv = KvCacheManager::new(limits[i] * bpp, 16, false);
            kv.enable_elastic(ElasticParams {
                blocks_per_page: bpp,
                min_reserve_pages: min,
                max_reserve_pages: min + extra,
                max_cached_free_blocks: 0,
            });
            let slot = pool.add_tenant(InstanceId(i as u32), page_bytes, limits[i]);
            Tenant { kv, slot, live: Vec::new(), max_reserve: min + extra }
        })
        .collect();
    (pool, tenants)
}

/// Runs `ops` on three tenants of one pool, settling as the driver does; with `full`, every
/// settle takes the full path. Returns the state after each op.
fn settle_trace(
    capacity: u64,
    limits: &[u32],
    reserves: &[(u32, u32)],
    ops: &[Op],
    full: bool,
) -> Vec<String> {
    let (mut pool, mut tenants) = three_tenants(capacity, limits, reserves);
    let settle = |pool: &mut GpuPool, tn: &mut Tenant| {
        if full {
            pool.forget_settles();
        }
        pool.settle(tn.slot, &mut tn.kv).unwrap();
    };
    let mut trace = Vec::new();
    let mut next_id = 0;
    for op in ops {
        match *op {
            Op::Add { t, prompt } => {
                let tn = &mut tenants[t];
                settle(&mut pool, tn);
                let mut r = request(next_id, prompt);
                next_id += 1;
                if tn.kv.allocate_slots(&mut r, prompt, 0).is_some() {
                    r.num_computed_tokens = prompt;
                    tn.live.push(r);
                }
                settle(&mut pool, tn);
            }
            Op::Grow { t, i, tokens } => {
                let tn = &mut tenants[t];
                // A settle with nothing changed since the last (the shortcut's case).
                settle(&mut pool, tn);
                let n = tn.live.len().max(1);
                if let Some(r) = tn.live.get_mut(i % n) {
                    if tn.kv.allocate_slots(r, tokens, 0).is_some() {
                        r.num_computed_tokens += tokens;
                    }
                }
                settle(&mut pool, tn);
            }
            Op::Free { t, i } => {
                let tn = &mut tenants[t];
                if !tn.live.is_empty() {
                    let mut r = tn.live.swap_remove(i % tn.live.len());
                    tn.kv.free(&mut r);
                }
                settle(&mut pool, tn);
            }
        }
        let kvs: Vec<String> =
            tenants.iter().map(|t| format!("{:?} {}", t.kv.elastic(), t.kv.num_free_blocks())).collect();
        trace.push(format!("{} {:?} {kvs:?}", pool.mapped_bytes(), pool.tenants()));
    }
    trace
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_settle_skipped_as_unchanged_leaves_what_a_full_settle_does(
        capacity in 300u64..3000,
        limits in proptest::collection::vec(1u32..12, 3),
        reserves in proptest::collection::vec((0u32..3, 0u32..4), 3),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let quick = settle_trace(capacity, &limits, &reserves, &ops, false);
        let full = settle_trace(capacity, &limits, &reserves, &ops, true);
        prop_assert_eq!(quick, full);
    }
}
