//! Known-answer tests of `KvCacheManager` with elastic KV: pages mapped on demand within the
//! budget, freed back, and the capped prefix cache.

use super::*;
use crate::workload::PrefixRef;

use super::tests::request;

/// 8 pages of 4 blocks of 16 tokens; reserve kept between `min` and `max` pages.
fn elastic(caching: bool, min: u32, max: u32, cached: u32) -> KvCacheManager {
    let mut kv = KvCacheManager::new(32, 16, caching);
    kv.enable_elastic(ElasticParams {
        blocks_per_page: 4,
        min_reserve_pages: min,
        max_reserve_pages: max,
        max_cached_free_blocks: cached,
    });
    kv
}

fn mapped(kv: &KvCacheManager) -> u32 {
    kv.elastic().unwrap().num_mapped_pages()
}

fn admit(kv: &mut KvCacheManager, req: &mut Request) -> Option<u32> {
    let hits = kv.get_computed_blocks(req);
    kv.allocate_slots(req, req.num_tokens() - hits, hits)?;
    req.num_computed_tokens = req.num_tokens();
    Some(hits)
}

#[test]
fn pages_are_mapped_only_as_blocks_need_them() {
    let mut kv = elastic(false, 0, 0, 0);
    assert_eq!(mapped(&kv), 0);
    let mut r = request(0, 40, None);
    assert_eq!(kv.allocate_slots(&mut r, 40, 0), Some(3));
    assert_eq!((mapped(&kv), kv.take_num_demand_maps()), (1, 1));
    r.num_computed_tokens = 40;
    assert_eq!(kv.allocate_slots(&mut r, 24, 0), Some(1), "64 tokens: the 4th block fills page 0");
    assert_eq!(mapped(&kv), 1);
    r.num_computed_tokens = 64;
    assert_eq!(kv.allocate_slots(&mut r, 25, 0), Some(2));
    assert_eq!(mapped(&kv), 2);
}

#[test]
fn the_page_budget_is_the_capacity_and_a_refused_allocation_changes_nothing() {
    let mut kv = elastic(false, 0, 0, 0);
    kv.set_page_budget(1);
    assert_eq!((kv.capacity(), kv.num_free_blocks()), (4, 4));
    let mut r = request(0, 65, None);
    assert_eq!(kv.allocate_slots(&mut r, 65, 0), None, "5 blocks > one page");
    assert_eq!((mapped(&kv), kv.num_free_blocks()), (0, 4));
    assert!(r.block_table.is_empty());
    kv.set_page_budget(2);
    assert_eq!(kv.allocate_slots(&mut r, 65, 0), Some(5));
    assert_eq!((mapped(&kv), kv.num_free_blocks()), (2, 3));
}

#[test]
fn freeing_a_request_unmaps_its_pages_beyond_the_reserve() {
    let mut kv = elastic(false, 0, 1, 0);
    let mut r = request(0, 16 * 12, None);
    admit(&mut kv, &mut r).unwrap();
    assert_eq!(mapped(&kv), 3);
    kv.free(&mut r);
    assert_eq!(mapped(&kv), 1, "one empty page stays mapped as the reserve");
    assert_eq!(kv.elastic().unwrap().num_empty_mapped_pages(), 1);
    assert_eq!(kv.trim(), 1);
    assert_eq!(mapped(&kv), 0);
}

#[test]
fn a_refilled_reserve_serves_allocations_without_demand_maps() {
    let mut kv = elastic(false, 2, 4, 0);
    assert_eq!(kv.refill_reserve(10), 2);
    let mut r = request(0, 16 * 8, None);
    admit(&mut kv, &mut r).unwrap();
    assert_eq!((mapped(&kv), kv.take_num_demand_maps()), (2, 0));
    let mut s = request(1, 16, None);
    admit(&mut kv, &mut s).unwrap();
    assert_eq!(kv.take_num_demand_maps(), 1, "the reserve was empty");
}

#[test]
fn without_caching_a_shared_prefix_is_recomputed() {
    let mut kv = elastic(false, 0, 8, 0);
    let prefix = Some(PrefixRef { group: 1, num_tokens: 64 });
    let mut a = request(0, 100, prefix);
    admit(&mut kv, &mut a).unwrap();
    let mut b = request(1, 100, prefix);
    assert_eq!(admit(&mut kv, &mut b), Some(0));
}

#[test]
fn the_capped_prefix_cache_keeps_at_most_its_cap_of_freed_blocks() {
    let mut kv = elastic(true, 0, 0, 2);
    let prefix = Some(PrefixRef { group: 1, num_tokens: 64 });
    let mut a = request(0, 100, prefix);
    admit(&mut kv, &mut a).unwrap();
    let mut b = request(1, 100, prefix);
    assert_eq!(admit(&mut kv, &mut b), Some(64), "live prefix blocks are shared");
    kv.free(&mut a);
    kv.free(&mut b);
    assert_eq!(kv.block_pool().free_blocks().count(), 2, "two freed blocks stay cached");
    assert_eq!(mapped(&kv), 1, "the cached blocks hold their page; the rest were unmapped");
    let mut c = request(2, 100, prefix);
    let hits = admit(&mut kv, &mut c).unwrap();
    assert!(hits <= 32, "at most the 2 cached blocks hit, got {hits} tokens");
}
