//! The workload generator: phases one after another, each an arrival process (or closed-loop
//! clients, or a replayed trace) x a model mix x length distributions, deterministic from a seed.
//!
//! Common random numbers: every phase draws its inter-arrival times, its model choices and each
//! model's lengths and prefixes from separate streams (`streams`), so the request stream depends
//! only on (workload, seed), never on the scenario variant or on simulated timing. In a closed
//! loop the k-th request of model m in a phase gets the same lengths whatever the completion
//! order; only ids (issue order) and send times follow the timing.
//!
//! Open-loop phases are generated lazily (one pending arrival at a time); closed-loop phases hold
//! O(concurrency) state. This module does not simulate or send anything: a driver (the simulator
//! or the live harness) peeks the next issue time, pops requests, and reports completions.

use super::arrivals::ArrivalClock;
use super::closed_loop::{ClosedLoop, ReissueDelay};
pub use super::error::WorkloadError;
use super::plan::{PhaseKind, PhasePlan, PrefixPlan, compile};
use super::replay::{ReplayCursor, ReplayItem, ReplayStats, scale};
use super::sessions::{Sessions, SessionsSetup};
use super::spec::{PrefixRef, RequestSpec};
use super::streams::{Stream, rng};
use crate::engine::PromptContent;
use crate::ids::{ModelId, RequestId};
use crate::scenario::WorkloadSpec;
use crate::time::{SimDuration, SimTime};
use rand::Rng;
use rand_pcg::Pcg64Mcg;
use std::path::Path;

/// Generates a scenario's request stream. Drive it with [`peek_time`](Self::peek_time),
/// [`pop`](Self::pop) and [`on_request_finished`](Self::on_request_finished), in time order.
///
/// Phase rules: a phase starts when the previous one ends. A time-bounded phase (`duration_s`)
/// ends at its start + duration (open loop: no arrival after it; closed loop: no send at or after
/// it, requests in flight still finish but their completions send nothing). A count-bounded phase
/// (`num_requests`) ends when its last request is issued (open loop) or has ended (closed loop).
/// With both bounds, whichever comes first. A replay phase also ends at its file's last row.
#[derive(Debug)]
pub struct WorkloadGenerator {
    seed: u64,
    num_models: usize,
    plans: Vec<PhasePlan>,
    prefix: Option<PrefixPlan>,
    /// The phase issuing now; `None` once everything is issued.
    current: Option<Active>,
    /// For a time-bounded closed-loop `current`: the next phase, started at the window end. It
    /// issues once the closed loop has no pending send (a time-ordered driver then is past the end).
    lookahead: Option<Active>,
    next_id: u64,
    /// An error met while generating (none today: replay files are read in full at construction;
    /// kept so sources that read lazily can report one).
    error: Option<WorkloadError>,
}

/// A running phase.
#[derive(Debug)]
struct Active {
    phase: usize,
    start: SimTime,
    /// One stream per model for lengths and prefixes, drawn in that model's request order.
    attrs: Vec<Pcg64Mcg>,
    /// Model-choice stream.
    choice: Pcg64Mcg,
    kind: ActiveKind,
}

#[derive(Debug)]
enum ActiveKind {
    Open(OpenLoop),
    Closed(ClosedLoop),
    Sessions(Box<Sessions>),
}

impl Active {
    fn peek(&self) -> Option<SimTime> {
        match &self.kind {
            ActiveKind::Open(o) => o.pending.as_ref().map(|p| p.time),
            ActiveKind::Closed(c) => c.peek(),
            ActiveKind::Sessions(s) => s.peek(),
        }
    }

    /// A phase whose sends wait on completions, and its window end: (is over, ended by count, end).
    fn completion_driven(&self) -> Option<(bool, bool, Option<SimTime>)> {
        match &self.kind {
            ActiveKind::Open(_) => None,
            ActiveKind::Closed(c) => Some((c.is_over(), c.ended_by_count(), c.end())),
            ActiveKind::Sessions(s) => Some((s.is_over(), s.ended_by_count(), s.end())),
        }
    }
}

/// An open-loop (or replay) phase: the next arrival is computed one ahead.
#[derive(Debug)]
struct OpenLoop {
    source: OpenSource,
    end: Option<SimTime>,
    limit: Option<u64>,
    issued: u64,
    last: Option<SimTime>,
    pending: Option<Pending>,
}

#[derive(Debug)]
enum OpenSource {
    Clock(ArrivalClock),
    Replay {
        cursor: ReplayCursor,
        /// Gaps are divided by this.
        speedup: f64,
    },
}

