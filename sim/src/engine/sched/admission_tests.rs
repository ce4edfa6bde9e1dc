//! Known-answer tests of admission under KV pressure, one per release rule (see `v1.rs`):
//! first chunk (vLLM 0.9.2 / 0.11.0 `Scheduler.schedule` + `KVCacheManager.allocate_slots`), full
//! sequence (vLLM 0.19.0 `KVCacheManager.can_fit_full_sequence`, `scheduler_reserve_full_isl`),
//! and 0.6.4's whole sequence plus watermark allocated at admission (`BlockSpaceManager.
//! can_allocate` / `allocate`, `Scheduler._schedule_chunked_prefill`).

use super::tests::{config, request};
use super::*;
use crate::ids::RequestId;
use crate::scenario::EnginePreset;
use crate::time::SimTime;
use crate::workload::PrefixRef;

/// A V1 engine with chunked prefill, a 64-token budget and prefix caching off.
fn v1(reserve_full_isl: bool) -> EngineConfig {
    let mut cfg = config(EnginePreset::VllmV1, true, false);
    cfg.max_num_batched_tokens = 64;
    cfg.scheduler_reserve_full_isl = reserve_full_isl;
    cfg
}

/// Runs to completion; returns (steps, preemptions, admission step of each request by id).
fn run_all(s: &mut Scheduler, limit: u64) -> (u64, u64, Vec<u64>) {
    let mut ev = StepEvents::default();
    let mut admitted = Vec::new();
    let mut t = 0;
    while s.has_unfinished_requests() {
        t += 1;
        assert!(t <= limit, "no progress after {limit} steps");
        let before: Vec<RequestId> = s.waiting_requests().map(|r| r.request_id).collect();
        s.schedule();
        for r in s.running_requests() {
            if before.contains(&r.request_id) && r.num_preemptions == 0 {
                admitted.push((r.request_id.0, t));
            }
        }
        s.update_from_output(SimTime(t), &mut ev);
        ev.clear();
    }
    admitted.sort_unstable();
    (t, s.num_preemptions_total(), admitted.into_iter().map(|(_, t)| t).collect())
}

/// Three 1000-token prompts (63 blocks each, growing to 69 with their 100 output tokens)
/// arriving together into 140 blocks: two fit at once, the third does not.
fn three_long_prompts(s: &mut Scheduler) {
    for id in 0..3 {
        s.add_request(request(id, 1000, 100, None)).unwrap();
    }
}

/// vLLM 0.9.2 / 0.11.0 v1/core/sched/scheduler.py `Scheduler.schedule`: the third prompt is
/// admitted as soon as its first 64-token chunk fits (step 32, when request 1's prefill ends),
/// runs out of blocks a few chunks later, preempts itself, is admitted again the next step, and
/// so on while the other two decode: 29 preemptions.
#[test]
fn first_chunk_admission_thrashes_long_prompts_under_block_pressure() {
    let mut s = Scheduler::new(&v1(false), 140);
    three_long_prompts(&mut s);
    let (steps, preemptions, admitted) = run_all(&mut s, 10_000);
    assert_eq!(admitted, [1, 16, 32]);
    assert_eq!((steps, preemptions), (230, 29));
}

/// vLLM 0.19.0 v1/core/kv_cache_manager.py `KVCacheManager.can_fit_full_sequence` (the gate of
/// `scheduler_reserve_full_isl`, on by default from 0.19.0): the third prompt waits, with no
/// preemption, until the blocks of its whole 1000 tokens are free.
#[test]
fn full_sequence_admission_waits_without_preempting() {
    let mut s = Scheduler::new(&v1(true), 140);
    three_long_prompts(&mut s);
    let (steps, preemptions, admitted) = run_all(&mut s, 10_000);
    // Request 0 prefills in steps 1-16 (64 tokens a step), request 1 joins with the 24 tokens
    // left in step 16; request 2 needs 63 free blocks, which only happens when request 0
    // finishes (its 100th token in step 115) and frees its 69 blocks.
    assert_eq!(admitted, [1, 16, 116]);
    assert_eq!((steps, preemptions), (230, 0));
}

