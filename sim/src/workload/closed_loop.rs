//! Closed-loop clients as genai-perf `--concurrency`: each model of the mix has `concurrency`
//! clients; all send at the phase start and each sends again `reissue_delay_s` after its previous
//! request ends (0 by default: the same instant). Real clients are never that quick: two
//! independent live clients on the emulator measured 25-50 % higher closed-loop TTFT than an
//! instant re-send gives, because a wave of instant re-sends always lands on one prefill step.
//! This tracks which client is free when and draws the delays (one stream per model, in
//! completion order); it draws no lengths and assigns no ids.

use super::streams::{Stream, rng};
use crate::ids::{ModelId, RequestId};
use crate::scenario::DelayDist;
use crate::time::{SimDuration, SimTime};
use rand::Rng;
use rand_distr::{Distribution, Exp1};
use rand_pcg::Pcg64Mcg;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A client's wait between its request's end and its next send.
#[derive(Clone, Debug)]
pub(crate) struct ReissueDelay {
    dist: DelayDist,
    /// One stream per model index (empty when every delay is zero).
    rngs: Vec<Pcg64Mcg>,
}

impl ReissueDelay {
    /// Delays from `dist`, drawn from phase `phase`'s per-model streams of `seed`.
    pub(crate) fn new(dist: &DelayDist, seed: u64, phase: u32, num_models: usize) -> Self {
        let rngs = if dist.is_zero() {
            Vec::new()
        } else {
            (0..num_models as u32).map(|model| rng(seed, Stream::Reissue { phase, model })).collect()
        };
        ReissueDelay { dist: dist.clone(), rngs }
    }

    /// No delay (tests).
    #[cfg(test)]
    pub(crate) fn zero() -> Self {
        ReissueDelay { dist: DelayDist::default(), rngs: Vec::new() }
    }

    /// The next delay of a client of `model`.
    fn draw(&mut self, model: ModelId) -> SimDuration {
        let Some(rng) = self.rngs.get_mut(model.index()) else { return SimDuration::ZERO };
        sample_delay(&self.dist, rng)
    }
}

/// One draw of `dist` (a fixed delay draws nothing); also a session's think time.
pub(crate) fn sample_delay<R: Rng + ?Sized>(dist: &DelayDist, rng: &mut R) -> SimDuration {
    let secs = match *dist {
        DelayDist::Fixed { value } => value,
        DelayDist::Uniform { min, max } => min + (max - min) * rng.random::<f64>(),
        DelayDist::Exponential { mean } => {
            let e: f64 = Exp1.sample(rng);
            mean * e
        }
    };
    SimDuration::from_secs_f64(secs.max(0.0))
}

/// The clients of one closed-loop phase.
#[derive(Clone, Debug)]
pub(crate) struct ClosedLoop {
    /// No sends at or after this time (`start + duration_s`).
    end: Option<SimTime>,
    /// Sends in the phase at most (`num_requests`).
    limit: Option<u64>,
    /// Sends created so far (issued or waiting in `ready`).
    scheduled: u64,
    /// Free clients' next sends, earliest first; ties in creation order.
    ready: BinaryHeap<Reverse<(SimTime, u64, ModelId)>>,
    /// Creation counter for tie-breaking.
    seq: u64,
    /// Requests of this phase in flight and the model whose client sent each (O(concurrency)).
    in_flight: HashMap<RequestId, ModelId>,
    /// A completion at or after `end` was seen: no send can ever be created again.
    past_end: bool,
    /// Wait between a request's end and its client's next send.
    delay: ReissueDelay,
}

impl ClosedLoop {
    /// All clients send at `start`, interleaved by model (client 0 of each model, then client 1,
    /// ...), so a count bound smaller than the client total is shared fairly.
    pub(crate) fn start(
        start: SimTime,
        models: &[ModelId],
        concurrency: u32,
        end: Option<SimTime>,
        limit: Option<u64>,
        delay: ReissueDelay,
    ) -> Self {
        let mut c = ClosedLoop {
            end,
            limit,
            scheduled: 0,
            ready: BinaryHeap::new(),
            seq: 0,
            in_flight: HashMap::new(),
            past_end: false,
            delay,
        };
        for _ in 0..concurrency {
            for &m in models {
                c.schedule(start, m);
            }
        }
        c
    }

    fn schedule(&mut self, at: SimTime, model: ModelId) {
        let open = self.end.is_none_or(|e| at < e) && self.limit.is_none_or(|n| self.scheduled < n);
        if open {
            self.ready.push(Reverse((at, self.seq, model)));
            self.seq += 1;
            self.scheduled += 1;
        }
    }

