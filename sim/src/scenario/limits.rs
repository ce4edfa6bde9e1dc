//! Resource guards decided before any work starts: the planned request count, `instances.csv`
//! samples and tokens of a resolved scenario are estimated from its workload and refused above
//! `[output]` limits, with the estimate and the `--set` that raises the limit. A phase with rate
//! 1e12 for one second, or a nanosecond sample interval, is thus an error naming the field
//! instead of a run that fills the memory or the disk. Unknown counts (a replay without
//! `num_requests`, a time-bounded closed loop or sessions phase: sessions may end early) are not
//! estimated; the simulator's sampling skips idle time for those. This module runs nothing.

use super::error::{Ctx, ScenarioError};
use super::types::{ArrivalSpec, LengthDist, PhaseSpec, WorkloadSpec};

/// Default `output.max_requests`: planned requests of one run.
pub const DEFAULT_MAX_REQUESTS: u64 = 10_000_000;
/// Default `output.max_samples`: planned `instances.csv` rows of one run (about 100 bytes each).
pub const DEFAULT_MAX_SAMPLES: u64 = 20_000_000;
/// Default `output.max_tokens`: planned prompt plus output tokens of one run.
pub const DEFAULT_MAX_TOKENS: u64 = 20_000_000_000;
/// Smallest `output.sample_interval_s` (1 ms: finer than any engine step).
pub const MIN_SAMPLE_INTERVAL_S: f64 = 1e-3;

/// The `[output]` limits a scenario is checked against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Limits {
    pub max_requests: u64,
    pub max_samples: u64,
    pub max_tokens: u64,
}

/// Requests a phase is expected to issue, when knowable (open loop: rate x duration, capped by
/// `num_requests`; otherwise `num_requests`). Also `plan`'s budget count.
pub(crate) fn phase_requests(p: &PhaseSpec) -> Option<f64> {
    let by_time = match (&p.arrival, p.duration_s) {
        (
            ArrivalSpec::Poisson { rate } | ArrivalSpec::Gamma { rate, .. } | ArrivalSpec::Constant { rate },
            Some(d),
        ) => Some(rate * d),
        (ArrivalSpec::Ramp { start_rate, end_rate }, Some(d)) => Some((start_rate + end_rate) / 2.0 * d),
        _ => None,
    };
    match (by_time, p.num_requests) {
        (Some(t), Some(n)) => Some(t.min(n as f64)),
        (t, n) => t.or(n.map(|n| n as f64)),
    }
}

/// Simulated seconds a phase lasts, when knowable. A replay's `duration_s` (or `end_s - start_s`)
/// is its source window, which lasts `window / speedup`; without either, the trace decides.
fn phase_seconds(p: &PhaseSpec) -> Option<f64> {
    if let ArrivalSpec::Replay { speedup, options, .. } = &p.arrival {
        let window = options.window_end(p.duration_s).map(|end| end - options.start_s);
        return window.map(|w| w / speedup);
    }
    let by_count = match (&p.arrival, p.num_requests) {
        (
            ArrivalSpec::Poisson { rate } | ArrivalSpec::Gamma { rate, .. } | ArrivalSpec::Constant { rate },
            Some(n),
        ) if *rate > 0.0 => Some(n as f64 / rate),
        _ => None,
    };
    match (p.duration_s, by_count) {
        (Some(d), Some(c)) => Some(d.min(c)),
        (d, c) => d.or(c),
    }
}

/// Mean tokens of a length distribution (an upper bound where clamping shifts it).
fn mean_tokens(d: &LengthDist) -> f64 {
    match d {
        LengthDist::Fixed { value } => f64::from(*value),
        LengthDist::Uniform { min, max } => (f64::from(*min) + f64::from(*max)) / 2.0,
        LengthDist::Normal { mean, min, max, .. } | LengthDist::Lognormal { mean, min, max, .. } => {
            mean.clamp(f64::from(*min), f64::from(*max).max(f64::from(*min)))
        }
        LengthDist::Empirical { values, .. } => {
            values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64
        }
    }
}

/// Largest mean prompt + output tokens over a phase's models. A session's turn k prompt repeats
/// the turns before it (k - 1 answers and user messages), so its mean over the turns is the first
/// prompt + (mean turns - 1) / 2 of them, capped by `max_context_tokens`.
fn phase_tokens_per_request(p: &PhaseSpec) -> f64 {
    let per_request = |input: &LengthDist, output: &LengthDist| {
        let (i, o) = (mean_tokens(input), mean_tokens(output));
        match &p.arrival {
            ArrivalSpec::Sessions(s) => {
                let growth = (mean_tokens(&s.turns) - 1.0).max(0.0) / 2.0 * (o + mean_tokens(&s.user_tokens));
                let t = i + growth + o;
                s.max_context_tokens.map_or(t, |m| t.min(f64::from(m)))
            }
            _ => i + o,
        }
    };
    let default = per_request(&p.input_tokens, &p.output_tokens);
    p.per_model_lengths.iter().map(|(_, i, o)| per_request(i, o)).fold(default, f64::max)
}

/// What a run of `workload` on `instances` instances is expected to cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlannedWork {
    /// Requests issued (None: a phase's count is unknown).
    pub requests: Option<f64>,
    /// Prompt plus output tokens (None with `requests`).
    pub tokens: Option<f64>,
    /// `instances.csv` rows (None: a phase's length is unknown).
    pub samples: Option<f64>,
}

