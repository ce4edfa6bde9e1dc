//! The metrics a sweep reports per (point, variant, model): names and how each is read from a
//! run's `ModelSummary`. Names are those the reports crate charts (latencies in seconds, rates per
//! second, fractions). This module does not aggregate replications (see `stats`).

use crate::metrics::{LatencyStats, ModelSummary};

/// Every metric name, in the order rows are written.
pub const METRICS: [&str; 21] = [
    "ttft_mean",
    "ttft_p50",
    "ttft_p90",
    "ttft_p99",
    "tpot_mean",
    "tpot_p50",
    "tpot_p90",
    "tpot_p99",
    "itl_p50",
    "itl_p90",
    "itl_p99",
    "e2e_mean",
    "e2e_p50",
    "e2e_p90",
    "e2e_p99",
    "request_throughput",
    "output_token_throughput",
    "success_rate",
    "goodput",
    "slo_attainment",
    "preemptions",
];

/// The value of metric `METRICS[i]` in `m`, or `None` where the run has none (no ok request, no
/// SLO).
pub fn metric_value(m: &ModelSummary, metric: &str) -> Option<f64> {
    let lat = |s: &Option<LatencyStats>, f: fn(&LatencyStats) -> f64| s.as_ref().map(f);
    match metric {
        "ttft_mean" => lat(&m.ttft, |s| s.mean),
        "ttft_p50" => lat(&m.ttft, |s| s.p50),
        "ttft_p90" => lat(&m.ttft, |s| s.p90),
        "ttft_p99" => lat(&m.ttft, |s| s.p99),
        "tpot_mean" => lat(&m.tpot, |s| s.mean),
        "tpot_p50" => lat(&m.tpot, |s| s.p50),
        "tpot_p90" => lat(&m.tpot, |s| s.p90),
        "tpot_p99" => lat(&m.tpot, |s| s.p99),
        "itl_p50" => lat(&m.itl, |s| s.p50),
        "itl_p90" => lat(&m.itl, |s| s.p90),
        "itl_p99" => lat(&m.itl, |s| s.p99),
        "e2e_mean" => lat(&m.e2e, |s| s.mean),
        "e2e_p50" => lat(&m.e2e, |s| s.p50),
        "e2e_p90" => lat(&m.e2e, |s| s.p90),
        "e2e_p99" => lat(&m.e2e, |s| s.p99),
        "request_throughput" => Some(m.request_throughput),
        "output_token_throughput" => Some(m.output_token_throughput),
        "success_rate" => Some(m.success_rate),
        "goodput" => m.goodput,
        "slo_attainment" => m.slo_attainment,
        "preemptions" => Some(m.preemptions as f64),
        _ => None,
    }
}

/// The values `metric` can take, `(low, high)`: fractions (`success_rate`, `slo_attainment`) lie in
/// `[0, 1]`, every other metric of [`METRICS`] (latencies, rates, counts) is non-negative, and an
/// unknown name is unbounded. Confidence intervals are clamped to it: a Student-t interval over a
/// few seeds can otherwise reach past it (a success rate interval up to 2.19 was seen).
pub fn metric_range(metric: &str) -> (f64, f64) {
    match metric {
        "success_rate" | "slo_attainment" => (0.0, 1.0),
        m if METRICS.contains(&m) => (0.0, f64::INFINITY),
        _ => (f64::NEG_INFINITY, f64::INFINITY),
    }
}

/// `(low, high)` clamped to the range of `metric` (see [`metric_range`]).
pub fn clamp_interval(metric: &str, (low, high): (f64, f64)) -> (f64, f64) {
    let (min, max) = metric_range(metric);
    (low.clamp(min, max), high.clamp(min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> ModelSummary {
        let lat = |x: f64| LatencyStats {
            count: 3,
            mean: x,
            p50: x,
            p90: 2.0 * x,
            p99: 3.0 * x,
            p99_9: 4.0 * x,
            max: 5.0 * x,
        };
        ModelSummary {
            model: "all".into(),
            requests: 10,
            ok: 9,
            error: 1,
            timeout: 0,
            rejected: 0,
            success_rate: 0.9,
            duration_s: 10.0,
            request_throughput: 0.9,
            output_token_throughput: 100.0,
            total_token_throughput: 300.0,
            ttft: Some(lat(0.1)),
            tpot: Some(lat(0.01)),
            itl: None,
            e2e: Some(lat(1.0)),
            preemptions: 2,
            goodput: None,
            slo_attainment: None,
            prefix_cache: Default::default(),
        }
    }

    #[test]
    fn every_metric_name_is_read_from_the_summary_or_absent() {
        let m = summary();
        assert_eq!(metric_value(&m, "ttft_p90"), Some(0.2));
        assert_eq!(metric_value(&m, "e2e_p99"), Some(3.0));
        assert_eq!(metric_value(&m, "preemptions"), Some(2.0));
        assert_eq!(metric_value(&m, "itl_p50"), None);
        assert_eq!(metric_value(&m, "goodput"), None);
        let present = METRICS.iter().filter(|n| metric_value(&m, n).is_some()).count();
        assert_eq!(present, METRICS.len() - 5, "no ITL (3), goodput or SLO attainment");
        assert_eq!(metric_value(&m, "no_such_metric"), None);
    }

    #[test]
    fn intervals_are_clamped_to_the_range_of_their_metric() {
        assert_eq!(clamp_interval("success_rate", (-0.19, 2.19)), (0.0, 1.0));
        assert_eq!(clamp_interval("slo_attainment", (0.5, 1.2)), (0.5, 1.0));
        assert_eq!(clamp_interval("ttft_p90", (-0.3, 2.0)), (0.0, 2.0));
        assert_eq!(clamp_interval("request_throughput", (1.0, 2.0)), (1.0, 2.0));
        assert_eq!(clamp_interval("not_a_metric", (-1.0, 5.0)), (-1.0, 5.0));
    }
}
