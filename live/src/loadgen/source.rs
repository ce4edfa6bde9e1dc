//! Where the load generator's requests come from: the [`RequestSource`] trait (the shape of
//! `sim::workload::WorkloadGenerator`, so live sends exactly the stream the simulator simulated)
//! and [`FixedSchedule`], a plain list of requests sent at their arrival times.

use sim::workload::{RequestSpec, WorkloadGenerator};
use sim::{RequestId, SimTime};
use std::collections::VecDeque;

/// A deterministic request stream. Open loop: every request has its arrival time up front.
/// Closed loop: finishing a request (reported through [`RequestSource::on_request_finished`])
/// releases the next one.
pub trait RequestSource: Send {
    /// Scheduled time of the next request, or `None` when none is ready now (closed loop waiting
    /// for a finish) or the stream is over.
    fn peek_time(&mut self) -> Option<SimTime>;

    /// Takes the next request (the one `peek_time` announced).
    fn pop(&mut self) -> Option<RequestSpec>;

    /// Request `id` ended (any status) at `now`, time since the run started.
    fn on_request_finished(&mut self, id: RequestId, now: SimTime);

    /// True when no request will ever come again.
    fn is_exhausted(&self) -> bool;

    /// How many requests the stream plans to issue, when known up front (progress display).
    fn planned_requests(&self) -> Option<u64> {
        None
    }

    /// Why the stream stopped early, if it did (e.g. a source reading its file lazily that fails mid-run).
    fn error(&self) -> Option<String> {
        None
    }
}

/// The simulator's generator drives the live harness as it drives the simulation.
impl RequestSource for WorkloadGenerator {
    fn peek_time(&mut self) -> Option<SimTime> {
        WorkloadGenerator::peek_time(self)
    }

    fn pop(&mut self) -> Option<RequestSpec> {
        WorkloadGenerator::pop(self)
    }

    fn on_request_finished(&mut self, id: RequestId, now: SimTime) {
        WorkloadGenerator::on_request_finished(self, id, now);
    }

    fn is_exhausted(&self) -> bool {
        WorkloadGenerator::is_exhausted(self)
    }

    fn planned_requests(&self) -> Option<u64> {
        WorkloadGenerator::planned_requests(self)
    }

    fn error(&self) -> Option<String> {
        WorkloadGenerator::error(self).map(ToString::to_string)
    }
}

/// An open-loop list of requests, sent in order at their `arrival` times.
#[derive(Clone, Debug, Default)]
pub struct FixedSchedule {
    requests: VecDeque<RequestSpec>,
    planned: u64,
}

impl FixedSchedule {
    /// The requests, sorted by arrival (ties keep their order).
    pub fn new(mut requests: Vec<RequestSpec>) -> Self {
        requests.sort_by_key(|r| r.arrival);
        FixedSchedule { planned: requests.len() as u64, requests: requests.into() }
    }
}

impl RequestSource for FixedSchedule {
    fn peek_time(&mut self) -> Option<SimTime> {
        self.requests.front().map(|r| r.arrival)
    }

    fn pop(&mut self) -> Option<RequestSpec> {
        self.requests.pop_front()
    }

    fn on_request_finished(&mut self, _id: RequestId, _now: SimTime) {}

    fn is_exhausted(&self) -> bool {
        self.requests.is_empty()
    }

    fn planned_requests(&self) -> Option<u64> {
        Some(self.planned)
    }
}
