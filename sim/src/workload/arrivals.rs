//! Open-loop arrival processes: the offset of each arrival from its phase start, drawn lazily
//! from the phase's own arrival stream. It knows nothing of phase bounds, models or lengths.

use rand_distr::{Distribution, Exp, Exp1, Gamma};
use rand_pcg::Pcg64Mcg;

/// A compiled, validated open-loop arrival process.
#[derive(Clone, Debug)]
pub(crate) enum ArrivalProcess {
    /// Exponential gaps.
    Poisson(Exp<f64>),
    /// Gamma gaps, shape k and scale 1/(rate k), as `vllm bench serve --burstiness k`.
    Gamma(Gamma<f64>),
    /// Arrivals at k / rate, k = 1, 2, ...
    Constant {
        /// Requests per second.
        rate: f64,
    },
    /// Non-homogeneous Poisson with rate `a + c t` on `[0, duration]`.
    Ramp {
        /// Rate at the phase start, requests/s.
        a: f64,
        /// Slope, requests/s^2.
        c: f64,
        /// Expected arrivals over the phase, `Lambda(duration) = (start + end) / 2 * duration`.
        total: f64,
    },
}

impl ArrivalProcess {
    /// Poisson at `rate` requests/s.
    pub(crate) fn poisson(rate: f64) -> Result<Self, String> {
        check_rate("rate", rate)?;
        Exp::new(rate).map(ArrivalProcess::Poisson).map_err(|e| e.to_string())
    }

    /// Gamma gaps as `vllm bench serve`'s `get_request` (vllm/benchmarks/serve.py): shape
    /// `burstiness`, scale `1 / (rate * burstiness)`, so the mean gap is `1 / rate` and the
    /// coefficient of variation `1 / sqrt(burstiness)`.
    pub(crate) fn gamma(rate: f64, burstiness: f64) -> Result<Self, String> {
        check_rate("rate", rate)?;
        if !burstiness.is_finite() || burstiness <= 0.0 {
            return Err(format!("burstiness must be a finite number > 0, got {burstiness}"));
        }
        Gamma::new(burstiness, 1.0 / (rate * burstiness))
            .map(ArrivalProcess::Gamma)
            .map_err(|e| e.to_string())
    }

    /// One arrival every `1 / rate` seconds.
    pub(crate) fn constant(rate: f64) -> Result<Self, String> {
        check_rate("rate", rate)?;
        Ok(ArrivalProcess::Constant { rate })
    }

    /// Rate rising (or falling) linearly from `start` to `end` over `duration` seconds.
    pub(crate) fn ramp(start: f64, end: f64, duration: f64) -> Result<Self, String> {
        for (name, r) in [("start_rate", start), ("end_rate", end)] {
            if !r.is_finite() || r < 0.0 {
                return Err(format!("{name} must be a finite number >= 0 requests/s, got {r}"));
            }
        }
        if start + end <= 0.0 {
            return Err("start_rate and end_rate are both 0: the ramp would send nothing; raise one".into());
        }
        Ok(ArrivalProcess::Ramp {
            a: start,
            c: (end - start) / duration,
            total: (start + end) / 2.0 * duration,
        })
    }
}

fn check_rate(name: &str, rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a finite number > 0 requests/s, got {rate}"))
    }
}

/// The running state of one phase's arrivals.
#[derive(Clone, Debug)]
pub(crate) struct ArrivalClock {
    process: ArrivalProcess,
    rng: Pcg64Mcg,
    /// Seconds since the phase start of the last arrival (Poisson, gamma), or the cumulative
    /// unit-rate exponential sum (ramp).
    acc: f64,
    /// Arrivals produced so far (constant).
    count: u64,
}

impl ArrivalClock {
    /// A clock at the phase start.
    pub(crate) fn new(process: ArrivalProcess, rng: Pcg64Mcg) -> Self {
        ArrivalClock { process, rng, acc: 0.0, count: 0 }
    }

