//! Known-answer tests of the scheduler: single requests, chunked prefill, prefix hits,
//! preemption, rejection, V0 phases.

use super::*;
use crate::ids::RequestId;
use crate::scenario::{EnginePreset, KvCacheMode};
use crate::time::{SimDuration, SimTime};
use crate::workload::PrefixRef;

pub(super) fn config(preset: EnginePreset, chunked: bool, caching: bool) -> EngineConfig {
    EngineConfig {
        preset,
        max_num_seqs: 256,
        max_num_batched_tokens: 2048,
        block_size: 16,
        gpu_memory_utilization: 0.9,
        enable_prefix_caching: caching,
        enable_chunked_prefill: chunked,
        max_model_len: 32768,
        kv_cache: KvCacheMode::Static,
        activation_reserve_bytes: 0,
        num_gpu_blocks_override: None,
        elastic: Default::default(),
        async_scheduling: false,
        scheduler_reserve_full_isl: false,
        quantization: None,
    }
}

fn v1() -> EngineConfig {
    config(EnginePreset::VllmV1, true, true)
}

pub(super) fn request(id: u64, prompt: u32, max_tokens: u32, prefix: Option<PrefixRef>) -> Request {
    Request::for_test(id, prompt, max_tokens, prefix)
}

/// Runs one step ending at `t` and returns its output.
fn step(s: &mut Scheduler, t: u64, ev: &mut StepEvents) -> SchedulerOutput {
    let out = s.schedule().clone();
    s.update_from_output(SimTime(t), ev);
    out
}

/// Steps until nothing is left (at most `limit` steps), one time unit per step; returns every
/// step's output and the finished requests.
fn run(s: &mut Scheduler, limit: u64) -> (Vec<SchedulerOutput>, Vec<Request>) {
    let mut ev = StepEvents::default();
    let (mut outs, mut done) = (Vec::new(), Vec::new());
    let mut t = 0;
    while s.has_unfinished_requests() {
        t += 1;
        assert!(t <= limit, "no progress after {limit} steps");
        outs.push(step(s, t, &mut ev));
        done.append(&mut ev.finished);
        ev.clear();
    }
    (outs, done)
}

#[test]
fn one_request_alone_prefills_its_whole_prompt_then_decodes_one_token_per_step() {
    let mut s = Scheduler::new(&v1(), 1000);
    s.add_request(request(0, 100, 5, None)).unwrap();
    let (outs, done) = run(&mut s, 100);
    assert_eq!(outs.len(), 5);
    assert_eq!(outs[0].total_num_scheduled_tokens, 100);
    assert_eq!(outs[0].num_prefill_tokens, 100);
    assert_eq!(outs[0].num_decode_seqs, 0);
    assert_eq!(outs[0].num_prefill_attn_pairs, 100 * 50);
    for o in &outs[1..] {
        assert_eq!((o.total_num_scheduled_tokens, o.num_decode_seqs, o.num_prefill_tokens), (1, 1, 0));
    }
    assert_eq!(outs[4].num_kv_tokens_read, 104, "the 5th step reads 103 cached tokens + 1 new");
    let r = &done[0];
    assert_eq!(r.status, RequestStatus::Finished);
    assert_eq!(r.num_output_tokens, 5);
    assert_eq!(r.first_token_time, Some(SimTime(1)));
    assert_eq!(r.last_token_time, Some(SimTime(5)));
    assert_eq!((r.itl_sum, r.itl_max), (SimDuration(4), SimDuration(1)));
    assert_eq!(s.kv_cache_usage(), 0.0);
}

#[test]
fn chunked_prefill_splits_a_10k_prompt_into_budget_sized_steps() {
    let mut s = Scheduler::new(&v1(), 10_000);
    s.add_request(request(0, 10_000, 2, None)).unwrap();
    let (outs, done) = run(&mut s, 100);
    let chunks: Vec<u32> = outs.iter().map(|o| o.total_num_scheduled_tokens).collect();
    assert_eq!(chunks, [2048, 2048, 2048, 2048, 1808, 1]);
    assert_eq!(10_000u32.div_ceil(2048), 5);
    assert_eq!(outs[1].num_prefill_attn_pairs, 2048 * (2048 + 1024));
    assert_eq!(done[0].first_token_time, Some(SimTime(5)), "first token after the last chunk");
}

