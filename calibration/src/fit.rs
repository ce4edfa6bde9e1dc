//! Non-negative least squares of step durations on the model's terms, with fit quality.
//!
//! Solver: the `nnls` crate (a port of the Lawson-Hanson Fortran routine behind
//! `scipy.optimize.nnls`): every coefficient is a time and must be >= 0, and an unconstrained
//! fit of noisy, collinear columns readily goes negative. Two conditioning steps come first:
//! - rows are weighted by 1 / measured duration, so the fit minimises *relative* errors (a 10 ms
//!   decode step counts as much as a 200 ms prefill step, and the residuals reported are relative);
//! - columns are scaled to unit largest value (the raw columns span 1 to ~1e9), then the solution
//!   is scaled back.
//!
//! A term is left out (coefficient 0, reported as not identified) when its column is zero
//! everywhere, or when it repeats the fixed column (every step eager). Standard errors come from
//! a bootstrap over rows (fixed seed: the output is deterministic).

use crate::error::CalibrationError;
use crate::step::{StepModel, StepSample, Term};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use sim::metrics::percentile;

/// Bootstrap resamples for the standard errors.
const BOOTSTRAP_RESAMPLES: usize = 64;

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

/// Weighted, column-scaled design of `rows` over `terms`: (A, b, column scales).
fn design(rows: &[StepSample], idx: &[usize], terms: &[Term]) -> (Array2<f64>, Array1<f64>, Vec<f64>) {
    let mut scale = vec![0.0f64; terms.len()];
    for &i in idx {
        let r = &rows[i];
        let w = 1.0 / r.duration_s;
        for (j, t) in terms.iter().enumerate() {
            scale[j] = scale[j].max((t.value(&r.features) * w).abs());
        }
    }
    for s in &mut scale {
        if *s == 0.0 {
            *s = 1.0;
        }
    }
    let mut a = Array2::<f64>::zeros((idx.len(), terms.len()));
    let mut b = Array1::<f64>::zeros(idx.len());
    for (k, &i) in idx.iter().enumerate() {
        let r = &rows[i];
        let w = 1.0 / r.duration_s;
        for (j, t) in terms.iter().enumerate() {
            a[(k, j)] = t.value(&r.features) * w / scale[j];
        }
        b[k] = 1.0;
    }
    (a, b, scale)
}

fn solve(rows: &[StepSample], idx: &[usize], terms: &[Term]) -> Result<Vec<f64>, CalibrationError> {
    let (a, b, scale) = design(rows, idx, terms);
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
    let all: Vec<usize> = (0..rows.len()).collect();
    let x = solve(rows, &all, &terms)?;
    let mut model = StepModel::default();
    for (t, v) in terms.iter().zip(&x) {
        model.set(*t, *v);
    }
    // Bootstrap: refit on rows drawn with replacement; the spread of each coefficient.
    let mut rng = Pcg64::seed_from_u64(0x5eed);
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(BOOTSTRAP_RESAMPLES); terms.len()];
    let mut idx = vec![0usize; rows.len()];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for i in idx.iter_mut() {
            *i = rng.random_range(0..rows.len());
        }
        if let Ok(xb) = solve(rows, &idx, &terms) {
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
        StepSample { run: 0, instance: "i".into(), duration_s: model.predict(&features), features }
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
            duration_s: 0.01,
            features: StepFeatures { num_steps: 1, num_decode_seqs: 1, ..StepFeatures::default() },
        }];
        let e = fit_nnls(&rows, &[Term::Fixed, Term::DecodeSeq]).unwrap_err().to_string();
        assert!(e.contains("usable steps"), "{e}");
    }
}
