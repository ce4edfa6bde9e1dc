use super::*;
use crate::engine::ContentSegment;
use crate::ids::RequestId;
use crate::scenario::{DelayDist, SessionSpec, SessionStart};
use std::collections::{BTreeMap, BTreeSet};

fn sessions(start: SessionStart, turns: u32, think: f64) -> ArrivalSpec {
    ArrivalSpec::Sessions(SessionSpec {
        start,
        turns: LengthDist::Fixed { value: turns },
        think_time_s: DelayDist::Fixed { value: think },
        user_tokens: LengthDist::Fixed { value: 20 },
        num_sessions: None,
        max_context_tokens: None,
    })
}

fn segments(r: &RequestSpec) -> Vec<ContentSegment> {
    r.content.leading_segments().collect()
}

/// Turns grouped by session (the stream id of the last segment), in issue order.
fn by_session(reqs: &[(RequestSpec, SimTime)]) -> BTreeMap<u64, Vec<(RequestSpec, SimTime)>> {
    let mut m: BTreeMap<u64, Vec<_>> = BTreeMap::new();
    for (r, end) in reqs {
        let stream = segments(r).last().unwrap().id;
        m.entry(stream).or_default().push((r.clone(), *end));
    }
    m
}

#[test]
fn a_turn_repeats_the_previous_prompt_and_answer_and_comes_a_think_time_after_the_answer() {
    let w = workload(vec![counted(sessions(SessionStart::Concurrent(2), 3, 0.5), 6)]);
    let mut g = generator(&w, 1, 3);
    let reqs = drive(&mut g, |r| SimDuration::from_millis(u64::from(r.num_prompt_tokens)));
    assert_eq!(reqs.len(), 6);
    let sessions = by_session(&reqs);
    assert_eq!(sessions.len(), 2);
    for turns in sessions.values() {
        assert_eq!(turns.len(), 3);
        for pair in turns.windows(2) {
            let ((prev, prev_end), (next, _)) = (&pair[0], &pair[1]);
            assert_eq!(next.num_prompt_tokens, prev.num_prompt_tokens + prev.max_tokens + 20);
            assert_eq!(next.arrival, *prev_end + SimDuration::from_millis(500));
            // The whole prompt is one take of the session's stream: the next turn starts with it.
            let (a, b) = (segments(prev), segments(next));
            assert_eq!((a.len(), b.len()), (1, 1));
            assert_eq!(a[0].id, b[0].id);
            assert_eq!(b[0].num_tokens, next.num_prompt_tokens);
            let shared = prev.content.block_hashes(16).collect::<Vec<_>>();
            let later = next.content.block_hashes(16).collect::<Vec<_>>();
            assert_eq!(shared[..], later[..shared.len()], "the previous prompt's full blocks repeat");
        }
    }
}

#[test]
fn closed_loop_keeps_its_sessions_running_and_replaces_an_ended_one_at_once() {
    let w = workload(vec![counted(sessions(SessionStart::Concurrent(3), 2, 1.0), 12)]);
    let mut g = generator(&w, 1, 5);
    let first: Vec<RequestSpec> = std::iter::from_fn(|| g.pop()).collect();
    assert_eq!(first.len(), 3, "3 sessions start at once");
    assert!(first.iter().all(|r| r.arrival == SimTime::ZERO));
    g.on_request_finished(RequestId(0), SimTime::from_secs_f64(2.0));
    assert_eq!(g.peek_time(), Some(SimTime::from_secs_f64(3.0)), "turn 2 after a 1 s think time");
    let t2 = g.pop().unwrap();
    g.on_request_finished(t2.id, SimTime::from_secs_f64(4.0));
    // Session 0 had 2 turns: a new session starts at its end.
    let fresh = g.pop().unwrap();
    assert_eq!(fresh.arrival, SimTime::from_secs_f64(4.0));
    assert_ne!(segments(&fresh)[0].id, segments(&first[0])[0].id, "a new session, a new stream");
    assert_eq!(fresh.num_prompt_tokens, 100, "a first turn");
}

