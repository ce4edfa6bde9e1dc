//! Property tests of the scheduler over random request streams and engine configs (every preset,
//! async scheduling on and off): every request
//! finishes exactly once or is rejected, no step breaks `max_num_seqs` or the token budget,
//! `num_computed_tokens` never passes `num_tokens`, and every block is free at the end, on a
//! static pool or (vLLM V1 only, as kvcached) an elastic one.

use super::tests::{config, request};
use super::*;
use crate::engine::content::{ContentSegment, PromptContent};
use crate::engine::kv_cache::ElasticParams;
use crate::ids::RequestId;
use crate::scenario::EnginePreset;
use crate::time::SimTime;
use crate::workload::PrefixRef;
use proptest::prelude::*;
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
struct Arrival {
    step: u32,
    prompt: u32,
    max_tokens: u32,
    prefix: Option<(u64, u32)>,
    /// Described content (stream id, tokens), used instead of `prefix` when set; it may run past
    /// the prompt into the output tokens.
    segments: Option<Vec<(u64, u32)>>,
}

#[derive(Clone, Debug)]
struct Setup {
    v0: bool,
    /// transformers-cb instead of vLLM V1 (when not `v0`).
    cb: bool,
    async_scheduling: bool,
    /// vLLM V1 only: `scheduler_reserve_full_isl` (full-sequence admission) instead of first-chunk.
    full_isl: bool,
    chunked: bool,
    caching: bool,
    block_size: u32,
    num_gpu_blocks: u32,
    max_num_seqs: u32,
    max_num_batched_tokens: u32,
    max_model_len: u32,
    arrivals: Vec<Arrival>,
    /// vLLM V1 only: an elastic pool (kvcached) of these pages instead of a static one.
    elastic: Option<ElasticParams>,
}

fn setup() -> impl Strategy<Value = Setup> {
    let segments = prop::option::of(prop::collection::vec((0u64..3, 1u32..80), 1..4));
    let arrival = (0u32..60, 1u32..300, 1u32..60, prop::option::of((0u64..3, 1u32..200)), segments).prop_map(
        |(step, prompt, max_tokens, prefix, segments)| Arrival {
            step,
            prompt,
            max_tokens,
            prefix: prefix.map(|(g, n)| (g, n.min(prompt))),
            segments,
        },
    );
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![1u32, 4, 16]),
        4u32..120,
        1u32..12,
        16u32..600,
        200u32..400,
        prop::collection::vec(arrival, 1..40),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::option::of((1u32..6, 0u32..3, 0u32..3, prop_oneof![Just(0u32), 1u32..40])),
    )
        .prop_map(
            |(
                v0,
                chunked,
                caching,
                block_size,
                blocks,
                seqs,
                budget,
                mml,
                mut arrivals,
                (cb, async_scheduling, full_isl),
                elastic,
            )| {
                arrivals.sort_by_key(|a| a.step);
                let elastic = elastic.filter(|_| !v0 && !cb).map(|(bpp, min, extra, cached)| ElasticParams {
                    blocks_per_page: bpp,
                    min_reserve_pages: min,
                    max_reserve_pages: min + extra,
                    max_cached_free_blocks: cached,
                });
                let num_gpu_blocks = blocks * 16 / block_size.max(1);
                // Elastic pools drop a partial last page: keep whole pages (one at least).
                let bpp = elastic.map_or(1, |e| e.blocks_per_page);
                Setup {
                    v0,
                    cb,
                    async_scheduling,
                    full_isl,
                    chunked,
                    caching,
                    block_size,
                    num_gpu_blocks: (num_gpu_blocks / bpp).max(1) * bpp,
                    max_num_seqs: seqs,
                    // vLLM requires max_num_batched_tokens >= max_num_seqs.
                    max_num_batched_tokens: budget.max(seqs),
                    max_model_len: mml,
                    arrivals,
                    elastic,
                }
            },
        )
}

