//! The LB's view of its backends: health, in-flight counts, the last polled load and counters,
//! and the router that picks among them.
//!
//! Routing reads a snapshot and bumps the chosen backend's in-flight count under one short lock,
//! so two concurrent requests never see the same stale count (least-outstanding stays exact).
//! The lock is never held across an `.await`. A `Lease` is the proof that a request holds one
//! in-flight slot; dropping it (response ended, failed, or the client went away) gives the slot
//! back. This file does no I/O.

use sim::ids::{InstanceId, ModelId};
use sim::router::{PolledLoad, ReplicaSnapshot, RouteRequest, Router};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// How an upstream exchange failed (the `kind` label of `upstream_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// TCP connect refused or timed out.
    Connect,
    /// No response headers, or a body chunk, within the LB's timeout.
    Timeout,
    /// The connection broke or the HTTP exchange was malformed.
    Protocol,
    /// The engine answered 5xx.
    Status,
}

impl UpstreamErrorKind {
    /// Every kind, in label order.
    pub const ALL: [UpstreamErrorKind; 4] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Status,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Status => "status",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A backend's identity (fixed for the LB's life).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// The instance behind it.
    pub instance: InstanceId,
    /// The instance's display name.
    pub name: String,
    /// The model it serves.
    pub model: ModelId,
    /// Base URL, e.g. `http://127.0.0.1:8001`.
    pub url: String,
}

/// A backend's live figures, as `/metrics` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BackendStats {
    /// False while ejected.
    pub healthy: bool,
    /// Requests routed to it and not yet finished.
    pub in_flight: u32,
    /// Last successful poll of its `/metrics`.
    pub polled: Option<PolledLoad>,
    /// Requests routed to it (retries count again).
    pub routed_total: u64,
    /// Times it was ejected.
    pub ejections_total: u64,
    /// Upstream failures by `UpstreamErrorKind`, in `UpstreamErrorKind::ALL` order.
    pub upstream_errors_total: [u64; 4],
}

impl BackendStats {
    /// All upstream failures of any kind.
    pub fn upstream_errors(&self) -> u64 {
        self.upstream_errors_total.iter().sum()
    }
}

#[derive(Debug)]
struct BackendState {
    stats: BackendStats,
    consecutive_failures: u32,
}

struct Table {
    router: Box<dyn Router>,
    backends: Vec<BackendState>,
}

/// Backends and router behind one lock.
pub struct BackendTable {
    infos: Vec<BackendInfo>,
    replicas_of: Vec<Vec<usize>>,
    unhealthy_threshold: u32,
    table: Mutex<Table>,
}

/// A health-check outcome that changed a backend's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthChange {
    /// It was healthy and is now ejected.
    Ejected,
    /// It was ejected and is now back.
    Readmitted,
}

impl BackendTable {
    /// A table over `infos` (indexed like the scenario's instances) for `num_models` models.
    /// A backend is ejected after `unhealthy_threshold` failed checks in a row (at least 1).
    pub fn new(
        infos: Vec<BackendInfo>,
        num_models: usize,
        router: Box<dyn Router>,
        unhealthy_threshold: u32,
    ) -> BackendTable {
        let mut replicas_of = vec![Vec::new(); num_models];
        for (i, b) in infos.iter().enumerate() {
            if let Some(list) = replicas_of.get_mut(b.model.index()) {
                list.push(i);
            }
        }
        let backends = infos
            .iter()
            .map(|_| BackendState {
                stats: BackendStats { healthy: true, ..BackendStats::default() },
                consecutive_failures: 0,
            })
            .collect();
        BackendTable {
            infos,
            replicas_of,
            unhealthy_threshold: unhealthy_threshold.max(1),
            table: Mutex::new(Table { router, backends }),
        }
    }