#[test]
fn without_chunked_prefill_v1_admits_whole_prompts_only() {
    let mut s = Scheduler::new(&config(EnginePreset::VllmV1, false, false), 10_000);
    s.add_request(request(0, 1500, 2, None)).unwrap();
    s.add_request(request(1, 1000, 2, None)).unwrap();
    let mut ev = StepEvents::default();
    assert_eq!(step(&mut s, 1, &mut ev).total_num_scheduled_tokens, 1500);
    assert_eq!(step(&mut s, 2, &mut ev).total_num_scheduled_tokens, 1 + 1000);
}

#[test]
fn a_shared_prefix_second_request_hits_the_prefix_rounded_down_to_full_blocks() {
    let prefix = Some(PrefixRef { group: 7, num_tokens: 100 });
    let mut s = Scheduler::new(&v1(), 1000);
    let mut ev = StepEvents::default();
    s.add_request(request(0, 300, 3, prefix)).unwrap();
    step(&mut s, 1, &mut ev);
    s.add_request(request(1, 200, 3, prefix)).unwrap();
    let out = step(&mut s, 2, &mut ev);
    assert_eq!(out.total_num_scheduled_tokens, 1 + (200 - 96));
    let (_, done) = run(&mut s, 100);
    let hits: Vec<_> = done.iter().map(|r| (r.request_id.0, r.num_cached_tokens)).collect();
    assert_eq!(hits, [(0, Some(0)), (1, Some(96))]);
}

#[test]
fn a_prompt_entirely_cached_still_recomputes_its_last_block() {
    let prefix = Some(PrefixRef { group: 7, num_tokens: 64 });
    let mut s = Scheduler::new(&v1(), 1000);
    let mut ev = StepEvents::default();
    s.add_request(request(0, 64, 3, prefix)).unwrap();
    step(&mut s, 1, &mut ev);
    s.add_request(request(1, 64, 3, prefix)).unwrap();
    let out = step(&mut s, 2, &mut ev);
    assert_eq!(out.total_num_scheduled_tokens, 1 + 16, "63-token cap -> 3 blocks hit, 16 recomputed");
    let r1 = s.running_requests().find(|r| r.request_id == RequestId(1)).unwrap();
    assert_eq!(r1.num_cached_tokens, Some(48));
}

#[test]
fn requests_admitted_in_the_same_step_share_prefix_blocks() {
    let prefix = Some(PrefixRef { group: 1, num_tokens: 64 });
    let mut s = Scheduler::new(&v1(), 1000);
    s.add_request(request(0, 100, 2, prefix)).unwrap();
    s.add_request(request(1, 100, 2, prefix)).unwrap();
    let out = s.schedule().clone();
    assert_eq!(out.total_num_scheduled_tokens, 100 + 36, "vLLM caches blocks at allocation");
    assert_eq!(s.kv_cache_manager().block_pool().num_used_blocks(), 7 + 3);
}

#[test]
fn without_prefix_caching_nothing_is_ever_hit() {
    let prefix = Some(PrefixRef { group: 7, num_tokens: 100 });
    let mut s = Scheduler::new(&config(EnginePreset::VllmV1, true, false), 1000);
    s.add_request(request(0, 300, 3, prefix)).unwrap();
    s.add_request(request(1, 200, 3, prefix)).unwrap();
    let (_, done) = run(&mut s, 100);
    assert!(done.iter().all(|r| r.num_cached_tokens == Some(0)));
}