proptest! {
    // No regression files: they would land outside the engine's folder; failures print the
    // minimal input, which belongs in a known-answer test.
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_streams_finish_or_are_rejected_and_free_every_block(s in setup()) {
        let preset = match (s.v0, s.cb) {
            (true, _) => EnginePreset::Vllm064,
            (false, true) => EnginePreset::TransformersCb,
            (false, false) => EnginePreset::VllmV1,
        };
        let mut cfg = config(preset, s.chunked, s.caching);
        cfg.async_scheduling = s.async_scheduling;
        // Only vLLM V1 releases have the option (transformers-cb admits on the first chunk).
        cfg.scheduler_reserve_full_isl = s.full_isl && !s.v0 && !s.cb;
        cfg.block_size = s.block_size;
        cfg.max_num_seqs = s.max_num_seqs;
        cfg.max_num_batched_tokens = s.max_num_batched_tokens;
        cfg.max_model_len = s.max_model_len;
        let mut sched = Scheduler::new(&cfg, s.num_gpu_blocks);
        if let Some(params) = s.elastic {
            sched.kv_cache_manager_mut().enable_elastic(params);
        }
        sched.set_record_tokens(true);
        let mut ev = StepEvents::default();
        let mut rejected = BTreeSet::new();
        let mut finished = BTreeSet::new();
        let mut tokens_seen = 0u64;
        let mut next = 0;
        let mut step = 0u32;
        loop {
            while next < s.arrivals.len() && s.arrivals[next].step <= step {
                let a = &s.arrivals[next];
                let prefix = a.prefix.map(|(group, num_tokens)| PrefixRef { group, num_tokens });
                let mut r = request(next as u64, a.prompt, a.max_tokens, prefix);
                if let Some(segs) = &a.segments {
                    let segs = segs.iter().map(|&(id, num_tokens)| ContentSegment { id, num_tokens });
                    r = r.with_content(PromptContent::segments(segs));
                }
                if let Err(rej) = sched.add_request(r) {
                    prop_assert!(!rej.reason.is_empty());
                    rejected.insert(rej.request.request_id);
                }
                next += 1;
            }
            if next == s.arrivals.len() && !sched.has_unfinished_requests() {
                break;
            }
            step += 1;
            prop_assert!(step < 200_000, "livelock: {} running, {} waiting", sched.num_running(), sched.num_waiting());
            let out = sched.schedule().clone();
            prop_assert!(out.num_scheduled_requests <= s.max_num_seqs);
            prop_assert!(out.total_num_scheduled_tokens <= s.max_num_batched_tokens);
            prop_assert!(sched.num_running() <= s.max_num_seqs);
            prop_assert_eq!(out.num_prefill_seqs + out.num_decode_seqs, out.num_scheduled_requests);
            if s.v0 && !s.chunked {
                prop_assert!(out.num_prefill_tokens == 0 || out.num_decode_seqs == 0);
            }
            for r in sched.running_requests() {
                prop_assert!(r.num_computed_tokens + r.num_scheduled_tokens <= r.num_tokens());
                prop_assert_eq!(r.status, RequestStatus::Running);
            }
            for r in sched.waiting_requests() {
                prop_assert_eq!(r.num_computed_tokens, 0);
                prop_assert!(r.block_table.is_empty());
            }
            sched.update_from_output(SimTime(u64::from(step)), &mut ev);
            tokens_seen += ev.num_tokens_sampled;
            prop_assert_eq!(ev.tokens.len() as u64, ev.num_tokens_sampled);
            for r in ev.finished.drain(..) {
                prop_assert_eq!(r.status, RequestStatus::Finished);
                prop_assert_eq!(r.num_output_tokens, r.max_tokens);
                prop_assert!(r.num_computed_tokens <= r.num_tokens());
                let (first, last) = (r.first_token_time.unwrap(), r.last_token_time.unwrap());
                prop_assert_eq!(r.itl_sum, last - first);
                prop_assert!(r.num_cached_tokens.unwrap() < r.num_prompt_tokens);
                prop_assert!(finished.insert(r.request_id), "finished twice");
            }
            ev.clear();
        }
        // Only async scheduling holds finished requests' blocks; an idle engine frees them.
        prop_assert!(!sched.has_deferred_frees() || s.async_scheduling);
        sched.release_deferred_frees();
        let all: BTreeSet<RequestId> = (0..s.arrivals.len() as u64).map(RequestId).collect();
        prop_assert!(rejected.is_disjoint(&finished));
        prop_assert_eq!(rejected.union(&finished).copied().collect::<BTreeSet<_>>(), all);
        let expected_tokens: u64 = s.arrivals.iter().enumerate()
            .filter(|(i, _)| !rejected.contains(&RequestId(*i as u64)))
            .map(|(_, a)| u64::from(a.max_tokens))
            .sum();
        prop_assert_eq!(tokens_seen, expected_tokens);
        let kv = sched.kv_cache_manager();
        prop_assert_eq!(kv.num_free_blocks(), s.num_gpu_blocks);
        prop_assert_eq!(kv.block_pool().num_used_blocks(), 0);
        // Every free block is in the free queue (static), or on its page unless kept cached there
        // (elastic).
        if let Some(pages) = kv.elastic() {
            pages.check_invariants();
        }
        let on_pages = kv.elastic().map_or(0, |e| e.num_free_blocks_on_pages());
        prop_assert_eq!(kv.block_pool().free_blocks().count() as u32 + on_pages, s.num_gpu_blocks);
        prop_assert_eq!(sched.kv_cache_usage(), 0.0);
    }
}
