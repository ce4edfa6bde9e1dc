//! The planner's workload: the scenario's phases cut to a fixed request budget, and scaled by a
//! load multiplier.
//!
//! Every layout is judged on the same short request stream (same seed: common random numbers), so
//! differences between layouts are not sampling noise. `budget` turns each open-loop phase into a
//! count-bounded one (its expected count, shrunk in proportion when the whole workload expects
//! more than the budget), so that scaling the rate later changes how fast requests come, not how
//! many. `scale` multiplies every phase's load: arrival rates (Poisson, gamma, constant, both ends
//! of a ramp, whose duration shrinks to keep its count), closed-loop concurrency (rounded, at
//! least 1) and a replay's speedup. Arrival gaps are drawn as unit variates divided by the rate,
//! so a scaled stream has the same requests, closer together. This module runs nothing.

use crate::scenario::{ArrivalSpec, PhaseSpec, SessionStart, WorkloadSpec};
use serde::Serialize;

/// What `budget` did to the workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetNote {
    /// Requests the workload as written is expected to issue (`None`: a phase's count is unknown,
    /// e.g. a time-bounded closed loop or a replay).
    pub expected_requests: Option<u64>,
    /// Requests each evaluation issues (expected; exact for count-bounded phases).
    pub requests_per_evaluation: u64,
    /// Whether phases were shortened to fit the budget.
    pub truncated: bool,
}

/// Expected requests of one phase as written, when knowable (the resource guard's count).
fn expected(p: &PhaseSpec) -> Option<f64> {
    crate::scenario::limits::phase_requests(p)
}

/// Cuts `w` to about `budget` requests (see the module doc) and makes open-loop phases
/// count-bounded.
pub(crate) fn budget(w: &mut WorkloadSpec, budget: u64) -> BudgetNote {
    let counts: Vec<Option<f64>> = w.phases.iter().map(expected).collect();
    let known: f64 = counts.iter().flatten().sum();
    let all_known = counts.iter().all(Option::is_some);
    let factor = if known > budget as f64 { budget as f64 / known } else { 1.0 };
    let per_unknown = budget / w.phases.len().max(1) as u64;
    let mut total = 0u64;
    for (p, count) in w.phases.iter_mut().zip(&counts) {
        match (&p.arrival, count) {
            (ArrivalSpec::Ramp { .. }, Some(c)) => {
                // A ramp needs its duration: shorten it, keep its rates.
                p.duration_s = p.duration_s.map(|d| d * factor);
                p.num_requests = p.num_requests.map(|n| ((n as f64 * factor).round() as u64).max(1));
                total += (c * factor).round() as u64;
            }
            (
                ArrivalSpec::Poisson { .. } | ArrivalSpec::Gamma { .. } | ArrivalSpec::Constant { .. },
                Some(c),
            ) => {
                let n = ((c * factor).round() as u64).max(1);
                p.num_requests = Some(n);
                p.duration_s = None;
                total += n;
            }
            (_, Some(c)) => {
                let n = ((c * factor).round() as u64).max(1);
                p.num_requests = Some(n);
                total += n;
            }
            (_, None) => {
                // Unknown count (time-bounded closed loop, replay): cap it.
                p.num_requests = Some(p.num_requests.map_or(per_unknown, |n| n.min(per_unknown)).max(1));
                total += p.num_requests.unwrap_or(0);
            }
        }
    }
    BudgetNote {
        expected_requests: all_known.then(|| known.round() as u64),
        requests_per_evaluation: total,
        truncated: factor < 1.0 || !all_known,
    }
}

