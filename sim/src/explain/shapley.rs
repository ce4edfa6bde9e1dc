//! Shapley values of a set function over `k` factors: exact over all `2^k` subsets, or estimated
//! from sampled permutations; and the Shapley interaction index of every pair.
//!
//! A subset is a bit mask (bit `i` set: factor `i` takes its *to* value); `v[mask]` is the metric
//! with that subset switched. Factor `i`'s Shapley value is its marginal contribution
//! `v(S + i) - v(S)` averaged over all orders in which the factors can be switched on, so the
//! values add up to `v(all) - v(none)` (efficiency) and a pair that only matters together splits
//! its joint effect equally. The pair index (Grabisch & Roubens 1999) is
//! `I_ij = sum over S without i, j of |S|! (k - |S| - 2)! / (k - 1)! * (v(S+ij) - v(S+i) - v(S+j) + v(S))`:
//! zero for factors that add up, the joint effect for a pair that only matters together. With
//! many factors, the values are estimated from sampled orders instead (Castro, Gomez & Tejada
//! 2009). This module is arithmetic only; it knows nothing of simulations.

use rand::Rng;
use rand::seq::SliceRandom;

/// Most factors an exact computation takes (`2^k` subsets).
pub const MAX_EXACT_FACTORS: usize = 16;

fn factorial(n: usize) -> f64 {
    (1..=n).map(|i| i as f64).product()
}

/// Exact Shapley values; `v` holds the set function at every mask `0..2^k`.
pub fn exact(v: &[f64], k: usize) -> Vec<f64> {
    debug_assert_eq!(v.len(), 1 << k);
    let weights: Vec<f64> = (0..k).map(|s| factorial(s) * factorial(k - s - 1) / factorial(k)).collect();
    (0..k)
        .map(|i| {
            let bit = 1usize << i;
            (0..v.len())
                .filter(|m| m & bit == 0)
                .map(|m| weights[m.count_ones() as usize] * (v[m | bit] - v[m]))
                .sum()
        })
        .collect()
}

/// Shapley interaction index of every pair `(i, j)`, `i < j`, in that order.
pub fn pair_interactions(v: &[f64], k: usize) -> Vec<((usize, usize), f64)> {
    if k < 2 {
        return Vec::new();
    }
    let weights: Vec<f64> =
        (0..k - 1).map(|s| factorial(s) * factorial(k - s - 2) / factorial(k - 1)).collect();
    let mut out = Vec::new();
    for i in 0..k {
        for j in i + 1..k {
            let (bi, bj) = (1usize << i, 1usize << j);
            let index = (0..v.len())
                .filter(|m| m & (bi | bj) == 0)
                .map(|m| weights[m.count_ones() as usize] * (v[m | bi | bj] - v[m | bi] - v[m | bj] + v[m]))
                .sum();
            out.push(((i, j), index));
        }
    }
    out
}

/// `n` random orders of `k` factors drawn with `rng`.
pub fn permutations(k: usize, n: usize, rng: &mut impl Rng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..k).collect();
    (0..n)
        .map(|_| {
            order.shuffle(rng);
            order.clone()
        })
        .collect()
}

/// The masks a permutation estimate asks for: every prefix of every order (the empty set and the
/// full set included), sorted and without repeats.
pub fn prefix_masks(perms: &[Vec<usize>]) -> Vec<u64> {
    let mut masks = vec![0u64];
    for order in perms {
        let mut mask = 0u64;
        for &i in order {
            mask |= 1 << i;
            masks.push(mask);
        }
    }
    masks.sort_unstable();
    masks.dedup();
    masks
}

