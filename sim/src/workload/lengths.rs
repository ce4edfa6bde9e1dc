//! Token-length distributions compiled for sampling: rounding, clamping to `[min, max]` and the
//! floor of one token. It does not decide which stream a length is drawn from (see `generator`).

use crate::scenario::LengthDist;
use rand::Rng;
use rand::distr::Uniform;
use rand_distr::{Distribution, LogNormal, Normal};
use std::sync::Arc;

/// A validated [`LengthDist`], ready to sample.
#[derive(Clone, Debug)]
pub(crate) enum LengthSampler {
    /// Always this many tokens.
    Fixed(u32),
    /// Uniform integers on `[min, max]`.
    Uniform(Uniform<u32>),
    /// Normal, rounded and clamped.
    Normal {
        /// The distribution.
        dist: Normal<f64>,
        /// Clamp low.
        min: u32,
        /// Clamp high.
        max: u32,
    },
    /// Log-normal (parameters converted from the mean and std in tokens), rounded and clamped.
    LogNormal {
        /// The distribution.
        dist: LogNormal<f64>,
        /// Clamp low.
        min: u32,
        /// Clamp high.
        max: u32,
    },
    /// A uniform pick among observed values.
    Empirical(Arc<[u32]>),
}

/// `mu` and `sigma` of the log-normal whose mean and standard deviation are `mean` and `std`:
/// `sigma^2 = ln(1 + std^2 / mean^2)`, `mu = ln(mean) - sigma^2 / 2`.
pub(crate) fn lognormal_params(mean: f64, std: f64) -> (f64, f64) {
    let sigma2 = (1.0 + (std / mean).powi(2)).ln();
    (mean.ln() - sigma2 / 2.0, sigma2.sqrt())
}

fn check_clamp(min: u32, max: u32) -> Result<(), String> {
    if min > max { Err(format!("min ({min}) is larger than max ({max}); swap them")) } else { Ok(()) }
}

fn check_moments(mean: f64, std: f64) -> Result<(), String> {
    if !mean.is_finite() || !std.is_finite() || std < 0.0 {
        return Err(format!("mean ({mean}) and std ({std}) must be finite numbers with std >= 0"));
    }
    Ok(())
}

impl LengthSampler {
    /// Validates `dist`; the error says what is wrong (the caller adds which phase and field).
    pub(crate) fn new(dist: &LengthDist) -> Result<Self, String> {
        Ok(match dist {
            LengthDist::Fixed { value } => LengthSampler::Fixed((*value).max(1)),
            LengthDist::Uniform { min, max } => {
                check_clamp(*min, *max)?;
                let uniform = Uniform::new_inclusive(*min, *max).map_err(|e| e.to_string())?;
                LengthSampler::Uniform(uniform)
            }
            LengthDist::Normal { mean, std, min, max } => {
                check_moments(*mean, *std)?;
                check_clamp(*min, *max)?;
                let dist = Normal::new(*mean, *std).map_err(|e| e.to_string())?;
                LengthSampler::Normal { dist, min: *min, max: *max }
            }
            LengthDist::Lognormal { mean, std, min, max } => {
                check_moments(*mean, *std)?;
                if *mean <= 0.0 {
                    return Err(format!("log-normal mean must be > 0 tokens, got {mean}"));
                }
                check_clamp(*min, *max)?;
                let (mu, sigma) = lognormal_params(*mean, *std);
                let dist = LogNormal::new(mu, sigma).map_err(|e| e.to_string())?;
                LengthSampler::LogNormal { dist, min: *min, max: *max }
            }
            LengthDist::Empirical { source, values } => {
                if values.is_empty() {
                    return Err(format!(
                        "empirical distribution from {source:?} has no values; check the file and column"
                    ));
                }
                LengthSampler::Empirical(values.as_slice().into())
            }
        })
    }

    /// One length in tokens (at least 1).
    pub(crate) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let v = match self {
            LengthSampler::Fixed(v) => *v,
            LengthSampler::Uniform(u) => u.sample(rng),
            LengthSampler::Normal { dist, min, max } => round_clamp(dist.sample(rng), *min, *max),
            LengthSampler::LogNormal { dist, min, max } => round_clamp(dist.sample(rng), *min, *max),
            LengthSampler::Empirical(values) => values[rng.random_range(0..values.len())],
        };
        v.max(1)
    }
}

fn round_clamp(x: f64, min: u32, max: u32) -> u32 {
    // `as` saturates and maps NaN to 0; the clamp keeps the value in range either way.
    (x.round().clamp(f64::from(min), f64::from(max))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    fn draws(d: &LengthDist, n: usize) -> Vec<u32> {
        let s = LengthSampler::new(d).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        (0..n).map(|_| s.sample(&mut rng)).collect()
    }

    #[test]
    fn lognormal_given_in_tokens_has_that_mean_and_std() {
        let d = LengthDist::Lognormal { mean: 500.0, std: 300.0, min: 1, max: 1_000_000 };
        let v = draws(&d, 200_000);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!((mean - 500.0).abs() < 5.0, "mean {mean}");
        assert!((var.sqrt() - 300.0).abs() < 10.0, "std {}", var.sqrt());
    }

    #[test]
    fn normal_samples_are_clamped_to_min_and_max() {
        let d = LengthDist::Normal { mean: 100.0, std: 100.0, min: 50, max: 120 };
        let v = draws(&d, 10_000);
        assert!(v.iter().all(|&x| (50..=120).contains(&x)));
        assert!(v.contains(&50) && v.contains(&120), "both clamps should be hit");
    }

    #[test]
    fn a_length_is_never_zero() {
        assert_eq!(draws(&LengthDist::Fixed { value: 0 }, 3), vec![1, 1, 1]);
        let d = LengthDist::Normal { mean: 0.0, std: 1.0, min: 0, max: 5 };
        assert!(draws(&d, 1000).iter().all(|&x| x >= 1));
    }

    #[test]
    fn empirical_picks_only_listed_values() {
        let d = LengthDist::Empirical { source: "t".into(), values: vec![7, 70, 700] };
        let v = draws(&d, 3000);
        assert!(v.iter().all(|x| [7, 70, 700].contains(x)));
        assert!([7, 70, 700].iter().all(|x| v.contains(x)));
    }

    #[test]
    fn inverted_bounds_and_empty_lists_are_rejected() {
        assert!(LengthSampler::new(&LengthDist::Uniform { min: 9, max: 3 }).unwrap_err().contains("swap"));
        let e = LengthSampler::new(&LengthDist::Empirical { source: "f.csv:len".into(), values: vec![] });
        assert!(e.unwrap_err().contains("f.csv:len"));
        let e = LengthSampler::new(&LengthDist::Lognormal { mean: 0.0, std: 1.0, min: 1, max: 2 });
        assert!(e.unwrap_err().contains("> 0"));
    }
}
