//! The discrete-event driver: workload -> router -> instances, on one event queue.
//!
//! Per simulated instant the loop (1) ends the steps that finish then, (2) handles arrivals,
//! router polls and samples due then, and only then (3) starts a new step on every idle instance
//! that has work — so a request arriving at the same instant a step ends joins the next batch.
//! Step ends live in a small per-instance array rather than the heap (there are a handful of
//! instances and millions of steps). Rows go to an [`Observer`]; nothing here writes files.
//!
//! Colocated instances (several on one GPU) share its elastic KV pool, which the driver owns
//! ([`Cluster`]) and lends to the instance stepping; a step begun while co-tenants are busy is
//! slowed by the cluster's contention model, evaluated once every instance that starts at that
//! instant has started. Pages freed by one tenant wake its co-tenants.
//!
//! Fast-forward (on by default, [`SimOptions::fast_forward`]): an instance whose next steps are
//! pure decode runs them as one stretch whose end sits in the step-end array; the driver brings it
//! to the exact step-by-step state wherever an event needs it (an arrival routed to it cuts the
//! stretch after the step in flight; polls and samples sync its blocks; the drain applies it).
//! Results are byte-identical with it off. Colocated instances never fast-forward (elastic ones
//! alone on their GPU do, settling pages with its pool as they would step by step).
//! Inter-token gaps are collected per instance and handed to the observer as one histogram per
//! instance at the end of the run.
//!
//! A step's tokens, and the end of the requests it finishes, are recorded as the client sees
//! them: the instance's output delay after the step ends (`perf_model`); a closed-loop client's
//! next send follows that instant. The row is written, and the LB's in-flight count drops, when
//! the step ends (the real LB sees the stream end one output delay later: a deviation of that
//! size, zero for vLLM's prior).

use crate::cluster::Cluster;
use crate::des::EventQueue;
use crate::engine::{Request, StepEvents};
use crate::ids::{InstanceId, ModelId};
use crate::instance::Instance;
use crate::observe::Observer;
use crate::router::{PolledLoad, ReplicaSnapshot, RouteRequest, Router, build_router, route_block_hashes};
use crate::scenario::Scenario;
use crate::time::{SimDuration, SimTime};
use crate::trace::{InstanceRow, RequestRow, RequestStatus, TokenRow};
use crate::workload::{RequestSpec, WorkloadError, WorkloadGenerator};
use std::io;
use std::path::Path;

/// Why a simulation could not run to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The workload could not be generated (bad replay file, ...).
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// An observer failed to record a row (disk full, ...).
    #[error("writing the run's rows failed: {0}")]
    Io(#[from] io::Error),
    /// The run outgrew a `[output]` limit while it went (what the plan checked before work could
    /// not show: a closed loop, steps far longer than planned).
    #[error(
        "output.max_samples: the run passed {limit} instances.csv rows at simulated t = {at_s:.0} s \
         (steps much longer than the workload's plan: check the step-time source, e.g. a profile's \
         coefficients); raise output.max_samples to let it go on"
    )]
    TooManySamples {
        /// The limit.
        limit: u64,
        /// Simulated time when it was passed, seconds.
        at_s: f64,
    },
}

/// Counters of a finished simulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Requests issued by the workload.
    pub requests: u64,
    /// Engine steps executed across all instances.
    pub steps: u64,
    /// Simulated time of the last event.
    pub end_time: SimTime,
}

/// Options that do not change results.
pub struct SimOptions<'a> {
    /// Called with the number of finished requests, every few thousand requests.
    pub progress: Option<&'a mut dyn FnMut(u64)>,
    /// Fast-forward stretches of pure-decode steps (default on). Off runs every step one by one;
    /// the output is byte-identical either way.
    pub fast_forward: bool,
}

impl Default for SimOptions<'_> {
    fn default() -> Self {
        SimOptions { progress: None, fast_forward: true }
    }
}

#[derive(Clone, Copy, Debug)]
enum Event {
    /// The workload's next request is due (stale when `generation` moved on).
    Arrival { generation: u64 },
    /// The LB polls every instance's /metrics.
    Poll,
    /// Write an instances.csv sample of every instance.
    Sample,
    /// Requests still unfinished now end as timeouts.
    DrainDeadline,
}

/// Where an instance sits in its model's replica list.
#[derive(Clone, Copy, Debug)]
struct ReplicaSlot {
    model: ModelId,
    index: usize,
}

