//! A log-bucketed histogram for inter-token latencies, which are too many to keep one by one
//! (a million requests make hundreds of millions of gaps). Buckets are 0.1% wide, so a percentile
//! read from it is within 0.1% of the exact one.

/// Histogram of positive values with buckets of constant relative width.
#[derive(Clone, Debug)]
pub struct LogHistogram {
    counts: Vec<u64>,
    zeros: u64,
    total: u64,
    sum: f64,
    max: f64,
}

const MIN_VALUE: f64 = 1e-7; // 100 ns
const GROWTH: f64 = 1.001;
const NUM_BUCKETS: usize = 27_700; // 1e-7 * 1.001^27700 ~ 1e5 s

impl Default for LogHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LogHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LogHistogram { counts: Vec::new(), zeros: 0, total: 0, sum: 0.0, max: 0.0 }
    }

    fn bucket_of(v: f64) -> usize {
        (((v / MIN_VALUE).ln() / GROWTH.ln()) as usize).min(NUM_BUCKETS - 1)
    }

    fn lower_bound(b: usize) -> f64 {
        MIN_VALUE * GROWTH.powi(b as i32)
    }

    /// Records `count` samples of value `v` (seconds). Non-finite values are ignored.
    pub fn add(&mut self, v: f64, count: u64) {
        if !v.is_finite() || count == 0 {
            return;
        }
        self.total += count;
        self.sum += v * count as f64;
        self.max = self.max.max(v);
        if v < MIN_VALUE {
            self.zeros += count;
            return;
        }
        let b = Self::bucket_of(v);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += count;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LogHistogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.zeros += other.zeros;
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Mean of the samples, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum / self.total as f64)
    }

    /// Largest sample.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Percentile `q` (0..=100): the rank is found as numpy's linear method would, then the value
    /// is interpolated inside the bucket holding that rank.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 100.0) / 100.0) * (self.total - 1) as f64;
        if rank < self.zeros as f64 {
            return Some(0.0);
        }
        let mut seen = self.zeros as f64;
        for (b, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if rank < seen + c as f64 {
                let lo = Self::lower_bound(b);
                let hi = Self::lower_bound(b + 1).min(self.max.max(lo));
                let frac = (rank - seen + 0.5) / c as f64;
                return Some(lo + (hi - lo) * frac.clamp(0.0, 1.0));
            }
            seen += c as f64;
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::percentile;

    #[test]
    fn percentiles_match_exact_ones_within_a_tenth_of_a_percent() {
        let mut exact: Vec<f64> = (1..=5000).map(|i| 0.001 * f64::from(i).sqrt()).collect();
        let mut h = LogHistogram::new();
        exact.iter().for_each(|&v| h.add(v, 1));
        exact.sort_by(f64::total_cmp);
        for q in [50.0, 90.0, 99.0, 99.9] {
            let e = percentile(&exact, q).unwrap();
            let a = h.percentile(q).unwrap();
            assert!((a - e).abs() / e < 1e-3, "q={q}: {a} vs {e}");
        }
        assert_eq!(h.count(), 5000);
    }

    #[test]
    fn weighted_adds_count_every_sample() {
        let mut h = LogHistogram::new();
        h.add(0.010, 99);
        h.add(1.0, 1);
        assert!((h.percentile(50.0).unwrap() - 0.010).abs() < 2e-5);
        assert!((h.mean().unwrap() - (0.99 + 1.0) / 100.0).abs() < 1e-12);
    }
}
