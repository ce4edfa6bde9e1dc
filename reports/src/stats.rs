//! Numbers behind the charts and tables: which latency, which percentile, empirical CDF points,
//! relative differences, and how to print seconds. Percentiles come from `sim::metrics` (linear
//! interpolation, as `vllm bench serve`); nothing here draws or writes files.

use serde::{Deserialize, Serialize};
use sim::metrics::{LatencyStats, ModelSummary, percentile};
use sim::trace::{RequestRow, RequestStatus};

/// The per-request latencies reports compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyMetric {
    /// Time to first token.
    Ttft,
    /// Time per output token after the first.
    Tpot,
    /// Inter-token latency: every gap between consecutive chunks of a request (not a
    /// per-request value: from `summary.json`, or `tokens.csv` for distributions).
    Itl,
    /// End-to-end latency.
    E2e,
}

impl LatencyMetric {
    /// All four, in table order (the validation table and overlays).
    pub const ALL: [LatencyMetric; 4] =
        [LatencyMetric::Ttft, LatencyMetric::Tpot, LatencyMetric::Itl, LatencyMetric::E2e];

    /// The three that have one value per request (`requests.csv`), in table order.
    pub const PER_REQUEST: [LatencyMetric; 3] =
        [LatencyMetric::Ttft, LatencyMetric::Tpot, LatencyMetric::E2e];

    /// Display name (`"TTFT"`).
    pub fn label(self) -> &'static str {
        match self {
            LatencyMetric::Ttft => "TTFT",
            LatencyMetric::Tpot => "TPOT",
            LatencyMetric::Itl => "ITL",
            LatencyMetric::E2e => "E2E",
        }
    }

    /// File and CSV name (`"ttft"`).
    pub fn key(self) -> &'static str {
        match self {
            LatencyMetric::Ttft => "ttft",
            LatencyMetric::Tpot => "tpot",
            LatencyMetric::Itl => "itl",
            LatencyMetric::E2e => "e2e",
        }
    }

    /// This latency of one request row, seconds (None for ITL: a request has many).
    pub fn of_row(self, r: &RequestRow) -> Option<f64> {
        match self {
            LatencyMetric::Ttft => r.ttft_s,
            LatencyMetric::Tpot => r.tpot_s,
            LatencyMetric::Itl => None,
            LatencyMetric::E2e => r.e2e_s,
        }
    }

    /// This latency's stats in a model summary.
    pub fn of_summary(self, m: &ModelSummary) -> Option<&LatencyStats> {
        match self {
            LatencyMetric::Ttft => m.ttft.as_ref(),
            LatencyMetric::Tpot => m.tpot.as_ref(),
            LatencyMetric::Itl => m.itl.as_ref(),
            LatencyMetric::E2e => m.e2e.as_ref(),
        }
    }
}

/// The percentiles tables and bar charts show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Percentile {
    /// Median.
    P50,
    /// 90th.
    P90,
    /// 99th.
    P99,
}

impl Percentile {
    /// All three, in order.
    pub const ALL: [Percentile; 3] = [Percentile::P50, Percentile::P90, Percentile::P99];

    /// Name as in `LatencyStats::get` (`"p50"`).
    pub fn label(self) -> &'static str {
        match self {
            Percentile::P50 => "p50",
            Percentile::P90 => "p90",
            Percentile::P99 => "p99",
        }
    }

    /// The value in `stats`.
    pub fn of(self, stats: &LatencyStats) -> f64 {
        match self {
            Percentile::P50 => stats.p50,
            Percentile::P90 => stats.p90,
            Percentile::P99 => stats.p99,
        }
    }
}