#[test]
fn a_kv_cache_too_small_for_the_load_preempts_the_newest_and_it_still_finishes() {
    // 10 blocks of 16 tokens; three requests each growing from 3 to 5 blocks.
    let mut s = Scheduler::new(&v1(), 10);
    for id in 0..3 {
        s.add_request(request(id, 40, 40, None)).unwrap();
    }
    let (outs, done) = run(&mut s, 1000);
    let preempted: Vec<u64> = outs.iter().flat_map(|o| o.preempted.iter().map(|id| id.0)).collect();
    assert_eq!(preempted.first(), Some(&2), "the most recently admitted goes first");
    assert!(s.num_preemptions_total() >= 1);
    assert_eq!(done.len(), 3);
    assert!(done.iter().all(|r| r.num_output_tokens == 40));
    let r2 = done.iter().find(|r| r.request_id.0 == 2).unwrap();
    assert!(r2.num_preemptions >= 1);
    assert_eq!(s.kv_cache_manager().num_free_blocks(), 10);
}

#[test]
fn a_preempted_request_goes_to_the_front_of_the_waiting_queue_and_recomputes() {
    let mut s = Scheduler::new(&config(EnginePreset::VllmV1, true, false), 10);
    let mut ev = StepEvents::default();
    s.add_request(request(0, 64, 40, None)).unwrap();
    s.add_request(request(1, 64, 40, None)).unwrap();
    step(&mut s, 1, &mut ev); // both admitted: 8 blocks
    s.add_request(request(2, 16, 4, None)).unwrap();
    let mut t = 1;
    let out = loop {
        t += 1;
        let out = step(&mut s, t, &mut ev);
        if !out.preempted.is_empty() {
            break out;
        }
    };
    assert_eq!(out.preempted, [RequestId(1)]);
    let waiting: Vec<u64> = s.waiting_requests().map(|r| r.request_id.0).collect();
    assert_eq!(waiting[0], 1);
    let r1 = s.waiting_requests().next().unwrap();
    assert_eq!((r1.status, r1.num_computed_tokens), (RequestStatus::Preempted, 0));
    let recompute = r1.num_tokens();
    // Once it fits again it is admitted with its prompt and generated tokens as one prefill.
    let out = loop {
        t += 1;
        let out = step(&mut s, t, &mut ev);
        if out.num_new_requests > 0 {
            break out;
        }
    };
    assert!(out.num_prefill_tokens >= recompute);
}

#[test]
fn the_head_of_the_queue_blocks_smaller_requests_behind_it() {
    let mut s = Scheduler::new(&v1(), 20);
    let mut ev = StepEvents::default();
    s.add_request(request(0, 160, 50, None)).unwrap(); // 10 blocks, growing
    step(&mut s, 1, &mut ev);
    s.add_request(request(1, 200, 2, None)).unwrap(); // 13 blocks: does not fit
    s.add_request(request(2, 16, 2, None)).unwrap(); // would fit
    let out = step(&mut s, 2, &mut ev);
    assert_eq!(out.num_new_requests, 0);
    assert_eq!(s.num_waiting(), 2);
}

#[test]
fn no_more_than_max_num_seqs_run_at_once() {
    let mut cfg = v1();
    cfg.max_num_seqs = 3;
    let mut s = Scheduler::new(&cfg, 1000);
    for id in 0..5 {
        s.add_request(request(id, 10, 3, None)).unwrap();
    }
    let out = s.schedule().clone();
    assert_eq!(out.num_scheduled_requests, 3);
    assert_eq!((s.num_running(), s.num_waiting()), (3, 2));
}

#[test]
fn the_token_budget_caps_a_step_and_the_next_prompt_gets_a_chunk() {
    let mut cfg = v1();
    cfg.max_num_batched_tokens = 100;
    let mut s = Scheduler::new(&cfg, 1000);
    s.add_request(request(0, 70, 3, None)).unwrap();
    s.add_request(request(1, 70, 3, None)).unwrap();
    let out = s.schedule().clone();
    assert_eq!((out.total_num_scheduled_tokens, out.num_scheduled_requests), (100, 2));
}