#[test]
fn open_loop_sessions_stop_at_num_sessions_and_draw_the_same_sessions_whatever_the_timing() {
    let mut spec = sessions(SessionStart::Rate(2.0), 3, 0.2);
    if let ArrivalSpec::Sessions(s) = &mut spec {
        s.num_sessions = Some(5);
        s.turns = LengthDist::Uniform { min: 1, max: 4 };
        s.user_tokens = LengthDist::Uniform { min: 1, max: 100 };
    }
    let w =
        workload(vec![PhaseSpec { output_tokens: LengthDist::Uniform { min: 1, max: 50 }, ..phase(spec) }]);
    let shape = |service_ms: u64| {
        let mut g = generator(&w, 1, 9);
        let reqs = drive(&mut g, |_| SimDuration::from_millis(service_ms));
        by_session(&reqs)
            .into_values()
            .map(|t| t.iter().map(|(r, _)| (r.num_prompt_tokens, r.max_tokens)).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let fast = shape(10);
    assert_eq!(fast.len(), 5, "exactly num_sessions sessions");
    assert!(fast.iter().all(|t| (1..=4).contains(&t.len())));
    let mut slow = shape(3000);
    let mut fast_sorted = fast.clone();
    fast_sorted.sort();
    slow.sort();
    assert_eq!(fast_sorted, slow, "each session's turns do not depend on completion times");
}

#[test]
fn a_session_ends_before_a_turn_that_would_not_fit_its_context() {
    let mut spec = sessions(SessionStart::Concurrent(1), 10, 0.0);
    if let ArrivalSpec::Sessions(s) = &mut spec {
        s.max_context_tokens = Some(200);
    }
    let w = workload(vec![counted(spec, 4)]);
    let mut g = generator(&w, 1, 1);
    let reqs = drive(&mut g, |_| SimDuration::from_millis(10));
    // 100 + 10, then 130 + 10, then 160 + 10, then 190 + 10: the next (220) would not fit.
    let lens: Vec<u32> = reqs.iter().map(|(r, _)| r.num_prompt_tokens).collect();
    assert_eq!(lens, vec![100, 130, 160, 190]);
    assert!(reqs.iter().all(|(r, _)| r.num_prompt_tokens + r.max_tokens <= 200));
}

#[test]
fn a_time_bounded_session_phase_sends_nothing_after_its_end_and_the_next_phase_starts_there() {
    let w = workload(vec![
        timed(sessions(SessionStart::Concurrent(2), 100, 0.3), 5.0),
        counted(ArrivalSpec::Constant { rate: 10.0 }, 3),
    ]);
    let mut g = generator(&w, 1, 2);
    let reqs = drive(&mut g, |_| SimDuration::from_millis(700));
    let (first, second): (Vec<_>, Vec<_>) = reqs.iter().partition(|(r, _)| r.phase == 0);
    assert!(first.iter().all(|(r, _)| secs(r.arrival) < 5.0));
    assert_eq!(second.len(), 3);
    assert!((secs(second[0].0.arrival) - 5.1).abs() < 1e-9, "{}", secs(second[0].0.arrival));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the bounds and service times: the generator never stalls, never exceeds its
    /// count bound, and every session's turns chain (prompt growth, sent after the previous ends).
    #[test]
    fn sessions_always_chain_their_turns_and_respect_the_bounds(
        seed in 0u64..1000,
        closed in proptest::bool::ANY,
        n in 1u32..4,
        turns in 1u32..6,
        limit in 1u64..40,
        timed in proptest::bool::ANY,
        service_ms in 1u64..2000,
    ) {
        let start = if closed { SessionStart::Concurrent(n) } else { SessionStart::Rate(f64::from(n)) };
        let mut spec = sessions(start, turns, 0.1);
        if let ArrivalSpec::Sessions(s) = &mut spec {
            s.turns = LengthDist::Uniform { min: 1, max: turns };
            s.num_sessions = Some(u64::from(n) * 3);
        }
        let p = if timed { super::timed(spec, 5.0) } else { counted(spec, limit) };
        let w = workload(vec![p]);
        let mut g = generator(&w, 1, seed);
        let reqs = drive(&mut g, |r| SimDuration::from_millis(service_ms + u64::from(r.num_prompt_tokens % 7)));
        if !timed {
            proptest::prop_assert!(reqs.len() as u64 <= limit);
        } else {
            proptest::prop_assert!(reqs.iter().all(|(r, _)| secs(r.arrival) < 5.0));
        }
        for turns in by_session(&reqs).values() {
            proptest::prop_assert!(turns.len() as u32 <= 6);
            for pair in turns.windows(2) {
                let ((prev, prev_end), (next, _)) = (&pair[0], &pair[1]);
                proptest::prop_assert_eq!(next.num_prompt_tokens, prev.num_prompt_tokens + prev.max_tokens + 20);
                proptest::prop_assert!(next.arrival >= *prev_end);
            }
        }
    }
}

#[test]
fn sessions_that_drew_the_shared_prefix_start_every_turn_with_it() {
    let mut w = workload(vec![counted(sessions(SessionStart::Concurrent(3), 2, 0.0), 6)]);
    w.prefix = PrefixSpec { tokens: 64, groups: 1, fraction: 1.0 };
    let mut g = generator(&w, 1, 4);
    let reqs = drive(&mut g, |_| SimDuration::from_millis(10));
    let firsts: BTreeSet<u64> = reqs.iter().map(|(r, _)| segments(r)[0].id).collect();
    assert_eq!(firsts.len(), 1, "one shared prefix stream");
    for (r, _) in &reqs {
        let s = segments(r);
        assert_eq!((s.len(), s[0].num_tokens), (2, 64));
        assert_eq!(s[0].num_tokens + s[1].num_tokens, r.num_prompt_tokens);
    }
    assert_eq!(by_session(&reqs).len(), 3, "each session keeps its own stream after the prefix");
}