/// Latencies of `model`'s successful requests (status ok), sorted ascending. Values that are no
/// latency (not finite, or negative: only an edited `requests.csv` holds them) are left out, as a
/// point that far off the axis overflows plotters' integer pixel mapping.
pub(crate) fn samples(rows: &[RequestRow], model: &str, metric: LatencyMetric) -> Vec<f64> {
    let mut v: Vec<f64> = rows
        .iter()
        .filter(|r| r.model == model && r.status == RequestStatus::Ok)
        .filter_map(|r| metric.of_row(r))
        .filter(|x| x.is_finite() && *x >= 0.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Points `(value, cumulative fraction)` of the empirical CDF of `sorted`: the exact step function
/// for up to 1000 samples, 1001 evenly spaced quantiles beyond (enough for a 1200 px chart).
pub(crate) fn cdf_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n <= 1000 {
        let mut pts = Vec::with_capacity(2 * n);
        for (i, &x) in sorted.iter().enumerate() {
            pts.push((x, i as f64 / n as f64));
            pts.push((x, (i + 1) as f64 / n as f64));
        }
        return pts;
    }
    (0..=1000)
        .filter_map(|i| {
            let q = f64::from(i) / 1000.0;
            percentile(sorted, q * 100.0).map(|x| (x, q))
        })
        .collect()
}

/// `(value - reference) / reference`, or `None` when the reference is zero or missing.
pub(crate) fn rel_diff(value: f64, reference: f64) -> Option<f64> {
    (reference.abs() > 1e-12 && value.is_finite() && reference.is_finite())
        .then(|| (value - reference) / reference)
}

/// A relative difference as a signed percentage: `"-23%"`, `"+4.1%"`.
pub(crate) fn fmt_pct(d: f64) -> String {
    let p = d * 100.0;
    if p.abs() < 9.95 { format!("{p:+.1}%") } else { format!("{p:+.0}%") }
}

/// Seconds in a readable unit: `"850 ms"`, `"12.3 ms"`, `"1.42 s"`.
pub(crate) fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.1 {
        format!("{:.0} ms", s * 1e3)
    } else if s >= 0.01 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

/// A display unit for an axis of seconds, chosen from the largest value shown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TimeUnit {
    /// Multiply seconds by this.
    pub scale: f64,
    /// Unit label.
    pub label: &'static str,
}

impl TimeUnit {
    /// Milliseconds below 2 s, seconds above.
    pub fn for_max(max_s: f64) -> TimeUnit {
        if max_s < 2.0 { TimeUnit { scale: 1e3, label: "ms" } } else { TimeUnit { scale: 1.0, label: "s" } }
    }
}

/// A tick label without noise: `"0.25"`, `"120"`, `"1.5k"`.
pub(crate) fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        let s = if a >= 10.0 {
            format!("{v:.1}")
        } else if a >= 1.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        };
        let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        if s == "-0" { "0".into() } else { s }
    }
}

/// A range `[lo, hi]` padded so it is never empty: `hi` grows by `pad` (fraction of the span).
pub(crate) fn padded(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    if hi - lo < 1e-12 {
        let d = if hi.abs() > 1e-12 { hi.abs() * 0.5 } else { 1.0 };
        return (lo - if lo > 0.0 { d.min(lo) } else { 0.0 }, hi + d);
    }
    (lo, hi + (hi - lo) * pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_differences_print_with_a_sign() {
        assert_eq!(fmt_pct(rel_diff(77.0, 100.0).unwrap()), "-23%");
        assert_eq!(fmt_pct(rel_diff(104.1, 100.0).unwrap()), "+4.1%");
        assert_eq!(rel_diff(1.0, 0.0), None);
    }

    #[test]
    fn seconds_print_in_the_unit_a_person_reads() {
        assert_eq!(fmt_secs(0.85), "850 ms");
        assert_eq!(fmt_secs(0.0123), "12.3 ms");
        assert_eq!(fmt_secs(1.418), "1.42 s");
    }

    #[test]
    fn a_cdf_ends_at_one_and_never_decreases() {
        let v: Vec<f64> = (0..5000).map(|i| f64::from(i) * 0.001).collect();
        let pts = cdf_points(&v);
        assert_eq!(pts.last().map(|p| p.1), Some(1.0));
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn ticks_drop_trailing_zeros() {
        assert_eq!(fmt_tick(0.25), "0.25");
        assert_eq!(fmt_tick(120.0), "120");
        assert_eq!(fmt_tick(2.0), "2");
        assert_eq!(fmt_tick(15_000.0), "15k");
    }
}