#[derive(Clone, Debug)]
struct Pending {
    time: SimTime,
    /// Model and lengths fixed by a replayed row.
    given: Option<ReplayItem>,
}

impl OpenLoop {
    /// Computes the next arrival; returns the phase's end time when there is none.
    fn advance(&mut self, start: SimTime) -> Result<Option<SimTime>, WorkloadError> {
        self.pending = None;
        let last = self.last.unwrap_or(start);
        if self.limit.is_some_and(|n| self.issued >= n) {
            return Ok(Some(last));
        }
        let (offset, given) = match &mut self.source {
            OpenSource::Clock(c) => match c.next_offset() {
                Some(secs) => (SimDuration::from_secs_f64(secs), None),
                // A ramp past its last arrival: the phase runs to its time bound.
                None => return Ok(Some(self.end.unwrap_or(last))),
            },
            OpenSource::Replay { cursor, speedup } => match cursor.next_item() {
                Some(item) => (scale(item.offset_ns, *speedup), Some(item)),
                // The window ran out: the phase ends at the window's end, or with its last
                // request when the window is open-ended.
                None => return Ok(Some(self.end.unwrap_or(last))),
            },
        };
        let time = start + offset;
        if let Some(end) = self.end.filter(|&e| time > e) {
            return Ok(Some(end));
        }
        self.pending = Some(Pending { time, given });
        Ok(None)
    }
}

impl WorkloadGenerator {
    /// Builds the generator for a scenario with `num_models` models (mix `ModelId`s index them);
    /// `base_dir` resolves relative replay paths. A run-dir replay then names models `"0"`, `"1"`,
    /// ...; use [`with_model_keys`](Self::with_model_keys) to map a run dir's model keys.
    pub fn new(
        spec: &WorkloadSpec,
        num_models: usize,
        seed: u64,
        base_dir: &Path,
    ) -> Result<Self, WorkloadError> {
        let keys: Vec<String> = (0..num_models).map(|i| i.to_string()).collect();
        Self::with_model_keys(spec, &keys, seed, base_dir)
    }

    /// Like [`new`](Self::new), with the scenario's model keys (`Scenario::models[i].name`, indexed
    /// by `ModelId`) so a replayed run dir's `model` column maps to the right models.
    pub fn with_model_keys(
        spec: &WorkloadSpec,
        model_keys: &[String],
        seed: u64,
        base_dir: &Path,
    ) -> Result<Self, WorkloadError> {
        let (plans, prefix) = compile(spec, model_keys, base_dir, seed)?;
        let mut g = WorkloadGenerator {
            seed,
            num_models: model_keys.len(),
            plans,
            prefix,
            current: None,
            lookahead: None,
            next_id: 0,
            error: None,
        };
        g.current = g.start_phase(0, SimTime::ZERO)?;
        g.lookahead = g.lookahead_for_current()?;
        Ok(g)
    }

    /// Issue time of the next request whose time is already known (open loop: the next arrival;
    /// closed loop: a free client's next send), or `None` if none is known now (closed loop
    /// waiting on completions) or all are issued. It may move earlier after
    /// [`on_request_finished`](Self::on_request_finished); peek again after each call.
    pub fn peek_time(&self) -> Option<SimTime> {
        let current = self.current.as_ref()?;
        current.peek().or_else(|| match current.kind {
            ActiveKind::Closed(_) | ActiveKind::Sessions(_) => self.lookahead.as_ref().and_then(Active::peek),
            ActiveKind::Open(_) => None,
        })
    }