#[test]
fn a_prompt_plus_max_tokens_longer_than_max_model_len_is_rejected_with_a_reason() {
    let mut cfg = v1();
    cfg.max_model_len = 1000;
    let mut s = Scheduler::new(&cfg, 1000);
    let err = s.add_request(request(4, 900, 101, None)).unwrap_err();
    assert_eq!(err.kind, RejectionKind::ExceedsMaxModelLen);
    assert!(err.reason.contains("1000"), "{}", err.reason);
    assert_eq!(err.request.request_id, RequestId(4));
    assert!(s.add_request(request(5, 900, 100, None)).is_ok());
    assert_eq!(s.num_waiting(), 1);
}

#[test]
fn a_request_larger_than_the_whole_kv_cache_is_rejected() {
    let mut s = Scheduler::new(&v1(), 4);
    let err = s.add_request(request(0, 60, 10, None)).unwrap_err();
    assert_eq!(err.kind, RejectionKind::ExceedsKvCache);
    assert!(s.add_request(request(1, 60, 5, None)).is_ok(), "64 tokens fill exactly 4 blocks");
}

#[test]
fn without_chunked_prefill_a_request_beyond_the_batch_budget_is_rejected() {
    let mut s = Scheduler::new(&config(EnginePreset::Vllm064, false, false), 1000);
    let err = s.add_request(request(0, 3000, 10, None)).unwrap_err();
    assert_eq!(err.kind, RejectionKind::ExceedsBatchBudget);
    let mut s = Scheduler::new(&v1(), 1000);
    assert!(s.add_request(request(0, 3000, 10, None)).is_ok(), "chunked prefill splits it");
}

#[test]
fn empty_prompts_and_zero_max_tokens_are_rejected() {
    let mut s = Scheduler::new(&v1(), 100);
    assert_eq!(s.add_request(request(0, 0, 5, None)).unwrap_err().kind, RejectionKind::EmptyPrompt);
    assert_eq!(s.add_request(request(1, 5, 0, None)).unwrap_err().kind, RejectionKind::ZeroMaxTokens);
}

#[test]
fn v1_mixes_decodes_and_a_new_prefill_in_one_step() {
    let mut s = Scheduler::new(&v1(), 1000);
    let mut ev = StepEvents::default();
    s.add_request(request(0, 50, 10, None)).unwrap();
    step(&mut s, 1, &mut ev);
    s.add_request(request(1, 50, 10, None)).unwrap();
    let out = step(&mut s, 2, &mut ev);
    assert_eq!((out.num_decode_seqs, out.num_prefill_tokens), (1, 50));
}

#[test]
fn v0_mode_never_mixes_prefill_and_decode_in_one_step() {
    let mut cfg = config(EnginePreset::Vllm064, false, true);
    cfg.max_num_batched_tokens = 4096;
    let mut s = Scheduler::new(&cfg, 200);
    let mut ev = StepEvents::default();
    let mut outs = Vec::new();
    let mut next_id = 0;
    for t in 1..400 {
        if t % 7 == 1 && next_id < 30 {
            s.add_request(request(next_id, 100 + 37 * (next_id as u32 % 5), 20, None)).unwrap();
            next_id += 1;
        }
        outs.push(step(&mut s, t, &mut ev));
    }
    assert!(!s.has_unfinished_requests());
    assert!(outs.iter().any(|o| o.num_prefill_tokens > 0));
    assert!(outs.iter().any(|o| o.num_decode_seqs > 0));
    for o in &outs {
        assert!(o.num_prefill_tokens == 0 || o.num_decode_seqs == 0, "mixed step {o:?}");
    }
}

#[test]
fn v0_mode_prioritises_a_new_prefill_over_running_decodes() {
    let mut s = Scheduler::new(&config(EnginePreset::Vllm064, false, false), 1000);
    let mut ev = StepEvents::default();
    s.add_request(request(0, 50, 10, None)).unwrap();
    step(&mut s, 1, &mut ev);
    assert_eq!(step(&mut s, 2, &mut ev).num_decode_seqs, 1);
    s.add_request(request(1, 50, 10, None)).unwrap();
    let out = step(&mut s, 3, &mut ev);
    assert_eq!((out.num_prefill_tokens, out.num_decode_seqs), (50, 0));
    assert_eq!(step(&mut s, 4, &mut ev).num_decode_seqs, 2);
}

