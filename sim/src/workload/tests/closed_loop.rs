use super::*;
use crate::ids::RequestId;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::collections::BTreeMap;

fn closed(concurrency: u32) -> ArrivalSpec {
    ArrivalSpec::closed_loop(concurrency)
}

#[test]
fn concurrency_10_issues_exactly_10_at_time_zero_then_one_per_completion() {
    let mut g = generator(&workload(vec![counted(closed(10), 30)]), 1, 1);
    let first: Vec<RequestSpec> = std::iter::from_fn(|| g.pop()).collect();
    assert_eq!(first.len(), 10);
    assert!(first.iter().all(|r| r.arrival == SimTime::ZERO));
    assert_eq!(first.iter().map(|r| r.id.0).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    assert_eq!(g.peek_time(), None, "all clients busy: nothing known");
    assert!(!g.is_exhausted());

    g.on_request_finished(RequestId(3), SimTime(5_000));
    assert_eq!(g.peek_time(), Some(SimTime(5_000)));
    let r = g.pop().unwrap();
    assert_eq!((r.id, r.arrival), (RequestId(10), SimTime(5_000)));
    assert_eq!(g.pop(), None);

    g.on_request_finished(RequestId(0), SimTime(6_000));
    g.on_request_finished(RequestId(10), SimTime(6_000));
    let next: Vec<_> = std::iter::from_fn(|| g.pop()).map(|r| (r.id.0, r.arrival.0)).collect();
    assert_eq!(next, vec![(11, 6_000), (12, 6_000)]);
}

#[test]
fn each_model_of_the_mix_gets_its_own_clients() {
    let p = PhaseSpec { mix: vec![(ModelId(2), 1.0), (ModelId(0), 5.0)], ..counted(closed(3), 100) };
    let mut g = generator(&workload(vec![p]), 3, 1);
    let first: Vec<ModelId> = std::iter::from_fn(|| g.pop()).map(|r| r.model).collect();
    assert_eq!(first, [ModelId(2), ModelId(0)].repeat(3), "3 clients per model regardless of weight");
}

/// Per model, the (prompt, output, prefix) of its requests in that model's issue order.
fn per_model(
    reqs: &[(RequestSpec, SimTime)],
) -> BTreeMap<u32, Vec<(u32, u32, Option<crate::workload::PrefixRef>)>> {
    let mut m: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for (r, _) in reqs {
        m.entry(r.model.0).or_default().push((r.num_prompt_tokens, r.max_tokens, r.content.as_prefix()));
    }
    m
}

#[test]
fn the_kth_request_of_a_model_has_the_same_lengths_whatever_the_completion_order() {
    let p = PhaseSpec {
        mix: vec![(ModelId(0), 1.0), (ModelId(1), 1.0)],
        input_tokens: LengthDist::Uniform { min: 1, max: 10_000 },
        output_tokens: LengthDist::Lognormal { mean: 200.0, std: 150.0, min: 1, max: 2000 },
        ..counted(closed(4), 400)
    };
    let mut w = workload(vec![p]);
    w.prefix = PrefixSpec { tokens: 64, groups: 3, fraction: 0.5 };
    let run = |service_seed: u64| {
        let mut rng = Pcg64Mcg::seed_from_u64(service_seed);
        drive(&mut generator(&w, 2, 11), |_| SimDuration(rng.random_range(1..1_000_000_000)))
    };
    let (a, b) = (run(1), run(2));
    assert_eq!((a.len(), b.len()), (400, 400));
    let order = |v: &[(RequestSpec, SimTime)]| v.iter().map(|(r, _)| r.model).collect::<Vec<_>>();
    assert_ne!(order(&a), order(&b), "different timing should interleave models differently");
    let (pa, pb) = (per_model(&a), per_model(&b));
    for m in [0, 1] {
        let k = pa[&m].len().min(pb[&m].len());
        assert!(k > 150, "model {m}: only {k} requests in common");
        assert_eq!(pa[&m][..k], pb[&m][..k], "model {m}");
    }
}

#[test]
fn a_count_bounded_closed_phase_ends_when_its_last_request_ends() {
    let w = workload(vec![counted(closed(2), 4), counted(ArrivalSpec::Constant { rate: 1.0 }, 1)]);
    // Request i takes i+1 seconds: 0 ends at 1, 1 at 2, 2 (sent at 1) at 4, 3 (sent at 2) at 6.
    let reqs = drive(&mut generator(&w, 1, 1), |r| SimDuration::from_secs_f64((r.id.0 + 1) as f64));
    let got: Vec<(u32, f64)> = reqs.iter().map(|(r, _)| (r.phase, secs(r.arrival))).collect();
    assert_eq!(got, vec![(0, 0.0), (0, 0.0), (0, 1.0), (0, 2.0), (1, 7.0)]);
}

#[test]
fn a_time_bounded_closed_phase_stops_sending_at_its_end_and_the_next_phase_starts_there() {
    let w = workload(vec![timed(closed(1), 10.0), counted(ArrivalSpec::Constant { rate: 1.0 }, 2)]);
    let reqs = drive(&mut generator(&w, 1, 1), |_| SimDuration::from_secs_f64(3.0));
    let got: Vec<(u32, f64)> = reqs.iter().map(|(r, _)| (r.phase, secs(r.arrival))).collect();
    // Sends at 0, 3, 6, 9; the request sent at 9 ends at 12, past the end: no send. Phase 1
    // starts at 10 while it still runs.
    assert_eq!(got, vec![(0, 0.0), (0, 3.0), (0, 6.0), (0, 9.0), (1, 11.0), (1, 12.0)]);
}

#[test]
fn a_completion_exactly_at_the_end_sends_nothing() {
    let w = workload(vec![timed(closed(1), 10.0)]);
    let reqs = drive(&mut generator(&w, 1, 1), |_| SimDuration::from_secs_f64(5.0));
    assert_eq!(arrivals(&reqs.into_iter().map(|x| x.0).collect::<Vec<_>>()), vec![0.0, 5.0]);
}

#[test]
fn a_closed_phase_after_a_timed_closed_phase_starts_all_clients_at_the_boundary() {
    let w = workload(vec![timed(closed(1), 5.0), counted(closed(2), 2)]);
    let reqs = drive(&mut generator(&w, 1, 1), |_| SimDuration::from_secs_f64(4.0));
    let got: Vec<(u32, f64)> = reqs.iter().map(|(r, _)| (r.phase, secs(r.arrival))).collect();
    assert_eq!(got, vec![(0, 0.0), (0, 4.0), (1, 5.0), (1, 5.0)]);
}

#[test]
fn with_both_bounds_a_closed_phase_that_finishes_its_count_early_hands_over_at_once() {
    let p0 = PhaseSpec { num_requests: Some(2), ..timed(closed(1), 100.0) };
    let w = workload(vec![p0, counted(ArrivalSpec::Constant { rate: 1.0 }, 1)]);
    let reqs = drive(&mut generator(&w, 1, 1), |_| SimDuration::from_secs_f64(2.0));
    let got: Vec<(u32, f64)> = reqs.iter().map(|(r, _)| (r.phase, secs(r.arrival))).collect();
    assert_eq!(got, vec![(0, 0.0), (0, 2.0), (1, 5.0)], "phase 1 starts at 4 s, not at 100 s");
}

#[test]
fn a_last_timed_closed_phase_is_exhausted_once_a_completion_passes_its_end() {
    let mut g = generator(&workload(vec![timed(closed(2), 1.0)]), 1, 1);
    let ids: Vec<RequestId> = std::iter::from_fn(|| g.pop()).map(|r| r.id).collect();
    assert_eq!(ids.len(), 2);
    g.on_request_finished(ids[0], SimTime::from_secs_f64(0.5));
    let again = g.pop().unwrap();
    assert_eq!(secs(again.arrival), 0.5);
    assert!(!g.is_exhausted());
    g.on_request_finished(ids[1], SimTime::from_secs_f64(1.5));
    assert!(g.is_exhausted(), "no send can happen after the end");
    g.on_request_finished(again.id, SimTime::from_secs_f64(2.0));
    assert_eq!(g.pop(), None);
}

#[test]
fn completions_of_open_loop_or_unknown_requests_change_nothing() {
    let w = workload(vec![counted(ArrivalSpec::Constant { rate: 1.0 }, 3)]);
    let mut g = generator(&w, 1, 1);
    let a = g.pop().unwrap();
    g.on_request_finished(a.id, SimTime::from_secs_f64(1.5));
    g.on_request_finished(RequestId(999), SimTime::from_secs_f64(1.6));
    assert_eq!(g.peek_time(), Some(SimTime::from_secs_f64(2.0)));
}
