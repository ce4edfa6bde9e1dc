//! Known answers of prefix caching by content (vLLM 0.11.0 v1/core/kv_cache_utils.py
//! `hash_block_tokens`, v1/core/kv_cache_manager.py `KVCacheManager.get_computed_blocks` and
//! single_type_kv_cache_manager.py `FullAttentionManager.find_longest_cache_hit`): a request hits
//! exactly the leading blocks whose tokens, up to the block's end, equal a cached request's.

use super::tests::request;
use super::*;
use crate::engine::content::{ContentSegment, PromptContent, prefix_stream_id};
use crate::workload::PrefixRef;

fn seg(id: u64, num_tokens: u32) -> ContentSegment {
    ContentSegment { id, num_tokens }
}

/// A request of `prompt` tokens whose leading tokens are `segments`.
fn described(id: u64, prompt: u32, segments: &[ContentSegment]) -> Request {
    request(id, prompt, None).with_content(PromptContent::segments(segments.iter().copied()))
}

/// Admits `req` and computes its whole prompt: returns the prefix-cache hit in tokens.
fn admit_and_prefill(kv: &mut KvCacheManager, req: &mut Request) -> u32 {
    let hits = kv.get_computed_blocks(req);
    kv.allocate_slots(req, req.num_tokens() - hits, hits).expect("room");
    req.num_computed_tokens = req.num_tokens();
    hits
}

#[test]
fn equal_leading_blocks_hit_exactly_those_blocks_whatever_described_them() {
    let mut kv = KvCacheManager::new(100, 16, true);
    let mut a = described(0, 200, &[seg(1, 64), seg(2, 64)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut a), 0);
    // Same first 64 tokens, then other content: the 4 blocks of stream 1.
    let mut b = described(1, 200, &[seg(1, 64), seg(3, 64)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut b), 64);
    assert_eq!(a.block_table[..4], b.block_table[..4]);
    assert_ne!(a.block_table[4], b.block_table[4]);
    // The first 100 tokens of stream 1, described as one segment: still the same 4 blocks, and
    // its 5th block (stream 1 tokens 64..80) is nobody's.
    let mut c = described(2, 150, &[seg(1, 100)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut c), 64);
    // All 8 blocks of a: a prompt repeating a's 128 described tokens and more.
    let mut d = described(3, 300, &[seg(1, 64), seg(2, 64)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut d), 128);
}

#[test]
fn a_request_differing_in_its_first_block_hits_nothing() {
    let mut kv = KvCacheManager::new(100, 16, true);
    let mut a = described(0, 200, &[seg(1, 16), seg(2, 128)]);
    admit_and_prefill(&mut kv, &mut a);
    // Blocks 1.. hold the same stream-2 tokens, but chained hashes differ from block 0 on.
    let mut b = described(1, 200, &[seg(9, 16), seg(2, 128)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut b), 0);
    // A request with no described content hashes nothing and hits nothing.
    let mut c = request(2, 200, None);
    assert_eq!(admit_and_prefill(&mut kv, &mut c), 0);
}

#[test]
fn without_prefix_caching_equal_content_hits_nothing() {
    let mut kv = KvCacheManager::new(100, 16, false);
    let mut a = described(0, 200, &[seg(1, 128)]);
    admit_and_prefill(&mut kv, &mut a);
    let mut b = described(1, 200, &[seg(1, 128)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut b), 0);
    assert_eq!(kv.block_pool().num_cached_content_blocks(), 0);
}

#[test]
fn a_prefix_group_and_a_segment_of_its_stream_share_blocks() {
    let mut kv = KvCacheManager::new(100, 16, true);
    let mut a = request(0, 100, Some(PrefixRef { group: 7, num_tokens: 48 }));
    admit_and_prefill(&mut kv, &mut a);
    let mut b = described(1, 100, &[seg(prefix_stream_id(7), 48)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut b), 48);
}

#[test]
fn an_identical_prompt_still_recomputes_its_last_block() {
    let mut kv = KvCacheManager::new(100, 16, true);
    let mut a = described(0, 64, &[seg(1, 64)]);
    admit_and_prefill(&mut kv, &mut a);
    let mut b = described(1, 64, &[seg(1, 64)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut b), 48, "capped at num_tokens - 1 = 63 -> 3 blocks");
}

#[test]
fn cached_content_outlives_its_request_until_evicted() {
    let mut kv = KvCacheManager::new(12, 16, true);
    let mut a = described(0, 64, &[seg(1, 64)]);
    admit_and_prefill(&mut kv, &mut a);
    kv.free_finished(&mut a);
    let mut b = described(1, 80, &[seg(1, 64)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut b), 64, "a's 4 blocks are free but still cached");
    kv.free_finished(&mut b);
    // A private request takes every free block: the never-used ones first, then the cached ones
    // in LRU order, which evicts their hashes.
    let mut c = request(2, 12 * 16, None);
    admit_and_prefill(&mut kv, &mut c);
    kv.free_finished(&mut c);
    let mut d = described(3, 80, &[seg(1, 64)]);
    assert_eq!(admit_and_prefill(&mut kv, &mut d), 0);
}
