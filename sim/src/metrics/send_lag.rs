//! Send lag: how late the load generator sent each request (`send_s - scheduled_s`). A live run
//! replays the simulator's arrival times; a request sent late arrives at an engine that has had
//! more time to drain, so a large lag makes the live run look better than the schedule it claims
//! to replay. Every live summary reports the lag's p50/p99/max and warns above
//! [`SEND_LAG_WARN_S`] at p99. Simulated runs send on schedule and carry no lag. No I/O here.

use super::percentile;
use serde::{Deserialize, Serialize};

/// p99 send lag above which a run warns that its arrivals were late (10 ms: a tenth of a
/// typical TTFT, and ten times the harness's own timestamp lag in `live bench`).
pub const SEND_LAG_WARN_S: f64 = 0.010;

/// The send lag of one run, seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SendLagSummary {
    /// Requests measured (every row: a request refused before sending is lagged at its dispatch).
    pub requests: u64,
    /// Median lag.
    pub p50_s: f64,
    /// 99th percentile lag.
    pub p99_s: f64,
    /// Largest lag.
    pub max_s: f64,
    /// Requests sent more than [`SEND_LAG_WARN_S`] late.
    pub late: u64,
}

impl SendLagSummary {
    /// A one-line warning when the p99 lag exceeds [`SEND_LAG_WARN_S`], `None` otherwise.
    pub fn warning(&self) -> Option<String> {
        (self.p99_s > SEND_LAG_WARN_S).then(|| {
            format!(
                "requests were sent late: send lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} of {} over {:.0} ms); \
                 the load generator's machine was too busy to keep the schedule, so latencies are \
                 measured under a lighter load than planned (free CPU, or lower the rate)",
                self.p50_s * 1e3,
                self.p99_s * 1e3,
                self.max_s * 1e3,
                self.late,
                self.requests,
                SEND_LAG_WARN_S * 1e3
            )
        })
    }
}

/// Collects lags row by row.
#[derive(Clone, Debug, Default)]
pub(crate) struct SendLagAcc {
    lags: Vec<f64>,
}

impl SendLagAcc {
    /// Adds one request's lag; a negative one (clock rounding) counts as 0.
    pub(crate) fn add(&mut self, scheduled_s: f64, send_s: f64) {
        let lag = send_s - scheduled_s;
        if lag.is_finite() {
            self.lags.push(lag.max(0.0));
        }
    }

    /// The summary, `None` without rows.
    pub(crate) fn finish(mut self) -> Option<SendLagSummary> {
        self.lags.sort_by(f64::total_cmp);
        Some(SendLagSummary {
            requests: self.lags.len() as u64,
            p50_s: percentile(&self.lags, 50.0)?,
            p99_s: percentile(&self.lags, 99.0)?,
            max_s: *self.lags.last()?,
            late: self.lags.iter().filter(|&&l| l > SEND_LAG_WARN_S).count() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_percentiles_count_late_requests_and_warn_above_the_threshold() {
        let mut acc = SendLagAcc::default();
        for i in 0..100 {
            // Every other request 11 ms late (the scrape-tick pattern seen in issue 12).
            acc.add(f64::from(i), f64::from(i) + if i % 2 == 0 { 0.011 } else { 0.0 });
        }
        let s = acc.finish().unwrap();
        assert_eq!((s.requests, s.late), (100, 50));
        assert!((s.max_s - 0.011).abs() < 1e-9 && (s.p99_s - 0.011).abs() < 1e-9, "{s:?}");
        assert!(s.warning().unwrap().contains("50 of 100 over 10 ms"), "{:?}", s.warning());
        let mut on_time = SendLagAcc::default();
        on_time.add(1.0, 1.0005);
        on_time.add(2.0, 1.9999);
        let s = on_time.finish().unwrap();
        assert_eq!((s.late, s.warning()), (0, None));
        assert_eq!(SendLagAcc::default().finish(), None);
    }
}