    /// Time of the earliest pending send.
    pub(crate) fn peek(&self) -> Option<SimTime> {
        self.ready.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Takes the earliest pending send; the caller then reports its id with [`Self::issued`].
    pub(crate) fn pop(&mut self) -> Option<(SimTime, ModelId)> {
        self.ready.pop().map(|Reverse((t, _, m))| (t, m))
    }

    /// Records that request `id` was sent by a client of `model`.
    pub(crate) fn issued(&mut self, id: RequestId, model: ModelId) {
        self.in_flight.insert(id, model);
    }

    /// Request `id` ended at `now`: its client sends again after its re-issue delay unless a
    /// bound forbids (a send that would fall at or after the window end is never made). Ids not
    /// sent by this phase are ignored.
    pub(crate) fn finished(&mut self, id: RequestId, now: SimTime) {
        if self.end.is_some_and(|e| now >= e) {
            self.past_end = true;
        }
        if let Some(model) = self.in_flight.remove(&id) {
            let at = now + self.delay.draw(model);
            self.schedule(at, model);
            if self.end.is_some_and(|e| at >= e) && self.in_flight.is_empty() && self.ready.is_empty() {
                // Nothing can complete any more to notice the window end: it has passed for good.
                self.past_end = true;
            }
        }
    }

    /// True when the phase can issue nothing more: its time bound has passed (as seen from a
    /// completion) or its count bound is spent and every request has ended, and no send waits.
    pub(crate) fn is_over(&self) -> bool {
        let count_done = self.limit.is_some_and(|n| self.scheduled >= n) && self.in_flight.is_empty();
        self.ready.is_empty() && (self.past_end || count_done)
    }

    /// Whether the phase ended before its time bound (count bound spent, all requests ended),
    /// so the next phase starts at the last completion rather than at `end`.
    pub(crate) fn ended_by_count(&self) -> bool {
        !self.past_end && self.is_over()
    }

    /// The send-window end, if time-bounded.
    pub(crate) fn end(&self) -> Option<SimTime> {
        self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [ModelId; 2] = [ModelId(0), ModelId(1)];

    #[test]
    fn all_clients_send_at_the_start_interleaved_by_model() {
        let mut c = ClosedLoop::start(SimTime(5), &M, 2, None, None, ReissueDelay::zero());
        let sends: Vec<_> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(
            sends,
            vec![(SimTime(5), M[0]), (SimTime(5), M[1]), (SimTime(5), M[0]), (SimTime(5), M[1])]
        );
    }

    #[test]
    fn a_client_sends_again_when_its_request_ends_but_not_past_the_end() {
        let mut c = ClosedLoop::start(SimTime(0), &M[..1], 1, Some(SimTime(100)), None, ReissueDelay::zero());
        let (_, m) = c.pop().unwrap();
        c.issued(RequestId(0), m);
        c.finished(RequestId(0), SimTime(40));
        assert_eq!(c.peek(), Some(SimTime(40)));
        let (_, m) = c.pop().unwrap();
        c.issued(RequestId(1), m);
        assert!(!c.is_over());
        c.finished(RequestId(1), SimTime(100));
        assert_eq!(c.peek(), None);
        assert!(c.is_over() && !c.ended_by_count());
    }

    #[test]
    fn a_count_bound_stops_new_sends_and_ends_when_the_last_request_ends() {
        let mut c = ClosedLoop::start(SimTime(0), &M, 1, None, Some(3), ReissueDelay::zero());
        for id in 0..2 {
            let (_, m) = c.pop().unwrap();
            c.issued(RequestId(id), m);
        }
        c.finished(RequestId(0), SimTime(10));
        let (_, m) = c.pop().unwrap();
        c.issued(RequestId(2), m);
        c.finished(RequestId(1), SimTime(11));
        assert_eq!(c.peek(), None, "3 sends made: no fourth");
        assert!(!c.is_over(), "request 2 still runs");
        c.finished(RequestId(99), SimTime(12));
        assert!(!c.is_over(), "unknown ids are ignored");
        c.finished(RequestId(2), SimTime(13));
        assert!(c.is_over() && c.ended_by_count());
    }

    #[test]
    fn a_client_sends_again_its_reissue_delay_after_its_request_ends() {
        let delay = ReissueDelay::new(&DelayDist::Fixed { value: 0.05 }, 7, 0, 1);
        let mut c = ClosedLoop::start(SimTime(0), &M[..1], 1, Some(SimTime::from_secs_f64(1.0)), None, delay);
        let (t, m) = c.pop().unwrap();
        assert_eq!(t, SimTime(0), "the first send is at the phase start");
        c.issued(RequestId(0), m);
        c.finished(RequestId(0), SimTime::from_secs_f64(0.4));
        assert_eq!(c.peek(), Some(SimTime::from_secs_f64(0.45)));
        let (_, m) = c.pop().unwrap();
        c.issued(RequestId(1), m);
        // A re-send that would fall past the window end is not made, and the phase is over.
        c.finished(RequestId(1), SimTime::from_secs_f64(0.97));
        assert_eq!(c.peek(), None);
        assert!(c.is_over());
    }

    #[test]
    fn random_reissue_delays_stay_in_range_and_repeat_with_the_seed() {
        let draws = |seed| {
            let mut d = ReissueDelay::new(&DelayDist::Uniform { min: 0.01, max: 0.03 }, seed, 1, 2);
            (0..50).map(|i| d.draw(M[i % 2])).collect::<Vec<_>>()
        };
        let a = draws(3);
        assert_eq!(a, draws(3));
        assert_ne!(a, draws(4));
        assert!(a.iter().all(|d| (SimDuration::from_millis(10)..=SimDuration::from_millis(30)).contains(d)));
        let mut e = ReissueDelay::new(&DelayDist::Exponential { mean: 0.02 }, 3, 0, 1);
        let mean = (0..4000).map(|_| e.draw(M[0]).as_secs_f64()).sum::<f64>() / 4000.0;
        assert!((mean - 0.02).abs() < 0.002, "{mean}");
    }
}
