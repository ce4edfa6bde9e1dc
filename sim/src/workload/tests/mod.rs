//! Behaviour tests of the workload generator, driven the way the simulator drives it.

mod closed_loop;
mod custom;
mod open_loop;
mod props;
mod replay;
mod replay_fuzz;
mod sessions;
mod trace_formats;

use super::{RequestSpec, WorkloadGenerator};
use crate::ids::ModelId;
use crate::scenario::{ArrivalSpec, LengthDist, PhaseSpec, PrefixSpec, WorkloadSpec};
use crate::time::{SimDuration, SimTime};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

/// A one-model phase with fixed lengths and no bounds.
fn phase(arrival: ArrivalSpec) -> PhaseSpec {
    PhaseSpec {
        name: "p".into(),
        duration_s: None,
        num_requests: None,
        arrival,
        mix: vec![(ModelId(0), 1.0)],
        input_tokens: LengthDist::Fixed { value: 100 },
        output_tokens: LengthDist::Fixed { value: 10 },
        per_model_lengths: Vec::new(),
    }
}

fn counted(arrival: ArrivalSpec, n: u64) -> PhaseSpec {
    PhaseSpec { num_requests: Some(n), ..phase(arrival) }
}

fn timed(arrival: ArrivalSpec, secs: f64) -> PhaseSpec {
    PhaseSpec { duration_s: Some(secs), ..phase(arrival) }
}

fn workload(phases: Vec<PhaseSpec>) -> WorkloadSpec {
    WorkloadSpec {
        phases,
        prefix: PrefixSpec { tokens: 0, groups: 0, fraction: 0.0 },
        prompt_token_id_range: (0, 32_000),
    }
}

fn generator(w: &WorkloadSpec, num_models: usize, seed: u64) -> WorkloadGenerator {
    WorkloadGenerator::new(w, num_models, seed, Path::new(".")).unwrap()
}

fn secs(t: SimTime) -> f64 {
    t.as_secs_f64()
}

/// Runs `g` against a simulated server that serves each request in `service(request)`, processing
/// completions before arrivals at equal times, as a discrete-event driver does. Returns the
/// issued requests in issue order with their end times.
fn drive(
    g: &mut WorkloadGenerator,
    mut service: impl FnMut(&RequestSpec) -> SimDuration,
) -> Vec<(RequestSpec, SimTime)> {
    let mut out: Vec<(RequestSpec, SimTime)> = Vec::new();
    let mut running: BinaryHeap<Reverse<(SimTime, u64)>> = BinaryHeap::new();
    loop {
        let next_end = running.peek().map(|Reverse((t, _))| *t);
        match (g.peek_time(), next_end) {
            (Some(arrival), end) if end.is_none_or(|e| arrival < e) => {
                let r = g.pop().unwrap();
                assert_eq!(r.arrival, arrival, "pop returns the request peek_time announced");
                let end = r.arrival + service(&r);
                running.push(Reverse((end, r.id.0)));
                out.push((r, end));
            }
            (_, Some(end)) => {
                let Reverse((t, id)) = running.pop().unwrap();
                assert_eq!(t, end);
                g.on_request_finished(crate::ids::RequestId(id), t);
            }
            (None, None) => {
                assert!(
                    g.is_exhausted(),
                    "the generator stalled: nothing known, nothing running, not exhausted"
                );
                assert!(g.pop().is_none());
                return out;
            }
            (Some(_), None) => unreachable!(),
        }
    }
}

fn arrivals(reqs: &[RequestSpec]) -> Vec<f64> {
    reqs.iter().map(|r| secs(r.arrival)).collect()
}