/// Runs one scenario variant to completion, reporting every row to `observer`.
pub fn simulate(
    scenario: &Scenario,
    base_dir: &Path,
    observer: &mut dyn Observer,
    opts: SimOptions<'_>,
) -> Result<SimStats, SimError> {
    let workload = scenario_workload(scenario, base_dir)?;
    Simulation::new(scenario, workload, observer, opts).run()
}

/// The scenario's request stream, as `simulate` and `live run` both draw it: a replayed trace's
/// model column maps to the scenario's model keys (`Scenario::models[i].name`), and relative
/// replay paths resolve against `base_dir`.
pub fn scenario_workload(scenario: &Scenario, base_dir: &Path) -> Result<WorkloadGenerator, WorkloadError> {
    let keys: Vec<String> = scenario.models.iter().map(|m| m.name.clone()).collect();
    WorkloadGenerator::with_model_keys(&scenario.workload, &keys, scenario.seed, base_dir)
}

struct Simulation<'s, 'o, 'p> {
    scenario: &'s Scenario,
    workload: WorkloadGenerator,
    observer: &'o mut dyn Observer,
    progress: Option<&'p mut dyn FnMut(u64)>,
    instances: Vec<Instance>,
    step_end: Vec<Option<SimTime>>,
    needs_step: Vec<bool>,
    router: Box<dyn Router>,
    replicas: Vec<Vec<ReplicaSnapshot>>,
    slots: Vec<ReplicaSlot>,
    queue: EventQueue<Event>,
    /// Elastic pools per GPU and who shares which GPU.
    cluster: Cluster,
    /// Whether any GPU has several instances (contention and wake-ups apply).
    colocated: bool,
    /// Steps begun at the current instant, with their uncontended durations.
    started: Vec<(usize, SimDuration)>,
    arrival_generation: u64,
    pending_arrival: Option<SimTime>,
    drain_scheduled: bool,
    events: StepEvents,
    record_tokens: bool,
    stats: SimStats,
    finished: u64,
    /// Some `needs_step` is set.
    any_needs_step: bool,
    /// The `requests.csv` row, refilled for every request (its strings keep their buffers).
    row: RequestRow,
    /// One `instances.csv` row per instance, names filled once.
    sample_rows: Vec<InstanceRow>,
    /// `instances.csv` rows written so far (bounded by `output.max_samples`).
    samples_written: u64,
    /// Periodic events paused over idle time.
    paused: Paused,
}

/// Which periodic events wait for the next arrival (see `Simulation::resume_periodic`).
#[derive(Clone, Copy, Debug, Default)]
struct Paused {
    sample: bool,
    poll: bool,
}

impl<'s, 'o, 'p> Simulation<'s, 'o, 'p> {
    fn new(
        scenario: &'s Scenario,
        workload: WorkloadGenerator,
        observer: &'o mut dyn Observer,
        opts: SimOptions<'p>,
    ) -> Self {
        let record_tokens = observer.wants_tokens();
        let mut instances: Vec<Instance> =
            (0..scenario.instances.len()).map(|i| Instance::new(scenario, InstanceId(i as u32))).collect();
        for inst in &mut instances {
            inst.scheduler_mut().set_record_tokens(record_tokens);
            inst.set_fast_forward(opts.fast_forward);
        }
        let mut replicas = vec![Vec::new(); scenario.models.len()];
        let mut slots = Vec::with_capacity(instances.len());
        for (i, spec) in scenario.instances.iter().enumerate() {
            let list: &mut Vec<ReplicaSnapshot> = &mut replicas[spec.model.index()];
            slots.push(ReplicaSlot { model: spec.model, index: list.len() });
            list.push(ReplicaSnapshot {
                instance: InstanceId(i as u32),
                healthy: true,
                in_flight: 0,
                polled: Some(PolledLoad::default()),
            });
        }
        let router_seed = scenario.seed ^ 0x726f_7574_6572; // "router": its own stream
        let n = instances.len();
        let cluster = Cluster::new(scenario);
        let colocated = (0..n).any(|i| cluster.is_colocated(InstanceId(i as u32)));
        Simulation {
            scenario,
            workload,
            observer,
            progress: opts.progress,
            instances,
            step_end: vec![None; n],
            needs_step: vec![false; n],
            router: build_router(&scenario.router, scenario.models.len(), router_seed),
            replicas,
            slots,
            queue: EventQueue::new(),
            cluster,
            colocated,
            started: Vec::new(),
            arrival_generation: 0,
            pending_arrival: None,
            drain_scheduled: false,
            events: StepEvents::default(),
            record_tokens,
            stats: SimStats::default(),
            finished: 0,
            any_needs_step: false,
            row: empty_request_row(),
            samples_written: 0,
            sample_rows: scenario
                .instances
                .iter()
                .map(|spec| InstanceRow {
                    time_s: 0.0,
                    instance: spec.name.clone(),
                    model: scenario.models[spec.model.index()].name.clone(),
                    gpu: spec.gpu.0,
                    num_requests_running: 0,
                    num_requests_waiting: 0,
                    kv_cache_usage: 0.0,
                    num_preemptions_total: 0,
                    mapped_pages: None,
                    gpu_pool_free_bytes: None,
                })
                .collect(),
            paused: Paused::default(),
        }
    }

