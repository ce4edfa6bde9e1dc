//! Compute contention between instances sharing a GPU: kvcached makes memory elastic, not
//! compute. Without MPS the GPU time-slices between processes, so steps of busy co-tenants
//! serialise on the SMs, plus a time-slicing overhead (measured on an H100 with two engines each
//! serving its own load: 2.15-2.22x slowdown, see the reference notes). This module only turns a
//! number of busy co-tenants into a slowdown factor; the driver decides who is busy.

use crate::scenario::ContentionSpec;

/// How many times longer a step takes when `n_busy_others` co-tenants are busy as it begins:
/// 1 without busy co-tenants; `(1 + n) x (1 + overhead)` under [`ContentionSpec::Serialize`].
pub fn contention_factor(spec: &ContentionSpec, n_busy_others: u32) -> f64 {
    match *spec {
        ContentionSpec::None => 1.0,
        ContentionSpec::Serialize { .. } if n_busy_others == 0 => 1.0,
        ContentionSpec::Serialize { overhead } => f64::from(1 + n_busy_others) * (1.0 + overhead.max(0.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_co_tenant_costs_nothing_and_a_busy_one_serialises_with_overhead() {
        let s = ContentionSpec::default();
        assert_eq!(contention_factor(&s, 0), 1.0);
        assert!((contention_factor(&s, 1) - 2.2).abs() < 1e-12, "two busy tenants: 2 x 1.10");
        assert!((contention_factor(&s, 2) - 3.3).abs() < 1e-12);
        assert_eq!(contention_factor(&ContentionSpec::None, 3), 1.0);
    }
}