/// Shapley values estimated from the orders `perms` over `k` factors: each order switches the
/// factors on one by one and credits each with its marginal contribution; the estimate is the
/// mean credit. The estimates add up to `v(all) - v(none)` like the exact values and converge
/// to them as orders are added. `v` is asked only for [`prefix_masks`].
pub fn from_permutations(k: usize, perms: &[Vec<usize>], mut v: impl FnMut(u64) -> f64) -> Vec<f64> {
    let mut sums = vec![0.0; k];
    if perms.is_empty() {
        return sums;
    }
    let empty = v(0);
    for order in perms {
        let (mut mask, mut prev) = (0u64, empty);
        for &i in order {
            mask |= 1 << i;
            let now = v(mask);
            sums[i] += now - prev;
            prev = now;
        }
    }
    sums.iter().map(|s| s / perms.len() as f64).collect()
}

/// [`from_permutations`] over `perms` orders drawn with `rng`.
pub fn sampled(k: usize, perms: usize, rng: &mut impl Rng, v: impl FnMut(u64) -> f64) -> Vec<f64> {
    from_permutations(k, &permutations(k, perms, rng), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    /// Two additive factors (1.0 and 2.0) and a pair (2, 3) worth 5.0 only together.
    fn known(m: usize) -> f64 {
        let on = |i: usize| (m >> i) & 1 == 1;
        10.0 + if on(0) { 1.0 } else { 0.0 }
            + if on(1) { 2.0 } else { 0.0 }
            + if on(2) && on(3) { 5.0 } else { 0.0 }
    }

    #[test]
    fn a_known_game_gives_its_contributions_and_its_pair() {
        let v: Vec<f64> = (0..16).map(known).collect();
        let phi = exact(&v, 4);
        for (got, want) in phi.iter().zip([1.0, 2.0, 2.5, 2.5]) {
            assert!((got - want).abs() < 1e-12, "{phi:?}");
        }
        let pairs = pair_interactions(&v, 4);
        for ((i, j), index) in pairs {
            let want = if (i, j) == (2, 3) { 5.0 } else { 0.0 };
            assert!((index - want).abs() < 1e-12, "({i}, {j}): {index}");
        }
    }

    proptest! {
        #[test]
        fn shapley_values_add_up_to_the_total_change(k in 1usize..=7, seed in any::<u64>()) {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let v: Vec<f64> = (0..1usize << k).map(|_| rng.random_range(-1e3..1e3)).collect();
            let phi = exact(&v, k);
            let total = v[(1 << k) - 1] - v[0];
            let scale = v.iter().map(|x| x.abs()).fold(1.0, f64::max);
            prop_assert!((phi.iter().sum::<f64>() - total).abs() <= 1e-12 * scale * (1 << k) as f64);
            let est = sampled(k, 3, &mut rng, |m| v[m as usize]);
            prop_assert!((est.iter().sum::<f64>() - total).abs() <= 1e-12 * scale * 8.0);
        }

        #[test]
        fn a_factor_that_changes_nothing_gets_nothing(k in 2usize..=6, dummy in 0usize..6, seed in any::<u64>()) {
            let dummy = dummy % k;
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let base: Vec<f64> = (0..1usize << k).map(|_| rng.random_range(-1e3..1e3)).collect();
            // v ignores the dummy's bit.
            let v: Vec<f64> = (0..1usize << k).map(|m| base[m & !(1 << dummy)]).collect();
            prop_assert!(exact(&v, k)[dummy].abs() < 1e-9);
        }
    }

    #[test]
    fn sampled_permutations_converge_to_the_exact_values() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        let k = 5;
        let v: Vec<f64> = (0..1usize << k).map(|_| rng.random_range(0.0..100.0)).collect();
        let phi = exact(&v, k);
        let err = |perms: usize, rng: &mut rand_pcg::Pcg64| {
            let est = sampled(k, perms, rng, |m| v[m as usize]);
            est.iter().zip(&phi).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
        };
        let coarse = err(20, &mut rng);
        let fine = err(20_000, &mut rng);
        assert!(fine < coarse, "{fine} !< {coarse}");
        // Marginals are bounded by 200: the standard error at 20000 orders is below 1.5.
        assert!(fine < 3.0, "{fine}");
    }
}