    fn run(mut self) -> Result<SimStats, SimError> {
        self.run_events()?;
        for (i, inst) in self.instances.iter().enumerate() {
            self.stats.steps += inst.num_stretch_steps();
            let spec = &self.scenario.instances[i];
            let model = &self.scenario.models[spec.model.index()].name;
            self.observer.on_itl_histogram(model, &spec.name, inst.itl_histogram())?;
        }
        Ok(self.stats)
    }

    fn run_events(&mut self) -> Result<(), SimError> {
        self.queue.push(SimTime::ZERO, Event::Sample);
        self.queue.push(SimTime::ZERO + self.poll_offset(), Event::Poll);
        self.schedule_next_arrival();
        loop {
            let next_step = self.step_end.iter().flatten().min().copied();
            let next_event = self.queue.peek_time();
            let now = match (next_step, next_event) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if self.is_finished() {
                // Only periodic events are left: take a last sample at the end of work.
                self.sample(self.stats.end_time)?;
                break;
            }
            self.stats.end_time = now;
            // (1) steps ending now, in instance order.
            for i in 0..self.instances.len() {
                if self.step_end[i] == Some(now) {
                    self.step_end[i] = None;
                    self.end_step(i, now)?;
                }
            }
            // (2) events due now, in scheduling order (handlers may add more at `now`).
            while self.queue.peek_time() == Some(now) {
                if let Some((_, ev)) = self.queue.pop() {
                    self.handle(ev, now)?;
                }
            }
            // (3) idle instances with work start a step.
            if !std::mem::take(&mut self.any_needs_step) {
                continue;
            }
            for i in 0..self.instances.len() {
                if std::mem::take(&mut self.needs_step[i]) && self.step_end[i].is_none() {
                    let pool = self.cluster.pool_mut(self.instances[i].gpu());
                    if let Some(end) = self.instances[i].begin_stretch(now, pool) {
                        self.step_end[i] = Some(end);
                        continue;
                    }
                    if let Some(d) = self.instances[i].begin_step_on(now, pool) {
                        self.step_end[i] = Some(now + d.max(SimDuration(1)));
                        self.stats.steps += 1;
                        if self.colocated {
                            self.started.push((i, d));
                        }
                    }
                }
            }
            self.apply_contention(now);
        }
        Ok(())
    }

    /// Slows the steps begun at `now` by the steps in flight on their co-tenants (those begun now
    /// included), per the cluster's contention model.
    fn apply_contention(&mut self, now: SimTime) {
        for k in 0..self.started.len() {
            let (i, d) = self.started[k];
            let step_end = &self.step_end;
            let instances = &self.instances;
            let own = instances[i].step_load();
            let factor = self.cluster.step_factor(InstanceId(i as u32), own, |o| {
                step_end[o.index()].is_some().then(|| instances[o.index()].step_load())
            });
            if factor != 1.0 {
                let slowed = SimDuration::from_secs_f64(d.as_secs_f64() * factor);
                self.step_end[i] = Some(now + slowed.max(SimDuration(1)));
            }
        }
        self.started.clear();
    }

    fn is_finished(&self) -> bool {
        self.workload.is_exhausted()
            && self.pending_arrival.is_none()
            && self.step_end.iter().all(Option::is_none)
            && self.instances.iter().all(|i| !i.has_unfinished_requests())
    }

