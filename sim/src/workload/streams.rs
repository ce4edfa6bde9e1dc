//! Independent random streams derived from the master seed and a tag (common random numbers).
//!
//! Each consumer of randomness draws from its own stream, so the request stream depends only on
//! the workload and the seed: adding a model, or a completion arriving earlier, never shifts the
//! numbers another consumer sees. This module only derives generators; it samples nothing.

use rand_pcg::Pcg64Mcg;

/// What a stream is used for; each tag gives a statistically independent generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Inter-arrival times of one phase.
    Arrivals {
        /// Phase index.
        phase: u32,
    },
    /// Model choice of one open-loop phase.
    ModelChoice {
        /// Phase index.
        phase: u32,
    },
    /// Lengths and prefixes of one model's requests in one phase (drawn in that model's order).
    Attributes {
        /// Phase index.
        phase: u32,
        /// Model index.
        model: u32,
    },
    /// Which rows (and copies) a replay phase's `rate_scale` keeps.
    ReplayThinning {
        /// Phase index.
        phase: u32,
    },
    /// Re-issue delays of one model's closed-loop clients in one phase (in completion order).
    Reissue {
        /// Phase index.
        phase: u32,
        /// Model index.
        model: u32,
    },
    /// Everything one multi-turn session draws (turns, lengths, think times, prefix), in its
    /// turn order; sessions are numbered in start order within the phase.
    Session {
        /// Phase index.
        phase: u32,
        /// Session index.
        session: u32,
    },
}

/// SplitMix64's finaliser: a bijection on `u64` with full avalanche.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for `stream` under master `seed`.
pub(crate) fn rng(seed: u64, stream: Stream) -> Pcg64Mcg {
    let (kind, phase, model) = match stream {
        Stream::Arrivals { phase } => (1u64, phase, 0u32),
        Stream::ModelChoice { phase } => (2, phase, 0),
        Stream::Attributes { phase, model } => (3, phase, model),
        Stream::Reissue { phase, model } => (4, phase, model),
        Stream::Session { phase, session } => (5, phase, session),
        Stream::ReplayThinning { phase } => (6, phase, 0),
    };
    let mut h = splitmix64(seed);
    h = splitmix64(h ^ kind);
    h = splitmix64(h ^ u64::from(phase));
    h = splitmix64(h ^ u64::from(model));
    let lo = splitmix64(h ^ 0x5851_F42D_4C95_7F2D);
    Pcg64Mcg::new((u128::from(h) << 64) | u128::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn different_tags_give_different_streams_and_equal_tags_equal_ones() {
        let a = rng(7, Stream::Attributes { phase: 0, model: 1 }).next_u64();
        let b = rng(7, Stream::Attributes { phase: 0, model: 2 }).next_u64();
        let c = rng(7, Stream::ModelChoice { phase: 0 }).next_u64();
        let a2 = rng(7, Stream::Attributes { phase: 0, model: 1 }).next_u64();
        let other_seed = rng(8, Stream::Attributes { phase: 0, model: 1 }).next_u64();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, other_seed);
        let session = rng(7, Stream::Session { phase: 0, session: 0 }).next_u64();
        let thinning = rng(7, Stream::ReplayThinning { phase: 0 }).next_u64();
        assert_ne!(session, thinning, "every kind has its own tag");
    }
}
