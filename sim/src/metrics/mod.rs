//! Latency statistics and the run summary (`summary.json`), computed the way `vllm bench serve`
//! does: TTFT = first token - send; TPOT = (E2E - TTFT) / (n - 1); ITL = every gap between tokens;
//! percentiles interpolated linearly between order statistics (numpy's default).

mod histogram;
mod send_lag;
mod summary;
pub mod table;

pub use histogram::LogHistogram;
pub use send_lag::{SEND_LAG_WARN_S, SendLagSummary};

pub use summary::{GpuSummary, InstanceSummary, ModelSummary, PrefixCacheStats, RunSummary, SummaryBuilder};

use serde::{Deserialize, Serialize};

/// Percentile `q` (0..=100) of `sorted` (ascending), linearly interpolated; `None` when empty.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let r = rank(n, q);
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (r - lo as f64))
}

/// The fractional 0-based rank of percentile `q` among `n >= 1` samples (numpy's "linear").
fn rank(n: usize, q: f64) -> f64 {
    (q.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64
}

/// Puts the order statistics `ranks` (ascending, distinct, each `< samples.len()`) of `samples`
/// at their sorted positions, so `samples[r]` is what sorting would put there.
fn select_ranks(samples: &mut [f64], ranks: &[usize]) {
    let mut start = 0;
    for &r in ranks {
        if r < start {
            continue;
        }
        samples[start..].select_nth_unstable_by(r - start, f64::total_cmp);
        start = r + 1;
    }
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
    /// Stats of `samples` (reordered in place); `None` when empty. The order statistics the
    /// percentiles need are selected (O(n) each) rather than sorted for; the mean sums the samples
    /// in their given order.
    pub fn from_samples(samples: &mut [f64]) -> Option<LatencyStats> {
        if samples.is_empty() {
            return None;
        }
        let sum: f64 = samples.iter().sum();
        let n = samples.len();
        const QS: [f64; 4] = [50.0, 90.0, 99.0, 99.9];
        // Every order statistic needed, ascending: both neighbours of each rank, and the max.
        let mut ranks: Vec<usize> = QS
            .iter()
            .flat_map(|&q| {
                let r = rank(n, q);
                [r.floor() as usize, r.ceil() as usize]
            })
            .chain([n - 1])
            .collect();
        ranks.sort_unstable();
        ranks.dedup();
        select_ranks(samples, &ranks);
        let at = |q: f64| {
            let r = rank(n, q);
            let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
            samples[lo] + (samples[hi] - samples[lo]) * (r - lo as f64)
        };
        Some(LatencyStats {
            count: n as u64,
            mean: sum / n as f64,
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            p99_9: at(99.9),
            max: samples[n - 1],
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

    proptest::proptest! {
        #[test]
        fn selected_percentiles_equal_those_of_the_sorted_samples(
            mut v in proptest::collection::vec(-1e3f64..1e3, 1..400),
            dup in 0usize..4,
        ) {
            // Repeat some values so ties are exercised.
            for i in 0..v.len().min(dup * 10) {
                v[i] = v[i % 3];
            }
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let s = LatencyStats::from_samples(&mut v).unwrap();
            for (q, got) in [(50.0, s.p50), (90.0, s.p90), (99.0, s.p99), (99.9, s.p99_9)] {
                proptest::prop_assert_eq!(Some(got), percentile(&sorted, q), "q={}", q);
            }
            proptest::prop_assert_eq!(s.max, sorted[sorted.len() - 1]);
            let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
            proptest::prop_assert!((s.mean - mean).abs() < 1e-9);
        }
    }
}