    fn schedule_next_arrival(&mut self) {
        let next = self.workload.peek_time();
        if next.is_some() && next != self.pending_arrival {
            self.arrival_generation += 1;
            self.pending_arrival = next;
            if let Some(t) = next {
                self.queue.push(t, Event::Arrival { generation: self.arrival_generation });
            }
        } else if next.is_none() {
            self.pending_arrival = None;
            if self.workload.is_exhausted() && !self.drain_scheduled {
                self.drain_scheduled = true;
                let deadline = SimDuration::from_secs_f64(self.scenario.output.drain_timeout_s);
                self.queue.push(self.stats.end_time + deadline, Event::DrainDeadline);
            }
        }
    }

    fn handle(&mut self, ev: Event, now: SimTime) -> Result<(), SimError> {
        match ev {
            Event::Arrival { generation } => {
                if generation != self.arrival_generation {
                    return Ok(());
                }
                self.resume_periodic(now)?;
                self.pending_arrival = None;
                while self.workload.peek_time().is_some_and(|t| t <= now) {
                    match self.workload.pop() {
                        Some(spec) => self.arrive(spec, now)?,
                        None => break,
                    }
                }
                self.schedule_next_arrival();
            }
            Event::Poll => {
                self.poll(now);
                if self.is_idle() {
                    // Idle polls would all read the same zeros: resume at the next arrival.
                    self.paused.poll = true;
                } else if !self.is_finished() {
                    self.queue.push(now + self.poll_dt(), Event::Poll);
                }
            }
            Event::Sample => {
                self.sample(now)?;
                if self.is_idle() {
                    // Idle samples would all repeat this one: resume at the next arrival, so idle
                    // simulated time (a slow replay, a tiny interval) costs nothing.
                    self.paused.sample = true;
                } else if !self.is_finished() {
                    self.queue.push(now + self.sample_dt(), Event::Sample);
                }
            }
            Event::DrainDeadline => self.drain(now)?,
        }
        Ok(())
    }

    /// No step in flight and no request anywhere: nothing changes until the next arrival.
    fn is_idle(&self) -> bool {
        self.step_end.iter().all(Option::is_none)
            && self.instances.iter().all(|i| !i.has_unfinished_requests())
    }

    fn sample_dt(&self) -> SimDuration {
        SimDuration::from_secs_f64(self.scenario.output.sample_interval_s).max(SimDuration(1))
    }

    fn poll_dt(&self) -> SimDuration {
        SimDuration::from_secs_f64(self.scenario.router.poll_interval_s).max(SimDuration(1))
    }

    /// Where the poll grid starts (`router.poll_offset_s`).
    fn poll_offset(&self) -> SimDuration {
        SimDuration::from_secs_f64(self.scenario.router.poll_offset_s)
    }

    /// Restarts the periodic events paused over idle time on their grid (multiples of their
    /// interval from 0, or from `router.poll_offset_s` for polls), before the arrival at `now` is
    /// handled: a grid point at `now` is taken at once, as it would have been without the pause;
    /// the skipped ones all equal the last taken.
    fn resume_periodic(&mut self, now: SimTime) -> Result<(), SimError> {
        // Polls only pause after the first, so `now` is past the grid's start.
        let next_on_grid = |dt: SimDuration, from: SimDuration| {
            SimTime(now.0.saturating_sub(from.0).div_ceil(dt.0).saturating_mul(dt.0).saturating_add(from.0))
        };
        if std::mem::take(&mut self.paused.sample) {
            let (dt, mut at) = (self.sample_dt(), next_on_grid(self.sample_dt(), SimDuration(0)));
            if at == now {
                self.sample(now)?;
                at = now + dt;
            }
            self.queue.push(at, Event::Sample);
        }
        if std::mem::take(&mut self.paused.poll) {
            let (dt, mut at) = (self.poll_dt(), next_on_grid(self.poll_dt(), self.poll_offset()));
            if at == now {
                self.poll(now);
                at = now + dt;
            }
            self.queue.push(at, Event::Poll);
        }
        Ok(())
    }

