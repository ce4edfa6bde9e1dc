//! The pipeline's output delay, fitted by simulation: the calibration runs' own request streams
//! are simulated with the fitted step costs under the engine preset's join rule (async
//! scheduling's n+2 join included, `sim::instance`), for a range of delays, and the delay whose
//! simulated TTFT p50 and p90 come closest to the measured ones is kept. So the delay and the
//! join rule are fitted together: under load the join rule already accounts for part of what a
//! lone request shows as delay, and a delay read off lone requests alone would count it twice.
//! Only the run dirs given to `calibrate` are simulated; held-out runs never are.
//!
//! Where a run opens with low-load phases (closed loop of at most [`LOW_LOAD_CONCURRENCY`]
//! streams, as the calibration ladder does), only those phases are compared: there a TTFT is the
//! wait for the step in flight, the prefill and the delay, while the top rungs' TTFT is queueing,
//! which the delay cannot fix and which would otherwise decide it (on the H200 ladder the whole-run
//! fit gave 130 ms for one shape and 5 ms for the other).

use crate::dataset::{LoadedRun, Target, instance_target};
use crate::profile::{Coefficients, CudaGraphs};
use sim::metrics::LatencyStats;
use sim::runner::simulate_summary;
use sim::scenario::{CudaGraphSpec, PerfSpec, StepCoefficients, StepOverheads};
use sim::simulation::SimOptions;

/// Delays tried on the coarse grid, evenly from 0 to the upper bound.
const GRID_POINTS: usize = 17;
/// Golden-section refinements around the best grid point.
const REFINE_ITERATIONS: usize = 16;
/// Closed-loop phases of at most this many streams count as low load (see the module doc).
const LOW_LOAD_CONCURRENCY: u32 = 4;

/// The fitted delay and how well it matches.
#[derive(Clone, Debug, PartialEq)]
pub struct DelayFit {
    /// The delay, seconds.
    pub value_s: f64,
    /// Its objective: mean over runs of |ln(sim/live)| of TTFT p50 and p90.
    pub objective: f64,
    /// Per run: (run dir, live TTFT p50, sim TTFT p50, live p90, sim p90), seconds.
    pub runs: Vec<(String, f64, f64, f64, f64)>,
}

/// The TTFT statistics of `target`'s model in a summary.
fn ttft_of(models: &[sim::metrics::ModelSummary], model: &str) -> Option<LatencyStats> {
    models.iter().find(|m| m.model == model).and_then(|m| m.ttft.clone())
}

/// How many leading phases of `phases` are low load (closed loop, few streams); 0: none.
fn low_load_prefix(phases: &[sim::scenario::PhaseSpec]) -> usize {
    phases
        .iter()
        .take_while(|p| {
            matches!(p.arrival, sim::scenario::ArrivalSpec::ClosedLoop { concurrency, .. } if concurrency <= LOW_LOAD_CONCURRENCY)
        })
        .count()
}

/// p50 and p90 of the measured TTFT of `model`'s successful requests in phases `< phases`.
fn live_ttft(run: &LoadedRun, model: &str, phases: usize) -> Option<LatencyStats> {
    let mut v: Vec<f64> = run
        .dir
        .requests
        .iter()
        .filter(|r| r.model == model && (r.phase as usize) < phases)
        .filter_map(|r| r.ttft_s)
        .collect();
    LatencyStats::from_samples(&mut v)
}