    /// Seconds from the phase start to the next arrival (non-decreasing), or `None` when the
    /// process has no more arrivals (a ramp past its expected total).
    pub(crate) fn next_offset(&mut self) -> Option<f64> {
        match &self.process {
            ArrivalProcess::Poisson(exp) => {
                self.acc += exp.sample(&mut self.rng);
                Some(self.acc)
            }
            ArrivalProcess::Gamma(gamma) => {
                self.acc += gamma.sample(&mut self.rng);
                Some(self.acc)
            }
            ArrivalProcess::Constant { rate } => {
                // k / rate rather than a running sum: exact spacing, no accumulated rounding.
                self.count += 1;
                Some(self.count as f64 / rate)
            }
            ArrivalProcess::Ramp { a, c, total } => {
                // Time transform: with unit-rate arrivals S_k, the k-th arrival solves
                // Lambda(t) = a t + c t^2 / 2 = S_k. The stable root is t = 2 S / (a + sqrt(a^2 + 2 c S)).
                let e: f64 = Exp1.sample(&mut self.rng);
                self.acc += e;
                if self.acc > *total {
                    return None;
                }
                let disc = (a * a + 2.0 * c * self.acc).max(0.0);
                let denom = a + disc.sqrt();
                if denom <= 0.0 {
                    return None;
                }
                Some(2.0 * self.acc / denom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn offsets(p: ArrivalProcess, n: usize) -> Vec<f64> {
        let mut c = ArrivalClock::new(p, Pcg64Mcg::seed_from_u64(11));
        (0..n).map_while(|_| c.next_offset()).collect()
    }

    fn gaps(v: &[f64]) -> Vec<f64> {
        let mut prev = 0.0;
        v.iter()
            .map(|&t| {
                let g = t - prev;
                prev = t;
                g
            })
            .collect()
    }

    fn mean_cv(g: &[f64]) -> (f64, f64) {
        let n = g.len() as f64;
        let mean = g.iter().sum::<f64>() / n;
        let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn poisson_gaps_average_one_over_the_rate_with_cv_one() {
        let (mean, cv) = mean_cv(&gaps(&offsets(ArrivalProcess::poisson(4.0).unwrap(), 100_000)));
        assert!((mean - 0.25).abs() < 0.0025, "mean gap {mean}");
        assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
    }

    #[test]
    fn gamma_gaps_average_one_over_the_rate_with_cv_one_over_sqrt_k() {
        for k in [0.25, 0.5, 4.0] {
            let (mean, cv) = mean_cv(&gaps(&offsets(ArrivalProcess::gamma(10.0, k).unwrap(), 100_000)));
            assert!((mean - 0.1).abs() < 0.002, "k {k}: mean gap {mean}");
            let want = 1.0 / f64::sqrt(k);
            assert!((cv - want).abs() < 0.03 * want, "k {k}: cv {cv}, want {want}");
        }
    }

    #[test]
    fn constant_arrivals_are_exactly_k_over_rate() {
        let v = offsets(ArrivalProcess::constant(8.0).unwrap(), 5);
        assert_eq!(v, vec![0.125, 0.25, 0.375, 0.5, 0.625]);
    }

    #[test]
    fn a_ramp_sends_its_expected_total_with_arrivals_denser_at_the_high_end() {
        // 0 -> 100 req/s over 100 s: 5000 expected, 1/4 of them in the first half.
        let mut counts = (0usize, 0usize);
        for seed in 0..4u64 {
            let mut c = ArrivalClock::new(
                ArrivalProcess::ramp(0.0, 100.0, 100.0).unwrap(),
                Pcg64Mcg::seed_from_u64(seed),
            );
            while let Some(t) = c.next_offset() {
                assert!(t <= 100.0 + 1e-9);
                if t < 50.0 { counts.0 += 1 } else { counts.1 += 1 }
            }
        }
        let total = (counts.0 + counts.1) as f64 / 4.0;
        let first_half = counts.0 as f64 / (counts.0 + counts.1) as f64;
        assert!((total - 5000.0).abs() < 150.0, "total {total}");
        assert!((first_half - 0.25).abs() < 0.02, "first-half share {first_half}");
    }

    #[test]
    fn a_falling_ramp_ends_by_the_phase_end() {
        let v = offsets(ArrivalProcess::ramp(50.0, 0.0, 10.0).unwrap(), 10_000);
        assert!(!v.is_empty() && v.len() < 400);
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        assert!(v.iter().all(|&t| t <= 10.0 + 1e-9));
    }

    #[test]
    fn non_positive_rates_are_rejected() {
        assert!(ArrivalProcess::poisson(0.0).unwrap_err().contains("> 0"));
        assert!(ArrivalProcess::gamma(1.0, -1.0).unwrap_err().contains("burstiness"));
        assert!(ArrivalProcess::ramp(0.0, 0.0, 5.0).unwrap_err().contains("both 0"));
        assert!(ArrivalProcess::constant(f64::NAN).is_err());
    }
}
