//! Non-negative least squares of step times on the model's terms, with fit quality.
//!
//! Solver: the `nnls` crate (a port of the Lawson-Hanson Fortran routine behind
//! `scipy.optimize.nnls`): every coefficient is a time and must be >= 0, and an unconstrained
//! fit of noisy, collinear columns readily goes negative.
//!
//! What is fitted: steps timed from client timestamps are differences of consecutive burst
//! times, so a late burst makes one step look longer and the next shorter by the same amount.
//! Least squares on such differences weighs that jitter twice; on the *end times* it counts once
//! and independently per step. So consecutive steps of one chain (`StepSample::chain`) are fitted
//! by their cumulative end times against their cumulative features, each block of at most
//! [`MAX_BLOCK`] steps with its own free start time (taken out by centring the block, which is
//! what least squares with a per-block intercept does). Blocks are kept short so that where the
//! model, not the clock, is off, its error cannot pile up over many steps. Steps that stand alone
//! (a server's step log) are blocks of one: plain least squares of their durations.
//!
//! Columns are scaled to unit largest value (the raw columns span 1 to ~1e9) and the solution
//! scaled back. A term is left out (coefficient 0, reported as not identified) when its column is
//! zero everywhere, or when it repeats the fixed column (every step eager). Standard errors come
//! from a bootstrap over blocks (fixed seed: the output is deterministic).

use crate::error::CalibrationError;
use crate::step::{StepModel, StepSample, Term};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use sim::metrics::percentile;

/// Bootstrap resamples for the standard errors.
const BOOTSTRAP_RESAMPLES: usize = 64;

/// Most consecutive steps fitted by their end times as one block.
pub const MAX_BLOCK: usize = 16;

/// A term the data could not pin down, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unidentified {
    /// The term (its coefficient is 0).
    pub term: Term,
    /// Why.
    pub reason: String,
}

/// A fitted step-time model and how well it explains the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// The coefficients (0 for terms not fitted).
    pub model: StepModel,
    /// Terms fitted, in column order, each with its bootstrap standard error.
    pub fitted: Vec<(Term, Option<f64>)>,
    /// Terms not fitted.
    pub unidentified: Vec<Unidentified>,
    /// Rows used.
    pub num_rows: usize,
    /// Coefficient of determination of the durations (unweighted).
    pub r2: f64,
    /// Percentiles 50, 90, 99 of |predicted - measured| / measured.
    pub residual_p50: f64,
    /// 90th percentile.
    pub residual_p90: f64,
    /// 99th percentile.
    pub residual_p99: f64,
    /// Predicted duration of every row, in row order.
    pub predicted: Vec<f64>,
}

/// Solves min ||A x - b|| subject to x >= 0 with the `nnls` crate. Its one remaining `panic!`
/// (a round-off path of the Fortran original its author never saw taken) is turned into an error
/// rather than taking the whole command down.
fn solve_nnls(a: &Array2<f64>, b: &Array1<f64>) -> Result<Array1<f64>, CalibrationError> {
    if a.nrows() == 0 || a.ncols() == 0 {
        return Err(CalibrationError::NotEnoughData("no rows or no terms to fit".into()));
    }
    let (a, b) = (a.view(), b.view());
    let out = std::panic::catch_unwind(move || nnls::nnls(a, b).0);
    out.map_err(|_| {
        CalibrationError::Solver(
            "the NNLS solver hit a round-off failure; drop outlying run dirs or steps and retry".into(),
        )
    })
}

/// The columns worth fitting among `terms`, and the ones left out with the reason.
fn identifiable(rows: &[StepSample], terms: &[Term]) -> (Vec<Term>, Vec<Unidentified>) {
    let mut keep = Vec::new();
    let mut out = Vec::new();
    for &t in terms {
        let col = || rows.iter().map(|r| t.value(&r.features));
        if col().all(|v| v == 0.0) {
            let what = match t {
                Term::Fixed => "no steps",
                Term::PrefillToken => "no step computed prompt tokens",
                Term::DecodeSeq => "no step decoded",
                Term::KvToken => "no step read KV tokens",
                Term::PrefillAttnPair => "no prefill attention pairs (or the data cannot count them)",
                Term::EagerFixed => "no step ran eagerly",
            };
            out.push(Unidentified { term: t, reason: format!("{what}: left at 0") });
            continue;
        }
        if t == Term::EagerFixed && rows.iter().all(|r| r.features.num_eager_steps == r.features.num_steps) {
            out.push(Unidentified {
                term: t,
                reason: "every step ran eagerly (no CUDA graphs): the eager cost is part of fixed_s".into(),
            });
            continue;
        }
        keep.push(t);
    }
    (keep, out)
}

