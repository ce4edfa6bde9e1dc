//! The load generator: sends a [`RequestSource`]'s requests to real endpoints at their scheduled
//! times and reports one row per request sent.
//!
//! Open loop: each request is spawned at its scheduled time and never waits for earlier ones, so
//! slow responses cannot delay arrivals. Closed loop: the source releases a request when an earlier
//! one finishes ([`RequestSource::on_request_finished`], at the instant the client saw the end),
//! scheduled after the phase's `reissue_delay_s` exactly as the simulator schedules it (the same
//! `WorkloadGenerator`), and it is sent at that time. Requests go to the LB, or straight to an
//! instance picked by the scenario's `sim::router` policy over the same snapshot the simulator
//! uses (LB-local in-flight counts, plus the last scrape of `/metrics` when samples are fed in).
//!
//! Every request popped ends as exactly one [`Finished`]: ok, error, timeout (per-request timeout,
//! run deadline, drain timeout) or rejected (no instance for its model); Ctrl-C stops sending and
//! cancels what is still running after a grace period. This module writes no files: rows go to a
//! [`LoadSink`].

mod progress;
mod row;
mod source;
mod stop;
mod task;

pub use row::{chunk_gaps, request_row};
pub use source::{FixedSchedule, RequestSource};
pub use stop::{StopHandle, StopSignal, stop_pair};

use crate::client::{ExchangeOptions, PromptBuilder, RequestFailure, RequestRecord, RunClock};
use crate::client::{endpoint_path, request_body};
use crate::sse::ApiMode;
use progress::Progress;
use sim::router::{PolledLoad, ReplicaSnapshot, RouteRequest, Router, route_block_hashes};
use sim::scenario::RouterSpec;
use sim::trace::{InstanceRow, RequestRow, RequestStatus};
use sim::workload::RequestSpec;
use sim::{InstanceId, ModelId, RequestId, SimTime};
use std::collections::BTreeMap;
use std::io;
use std::time::Duration;
use task::{Job, TaskResult};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant as TokioInstant;

/// A model as the load generator addresses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelTarget {
    /// Scenario key (the `model` column).
    pub key: String,
    /// The OpenAI `model` field.
    pub served_name: String,
}

/// An instance reachable directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceTarget {
    /// Instance name (the `instance` column).
    pub name: String,
    /// The model it serves.
    pub model: ModelId,
    /// Base URL, e.g. `http://127.0.0.1:8001`.
    pub base_url: String,
}

/// Where requests go.
pub enum Routing {
    /// Everything to one load balancer at this base URL; the `instance` column comes from its
    /// `x-modelsguard-instance` response header when it sets one.
    Lb {
        /// Base URL, e.g. `http://127.0.0.1:8000`.
        base_url: String,
    },
    /// Straight to the instances, indexed by `InstanceId`; `router` picks among a model's.
    Direct {
        /// Instances in scenario order.
        instances: Vec<InstanceTarget>,
        /// The scenario's routing policy.
        router: Box<dyn Router>,
        /// Its settings (the prefix-aware policy hashes each request's content by its block size).
        spec: RouterSpec,
    },
}

/// How to run the load.
pub struct LoadConfig {
    /// Where requests go.
    pub routing: Routing,
    /// Models indexed by `ModelId`.
    pub models: Vec<ModelTarget>,
    /// Prompt token ids.
    pub prompts: PromptBuilder,
    /// Completions or chat.
    pub mode: ApiMode,
    /// Longest a request may take, send to `[DONE]`.
    pub per_request_timeout: Duration,
    /// Hard end of the run, from its start: nothing is sent after it; what runs is cancelled.
    pub deadline: Option<Duration>,
    /// After the last request is sent, how long unfinished ones may still run.
    pub drain_timeout: Duration,
    /// After a stop (Ctrl-C), how long in-flight requests may still finish.
    pub grace: Duration,
    /// Print the progress line.
    pub progress: bool,
    /// Redraw the progress line in place (stderr is a terminal).
    pub progress_in_place: bool,
    /// Keep raw payloads and request bodies (genai-perf export).
    pub keep_raw: bool,
    /// Cap on one SSE line / event, bytes.
    pub max_event_bytes: usize,
}

/// One request that ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Its `requests.csv` row.
    pub row: RequestRow,
    /// Its model.
    pub model: ModelId,
    /// What it recorded (chunk times; raw payloads when `keep_raw`).
    pub record: RequestRecord,
    /// The JSON body sent, when `keep_raw`.
    pub payload: Option<String>,
}

