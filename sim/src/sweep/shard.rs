//! `--shard i/n`: which points of a sweep one machine runs, so a big sweep can be split over
//! machines (or a batch system's array jobs) and merged afterwards with `sweep merge`.
//!
//! Shard `i` of `n` (1-based) takes the points whose index `p` has `p % n == i - 1`: round-robin,
//! so neighbouring load points (which cost alike) spread evenly. This module does not run or merge.

use super::SweepError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One shard of a sweep: `index` of `count`, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard, 1..=count.
    pub index: u32,
    /// How many shards the sweep is split into.
    pub count: u32,
}

impl Shard {
    /// The whole sweep as one shard.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Whether point `point` belongs to this shard.
    pub fn owns(&self, point: u32) -> bool {
        point % self.count == self.index - 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `i/n` with `1 <= i <= n`.
impl FromStr for Shard {
    type Err = SweepError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| SweepError::Shard { text: text.to_string(), reason: reason.to_string() };
        let Some((i, n)) = text.split_once('/') else {
            return Err(err("expected I/N, e.g. 1/4 for the first of four shards"));
        };
        let (Ok(index), Ok(count)) = (i.trim().parse::<u32>(), n.trim().parse::<u32>()) else {
            return Err(err("I and N must be whole numbers, e.g. 1/4"));
        };
        if count == 0 {
            return Err(err("N must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(err("I counts from 1 to N, e.g. 1/2 and 2/2"));
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_points_round_robin_and_cover_each_once() {
        let shards: Vec<Shard> = ["1/3", "2/3", "3/3"].iter().map(|s| s.parse().unwrap()).collect();
        for p in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(p)).count(), 1);
        }
        assert!(shards[1].owns(4));
        assert!(Shard::WHOLE.owns(7));
        assert_eq!(shards[2].to_string(), "3/3");
    }

    #[test]
    fn malformed_shards_are_refused() {
        for bad in ["0/2", "3/2", "1/0", "1", "a/b", "-1/2"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("--shard '{bad}'")), "{e}");
        }
    }
}