/// Multiplies every phase's load by `s` (see the module doc); `explain` reuses it.
pub fn scale_load(w: &mut WorkloadSpec, s: f64) {
    for p in &mut w.phases {
        match &mut p.arrival {
            ArrivalSpec::Poisson { rate }
            | ArrivalSpec::Gamma { rate, .. }
            | ArrivalSpec::Constant { rate } => {
                *rate *= s;
                p.duration_s = p.duration_s.map(|d| d / s);
            }
            ArrivalSpec::Ramp { start_rate, end_rate } => {
                *start_rate *= s;
                *end_rate *= s;
                p.duration_s = p.duration_s.map(|d| d / s);
            }
            ArrivalSpec::ClosedLoop { concurrency, .. } => {
                *concurrency = ((f64::from(*concurrency) * s).round() as u32).max(1);
            }
            // A replay's duration_s is its source window: the same rows, compressed.
            ArrivalSpec::Replay { speedup, .. } => *speedup *= s,
            ArrivalSpec::Sessions(sessions) => match &mut sessions.start {
                SessionStart::Concurrent(n) => *n = ((f64::from(*n) * s).round() as u32).max(1),
                SessionStart::Rate(rate) => {
                    *rate *= s;
                    p.duration_s = p.duration_s.map(|d| d / s);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ModelId;
    use crate::scenario::{LengthDist, PrefixSpec};

    fn phase(arrival: ArrivalSpec, duration_s: Option<f64>, num_requests: Option<u64>) -> PhaseSpec {
        PhaseSpec {
            name: "p".into(),
            duration_s,
            num_requests,
            arrival,
            mix: vec![(ModelId(0), 1.0)],
            input_tokens: LengthDist::Fixed { value: 10 },
            output_tokens: LengthDist::Fixed { value: 10 },
            per_model_lengths: Vec::new(),
        }
    }

    fn workload(phases: Vec<PhaseSpec>) -> WorkloadSpec {
        WorkloadSpec {
            phases,
            prefix: PrefixSpec { tokens: 0, groups: 1, fraction: 0.0 },
            prompt_token_id_range: (0, 100),
        }
    }

    #[test]
    fn a_workload_within_budget_keeps_its_counts_and_becomes_count_bounded() {
        let mut w = workload(vec![
            phase(ArrivalSpec::Poisson { rate: 4.0 }, Some(30.0), None),
            phase(ArrivalSpec::Poisson { rate: 12.0 }, Some(180.0), None),
        ]);
        let note = budget(&mut w, 4000);
        assert_eq!(note.requests_per_evaluation, 120 + 2160);
        assert!(!note.truncated);
        assert_eq!(w.phases[1].num_requests, Some(2160));
        assert_eq!(w.phases[1].duration_s, None);
    }

    #[test]
    fn a_long_workload_is_shrunk_in_proportion() {
        let mut w = workload(vec![
            phase(ArrivalSpec::Poisson { rate: 10.0 }, Some(1000.0), None),
            phase(ArrivalSpec::Ramp { start_rate: 0.0, end_rate: 20.0 }, Some(1000.0), None),
        ]);
        let note = budget(&mut w, 2000);
        assert!(note.truncated);
        assert_eq!(w.phases[0].num_requests, Some(1000));
        assert_eq!(w.phases[1].duration_s, Some(100.0));
        assert_eq!(note.requests_per_evaluation, 2000);
    }

    #[test]
    fn scaling_multiplies_rates_and_concurrency_but_keeps_counts() {
        let mut w = workload(vec![
            phase(ArrivalSpec::Gamma { rate: 10.0, burstiness: 0.5 }, None, Some(100)),
            phase(ArrivalSpec::closed_loop(3), None, Some(50)),
            phase(ArrivalSpec::Ramp { start_rate: 1.0, end_rate: 3.0 }, Some(10.0), None),
        ]);
        scale_load(&mut w, 1.5);
        assert_eq!(w.phases[0].arrival, ArrivalSpec::Gamma { rate: 15.0, burstiness: 0.5 });
        assert_eq!(w.phases[0].num_requests, Some(100));
        assert_eq!(w.phases[1].arrival, ArrivalSpec::closed_loop(5));
        assert_eq!(w.phases[2].arrival, ArrivalSpec::Ramp { start_rate: 1.5, end_rate: 4.5 });
        let d = w.phases[2].duration_s.unwrap();
        assert!((d - 10.0 / 1.5).abs() < 1e-12, "same expected count: {d}");
    }
}