    fn arrive(&mut self, spec: RequestSpec, now: SimTime) -> Result<(), SimError> {
        self.stats.requests += 1;
        let hashes = route_block_hashes(&self.scenario.router, &spec.content);
        let route = RouteRequest {
            model: spec.model,
            num_prompt_tokens: spec.num_prompt_tokens,
            block_hashes: &hashes,
        };
        let replicas = &self.replicas[spec.model.index()];
        let Some(pick) = self.router.route(&route, replicas) else {
            let req = Request::new(&spec, now);
            let reason = "no healthy replica serves this model".to_string();
            return self.record_rejected(&req, None, reason, now);
        };
        let inst = replicas[pick].instance;
        match self.instances[inst.index()].add_request(Request::new(&spec, now)) {
            Ok(()) => {
                self.replicas[spec.model.index()][pick].in_flight += 1;
                let instance = &mut self.instances[inst.index()];
                if instance.in_stretch() {
                    let pool = self.cluster.pool_mut(instance.gpu());
                    self.step_end[inst.index()] = instance.interrupt(now, pool);
                }
                self.wake(inst.index());
                Ok(())
            }
            Err(rej) => self.record_rejected(&rej.request, Some(inst), rej.reason, now),
        }
    }

    fn end_step(&mut self, i: usize, now: SimTime) -> Result<(), SimError> {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        if self.instances[i].in_stretch() {
            // A stretch whose next steps were only now computed goes on, nothing applied.
            let pool = self.cluster.pool_mut(self.instances[i].gpu());
            if let Some(end) = self.instances[i].end_stretch_step(now, &mut events, pool) {
                self.step_end[i] = Some(end);
                self.events = events;
                return Ok(());
            }
        } else {
            let gpu = self.instances[i].gpu();
            self.instances[i].end_step_on(now, &mut events, self.cluster.pool_mut(gpu));
            if self.colocated && self.instances[i].is_elastic() {
                // Pages it freed may let a co-tenant blocked on the pool go on.
                for k in 0..self.cluster.tenants(gpu).len() {
                    let o = self.cluster.tenants(gpu)[k];
                    self.wake(o.index());
                }
            }
            self.instances[i].record_itl_gaps(&mut events);
        }
        // The client sees the step's tokens (and the end of finished requests) this much later.
        let seen = now + self.instances[i].output_delay();
        if self.record_tokens {
            for &(id, index) in &events.tokens {
                let row = TokenRow { id: id.0, index, time_s: seen.as_secs_f64(), tokens: 1 };
                self.observer.on_token(&row)?;
            }
        }
        for req in events.finished.drain(..) {
            self.finish(&req, InstanceId(i as u32), RequestStatus::Ok, String::new(), seen)?;
        }
        self.events = events;
        self.wake(i);
        Ok(())
    }

    /// Instance `i` may have work: it starts a step after this instant's events if idle.
    fn wake(&mut self, i: usize) {
        self.needs_step[i] = true;
        self.any_needs_step = true;
    }

    /// Records a request that ended on `inst` and releases its LB slot.
    fn finish(
        &mut self,
        req: &Request,
        inst: InstanceId,
        status: RequestStatus,
        error: String,
        now: SimTime,
    ) -> Result<(), SimError> {
        let slot = self.slots[inst.index()];
        let snap = &mut self.replicas[slot.model.index()][slot.index];
        snap.in_flight = snap.in_flight.saturating_sub(1);
        fill_request_row(&mut self.row, self.scenario, req, Some(inst), status, error, now);
        self.record(req, now)
    }

    fn record_rejected(
        &mut self,
        req: &Request,
        inst: Option<InstanceId>,
        reason: String,
        now: SimTime,
    ) -> Result<(), SimError> {
        fill_request_row(&mut self.row, self.scenario, req, inst, RequestStatus::Rejected, reason, now);
        self.record(req, now)
    }

    fn record(&mut self, req: &Request, now: SimTime) -> Result<(), SimError> {
        self.observer.on_request(&self.row)?;
        self.workload.on_request_finished(req.request_id, now);
        self.finished += 1;
        if self.finished % 4096 == 0 {
            if let Some(p) = self.progress.as_mut() {
                p(self.finished);
            }
        }
        // A closed-loop completion may make the next request due right now.
        self.schedule_next_arrival();
        Ok(())
    }

    fn poll(&mut self, now: SimTime) {
        for (i, inst) in self.instances.iter_mut().enumerate() {
            inst.sync(now, self.cluster.pool_mut(inst.gpu()));
            let s = inst.scheduler();
            let slot = self.slots[i];
            self.replicas[slot.model.index()][slot.index].polled = Some(PolledLoad {
                running: s.num_running(),
                waiting: inst.num_waiting(),
                kv_usage: s.kv_cache_usage(),
            });
        }
    }

