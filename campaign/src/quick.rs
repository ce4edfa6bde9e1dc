//! `--quick F`: a dry run of the same campaign, shorter. Every phase of the scenario keeps its
//! arrival process, rates and lengths (so the load level is the same) and lasts `F` times as
//! long: `duration_s` x F, `num_requests` x F rounded up (at least 1). A replay phase without a
//! duration or request count replays in full. The calibration ladder is scaled by the same factor
//! (see [`crate::ladder`]). The scaling is passed as `--set` overrides, so `validate` replays
//! exactly the shortened stream.

use sim::scenario::{Override, Scenario};

/// The factor `--quick` without a value uses.
pub const DEFAULT_FACTOR: f64 = 0.1;

/// Checks a `--quick` factor: a number in (0, 1].
pub fn check_factor(f: f64) -> Result<f64, String> {
    if f.is_finite() && f > 0.0 && f <= 1.0 {
        Ok(f)
    } else {
        Err(format!("--quick {f}: give a factor in (0, 1], e.g. --quick 0.1 for a tenth of every phase"))
    }
}

/// The overrides that shorten `scenario`'s phases by `factor`.
pub fn overrides(scenario: &Scenario, factor: f64) -> Vec<Override> {
    let mut out = Vec::new();
    for (i, p) in scenario.workload.phases.iter().enumerate() {
        if let Some(d) = p.duration_s {
            out.push(Override::new(
                format!("workload.phases.{i}.duration_s"),
                toml::Value::Float(d * factor),
            ));
        }
        if let Some(n) = p.num_requests {
            let scaled = ((n as f64) * factor).ceil().max(1.0) as i64;
            out.push(Override::new(
                format!("workload.phases.{i}.num_requests"),
                toml::Value::Integer(scaled),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const TEXT: &str = r#"
name = "q"
[cluster]
gpu = "H200"
[[instances]]
model = "llama-3.1-8b"
gpu = 0
[[workload.phases]]
duration_s = 120
arrival = { process = "poisson", rate = 5.0 }
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 10 }
[[workload.phases]]
num_requests = 33
arrival = { process = "closed_loop", concurrency = 4 }
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 10 }
"#;

    fn load(ovs: &[Override]) -> Scenario {
        let f = sim::scenario::parse_scenario(TEXT, std::path::Path::new("q.toml"), ovs).unwrap();
        f.variants[0].clone()
    }

    proptest! {
        #[test]
        fn quick_shortens_every_phase_and_keeps_its_load(factor in 0.001f64..=1.0) {
            let full = load(&[]);
            let quick = load(&overrides(&full, factor));
            let (a, b) = (&full.workload.phases, &quick.workload.phases);
            prop_assert_eq!(a.len(), b.len());
            prop_assert!((b[0].duration_s.unwrap() - 120.0 * factor).abs() < 1e-9);
            let n = b[1].num_requests.unwrap();
            prop_assert!((1..=33).contains(&n) && (n as f64) >= 33.0 * factor);
            for (x, y) in a.iter().zip(b) {
                prop_assert_eq!(&x.arrival, &y.arrival);
                prop_assert_eq!(&x.input_tokens, &y.input_tokens);
            }
        }
    }

    #[test]
    fn a_factor_outside_zero_to_one_is_refused_naming_the_option() {
        for f in [0.0, -1.0, 1.5, f64::NAN] {
            assert!(check_factor(f).unwrap_err().contains("--quick"));
        }
        assert_eq!(check_factor(1.0), Ok(1.0));
    }
}