/// Simulates every run with `coefficients`, `graphs` and delay `d`: per run (live, sim) TTFT.
fn simulate_runs(
    runs: &[LoadedRun],
    target: &Target,
    coefficients: &Coefficients,
    graphs: Option<&CudaGraphs>,
    d: f64,
) -> Vec<(String, LatencyStats, LatencyStats)> {
    let mut out = Vec::new();
    for run in runs {
        let mut s = run.dir.meta.scenario.clone();
        let mut any = false;
        for i in 0..s.instances.len() {
            if instance_target(&s, i).as_ref() != Some(target) {
                continue;
            }
            any = true;
            let overheads = StepOverheads {
                cuda_graphs: graphs.map_or_else(CudaGraphSpec::default, |g| CudaGraphSpec {
                    capture_sizes: g.capture_sizes.clone(),
                    eager_fixed_s: g.eager_fixed_s,
                    ..CudaGraphSpec::default()
                }),
                output_delay_s: d,
                ..StepOverheads::default()
            };
            s.instances[i].perf = PerfSpec::Profile {
                path: "(being calibrated)".into(),
                coefficients: StepCoefficients {
                    fixed_s: coefficients.fixed_s,
                    per_prefill_token_s: coefficients.per_prefill_token_s,
                    per_decode_seq_s: coefficients.per_decode_seq_s,
                    per_kv_token_s: coefficients.per_kv_token_s,
                    per_prefill_attn_pair_s: coefficients.per_prefill_attn_pair_s,
                },
                overheads,
                fit: None,
            };
        }
        if !any {
            continue;
        }
        let low = low_load_prefix(&s.workload.phases);
        let live = if low > 0 {
            s.workload.phases.truncate(low);
            live_ttft(run, &target.model, low)
        } else {
            ttft_of(&run.dir.summary.models, &target.model)
        };
        let Some(live) = live else { continue };
        let Ok(sim) = simulate_summary(&s, run.path(), SimOptions::default()) else { continue };
        let Some(simulated) = ttft_of(&sim.summary.models, &target.model) else { continue };
        out.push((run.path().display().to_string(), live, simulated));
    }
    out
}

fn objective(rows: &[(String, LatencyStats, LatencyStats)]) -> f64 {
    let err = |s: f64, l: f64| if s > 0.0 && l > 0.0 { (s / l).ln().abs() } else { 1.0 };
    let sum: f64 = rows.iter().map(|(_, l, s)| err(s.p50, l.p50) + err(s.p90, l.p90)).sum();
    sum / (2 * rows.len().max(1)) as f64
}

/// Fits the output delay on `[0, upper_s]` (see the module doc); `None` when no run could be
/// simulated or measured a TTFT.
pub fn fit_output_delay(
    runs: &[LoadedRun],
    target: &Target,
    coefficients: &Coefficients,
    graphs: Option<&CudaGraphs>,
    upper_s: f64,
) -> Option<DelayFit> {
    let upper = upper_s.max(1e-3);
    let eval = |d: f64| objective(&simulate_runs(runs, target, coefficients, graphs, d));
    if simulate_runs(runs, target, coefficients, graphs, 0.0).is_empty() {
        return None;
    }
    let step = upper / (GRID_POINTS - 1) as f64;
    let grid: Vec<(f64, f64)> = (0..GRID_POINTS).map(|i| i as f64 * step).map(|d| (d, eval(d))).collect();
    let (best_i, _) = grid.iter().enumerate().min_by(|a, b| a.1.1.total_cmp(&b.1.1).then(a.0.cmp(&b.0)))?;
    let best_d = grid[best_i].0;
    // Golden-section search on the bracket around the best grid point.
    let (mut a, mut b) = ((best_d - step).max(0.0), (best_d + step).min(upper));
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut e) = (b - phi * (b - a), a + phi * (b - a));
    let (mut fc, mut fe) = (eval(c), eval(e));
    for _ in 0..REFINE_ITERATIONS {
        if fc <= fe {
            b = e;
            e = c;
            fe = fc;
            c = b - phi * (b - a);
            fc = eval(c);
        } else {
            a = c;
            c = e;
            fc = fe;
            e = a + phi * (b - a);
            fe = eval(e);
        }
    }
    let (mut value_s, mut obj) = if fc <= fe { (c, fc) } else { (e, fe) };
    if grid[best_i].1 < obj {
        (value_s, obj) = grid[best_i];
    }
    let rows = simulate_runs(runs, target, coefficients, graphs, value_s);
    Some(DelayFit {
        value_s,
        objective: obj,
        runs: rows.into_iter().map(|(p, l, s)| (p, l.p50, s.p50, l.p90, s.p90)).collect(),
    })
}
