//! Simulated time: an integer count of nanoseconds since the start of a run.
//!
//! Integer time keeps event order exact and output byte-identical across machines; floating
//! point seconds appear only at the edges (scenario files, CSV rows, printed tables).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point in simulated time, in nanoseconds since the run started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SimTime(pub u64);

/// A span of simulated time, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SimDuration(pub u64);

const NANOS_PER_SEC: f64 = 1e9;

impl SimTime {
    /// The start of a run.
    pub const ZERO: SimTime = SimTime(0);
    /// The end of time; used as "never".
    pub const MAX: SimTime = SimTime(u64::MAX);

    /// Converts seconds (non-negative, finite) to simulated time, rounding to the nearest nanosecond.
    /// Negative or non-finite inputs saturate to zero / `MAX`.
    pub fn from_secs_f64(secs: f64) -> SimTime {
        SimTime(secs_to_nanos(secs))
    }

    /// This time in seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC
    }

    /// The span from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: SimTime) -> SimDuration {
        SimDuration(self.0.saturating_sub(earlier.0))
    }
}

impl SimDuration {
    /// No time at all.
    pub const ZERO: SimDuration = SimDuration(0);

    /// Converts seconds to a duration, rounding to the nearest nanosecond (negative -> zero).
    pub fn from_secs_f64(secs: f64) -> SimDuration {
        SimDuration(secs_to_nanos(secs))
    }

    /// Milliseconds to a duration.
    pub fn from_millis(ms: u64) -> SimDuration {
        SimDuration(ms.saturating_mul(1_000_000))
    }

    /// This duration in seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC
    }
}

#[inline]
fn secs_to_nanos(secs: f64) -> u64 {
    let x = secs * NANOS_PER_SEC;
    // The common case, a nanosecond to 52 days: there `x + 0.5` is exact (0.5 is a multiple of
    // the ulp of both `x` and `x + 0.5`, or the sum lands on a power of two that is the rounded
    // value), so truncating it rounds half away from zero.
    if (1.0..4_503_599_627_370_496.0).contains(&x) {
        return (x + 0.5) as i64 as u64;
    }
    if secs.is_nan() || secs <= 0.0 {
        return 0;
    }
    if x >= u64::MAX as f64 {
        return u64::MAX;
    }
    // `x.round()` (half away from zero), without the software `round` the x86-64 baseline calls
    // (the simulator converts every step time): below 2^52 the fraction `x - trunc(x)` is exact;
    // from 2^52 on every f64 is an integer.
    if x < 4_503_599_627_370_496.0 {
        let t = x as i64;
        (t + i64::from(x - t as f64 >= 0.5)) as u64
    } else {
        x as u64
    }
}

impl Add<SimDuration> for SimTime {
    type Output = SimTime;
    fn add(self, d: SimDuration) -> SimTime {
        SimTime(self.0.saturating_add(d.0))
    }
}

impl AddAssign<SimDuration> for SimTime {
    fn add_assign(&mut self, d: SimDuration) {
        self.0 = self.0.saturating_add(d.0);
    }
}

impl Sub<SimTime> for SimTime {
    type Output = SimDuration;
    fn sub(self, earlier: SimTime) -> SimDuration {
        self.saturating_since(earlier)
    }
}

impl Add for SimDuration {
    type Output = SimDuration;
    fn add(self, o: SimDuration) -> SimDuration {
        SimDuration(self.0.saturating_add(o.0))
    }
}

impl AddAssign for SimDuration {
    fn add_assign(&mut self, o: SimDuration) {
        self.0 = self.0.saturating_add(o.0);
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.9}s", self.as_secs_f64())
    }
}

impl fmt::Display for SimDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.9}s", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_to_the_nanosecond() {
        let t = SimTime::from_secs_f64(1.234_567_891);
        assert_eq!(t.0, 1_234_567_891);
        assert_eq!(SimTime::from_secs_f64(-3.0), SimTime::ZERO);
        assert_eq!(SimTime::from_secs_f64(f64::INFINITY), SimTime::MAX);
    }

    #[test]
    fn conversion_rounds_exactly_like_f64_round() {
        let reference = |secs: f64| {
            let n = (secs * NANOS_PER_SEC).round();
            if n >= u64::MAX as f64 { u64::MAX } else { n as u64 }
        };
        let mut x: f64 = 1e-12;
        while x < 1e12 {
            for n in [x, x + 0.5e-9, x - 0.5e-9, (x * 2e9).floor() / 2e9] {
                for bits in [n.to_bits().saturating_sub(1), n.to_bits(), n.to_bits().saturating_add(1)] {
                    let secs = f64::from_bits(bits);
                    assert_eq!(secs_to_nanos(secs), reference(secs), "{secs:e}");
                }
            }
            x *= 1.0173;
        }
        assert_eq!(secs_to_nanos(2.5e-9), 3);
        assert_eq!(secs_to_nanos(1e30), u64::MAX);
    }

    #[test]
    fn subtraction_saturates_instead_of_wrapping() {
        assert_eq!(SimTime(5) - SimTime(9), SimDuration::ZERO);
        assert_eq!(SimTime(9) - SimTime(5), SimDuration(4));
    }
}