/// Receives the load generator's output as it happens.
pub trait LoadSink: Send {
    /// A request ended. Called exactly once per request popped from the source.
    fn on_finished(&mut self, done: Finished) -> io::Result<()>;
    /// A scrape of one instance.
    fn on_instance_sample(&mut self, row: &InstanceRow) -> io::Result<()>;
}

/// A scrape result fed into the load generator (for routing and for the sink).
#[derive(Clone, Debug)]
pub struct InstanceSample {
    /// The instance scraped.
    pub instance: InstanceId,
    /// Its row.
    pub row: InstanceRow,
}

/// How a load ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests popped from the source (= rows reported).
    pub sent: u64,
    /// Rows with status ok.
    pub ok: u64,
    /// Rows with any other status.
    pub failed: u64,
    /// A stop (Ctrl-C) ended the run early.
    pub interrupted: bool,
    /// The run deadline ended the run.
    pub deadline_reached: bool,
    /// The source still had requests when the run ended.
    pub unsent_requests: bool,
}

/// Failure of the load generator itself (rows are never a reason to fail).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The sink could not take a row (disk full, closed file).
    #[error("writing the run's rows failed: {0}")]
    Sink(#[from] io::Error),
}

struct InFlight {
    spec: RequestSpec,
    instance: Option<InstanceId>,
    queued_at: SimTime,
    payload: Option<String>,
}

/// What the driver is waiting for before it cancels the requests still running.
#[derive(Clone, Debug)]
struct Cutoff {
    at: TokioInstant,
    reason: RequestFailure,
    kind: CutoffKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CutoffKind {
    Deadline,
    Grace,
    Drain,
}

/// After cancelling, how long to wait for tasks to report before writing rows for them.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

struct Driver<'a> {
    cfg: LoadConfig,
    clock: RunClock,
    http: reqwest::Client,
    sink: &'a mut dyn LoadSink,
    in_flight: BTreeMap<RequestId, InFlight>,
    per_instance: Vec<u32>,
    polled: Vec<Option<PolledLoad>>,
    results_tx: mpsc::UnboundedSender<TaskResult>,
    cancel_tx: watch::Sender<Option<RequestFailure>>,
    progress: Progress,
    report: LoadReport,
}

