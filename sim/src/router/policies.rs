//! The routing policies. Ties go to the lowest index (like Python's `min`), which is what the
//! seed's FastAPI LB does and what makes herding on stale metrics visible.

use super::{ReplicaSnapshot, RouteRequest, Router};
use crate::scenario::LoadScore;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Model-aware round-robin: a separate cursor per model, cycling over healthy replicas.
#[derive(Clone, Debug)]
pub struct RoundRobin {
    next: Vec<usize>,
}

impl RoundRobin {
    /// A cursor for each of `num_models` models.
    pub fn new(num_models: usize) -> Self {
        RoundRobin { next: vec![0; num_models] }
    }
}

impl Router for RoundRobin {
    fn route(&mut self, req: &RouteRequest<'_>, replicas: &[ReplicaSnapshot]) -> Option<usize> {
        let n = replicas.len();
        if self.next.len() <= req.model.index() {
            self.next.resize(req.model.index() + 1, 0);
        }
        let cursor = &mut self.next[req.model.index()];
        for k in 0..n {
            let i = (*cursor + k) % n;
            if replicas[i].healthy {
                *cursor = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }
}

/// Least busy replica by the last polled `/metrics` (stale between polls). Replicas never polled
/// count as idle.
#[derive(Clone, Debug)]
pub struct QueueAware {
    score: LoadScore,
}

impl QueueAware {
    /// Minimises `score`.
    pub fn new(score: LoadScore) -> Self {
        QueueAware { score }
    }

    fn score(&self, r: &ReplicaSnapshot) -> f64 {
        let p = r.polled.unwrap_or_default();
        match self.score {
            LoadScore::RunningPlusWaiting => f64::from(p.running + p.waiting),
            LoadScore::Waiting => f64::from(p.waiting),
            LoadScore::KvUsage => p.kv_usage,
        }
    }
}

impl Router for QueueAware {
    fn route(&mut self, _req: &RouteRequest<'_>, replicas: &[ReplicaSnapshot]) -> Option<usize> {
        argmin(replicas, |r| self.score(r))
    }
}

/// Fewest LB-local in-flight requests: no staleness, no herding.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastOutstanding;

impl Router for LeastOutstanding {
    fn route(&mut self, _req: &RouteRequest<'_>, replicas: &[ReplicaSnapshot]) -> Option<usize> {
        argmin(replicas, |r| f64::from(r.in_flight))
    }
}

/// Power of two choices over healthy replicas, compared by LB-local in-flight count.
#[derive(Clone, Debug)]
pub struct PowerOfTwo {
    rng: Pcg64Mcg,
}

impl PowerOfTwo {
    /// Seeded for reproducibility.
    pub fn new(seed: u64) -> Self {
        PowerOfTwo { rng: Pcg64Mcg::seed_from_u64(seed) }
    }
}

impl Router for PowerOfTwo {
    fn route(&mut self, _req: &RouteRequest<'_>, replicas: &[ReplicaSnapshot]) -> Option<usize> {
        let healthy: Vec<usize> = (0..replicas.len()).filter(|&i| replicas[i].healthy).collect();
        match healthy.len() {
            0 => None,
            1 => Some(healthy[0]),
            n => {
                let a = self.rng.random_range(0..n);
                let mut b = self.rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (healthy[a], healthy[b]);
                Some(if replicas[b].in_flight < replicas[a].in_flight { b } else { a })
            }
        }
    }
}

/// Uniformly random healthy replica.
#[derive(Clone, Debug)]
pub struct RandomChoice {
    rng: Pcg64Mcg,
}

impl RandomChoice {
    /// Seeded for reproducibility.
    pub fn new(seed: u64) -> Self {
        RandomChoice { rng: Pcg64Mcg::seed_from_u64(seed) }
    }
}

impl Router for RandomChoice {
    fn route(&mut self, _req: &RouteRequest<'_>, replicas: &[ReplicaSnapshot]) -> Option<usize> {
        let healthy: Vec<usize> = (0..replicas.len()).filter(|&i| replicas[i].healthy).collect();
        if healthy.is_empty() { None } else { Some(healthy[self.rng.random_range(0..healthy.len())]) }
    }
}

/// Index of the healthy replica with the smallest key; ties to the lowest index.
fn argmin(replicas: &[ReplicaSnapshot], key: impl Fn(&ReplicaSnapshot) -> f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, r) in replicas.iter().enumerate() {
        if !r.healthy {
            continue;
        }
        let k = key(r);
        if best.is_none_or(|(_, bk)| k < bk) {
            best = Some((i, k));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, ModelId};
    use crate::router::PolledLoad;

    fn replicas(loads: &[(u32, u32)]) -> Vec<ReplicaSnapshot> {
        loads
            .iter()
            .enumerate()
            .map(|(i, &(in_flight, polled))| ReplicaSnapshot {
                instance: InstanceId(i as u32),
                healthy: true,
                in_flight,
                polled: Some(PolledLoad { running: polled, waiting: 0, kv_usage: 0.0 }),
            })
            .collect()
    }

    const REQ: RouteRequest<'static> =
        RouteRequest { model: ModelId(0), num_prompt_tokens: 10, block_hashes: &[] };

    #[test]
    fn round_robin_cycles_and_skips_ejected_replicas() {
        let mut rr = RoundRobin::new(1);
        let mut r = replicas(&[(0, 0), (0, 0), (0, 0)]);
        let picks: Vec<_> = (0..4).map(|_| rr.route(&REQ, &r).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0]);
        r[1].healthy = false;
        let picks: Vec<_> = (0..3).map(|_| rr.route(&REQ, &r).unwrap()).collect();
        assert_eq!(picks, vec![2, 0, 2]);
    }

    #[test]
    fn queue_aware_follows_the_stale_poll_not_the_in_flight_count() {
        let mut qa = QueueAware::new(LoadScore::RunningPlusWaiting);
        // Replica 0 already has 50 in flight but was idle at the last poll: it still wins.
        let r = replicas(&[(50, 0), (0, 3)]);
        assert_eq!(qa.route(&REQ, &r), Some(0));
    }

    #[test]
    fn least_outstanding_uses_the_fresh_local_count() {
        let r = replicas(&[(50, 0), (0, 3)]);
        assert_eq!(LeastOutstanding.route(&REQ, &r), Some(1));
    }

    #[test]
    fn no_healthy_replica_means_no_route() {
        let mut r = replicas(&[(0, 0), (0, 0)]);
        r.iter_mut().for_each(|x| x.healthy = false);
        assert_eq!(RoundRobin::new(1).route(&REQ, &r), None);
        assert_eq!(LeastOutstanding.route(&REQ, &r), None);
        assert_eq!(PowerOfTwo::new(1).route(&REQ, &r), None);
        assert_eq!(RandomChoice::new(1).route(&REQ, &r), None);
    }

    #[test]
    fn power_of_two_never_picks_the_busier_of_two_replicas() {
        let mut p2 = PowerOfTwo::new(7);
        let r = replicas(&[(9, 0), (1, 0)]);
        for _ in 0..100 {
            assert_eq!(p2.route(&REQ, &r), Some(1));
        }
    }
}