    /// Pops the request announced by [`peek_time`](Self::peek_time) (ids from 0 in issue order).
    pub fn pop(&mut self) -> Option<RequestSpec> {
        loop {
            let active = self.current.as_mut()?;
            let plan = &self.plans[active.phase];
            let id = RequestId(self.next_id);
            match &mut active.kind {
                ActiveKind::Open(o) => {
                    let pending = o.pending.take()?;
                    let time = pending.time;
                    let model = match pending.given.as_ref().and_then(|g| g.model) {
                        Some(m) => m,
                        None => match &plan.mix {
                            Some(mix) => mix.pick(&mut active.choice),
                            None => ModelId(0),
                        },
                    };
                    let req = draw_request(plan, self.prefix.as_ref(), active, id, model, pending);
                    self.next_id += 1;
                    if let ActiveKind::Open(o) = &mut active.kind {
                        o.issued += 1;
                        o.last = Some(time);
                        match o.advance(active.start) {
                            Ok(None) => {}
                            Ok(Some(end)) => {
                                let next = active.phase + 1;
                                let started = self.start_phase(next, end);
                                self.switch_to(started);
                            }
                            Err(e) => self.fail(e),
                        }
                    }
                    return Some(req);
                }
                ActiveKind::Closed(c) => {
                    if let Some((time, model)) = c.pop() {
                        c.issued(id, model);
                        let over = c.is_over();
                        let req = draw_request(
                            plan,
                            self.prefix.as_ref(),
                            active,
                            id,
                            model,
                            Pending { time, given: None },
                        );
                        self.next_id += 1;
                        if over {
                            self.current = self.lookahead.take();
                            self.refresh_lookahead();
                        }
                        return Some(req);
                    }
                    // No client is free: the next request is the lookahead phase's, which starts
                    // at this phase's window end (the caller, popping it, is past that end).
                    self.current = Some(self.lookahead.take()?);
                    self.refresh_lookahead();
                }
                ActiveKind::Sessions(sessions) => {
                    if let Some(req) = sessions.pop(id) {
                        let over = sessions.is_over();
                        self.next_id += 1;
                        if over {
                            self.current = self.lookahead.take();
                            self.refresh_lookahead();
                        }
                        return Some(req);
                    }
                    // As for closed loop: the next request is the lookahead phase's.
                    self.current = Some(self.lookahead.take()?);
                    self.refresh_lookahead();
                }
            }
        }
    }

    /// Tells the generator request `id` ended (any status) at `now`, as its client saw it. A
    /// closed-loop client sends its next request its re-issue delay after `now` (unless the
    /// phase's bounds are reached); a closed-loop phase ends,
    /// and the next starts, when its last request ends. Ids of open-loop or earlier phases are
    /// ignored.
    pub fn on_request_finished(&mut self, id: RequestId, now: SimTime) {
        let Some(active) = self.current.as_mut() else { return };
        match &mut active.kind {
            ActiveKind::Open(_) => return,
            ActiveKind::Closed(c) => c.finished(id, now),
            ActiveKind::Sessions(s) => s.finished(id, now),
        }
        let Some((over, by_count, _)) = active.completion_driven() else { return };
        if !over {
            return;
        }
        if by_count {
            // All requests ended before the window end: the next phase starts now.
            let next = active.phase + 1;
            let started = self.start_phase(next, now);
            self.switch_to(started);
        } else {
            self.current = self.lookahead.take();
            self.refresh_lookahead();
        }
    }

    /// True when no request will ever be issued again.
    pub fn is_exhausted(&self) -> bool {
        self.current.is_none()
    }

    /// Number of requests the workload will issue, if known in advance (count-bounded phases
    /// without a time bound, and replays), else `None`.
    pub fn planned_requests(&self) -> Option<u64> {
        self.plans.iter().map(PhasePlan::planned).sum()
    }