/// Estimates the planned work of `workload` (see the module doc).
pub fn planned_work(
    workload: &WorkloadSpec,
    instances: usize,
    sample_interval_s: f64,
    drain_timeout_s: f64,
) -> PlannedWork {
    let mut w = PlannedWork { requests: Some(0.0), tokens: Some(0.0), samples: None };
    let mut seconds = Some(drain_timeout_s);
    for p in &workload.phases {
        let n = phase_requests(p);
        w.requests = w.requests.zip(n).map(|(a, b)| a + b);
        w.tokens = w.tokens.zip(n).map(|(a, b)| a + b * phase_tokens_per_request(p));
        seconds = seconds.zip(phase_seconds(p)).map(|(a, b)| a + b);
    }
    w.samples = seconds.map(|s| (s / sample_interval_s).ceil() * instances as f64);
    w
}

/// Refuses a workload whose planned work exceeds `limits` (the error names the limit's field).
pub(crate) fn check(ctx: Ctx<'_>, work: &PlannedWork, limits: &Limits) -> Result<(), ScenarioError> {
    let checks = [
        ("max_requests", work.requests, limits.max_requests, "requests (rate x duration of each phase)"),
        ("max_tokens", work.tokens, limits.max_tokens, "prompt + output tokens (requests x mean lengths)"),
        (
            "max_samples",
            work.samples,
            limits.max_samples,
            "instances.csv rows (simulated seconds incl. drain_timeout_s / sample_interval_s x instances)",
        ),
    ];
    for (field, planned, limit, what) in checks {
        if let Some(x) = planned.filter(|x| !x.is_finite() || *x > limit as f64) {
            return Err(ctx.err(
                format!("output.{field}"),
                format!(
                    "the workload plans about {x:.3e} {what}, above the limit of {limit}: shrink the \
                     workload, or raise the limit with --set output.{field}=N (or [output] {field} = N)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ModelId;
    use crate::scenario::{DelayDist, PrefixSpec, ReplayOptions, SessionSpec, SessionStart};

    fn phase(arrival: ArrivalSpec, duration_s: Option<f64>, num_requests: Option<u64>) -> PhaseSpec {
        PhaseSpec {
            name: "p".into(),
            duration_s,
            num_requests,
            arrival,
            mix: vec![(ModelId(0), 1.0)],
            input_tokens: LengthDist::Fixed { value: 1000 },
            output_tokens: LengthDist::Fixed { value: 100 },
            per_model_lengths: Vec::new(),
        }
    }

    fn work(p: PhaseSpec) -> PlannedWork {
        let w = WorkloadSpec {
            phases: vec![p],
            prefix: PrefixSpec { tokens: 0, groups: 1, fraction: 0.0 },
            prompt_token_id_range: (0, 100),
        };
        planned_work(&w, 2, 1.0, 10.0)
    }

    fn replay(speedup: f64, options: ReplayOptions) -> ArrivalSpec {
        ArrivalSpec::Replay { path: "trace.csv".into(), speedup, options }
    }

    #[test]
    fn a_replay_window_lasts_its_source_length_over_speedup() {
        // duration_s is the source window: 600 s at speedup 10 is 60 s, plus 10 s of drain.
        let w = work(phase(replay(10.0, ReplayOptions::default()), Some(600.0), None));
        assert_eq!(w.samples, Some(70.0 * 2.0));
        assert_eq!(w.requests, None, "the rows in the window are not known before reading the file");
        let window = ReplayOptions { start_s: 100.0, end_s: Some(400.0), ..ReplayOptions::default() };
        let w = work(phase(replay(0.5, window), None, Some(50)));
        assert_eq!(w.samples, Some(610.0 * 2.0));
        assert_eq!(w.requests, Some(50.0));
        // rate_scale changes the rows, not the time.
        let scaled = ReplayOptions { rate_scale: 4.0, ..ReplayOptions::default() };
        assert_eq!(work(phase(replay(10.0, scaled), Some(600.0), None)).samples, Some(140.0));
        assert_eq!(work(phase(replay(1.0, ReplayOptions::default()), None, None)).samples, None);
    }

    fn sessions(max_context_tokens: Option<u32>) -> ArrivalSpec {
        ArrivalSpec::Sessions(SessionSpec {
            start: SessionStart::Concurrent(4),
            turns: LengthDist::Fixed { value: 5 },
            think_time_s: DelayDist::default(),
            user_tokens: LengthDist::Fixed { value: 50 },
            num_sessions: Some(20),
            max_context_tokens,
        })
    }

    #[test]
    fn session_turns_count_the_context_they_repeat_and_unknown_counts_stay_unknown() {
        // Turn k's prompt: 1000 + (k - 1) x (100 + 50); mean over 5 turns 1300, plus the answer.
        let w = work(phase(sessions(None), None, Some(100)));
        assert_eq!(w.requests, Some(100.0));
        assert_eq!(w.tokens, Some(100.0 * 1400.0));
        assert_eq!(work(phase(sessions(Some(1200)), None, Some(100))).tokens, Some(100.0 * 1200.0));
        // Sessions may end early: without num_requests the turn count is unknown.
        let w = work(phase(sessions(None), Some(60.0), None));
        assert_eq!((w.requests, w.tokens), (None, None));
        assert_eq!(w.samples, Some(70.0 * 2.0));
    }
}