/// The blocks of `rows`: runs of one chain, at most [`MAX_BLOCK`] long.
fn blocks(rows: &[StepSample]) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match out.last_mut() {
            Some(b) if rows[b.start].chain == r.chain && b.len() < MAX_BLOCK && b.end == i => b.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// Column-scaled design of the blocks `pick` (indices into `blocks`): every block contributes its
/// cumulative end times and features from its start (0) on, centred. Returns (A, b, scales).
fn design(
    rows: &[StepSample],
    blocks: &[std::ops::Range<usize>],
    pick: &[usize],
    terms: &[Term],
) -> (Array2<f64>, Array1<f64>, Vec<f64>) {
    let n: usize = pick.iter().map(|&b| blocks[b].len() + 1).sum();
    let mut a = Array2::<f64>::zeros((n, terms.len()));
    let mut y = Array1::<f64>::zeros(n);
    let mut at = 0;
    let mut cum = vec![0.0f64; terms.len()];
    for &bi in pick {
        let block = &blocks[bi];
        let first = at;
        cum.iter_mut().for_each(|c| *c = 0.0);
        let mut t = 0.0;
        // Point 0: the block's start (all zeros), then one point per step end.
        at += 1;
        for r in &rows[block.clone()] {
            t += r.duration_s;
            for (j, term) in terms.iter().enumerate() {
                cum[j] += term.value(&r.features);
                a[(at, j)] = cum[j];
            }
            y[at] = t;
            at += 1;
        }
        let m = (at - first) as f64;
        let mean_y = (first..at).map(|i| y[i]).sum::<f64>() / m;
        for i in first..at {
            y[i] -= mean_y;
        }
        for j in 0..terms.len() {
            let mean = (first..at).map(|i| a[(i, j)]).sum::<f64>() / m;
            for i in first..at {
                a[(i, j)] -= mean;
            }
        }
    }
    let mut scale = vec![1.0f64; terms.len()];
    for (j, s) in scale.iter_mut().enumerate() {
        let m = a.column(j).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if m > 0.0 {
            *s = m;
        }
    }
    for ((_, j), v) in a.indexed_iter_mut() {
        *v /= scale[j];
    }
    (a, y, scale)
}

fn solve(
    rows: &[StepSample],
    blocks: &[std::ops::Range<usize>],
    pick: &[usize],
    terms: &[Term],
) -> Result<Vec<f64>, CalibrationError> {
    let (a, b, scale) = design(rows, blocks, pick, terms);
    let x = solve_nnls(&a, &b)?;
    Ok(x.iter().zip(&scale).map(|(v, s)| v / s).collect())
}

/// Fits `terms` to `rows` (durations must be > 0 and finite; others are an error).
pub fn fit_nnls(rows: &[StepSample], terms: &[Term]) -> Result<Fit, CalibrationError> {
    if let Some(bad) = rows.iter().find(|r| !(r.duration_s.is_finite() && r.duration_s > 0.0)) {
        return Err(CalibrationError::NotEnoughData(format!(
            "a step of instance {} has duration {} s; durations must be positive",
            bad.instance, bad.duration_s
        )));
    }
    let (terms, unidentified) = identifiable(rows, terms);
    if rows.len() < terms.len() + 2 {
        return Err(CalibrationError::NotEnoughData(format!(
            "{} usable steps for {} terms; record a longer run (the calibration scenario gives thousands)",
            rows.len(),
            terms.len()
        )));
    }
    let blocks = blocks(rows);
    let all: Vec<usize> = (0..blocks.len()).collect();
    let x = solve(rows, &blocks, &all, &terms)?;
    let mut model = StepModel::default();
    for (t, v) in terms.iter().zip(&x) {
        model.set(*t, *v);
    }
    // Bootstrap: refit on blocks drawn with replacement; the spread of each coefficient.
    let mut rng = Pcg64::seed_from_u64(0x5eed);
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(BOOTSTRAP_RESAMPLES); terms.len()];
    let mut idx = vec![0usize; blocks.len()];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for i in idx.iter_mut() {
            *i = rng.random_range(0..blocks.len());
        }
        if let Ok(xb) = solve(rows, &blocks, &idx, &terms) {
            for (d, v) in draws.iter_mut().zip(xb) {
                d.push(v);
            }
        }
    }
    let std_err = |d: &[f64]| -> Option<f64> {
        (d.len() >= 2).then(|| {
            let m = d.iter().sum::<f64>() / d.len() as f64;
            (d.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (d.len() - 1) as f64).sqrt()
        })
    };
    let fitted = terms.iter().zip(&draws).map(|(t, d)| (*t, std_err(d))).collect();

    let predicted: Vec<f64> = rows.iter().map(|r| model.predict(&r.features)).collect();
    let mean = rows.iter().map(|r| r.duration_s).sum::<f64>() / rows.len() as f64;
    let ss_tot: f64 = rows.iter().map(|r| (r.duration_s - mean).powi(2)).sum();
    let ss_res: f64 = rows.iter().zip(&predicted).map(|(r, p)| (r.duration_s - p).powi(2)).sum();
    let r2 = if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 0.0 };
    let mut rel: Vec<f64> =
        rows.iter().zip(&predicted).map(|(r, p)| ((p - r.duration_s) / r.duration_s).abs()).collect();
    rel.sort_by(f64::total_cmp);
    let pct = |q| percentile(&rel, q).unwrap_or(0.0);
    Ok(Fit {
        model,
        fitted,
        unidentified,
        num_rows: rows.len(),
        r2,
        residual_p50: pct(50.0),
        residual_p90: pct(90.0),
        residual_p99: pct(99.0),
        predicted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepFeatures;

    fn row(p: u64, d: u64, k: u64, model: &StepModel) -> StepSample {
        let features = StepFeatures {
            num_steps: 1,
            num_prefill_tokens: p,
            num_decode_seqs: d,
            num_kv_tokens_read: k,
            num_scheduled_requests: d + u64::from(p > 0),
            ..StepFeatures::default()
        };
        StepSample {
            run: 0,
            instance: "i".into(),
            chain: p + 1000 * d,
            duration_s: model.predict(&features),
            features,
        }
    }

    #[test]
    fn exact_data_gives_back_its_coefficients_and_a_perfect_fit() {
        let mut truth = StepModel::default();
        truth.set(Term::Fixed, 0.010);
        truth.set(Term::PrefillToken, 3e-5);
        truth.set(Term::DecodeSeq, 2e-4);
        truth.set(Term::KvToken, 3e-7);
        let mut rows = Vec::new();
        for d in 0..40u64 {
            for p in [0u64, 128, 1000, 4000] {
                rows.push(row(p, d, d * (300 + 17 * d) + p, &truth));
            }
        }
        rows.retain(|r| r.features.num_scheduled_requests > 0);
        let fit = fit_nnls(
            &rows,
            &[Term::Fixed, Term::PrefillToken, Term::DecodeSeq, Term::KvToken, Term::EagerFixed],
        )
        .unwrap();
        for t in [Term::Fixed, Term::PrefillToken, Term::DecodeSeq, Term::KvToken] {
            let (got, want) = (fit.model.get(t), truth.get(t));
            assert!(((got - want) / want).abs() < 1e-6, "{t:?}: {got} vs {want}");
        }
        assert!(fit.r2 > 0.999_999 && fit.residual_p99 < 1e-6, "{fit:?}");
        assert_eq!(fit.unidentified.len(), 1, "no eager steps: eager_fixed_s not identified");
        assert!(fit.fitted.iter().all(|(_, se)| se.is_some_and(|s| s < 1e-9)));
    }

    #[test]
    fn coefficients_never_go_negative() {
        // Durations that fall with the decode count: least squares would give a negative slope.
        let rows: Vec<StepSample> = (1..20u64)
            .map(|d| StepSample {
                run: 0,
                instance: "i".into(),
                chain: 0,
                duration_s: 0.02 - 1e-4 * d as f64,
                features: StepFeatures { num_steps: 1, num_decode_seqs: d, ..StepFeatures::default() },
            })
            .collect();
        let fit = fit_nnls(&rows, &[Term::Fixed, Term::DecodeSeq]).unwrap();
        assert_eq!(fit.model.get(Term::DecodeSeq), 0.0);
        assert!(fit.model.get(Term::Fixed) > 0.0);
    }

    #[test]
    fn too_few_rows_is_an_error_saying_so() {
        let rows = vec![StepSample {
            run: 0,
            instance: "i".into(),
            chain: 0,
            duration_s: 0.01,
            features: StepFeatures { num_steps: 1, num_decode_seqs: 1, ..StepFeatures::default() },
        }];
        let e = fit_nnls(&rows, &[Term::Fixed, Term::DecodeSeq]).unwrap_err().to_string();
        assert!(e.contains("usable steps"), "{e}");
    }
}