    /// What each replay phase did with its file's rows (phase index, counts), in phase order.
    pub fn replay_stats(&self) -> Vec<(usize, ReplayStats)> {
        self.plans
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.kind {
                PhaseKind::Replay(r) => Some((i, r.stats.clone())),
                _ => None,
            })
            .collect()
    }

    /// The error that stopped the stream early, if any (replay files are read and checked in full
    /// at construction, so today there is none). Drivers should check it once the generator is
    /// exhausted.
    pub fn error(&self) -> Option<&WorkloadError> {
        self.error.as_ref()
    }

    /// Starts phase `idx` at `at`, skipping open-loop phases that issue nothing (they end at their
    /// time bound). `Ok(None)` when there is no phase left.
    fn start_phase(&self, mut idx: usize, mut at: SimTime) -> Result<Option<Active>, WorkloadError> {
        while let Some(plan) = self.plans.get(idx) {
            let phase = idx as u32;
            let end = plan.duration.map(|d| at + d);
            let kind = match &plan.kind {
                PhaseKind::Closed { concurrency, models, reissue_delay } => {
                    let delay = ReissueDelay::new(reissue_delay, self.seed, phase, self.num_models);
                    ActiveKind::Closed(ClosedLoop::start(at, models, *concurrency, end, plan.limit, delay))
                }
                PhaseKind::Open(process) => ActiveKind::Open(OpenLoop {
                    source: OpenSource::Clock(ArrivalClock::new(
                        process.clone(),
                        rng(self.seed, Stream::Arrivals { phase }),
                    )),
                    end,
                    limit: plan.limit,
                    issued: 0,
                    last: None,
                    pending: None,
                }),
                PhaseKind::Sessions(p) => ActiveKind::Sessions(Box::new(Sessions::start(SessionsSetup {
                    plan: p,
                    lengths: &plan.lengths,
                    prefix: self.prefix,
                    seed: self.seed,
                    phase,
                    start: at,
                    end,
                    limit: plan.limit,
                }))),
                PhaseKind::Replay(r) => ActiveKind::Open(OpenLoop {
                    source: OpenSource::Replay { cursor: r.open(), speedup: r.speedup },
                    end,
                    limit: plan.limit,
                    issued: 0,
                    last: None,
                    pending: None,
                }),
            };
            let mut active = Active {
                phase: idx,
                start: at,
                attrs: (0..self.num_models as u32)
                    .map(|model| rng(self.seed, Stream::Attributes { phase, model }))
                    .collect(),
                choice: rng(self.seed, Stream::ModelChoice { phase }),
                kind,
            };
            let ended = match &mut active.kind {
                ActiveKind::Open(o) => o.advance(at)?,
                ActiveKind::Closed(c) => c.peek().is_none().then(|| end.unwrap_or(at)),
                ActiveKind::Sessions(s) => s.peek().is_none().then(|| end.unwrap_or(at)),
            };
            match ended {
                None => return Ok(Some(active)),
                Some(end) => {
                    idx += 1;
                    at = end;
                }
            }
        }
        Ok(None)
    }

    /// The phase after a time-bounded closed-loop `current`, started at its window end.
    fn lookahead_for_current(&self) -> Result<Option<Active>, WorkloadError> {
        match &self.current {
            Some(a) => match a.completion_driven().and_then(|(_, _, end)| end) {
                Some(end) => self.start_phase(a.phase + 1, end),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    fn refresh_lookahead(&mut self) {
        match self.lookahead_for_current() {
            Ok(l) => self.lookahead = l,
            Err(e) => self.fail(e),
        }
    }

    fn switch_to(&mut self, started: Result<Option<Active>, WorkloadError>) {
        match started {
            Ok(a) => {
                self.current = a;
                self.refresh_lookahead();
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: WorkloadError) {
        self.error = Some(e);
        self.current = None;
        self.lookahead = None;
    }
}

/// Draws one request's lengths and prefix from its model's stream, in a fixed order: prompt,
/// output, then prefix membership and group; a replayed row gives all of them.
fn draw_request(
    plan: &PhasePlan,
    prefix: Option<&PrefixPlan>,
    active: &mut Active,
    id: RequestId,
    model: ModelId,
    pending: Pending,
) -> RequestSpec {
    let rng = &mut active.attrs[model.index()];
    // A replayed row brings its lengths and content; the synthetic prefix is never added to it.
    if let Some(g) = pending.given {
        return RequestSpec {
            id,
            phase: active.phase as u32,
            arrival: pending.time,
            model,
            num_prompt_tokens: g.prompt,
            max_tokens: g.output,
            content: g.content,
        };
    }
    let l = &plan.lengths[model.index()];
    let num_prompt_tokens = l.input.sample(rng);
    let max_tokens = l.output.sample(rng);
    let prefix = prefix.and_then(|p| {
        let u: f64 = rng.random();
        let g = rng.random_range(0..p.groups);
        (u < p.fraction).then(|| PrefixRef {
            group: u64::from(model.0) * u64::from(p.groups) + u64::from(g),
            num_tokens: p.tokens.min(num_prompt_tokens),
        })
    });
    RequestSpec {
        id,
        phase: active.phase as u32,
        arrival: pending.time,
        model,
        num_prompt_tokens,
        max_tokens,
        content: PromptContent::from(prefix),
    }
}

/// All requests of an open-loop-only workload, in issue order (tests, live-harness dry runs).
/// Errors on a closed-loop phase, whose send times depend on completions.
pub fn open_loop_requests(
    spec: &WorkloadSpec,
    num_models: usize,
    seed: u64,
    base_dir: &Path,
) -> Result<Vec<RequestSpec>, WorkloadError> {
    if let Some((index, p)) = spec.phases.iter().enumerate().find(|(_, p)| {
        matches!(
            p.arrival,
            crate::scenario::ArrivalSpec::ClosedLoop { .. } | crate::scenario::ArrivalSpec::Sessions(_)
        )
    }) {
        return Err(WorkloadError::ClosedLoop { index, name: p.name.clone() });
    }
    let mut g = WorkloadGenerator::new(spec, num_models, seed, base_dir)?;
    let mut out = Vec::with_capacity(g.planned_requests().map_or(0, |n| n.min(1 << 20) as usize));
    while let Some(r) = g.pop() {
        out.push(r);
    }
    match g.error.take() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
