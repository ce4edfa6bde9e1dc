//! A log-bucketed histogram for inter-token latencies, which are too many to keep one by one
//! (a million requests make hundreds of millions of gaps). Buckets are 0.1% wide, so a percentile
//! read from it is within 0.1% of the exact one. The sum (for the mean) is kept in integer
//! nanoseconds: exact, and the same whatever order samples come in or histograms are merged.

use crate::time::SimDuration;

/// Histogram of positive values with buckets of constant relative width.
#[derive(Clone, Debug)]
pub struct LogHistogram {
    counts: Vec<u64>,
    zeros: u64,
    total: u64,
    sum_nanos: u128,
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
        LogHistogram { counts: Vec::new(), zeros: 0, total: 0, sum_nanos: 0, max: 0.0 }
    }

    fn bucket_of(v: f64) -> usize {
        (((v / MIN_VALUE).ln() / GROWTH.ln()) as usize).min(NUM_BUCKETS - 1)
    }

    fn lower_bound(b: usize) -> f64 {
        MIN_VALUE * GROWTH.powi(b as i32)
    }

    /// Records `count` samples of value `v` (seconds, counted in the mean to the nearest
    /// nanosecond). Non-finite values are ignored.
    pub fn add(&mut self, v: f64, count: u64) {
        if !v.is_finite() || count == 0 {
            return;
        }
        self.total += count;
        self.sum_nanos += u128::from(SimDuration::from_secs_f64(v).0) * u128::from(count);
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

    /// Records `count` samples of each duration in `values`: exactly what calling
    /// [`LogHistogram::add`] for each would record. When the values are monotone (either
    /// direction) the buckets are found by bisection, one logarithm per bucket boundary crossed
    /// instead of one per value: the simulator records a whole stretch of decode steps, whose
    /// durations only grow, at once.
    pub fn add_durations(&mut self, values: &[SimDuration], count: u64) {
        let (Some(&first), Some(&last)) = (values.first(), values.last()) else { return };
        if count == 0 {
            return;
        }
        let ascending = first <= last;
        let monotone = values.windows(2).all(|w| if ascending { w[0] <= w[1] } else { w[0] >= w[1] });
        if !monotone {
            values.iter().for_each(|d| self.add(d.as_secs_f64(), count));
            return;
        }
        let sum: u128 = values.iter().map(|d| u128::from(d.0)).sum();
        self.sum_nanos += sum * u128::from(count);
        self.total += count * values.len() as u64;
        self.max = self.max.max(first.max(last).as_secs_f64());
        let value = |i: usize| values[i].as_secs_f64();
        let (klo, khi) = (Self::key(first.as_secs_f64()), Self::key(last.as_secs_f64()));
        self.bisect(0, values.len() - 1, klo, khi, &value, count);
    }

    /// `None` for a value counted as zero, else its bucket: monotone in the value.
    fn key(v: f64) -> Option<usize> {
        (v >= MIN_VALUE).then(|| Self::bucket_of(v))
    }

    /// Counts indices `lo..=hi` whose keys at the ends are `klo` and `khi`.
    fn bisect(
        &mut self,
        lo: usize,
        hi: usize,
        klo: Option<usize>,
        khi: Option<usize>,
        value: &impl Fn(usize) -> f64,
        count: u64,
    ) {
        if klo == khi {
            self.count_in(klo, count * (hi - lo + 1) as u64);
            return;
        }
        if hi == lo + 1 {
            self.count_in(klo, count);
            self.count_in(khi, count);
            return;
        }
        if let (Some(a), Some(b)) = (klo, khi)
            && a < b
        {
            // Ascending: find the first value at or past bucket `a`'s upper edge by comparisons
            // alone, then check the keys on both sides of it (the edge is only a guide, so the
            // counts stay exact even where it is off by rounding).
            let edge = Self::lower_bound(a + 1);
            let (mut l, mut h) = (lo + 1, hi);
            while l < h {
                let m = l + (h - l) / 2;
                if value(m) >= edge { h = m } else { l = m + 1 }
            }
            let (kj, kprev) = (Self::key(value(l)), Self::key(value(l - 1)));
            if kprev == klo && kj != klo {
                self.count_in(klo, count * (l - lo) as u64);
                self.bisect(l, hi, kj, khi, value, count);
                return;
            }
        }
        let mid = lo + (hi - lo) / 2;
        let kmid = Self::key(value(mid));
        self.bisect(lo, mid, klo, kmid, value, count);
        self.bisect(mid + 1, hi, Self::key(value(mid + 1)), khi, value, count);
    }

    fn count_in(&mut self, key: Option<usize>, count: u64) {
        match key {
            None => self.zeros += count,
            Some(b) => {
                if self.counts.len() <= b {
                    self.counts.resize(b + 1, 0);
                }
                self.counts[b] += count;
            }
        }
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
        self.sum_nanos += other.sum_nanos;
        self.max = self.max.max(other.max);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Mean of the samples, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_nanos as f64 / self.total as f64 / 1e9)
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
    fn a_monotone_run_records_exactly_what_one_add_per_value_records() {
        // Gaps around 8 ms growing by 250 ns (a decode stretch), a descending run, a run starting
        // below the zero threshold, and a run that is not monotone.
        let runs: [Vec<u64>; 4] = [
            (0..500).map(|i| 8_000_000 + 250 * i).collect(),
            (0..300).map(|i| 9_000_000 - 977 * i).collect(),
            (0..40).map(|i| i * 10).collect(),
            (0..50).map(|i| (i % 7) * 1_000_000 + 1_000_000).collect(),
        ];
        for run in runs {
            let run: Vec<SimDuration> = run.into_iter().map(SimDuration).collect();
            let (mut one, mut bulk) = (LogHistogram::new(), LogHistogram::new());
            one.add(0.02, 1);
            bulk.add(0.02, 1);
            run.iter().for_each(|&v| one.add(v.as_secs_f64(), 3));
            bulk.add_durations(&run, 3);
            assert_eq!(format!("{one:?}"), format!("{bulk:?}"));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_sorted_run_records_what_one_add_per_value_records(
            mut nanos in proptest::collection::vec(0u64..50_000_000, 1..400),
            descending: bool,
            count in 1u64..50,
        ) {
            nanos.sort_unstable();
            if descending {
                nanos.reverse();
            }
            let values: Vec<SimDuration> = nanos.into_iter().map(SimDuration).collect();
            let (mut one, mut bulk) = (LogHistogram::new(), LogHistogram::new());
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
    }
}
