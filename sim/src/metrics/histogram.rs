//! A log-bucketed histogram for inter-token latencies, which are too many to keep one by one
//! (a million requests make hundreds of millions of gaps).
//!
//! Samples are counted in integer nanoseconds, in log-linear buckets (as HdrHistogram does):
//! below 2048 ns one bucket per nanosecond; above, 1024 buckets per power of two, found from the
//! value's leading bit and the 10 bits after it. A bucket is at most 1/1024 (< 0.1%) of its
//! value wide, so a percentile read from it is within 0.1% of the exact one, and finding a bucket
//! takes a few integer operations (no logarithm). The sum (for the mean) is kept in integer
//! nanoseconds too: exact, and the same whatever order samples come in or histograms are merged.

use crate::time::SimDuration;

/// Sub-buckets per power of two (10 bits after the leading one).
const SUB_BITS: u32 = 10;
const SUB_COUNT: u64 = 1 << SUB_BITS;

/// Histogram of non-negative durations with buckets of bounded relative width.
#[derive(Clone, Debug, Default)]
pub struct LogHistogram {
    counts: Vec<u64>,
    total: u64,
    sum_nanos: u128,
    max_nanos: u64,
}

impl LogHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket of `ns` nanoseconds (monotone in `ns`).
    #[inline]
    fn bucket_of(ns: u64) -> usize {
        if ns < 2 * SUB_COUNT {
            return ns as usize;
        }
        let e = 63 - ns.leading_zeros(); // the leading bit, >= SUB_BITS + 1
        let sub = (ns >> (e - SUB_BITS)) & (SUB_COUNT - 1);
        (((u64::from(e - SUB_BITS) << SUB_BITS) | sub) + SUB_COUNT) as usize
    }

    /// The smallest value (ns) in bucket `b`.
    fn lower_bound(b: usize) -> u64 {
        let b = b as u64;
        if b < 2 * SUB_COUNT {
            return b;
        }
        let e = ((b - SUB_COUNT) >> SUB_BITS) + u64::from(SUB_BITS);
        let sub = b & (SUB_COUNT - 1);
        let shift = e - u64::from(SUB_BITS);
        // Past the largest bucket (2^64 and up) the bound saturates.
        if shift > u64::from(63 - SUB_BITS) { u64::MAX } else { (SUB_COUNT | sub) << shift }
    }

    /// Records `count` samples of value `v` (seconds, rounded to the nanosecond; negative counts
    /// as zero). Non-finite values are ignored.
    pub fn add(&mut self, v: f64, count: u64) {
        if v.is_finite() {
            self.add_duration(SimDuration::from_secs_f64(v), count);
        }
    }

    /// Records `count` samples of duration `d`.
    #[inline]
    pub fn add_duration(&mut self, d: SimDuration, count: u64) {
        if count == 0 {
            return;
        }
        self.total += count;
        self.sum_nanos += u128::from(d.0) * u128::from(count);
        self.max_nanos = self.max_nanos.max(d.0);
        self.count_in(Self::bucket_of(d.0), count);
    }

    /// Records `count` samples of each duration in `values`, as [`LogHistogram::add_duration`]
    /// for each would; runs of values in one bucket (a stretch of decode steps) are counted at
    /// once.
    pub fn add_durations(&mut self, values: &[SimDuration], count: u64) {
        let Some(&first) = values.first() else { return };
        if count == 0 {
            return;
        }
        // The current run's bucket and its value range [lo, hi): a value inside needs no lookup.
        let mut bucket = Self::bucket_of(first.0);
        let (mut lo, mut hi) = (Self::lower_bound(bucket), Self::lower_bound(bucket + 1));
        let (mut run_len, mut sum, mut max) = (0u64, 0u128, self.max_nanos);
        for d in values {
            sum += u128::from(d.0);
            max = max.max(d.0);
            if d.0 < lo || d.0 >= hi {
                self.count_in(bucket, run_len * count);
                bucket = Self::bucket_of(d.0);
                (lo, hi, run_len) = (Self::lower_bound(bucket), Self::lower_bound(bucket + 1), 0);
            }
            run_len += 1;
        }
        self.count_in(bucket, run_len * count);
        self.total += count * values.len() as u64;
        self.sum_nanos += sum * u128::from(count);
        self.max_nanos = max;
    }

    #[inline]
    fn count_in(&mut self, b: usize, count: u64) {
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
        self.total += other.total;
        self.sum_nanos += other.sum_nanos;
        self.max_nanos = self.max_nanos.max(other.max_nanos);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Mean of the samples (seconds), `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_nanos as f64 / self.total as f64 / 1e9)
    }

    /// Largest sample (seconds).
    pub fn max(&self) -> f64 {
        SimDuration(self.max_nanos).as_secs_f64()
    }

    /// Percentile `q` (0..=100, seconds): the rank is found as numpy's linear method would, then
    /// the value is interpolated inside the bucket holding that rank.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 100.0) / 100.0) * (self.total - 1) as f64;
        let mut seen = 0.0;
        for (b, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if rank < seen + c as f64 {
                let lo = Self::lower_bound(b) as f64;
                let hi = (Self::lower_bound(b + 1) as f64).min((self.max_nanos as f64).max(lo));
                let frac = (rank - seen + 0.5) / c as f64;
                return Some((lo + (hi - lo) * frac.clamp(0.0, 1.0)) / 1e9);
            }
            seen += c as f64;
        }
        Some(self.max())
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
    fn buckets_are_contiguous_monotone_and_at_most_a_1024th_wide() {
        let mut prev = 0;
        let last = LogHistogram::bucket_of(u64::MAX);
        for b in 1..=last {
            let lo = LogHistogram::lower_bound(b);
            assert!(lo > prev, "bucket {b}");
            assert_eq!(LogHistogram::bucket_of(lo), b);
            assert_eq!(LogHistogram::bucket_of(lo - 1), b - 1);
            assert!((lo - prev) * 1024 <= lo.max(2048), "bucket {b} is {} wide at {lo}", lo - prev);
            prev = lo;
        }
        assert_eq!(LogHistogram::bucket_of(0), 0);
        assert_eq!(LogHistogram::lower_bound(last + 1), u64::MAX);
    }

    proptest::proptest! {
        #[test]
        fn a_run_records_what_one_add_per_value_records(
            nanos in proptest::collection::vec(0u64..50_000_000_000, 1..400),
            count in 1u64..50,
        ) {
            let values: Vec<SimDuration> = nanos.into_iter().map(SimDuration).collect();
            let (mut one, mut bulk) = (LogHistogram::new(), LogHistogram::new());
            one.add(0.02, 1);
            bulk.add(0.02, 1);
            values.iter().for_each(|&v| one.add(v.as_secs_f64(), count));
            bulk.add_durations(&values, count);
            proptest::prop_assert_eq!(format!("{one:?}"), format!("{bulk:?}"));
        }

        #[test]
        fn the_mean_does_not_depend_on_the_order_of_samples(
            nanos in proptest::collection::vec(1u64..50_000_000, 2..200),
        ) {
            let (mut fwd, mut rev) = (LogHistogram::new(), LogHistogram::new());
            nanos.iter().for_each(|&n| fwd.add(n as f64 / 1e9, 1));
            nanos.iter().rev().for_each(|&n| rev.add(n as f64 / 1e9, 1));
            proptest::prop_assert_eq!(fwd.mean(), rev.mean());
        }
    }

    #[test]
    fn weighted_adds_count_every_sample() {
        let mut h = LogHistogram::new();
        h.add(0.010, 99);
        h.add(1.0, 1);
        assert!((h.percentile(50.0).unwrap() - 0.010).abs() < 2e-5);
        assert!((h.mean().unwrap() - (0.99 + 1.0) / 100.0).abs() < 1e-12);
        assert_eq!(h.max(), 1.0);
    }
}