#[test]
fn v0_admission_keeps_the_one_percent_watermark_free() {
    // 1000 blocks -> watermark 10; a 990-block prompt waits until all blocks are free.
    let mut cfg = config(EnginePreset::Vllm064, false, false);
    cfg.max_num_batched_tokens = 32768;
    let mut s = Scheduler::new(&cfg, 1000);
    let mut ev = StepEvents::default();
    s.add_request(request(0, 16, 3, None)).unwrap();
    step(&mut s, 1, &mut ev);
    s.add_request(request(1, 990 * 16 - 1, 1, None)).unwrap();
    assert_eq!(step(&mut s, 2, &mut ev).num_new_requests, 0, "999 free < 990 + 10");
    let err = s.add_request(request(2, 991 * 16, 1, None)).unwrap_err();
    assert_eq!(err.kind, RejectionKind::ExceedsKvCache);
    let (_, done) = run(&mut s, 100);
    assert_eq!(done.len(), 2);
}

#[test]
fn recorded_tokens_list_every_sampled_token_index() {
    let mut s = Scheduler::new(&v1(), 1000);
    s.set_record_tokens(true);
    s.add_request(request(3, 20, 3, None)).unwrap();
    let mut ev = StepEvents::default();
    let mut tokens = Vec::new();
    for t in 1..=3 {
        step(&mut s, t, &mut ev);
        tokens.append(&mut ev.tokens);
        assert_eq!(ev.num_tokens_sampled, 1);
        ev.clear();
    }
    assert_eq!(tokens, [(RequestId(3), 0), (RequestId(3), 1), (RequestId(3), 2)]);
}

#[test]
fn the_gaps_of_one_step_are_run_length_encoded_across_requests() {
    let mut s = Scheduler::new(&v1(), 1000);
    let mut ev = StepEvents::default();
    s.add_request(request(0, 20, 5, None)).unwrap();
    step(&mut s, 10, &mut ev);
    s.add_request(request(1, 20, 5, None)).unwrap();
    step(&mut s, 15, &mut ev);
    step(&mut s, 22, &mut ev);
    // Step 2: request 0's gap of 5; step 3: request 0's and request 1's gaps of 7.
    assert_eq!(ev.itl_gaps, [(SimDuration(5), 1), (SimDuration(7), 2)]);
    assert_eq!(ev.num_tokens_sampled, 1 + 2 + 2);
}

#[test]
fn scheduling_twice_without_an_update_returns_the_same_step() {
    let mut s = Scheduler::new(&v1(), 1000);
    s.add_request(request(0, 20, 3, None)).unwrap();
    let a = s.schedule().clone();
    s.add_request(request(1, 20, 3, None)).unwrap();
    let b = s.schedule().clone();
    assert_eq!(a, b);
}

/// Throughput probe, not a test of behaviour: `cargo test -p sim --release -- --ignored
/// --nocapture engine_throughput`. Prints ns per sampled token; asserts nothing about time.
#[test]
#[ignore = "manual performance probe"]
fn engine_throughput_probe() {
    for (name, preset, chunked, caching) in [
        ("v1 chunked, prefix caching", EnginePreset::VllmV1, true, true),
        ("v1 chunked, no caching", EnginePreset::VllmV1, true, false),
        ("0.6.4 no chunking, caching", EnginePreset::Vllm064, false, true),
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| std::env::var("PROBE").map_or(true, |p| p == i.to_string()))
    .map(|(_, c)| c)
    {
        let mut cfg = config(preset, chunked, caching);
        cfg.max_num_batched_tokens = if chunked { 8192 } else { 32768 };
        let mut s = Scheduler::new(&cfg, 28_000);
        let mut ev = StepEvents::default();
        let n = 200_000u64;
        let (mut next, mut t, mut tokens, mut steps) = (0u64, 0u64, 0u64, 0u64);
        let start = std::time::Instant::now();
        while next < n || s.has_unfinished_requests() {
            while next < n && s.num_waiting() < 64 {
                let prompt = 100 + (next * 7919 % 900) as u32;
                let prefix = (next % 2 == 0).then_some(PrefixRef { group: next % 4, num_tokens: 256 });
                s.add_request(request(next, prompt, 150, prefix)).unwrap();
                next += 1;
            }
            s.schedule();
            t += 20_000_000;
            s.update_from_output(SimTime(t), &mut ev);
            tokens += ev.num_tokens_sampled;
            steps += 1;
            ev.clear();
        }
        let dt = start.elapsed();
        eprintln!(
            "{name}: {n} requests, {tokens} tokens, {steps} steps, {} preemptions in {dt:?} = {:.1} ns/token",
            s.num_preemptions_total(),
            dt.as_nanos() as f64 / tokens as f64
        );
    }
}