/// Sends `source`'s requests as configured, feeding every ended request and every sample taken
/// from `samples` (while it runs) to `sink`, until the source is exhausted and nothing is in flight, the deadline
/// passes, or `stop` fires. `clock` is the run's clock (its start is time zero of the schedule).
pub async fn run_load(
    source: &mut dyn RequestSource,
    cfg: LoadConfig,
    http: reqwest::Client,
    clock: RunClock,
    sink: &mut dyn LoadSink,
    mut samples: Option<&mut mpsc::Receiver<InstanceSample>>,
    mut stop: StopSignal,
) -> Result<LoadReport, LoadError> {
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    let (cancel_tx, _) = watch::channel(None);
    let n_instances = match &cfg.routing {
        Routing::Direct { instances, .. } => instances.len(),
        Routing::Lb { .. } => 0,
    };
    let progress = Progress::new(source.planned_requests(), cfg.progress_in_place);
    let mut d = Driver {
        clock,
        http,
        sink,
        in_flight: BTreeMap::new(),
        per_instance: vec![0; n_instances],
        polled: vec![None; n_instances],
        results_tx,
        cancel_tx,
        progress,
        report: LoadReport::default(),
        cfg,
    };
    let start = TokioInstant::from_std(clock.start());
    let deadline = d.cfg.deadline.map(|dl| Cutoff {
        at: start + dl,
        reason: RequestFailure::timeout(format!("run deadline of {:.3}s reached", dl.as_secs_f64())),
        kind: CutoffKind::Deadline,
    });
    let mut grace: Option<Cutoff> = None;
    let mut drain: Option<Cutoff> = None;
    let mut sending = true;
    let mut cancelled_at: Option<TokioInstant> = None;
    let mut stop_now = stop.clone();
    let mut hard_stop = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_send = if sending && cancelled_at.is_none() { source.peek_time() } else { None };
        if next_send.is_none() && d.in_flight.is_empty() {
            // Closed loop with nothing in flight and nothing ready can never make progress.
            break;
        }
        if sending && next_send.is_none() && source.is_exhausted() && drain.is_none() {
            let dt = d.cfg.drain_timeout;
            drain = Some(Cutoff {
                at: TokioInstant::now() + dt,
                reason: RequestFailure::timeout(format!(
                    "unfinished {:.3}s (drain timeout) after the last request was sent",
                    dt.as_secs_f64()
                )),
                kind: CutoffKind::Drain,
            });
        }
        let cutoff = [&deadline, &grace, &drain].into_iter().flatten().min_by_key(|c| c.at).cloned();
        let cutoff = cutoff.filter(|_| cancelled_at.is_none());
        let send_at = next_send.map(|t| TokioInstant::from_std(clock.instant_at(t)));
        tokio::select! {
            biased;
            _ = stop.stopped(), if grace.is_none() => {
                d.report.interrupted = true;
                sending = false;
                let g = d.cfg.grace;
                grace = Some(Cutoff {
                    at: TokioInstant::now() + g,
                    reason: RequestFailure::error(format!(
                        "cancelled: run interrupted (Ctrl-C), still unfinished after the {:.3}s grace period",
                        g.as_secs_f64()
                    )),
                    kind: CutoffKind::Grace,
                });
            }
            _ = stop_now.stopped_now(), if !hard_stop => {
                hard_stop = true;
                d.report.interrupted = true;
                sending = false;
                grace = Some(Cutoff {
                    at: TokioInstant::now(),
                    reason: RequestFailure::error("cancelled: run stopped immediately (second Ctrl-C)"),
                    kind: CutoffKind::Grace,
                });
            }
            Some(r) = results_rx.recv() => d.on_result(source, r)?,
            Some(s) = recv_sample(&mut samples), if samples.is_some() => d.on_sample(s)?,
            _ = sleep_until_opt(cutoff.as_ref().map(|c| c.at)), if cutoff.is_some() => {
                if let Some(c) = cutoff {
                    sending = false;
                    if c.kind == CutoffKind::Deadline {
                        d.report.deadline_reached = true;
                    }
                    d.cancel_tx.send_replace(Some(c.reason));
                    cancelled_at = Some(TokioInstant::now());
                }
            }
            _ = sleep_until_opt(cancelled_at.map(|c| c + CANCEL_WAIT)), if cancelled_at.is_some() => {
                d.abandon_in_flight(source)?;
            }
            _ = sleep_until_opt(send_at), if send_at.is_some() => {
                if let Some(spec) = source.pop() {
                    d.dispatch(source, spec)?;
                }
            }
            _ = tick.tick(), if d.cfg.progress => d.progress.draw(d.in_flight.len()),
        }
    }
    if let Some(rx) = samples {
        while let Ok(s) = rx.try_recv() {
            d.on_sample(s)?;
        }
    }
    if d.cfg.progress {
        d.progress.finish(d.in_flight.len());
    }
    d.report.unsent_requests = !source.is_exhausted();
    Ok(d.report)
}