    fn sample(&mut self, now: SimTime) -> Result<(), SimError> {
        self.samples_written += self.instances.len() as u64;
        if self.samples_written > self.scenario.output.max_samples {
            return Err(SimError::TooManySamples {
                limit: self.scenario.output.max_samples,
                at_s: now.as_secs_f64(),
            });
        }
        for inst in &mut self.instances {
            inst.sync(now, self.cluster.pool_mut(inst.gpu()));
        }
        for (inst, row) in self.instances.iter().zip(&mut self.sample_rows) {
            let s = inst.scheduler();
            row.time_s = now.as_secs_f64();
            row.num_requests_running = s.num_running();
            row.num_requests_waiting = inst.num_waiting();
            row.kv_cache_usage = s.kv_cache_usage();
            row.num_preemptions_total = s.num_preemptions_total();
            row.mapped_pages = inst.mapped_pages();
            row.gpu_pool_free_bytes = inst.is_elastic().then(|| self.cluster.pool(inst.gpu()).free_bytes());
            self.observer.on_instance_sample(row)?;
        }
        Ok(())
    }

    /// Ends every unfinished request as a timeout: the run is over.
    fn drain(&mut self, now: SimTime) -> Result<(), SimError> {
        for i in 0..self.instances.len() {
            let pool = self.cluster.pool_mut(self.instances[i].gpu());
            self.instances[i].close_stretch(now, pool);
            let left = self.instances[i].abort_all_requests_on(pool);
            self.step_end[i] = None;
            for req in left {
                let reason = format!(
                    "still unfinished {:.0} s after the last arrival (output.drain_timeout_s)",
                    self.scenario.output.drain_timeout_s
                );
                self.finish(&req, InstanceId(i as u32), RequestStatus::Timeout, reason, now)?;
            }
        }
        Ok(())
    }
}

/// A row to be filled by [`fill_request_row`].
fn empty_request_row() -> RequestRow {
    RequestRow {
        id: 0,
        model: String::new(),
        instance: String::new(),
        phase: 0,
        scheduled_s: 0.0,
        send_s: 0.0,
        first_token_s: None,
        end_s: None,
        prompt_tokens: 0,
        output_tokens: 0,
        max_tokens: 0,
        cached_tokens: None,
        preemptions: None,
        status: RequestStatus::Ok,
        error: String::new(),
        ttft_s: None,
        e2e_s: None,
        tpot_s: None,
        itl_mean_s: None,
        itl_max_s: None,
    }
}

/// Fills `row` (reusing its string buffers) with the `requests.csv` row of a request that
/// ended at `now`.
fn fill_request_row(
    row: &mut RequestRow,
    scenario: &Scenario,
    req: &Request,
    inst: Option<InstanceId>,
    status: RequestStatus,
    error: String,
    now: SimTime,
) {
    let send = req.arrival_time;
    let first = req.first_token_time;
    let n = req.num_output_tokens;
    let ttft = first.map(|f| (f - send).as_secs_f64());
    let ok = status == RequestStatus::Ok;
    let e2e = ok.then(|| (now - send).as_secs_f64());
    let tpot = match (ok, ttft, e2e) {
        (true, Some(t), Some(e)) if n > 1 => Some((e - t) / f64::from(n - 1)),
        _ => None,
    };
    let mut model = std::mem::take(&mut row.model);
    model.clone_from(&scenario.models[req.model.index()].name);
    let mut instance = std::mem::take(&mut row.instance);
    match inst {
        Some(i) => instance.clone_from(&scenario.instances[i.index()].name),
        None => instance.clear(),
    }
    *row = RequestRow {
        id: req.request_id.0,
        model,
        instance,
        phase: req.phase,
        scheduled_s: send.as_secs_f64(),
        send_s: send.as_secs_f64(),
        first_token_s: first.map(SimTime::as_secs_f64),
        end_s: Some(now.as_secs_f64()),
        prompt_tokens: req.num_prompt_tokens,
        output_tokens: n,
        max_tokens: req.max_tokens,
        cached_tokens: req.num_cached_tokens,
        preemptions: Some(req.num_preemptions),
        status,
        error,
        ttft_s: ttft,
        e2e_s: e2e,
        tpot_s: tpot,
        itl_mean_s: (n > 1).then(|| req.itl_sum.as_secs_f64() / f64::from(n - 1)),
        itl_max_s: (n > 1).then(|| req.itl_max.as_secs_f64()),
    };
}