    /// The backends, indexed like the scenario's instances.
    pub fn infos(&self) -> &[BackendInfo] {
        &self.infos
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain counters behind; they stay usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the router for a replica of `req.model`, skipping `excluded` backends, and takes an
    /// in-flight slot on it. `None` when no healthy, non-excluded replica exists.
    pub fn lease(self: &Arc<Self>, req: &RouteRequest, excluded: &[usize]) -> Option<Lease> {
        let candidates = self.replicas_of.get(req.model.index())?;
        let mut t = self.lock();
        let snapshots: Vec<ReplicaSnapshot> = candidates
            .iter()
            .map(|&b| {
                let s = &t.backends[b].stats;
                ReplicaSnapshot {
                    instance: self.infos[b].instance,
                    healthy: s.healthy && !excluded.contains(&b),
                    in_flight: s.in_flight,
                    polled: s.polled,
                }
            })
            .collect();
        let pick = t.router.route(req, &snapshots)?;
        let backend = *candidates.get(pick)?;
        let s = &mut t.backends[backend].stats;
        s.in_flight += 1;
        s.routed_total += 1;
        Some(Lease { table: Arc::clone(self), backend })
    }

    /// Records a failed upstream exchange.
    pub fn record_error(&self, backend: usize, kind: UpstreamErrorKind) {
        if let Some(b) = self.lock().backends.get_mut(backend) {
            b.stats.upstream_errors_total[kind.index()] += 1;
        }
    }

    /// Ejects a backend at once (a connect failure); `true` if it was healthy.
    pub fn eject(&self, backend: usize) -> bool {
        let threshold = self.unhealthy_threshold;
        let mut t = self.lock();
        let Some(b) = t.backends.get_mut(backend) else { return false };
        b.consecutive_failures = b.consecutive_failures.max(threshold);
        let was_healthy = b.stats.healthy;
        if was_healthy {
            b.stats.healthy = false;
            b.stats.ejections_total += 1;
        }
        was_healthy
    }

    /// Records one health check: a success readmits an ejected backend, `unhealthy_threshold`
    /// failures in a row eject a healthy one.
    pub fn record_health(&self, backend: usize, ok: bool) -> Option<HealthChange> {
        let threshold = self.unhealthy_threshold;
        let mut t = self.lock();
        let b = t.backends.get_mut(backend)?;
        if ok {
            b.consecutive_failures = 0;
            if !b.stats.healthy {
                b.stats.healthy = true;
                return Some(HealthChange::Readmitted);
            }
        } else {
            b.consecutive_failures = b.consecutive_failures.saturating_add(1);
            if b.stats.healthy && b.consecutive_failures >= threshold {
                b.stats.healthy = false;
                b.stats.ejections_total += 1;
                return Some(HealthChange::Ejected);
            }
        }
        None
    }

    /// Stores a fresh poll of a backend's `/metrics`.
    pub fn record_poll(&self, backend: usize, load: PolledLoad) {
        if let Some(b) = self.lock().backends.get_mut(backend) {
            b.stats.polled = Some(load);
        }
    }

    /// Every backend's figures, indexed like `infos()`.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.lock().backends.iter().map(|b| b.stats).collect()
    }

    fn release(&self, backend: usize) {
        if let Some(b) = self.lock().backends.get_mut(backend) {
            b.stats.in_flight = b.stats.in_flight.saturating_sub(1);
        }
    }
}

/// One in-flight slot on a backend; dropping it gives the slot back.
pub struct Lease {
    table: Arc<BackendTable>,
    backend: usize,
}

impl Lease {
    /// The backend index (into `BackendTable::infos`).
    pub fn backend(&self) -> usize {
        self.backend
    }

    /// The backend's identity.
    pub fn info(&self) -> &BackendInfo {
        &self.table.infos[self.backend]
    }

    /// Counts a failure of this exchange against the backend.
    pub fn record_error(&self, kind: UpstreamErrorKind) {
        self.table.record_error(self.backend, kind);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.table.release(self.backend);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::router::{LeastOutstanding, RoundRobin};

    fn table(router: Box<dyn Router>) -> Arc<BackendTable> {
        let infos = (0..3)
            .map(|i| BackendInfo {
                instance: InstanceId(i),
                name: format!("m#{i}"),
                model: ModelId(if i < 2 { 0 } else { 1 }),
                url: format!("http://127.0.0.1:{}", 9000 + i),
            })
            .collect();
        Arc::new(BackendTable::new(infos, 2, router, 2))
    }

    const REQ: RouteRequest<'static> =
        RouteRequest { model: ModelId(0), num_prompt_tokens: 4, block_hashes: &[] };

    #[test]
    fn a_lease_holds_one_in_flight_slot_until_dropped() {
        let t = table(Box::new(LeastOutstanding));
        let a = t.lease(&REQ, &[]).unwrap();
        let b = t.lease(&REQ, &[]).unwrap();
        assert_ne!(a.backend(), b.backend(), "least-outstanding spreads by the fresh count");
        assert_eq!(t.stats()[0].in_flight + t.stats()[1].in_flight, 2);
        drop(a);
        drop(b);
        assert!(t.stats().iter().all(|s| s.in_flight == 0));
        assert_eq!(t.stats()[0].routed_total, 1);
    }

    #[test]
    fn excluded_and_ejected_backends_are_not_routed_to() {
        let t = table(Box::new(RoundRobin::new(2)));
        assert!(t.eject(0));
        assert!(!t.eject(0), "ejecting twice counts once");
        assert_eq!(t.lease(&REQ, &[]).unwrap().backend(), 1);
        assert!(t.lease(&REQ, &[1]).is_none());
        assert_eq!(t.stats()[0].ejections_total, 1);
    }

    #[test]
    fn two_failed_checks_eject_and_one_success_readmits() {
        let t = table(Box::new(RoundRobin::new(2)));
        assert_eq!(t.record_health(1, false), None);
        assert_eq!(t.record_health(1, false), Some(HealthChange::Ejected));
        assert_eq!(t.record_health(1, false), None);
        assert_eq!(t.record_health(1, true), Some(HealthChange::Readmitted));
        assert!(t.stats()[1].healthy);
    }

    #[test]
    fn a_model_without_replicas_has_no_route() {
        let t = table(Box::new(RoundRobin::new(2)));
        assert!(
            t.lease(&RouteRequest { model: ModelId(5), num_prompt_tokens: 1, block_hashes: &[] }, &[])
                .is_none()
        );
    }
}
