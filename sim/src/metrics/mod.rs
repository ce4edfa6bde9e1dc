//! Latency statistics and the run summary (`summary.json`), computed the way `vllm bench serve`
//! does: TTFT = first token - send; TPOT = (E2E - TTFT) / (n - 1); ITL = every gap between tokens;
//! percentiles interpolated linearly between order statistics (numpy's default).

mod histogram;
mod summary;
pub mod table;

pub use histogram::LogHistogram;

pub use summary::{GpuSummary, InstanceSummary, ModelSummary, RunSummary, SummaryBuilder};

use serde::{Deserialize, Serialize};

/// Percentile `q` (0..=100) of `sorted` (ascending), linearly interpolated; `None` when empty.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Mean and the percentiles every table prints, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest sample.
    pub max: f64,
}

impl LatencyStats {
    /// Stats of `samples` (sorted in place); `None` when empty.
    pub fn from_samples(samples: &mut [f64]) -> Option<LatencyStats> {
        if samples.is_empty() {
            return None;
        }
        // Samples equal under `total_cmp` are bit-identical, so an unstable sort (about twice as
        // fast on a million samples) gives the same order.
        samples.sort_unstable_by(f64::total_cmp);
        let sum: f64 = samples.iter().sum();
        Some(LatencyStats {
            count: samples.len() as u64,
            mean: sum / samples.len() as f64,
            p50: percentile(samples, 50.0)?,
            p90: percentile(samples, 90.0)?,
            p99: percentile(samples, 99.0)?,
            p99_9: percentile(samples, 99.9)?,
            max: *samples.last()?,
        })
    }

    /// The value of a named percentile (`"p50"`, `"p90"`, `"p99"`, `"p99.9"`, `"mean"`, `"max"`).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "mean" => Some(self.mean),
            "p50" => Some(self.p50),
            "p90" => Some(self.p90),
            "p99" => Some(self.p99),
            "p99.9" | "p99_9" => Some(self.p99_9),
            "max" => Some(self.max),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_linearly_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        // numpy.percentile([1,2,3,4], 90) == 3.7
        assert!((percentile(&v, 90.0).unwrap() - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn stats_of_one_sample_are_that_sample() {
        let s = LatencyStats::from_samples(&mut [0.25]).unwrap();
        assert_eq!((s.p50, s.p99_9, s.mean, s.max), (0.25, 0.25, 0.25, 0.25));
    }
}
