//! Across-replication statistics: the mean of a metric over seeds and its Student-t confidence
//! interval. This module knows nothing of metrics or sweeps; it only does the arithmetic.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Two-sided confidence level of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// The mean of some replications and its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Arithmetic mean.
    pub mean: f64,
    /// `(low, high)` of the [`CONFIDENCE`] Student-t interval; `None` with one sample.
    pub ci: Option<(f64, f64)>,
    /// Number of samples.
    pub n: u32,
}

/// Mean and Student-t interval (df = n - 1, sample standard deviation) of `samples`; `None` when
/// there are none. With one sample there is no interval.
pub fn estimate(samples: &[f64]) -> Option<Estimate> {
    let n = samples.len();
    if n == 0 {
        return None;
    }
    let mean = samples.iter().sum::<f64>() / n as f64;
    let ci = (n >= 2).then(|| {
        let var = samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        let half = t_quantile(n - 1) * (var / n as f64).sqrt();
        (mean - half, mean + half)
    });
    Some(Estimate { mean, ci, n: n as u32 })
}

/// The `(1 + CONFIDENCE) / 2` quantile of Student's t with `df` degrees of freedom (`df >= 1`).
pub fn t_quantile(df: usize) -> f64 {
    let p = 0.5 + CONFIDENCE / 2.0;
    match StudentsT::new(0.0, 1.0, df.max(1) as f64) {
        Ok(t) => t.inverse_cdf(p),
        // Unreachable for df >= 1; the normal quantile is the limit.
        Err(_) => 1.959_963_984_540_054,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        for (df, t) in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)] {
            assert!((t_quantile(df) - t).abs() < 1e-3, "df {df}: {}", t_quantile(df));
        }
    }

    #[test]
    fn the_interval_is_the_mean_plus_minus_t_times_the_standard_error() {
        let e = estimate(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(e.mean, 2.0);
        assert_eq!(e.n, 3);
        let (lo, hi) = e.ci.unwrap();
        // sd = 1, se = 1/sqrt(3), t(0.975, 2) = 4.3027
        let half = 4.302_652_7 / 3f64.sqrt();
        assert!((lo - (2.0 - half)).abs() < 1e-4 && (hi - (2.0 + half)).abs() < 1e-4, "{lo} {hi}");
    }

    #[test]
    fn one_sample_has_no_interval_and_equal_samples_a_zero_width_one() {
        assert_eq!(estimate(&[5.0]), Some(Estimate { mean: 5.0, ci: None, n: 1 }));
        assert_eq!(estimate(&[4.0, 4.0]).unwrap().ci, Some((4.0, 4.0)));
        assert_eq!(estimate(&[]), None);
    }
}