#[test]
fn with_async_scheduling_a_finished_requests_blocks_come_back_one_step_later() {
    // vllm 0.33.0 v1/engine/core.py step_with_batch_queue: the batch of step n+1 is scheduled
    // before update_from_output of step n frees its finished requests' blocks.
    let scheduled_ids = |s: &mut Scheduler| {
        let _ = s.schedule();
        s.running_requests()
            .filter(|r| r.num_scheduled_tokens > 0)
            .map(|r| r.request_id.0)
            .collect::<Vec<_>>()
    };
    for async_scheduling in [false, true] {
        let mut cfg = config(EnginePreset::VllmV1, true, false);
        cfg.async_scheduling = async_scheduling;
        let mut s = Scheduler::new(&cfg, 5);
        s.add_request(request(2, 16, 10, None)).unwrap(); // 1 block, then a 2nd at token 17
        s.add_request(request(0, 47, 2, None)).unwrap(); // 3 blocks, finishes in step 2
        s.add_request(request(1, 32, 2, None)).unwrap(); // needs 2 blocks
        let mut ev = StepEvents::default();
        assert_eq!(scheduled_ids(&mut s), [2, 0], "1 block free: request 1 waits");
        s.update_from_output(SimTime(1), &mut ev);
        assert_eq!(scheduled_ids(&mut s), [2, 0]);
        s.update_from_output(SimTime(2), &mut ev);
        assert_eq!(ev.finished.iter().map(|r| r.request_id.0).collect::<Vec<_>>(), [0]);
        assert_eq!(ev.finished[0].num_output_tokens, 2);
        assert_eq!(s.has_deferred_frees(), async_scheduling);
        let step3 = scheduled_ids(&mut s);
        s.update_from_output(SimTime(3), &mut ev);
        let step4 = scheduled_ids(&mut s);
        if async_scheduling {
            // Step 3 was scheduled while request 0 still held its 3 blocks.
            assert_eq!((step3, step4), (vec![2], vec![2, 1]));
        } else {
            assert_eq!((step3, step4), (vec![2, 1], vec![2, 1]));
        }
        assert!(!s.has_deferred_frees());
    }
}

#[test]
fn transformers_cb_admits_no_new_prefill_while_fewer_than_15_percent_of_blocks_are_free() {
    // transformers 5.17 generation/continuous_batching/scheduler.py Scheduler._process_candidates:
    // `num_free_blocks < safety_margin * num_blocks` with FIFOScheduler's safety_margin = 0.15.
    let admitted = |preset| {
        let mut s = Scheduler::new(&config(preset, true, false), 20); // margin: 3 blocks
        s.add_request(request(0, 16 * 17, 2, None)).unwrap(); // 17 blocks: 3 left
        s.add_request(request(1, 16, 2, None)).unwrap(); // 3 free, not below 3: admitted
        s.add_request(request(2, 16, 2, None)).unwrap(); // 2 free < 3: waits
        s.schedule().num_scheduled_requests
    };
    assert_eq!(admitted(EnginePreset::TransformersCb), 2);
    assert_eq!(admitted(EnginePreset::VllmV1), 3);
    // The first request of a step is never held back by the margin.
    let mut s = Scheduler::new(&config(EnginePreset::TransformersCb, true, false), 20);
    s.add_request(request(0, 16 * 19, 2, None)).unwrap();
    assert_eq!(s.schedule().num_scheduled_requests, 1);
}