/// The full-sequence gate credits prefix-cache hits, as `get_num_blocks_to_allocate` does: a
/// prompt whose uncached part fits is admitted even though the whole prompt would not.
#[test]
fn full_sequence_admission_counts_prefix_hits_as_held() {
    let mut cfg = v1(true);
    cfg.enable_prefix_caching = true;
    cfg.max_num_batched_tokens = 256;
    let mut s = Scheduler::new(&cfg, 20);
    let mut ev = StepEvents::default();
    let prefix = Some(PrefixRef { group: 1, num_tokens: 160 });
    s.add_request(request(0, 160, 40, prefix)).unwrap(); // 10 blocks, 3 more by its end
    s.schedule();
    s.update_from_output(SimTime(1), &mut ev);
    // 9 of 20 blocks free (request 0 took an 11th for its first decode token). 240 tokens = 15
    // blocks, more than the 9 free, but 10 are the prefix's, cached and held by request 0.
    s.add_request(request(1, 240, 2, prefix)).unwrap();
    let out = s.schedule().clone();
    assert_eq!(out.num_new_requests, 1);
    assert_eq!(s.running_requests().nth(1).map(|r| r.num_cached_tokens), Some(Some(160)));
}

/// vLLM 0.6.4 core/block_manager.py `BlockSpaceManager.can_allocate` + `allocate`, called by
/// `Scheduler._schedule_prefills` with or without chunking: a request is admitted only when its
/// whole sequence's blocks plus the 1% watermark are free, and takes all of them at once, so its
/// later chunks never run short and nobody is preempted.
#[test]
fn v064_chunked_prefill_allocates_the_whole_prompt_at_admission() {
    let mut cfg = config(EnginePreset::Vllm064, true, false);
    cfg.max_num_batched_tokens = 64;
    let mut s = Scheduler::new(&cfg, 140); // watermark: 1 block
    three_long_prompts(&mut s);
    let out = s.schedule().clone();
    assert_eq!((out.num_new_requests, out.total_num_scheduled_tokens), (1, 64));
    let held: Vec<usize> = s.running_requests().map(Request::num_blocks).collect();
    assert_eq!(held, [63], "the whole 1000-token prompt's blocks, not the chunk's 4");
    let mut s = Scheduler::new(&cfg, 140);
    three_long_prompts(&mut s);
    let (steps, preemptions, admitted) = run_all(&mut s, 10_000);
    assert_eq!(admitted, [1, 16, 116]);
    assert_eq!((steps, preemptions), (230, 0));
}

/// The same 0.6.4 gate with the watermark: three 63-block prompts fit 190 blocks (64 free for the
/// third >= 63 + watermark 1) but not 189 (63 free < 64), though the third's blocks alone would.
#[test]
fn v064_chunked_admission_keeps_the_watermark_free() {
    let mut cfg = config(EnginePreset::Vllm064, true, false);
    cfg.max_num_batched_tokens = 4096;
    for (num_blocks, admitted) in [(190, 3), (189, 2)] {
        let mut s = Scheduler::new(&cfg, num_blocks); // watermark 1
        for id in 0..3 {
            s.add_request(request(id, 1008, 10, None)).unwrap();
        }
        assert_eq!(s.schedule().num_new_requests, admitted, "{num_blocks} blocks");
    }
}

/// vLLM 0.6.4 `_schedule_chunked_prefill`: prefills are scheduled even in a step that preempted,
/// and the preempted request rejoins the queue in front only after them.
#[test]
fn v064_chunked_admits_in_a_step_that_preempted_and_queues_the_victim_in_front_after() {
    let mut cfg = config(EnginePreset::Vllm064, true, false);
    cfg.max_num_batched_tokens = 512;
    let mut s = Scheduler::new(&cfg, 12); // watermark 0
    let mut ev = StepEvents::default();
    s.add_request(request(0, 80, 60, None)).unwrap(); // 5 blocks, a 6th at its first decode
    s.add_request(request(1, 80, 60, None)).unwrap();
    s.schedule();
    s.update_from_output(SimTime(1), &mut ev);
    s.add_request(request(2, 48, 2, None)).unwrap(); // 3 blocks: 0 free once both decode
    let mut t = 1;
    let out = loop {
        t += 1;
        let out = s.schedule().clone();
        s.update_from_output(SimTime(t), &mut ev);
        if !out.preempted.is_empty() {
            break out;
        }
        assert_eq!(out.num_new_requests, 0, "step {t}");
        assert!(t < 100);
    };
    // Request 0 needs its 7th block at token 97: request 1 is preempted, freeing 6 blocks.
    assert_eq!((t, out.preempted.as_slice()), (18, [RequestId(1)].as_slice()));
    assert_eq!(out.num_new_requests, 1, "request 2 is admitted in the preempting step");
    let waiting: Vec<u64> = s.waiting_requests().map(|r| r.request_id.0).collect();
    assert_eq!(waiting, [1], "the victim is first in line again");
}