async fn recv_sample(rx: &mut Option<&mut mpsc::Receiver<InstanceSample>>) -> Option<InstanceSample> {
    match rx {
        Some(r) => {
            let s = r.recv().await;
            if s.is_none() {
                *rx = None;
            }
            s
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<TokioInstant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver<'_> {
    /// Routes and spawns `spec` (or rejects it at once).
    fn dispatch(&mut self, source: &mut dyn RequestSource, spec: RequestSpec) -> Result<(), LoadError> {
        self.report.sent += 1;
        self.progress.sent += 1;
        let now = self.clock.now();
        let Some(model) = self.cfg.models.get(spec.model.index()) else {
            let f = RequestFailure {
                status: RequestStatus::Rejected,
                reason: format!("model id {} is not in the scenario", spec.model),
            };
            return self.finish_now(source, spec, f, now);
        };
        let (base_url, instance) = match &mut self.cfg.routing {
            Routing::Lb { base_url } => (base_url.clone(), None),
            Routing::Direct { instances, router, spec: router_spec } => {
                let candidates: Vec<usize> =
                    (0..instances.len()).filter(|&i| instances[i].model == spec.model).collect();
                let snaps: Vec<ReplicaSnapshot> = candidates
                    .iter()
                    .map(|&i| ReplicaSnapshot {
                        instance: InstanceId(i as u32),
                        healthy: true,
                        in_flight: self.per_instance[i],
                        polled: self.polled[i],
                    })
                    .collect();
                let hashes = route_block_hashes(router_spec, &spec.content);
                let req = RouteRequest {
                    model: spec.model,
                    num_prompt_tokens: spec.num_prompt_tokens,
                    block_hashes: &hashes,
                };
                match router.route(&req, &snaps).and_then(|k| candidates.get(k)) {
                    Some(&i) => (instances[i].base_url.clone(), Some(InstanceId(i as u32))),
                    None => {
                        let f = RequestFailure {
                            status: RequestStatus::Rejected,
                            reason: format!("no instance serves model {}", model.key),
                        };
                        return self.finish_now(source, spec, f, now);
                    }
                }
            }
        };
        let ids = self.cfg.prompts.token_ids(&spec);
        let body = request_body(&spec, &model.served_name, &ids, self.cfg.mode).to_string();
        let payload = self.cfg.keep_raw.then(|| body.clone());
        if let Some(i) = instance {
            self.per_instance[i.index()] += 1;
        }
        let id = spec.id;
        self.in_flight.insert(id, InFlight { spec, instance, queued_at: now, payload });
        let job = Job {
            id,
            http: self.http.clone(),
            url: format!("{}{}", base_url.trim_end_matches('/'), endpoint_path(self.cfg.mode)),
            body,
            clock: self.clock,
            opts: ExchangeOptions {
                mode: self.cfg.mode,
                keep_raw: self.cfg.keep_raw,
                max_event_bytes: self.cfg.max_event_bytes,
            },
            timeout: self.cfg.per_request_timeout,
            cancel: self.cancel_tx.subscribe(),
            results: self.results_tx.clone(),
        };
        tokio::spawn(task::run_job(job));
        Ok(())
    }

    /// Ends a request that was never sent over the network.
    fn finish_now(
        &mut self,
        source: &mut dyn RequestSource,
        spec: RequestSpec,
        f: RequestFailure,
        now: SimTime,
    ) -> Result<(), LoadError> {
        let rec = RequestRecord::default();
        let row = request_row(&spec, self.model_key(spec.model), "", &rec, &Err(f), now);
        self.emit(source, spec, row, rec, None)
    }

    fn model_key(&self, m: ModelId) -> &str {
        self.cfg.models.get(m.index()).map_or("", |t| t.key.as_str())
    }

    fn on_result(&mut self, source: &mut dyn RequestSource, r: TaskResult) -> Result<(), LoadError> {
        let Some(f) = self.in_flight.remove(&r.id) else { return Ok(()) };
        let instance_name = match (&self.cfg.routing, f.instance) {
            (Routing::Direct { instances, .. }, Some(i)) => {
                self.per_instance[i.index()] = self.per_instance[i.index()].saturating_sub(1);
                instances.get(i.index()).map(|t| t.name.clone()).unwrap_or_default()
            }
            _ => r.record.instance_header.clone().unwrap_or_default(),
        };
        let row = request_row(
            &f.spec,
            self.model_key(f.spec.model),
            &instance_name,
            &r.record,
            &r.result,
            f.queued_at,
        );
        self.emit(source, f.spec, row, r.record, f.payload)
    }

    fn emit(
        &mut self,
        source: &mut dyn RequestSource,
        spec: RequestSpec,
        row: RequestRow,
        record: RequestRecord,
        payload: Option<String>,
    ) -> Result<(), LoadError> {
        if row.status == RequestStatus::Ok {
            self.report.ok += 1;
            self.progress.done += 1;
            if let Some(t) = row.ttft_s {
                self.progress.ttft.add(t, 1);
            }
        } else {
            self.report.failed += 1;
            self.progress.failed += 1;
        }
        source.on_request_finished(spec.id, self.clock.now());
        self.sink.on_finished(Finished { row, model: spec.model, record, payload })?;
        Ok(())
    }

    fn on_sample(&mut self, s: InstanceSample) -> Result<(), LoadError> {
        if let Some(slot) = self.polled.get_mut(s.instance.index()) {
            *slot = Some(PolledLoad {
                running: s.row.num_requests_running,
                waiting: s.row.num_requests_waiting,
                kv_usage: s.row.kv_cache_usage,
            });
        }
        self.sink.on_instance_sample(&s.row)?;
        Ok(())
    }

    /// Tasks that did not report after cancellation: write their rows anyway.
    fn abandon_in_flight(&mut self, source: &mut dyn RequestSource) -> Result<(), LoadError> {
        let ids: Vec<RequestId> = self.in_flight.keys().copied().collect();
        for id in ids {
            let r = TaskResult {
                id,
                record: RequestRecord::default(),
                result: Err(RequestFailure::error(
                    "internal: no result from the request task after cancellation",
                )),
            };
            self.on_result(source, r)?;
        }
        Ok(())
    }
}
