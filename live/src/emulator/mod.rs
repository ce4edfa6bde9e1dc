//! The real-time emulator: serves each instance's vLLM endpoints on its port, with tokens paced
//! by the simulator's engine model on the wall clock (`time_scale` stretches time for slow CI
//! machines), so the load generator, LB and launcher can be exercised without GPUs.
//!
//! Each instance runs as an "incarnation": one engine task (`engine_loop`) that owns the engine
//! model, and one accept loop whose connections are all dropped when the instance is killed, so
//! a killed instance looks like a dead process (connections refused, streams cut). Faults are set
//! per instance through `EmulatorOptions::faults`, `EmulatorHandle::set_fault` or
//! `POST /admin/fault` (JSON `Fault`). The emulator does not model text, sampling, stop strings,
//! LoRA or request aborts.

mod engine_loop;
mod http;
mod metrics;
mod sim_engine;
mod wire;

pub use engine_loop::{EngineLoad, NewRequest, StepEngine, StepOutput};
pub use metrics::{EngineStats, MetricsNaming};
pub use sim_engine::SimEngine;
pub use wire::{Endpoint, ParsedRequest, TOKEN_TEXT, parse_request};

use crate::proxy::{ErrorStyle, shutdown_signal};
use axum::Router;
use http::InstanceCtx;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use sim::ids::InstanceId;
use sim::scenario::Scenario;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// A failure to inject into one instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// Serve normally.
    #[default]
    None,
    /// Stop serving: the port refuses connections, open streams are cut. `set_fault` with any
    /// other fault brings the instance back with a fresh engine.
    Kill,
    /// Answer every generation request with this status and a vLLM error body.
    ServerError {
        /// HTTP status (default 500).
        #[serde(default = "default_status")]
        status: u16,
    },
    /// After `after_tokens` token chunks, send vLLM's in-stream error event and `[DONE]`.
    MidStreamError {
        /// Token chunks sent first.
        #[serde(default)]
        after_tokens: u32,
    },
    /// After `after_tokens` token chunks, send nothing more and keep the connection open.
    Stall {
        /// Token chunks sent first.
        #[serde(default)]
        after_tokens: u32,
    },
    /// After `after_tokens` token chunks, send an event whose data is not JSON, then `[DONE]`.
    MalformedSse {
        /// Token chunks sent first.
        #[serde(default)]
        after_tokens: u32,
    },
}

fn default_status() -> u16 {
    500
}

impl Fault {
    /// The token count after which a stream fault strikes.
    pub fn after_tokens(self) -> Option<u32> {
        match self {
            Fault::MidStreamError { after_tokens }
            | Fault::Stall { after_tokens }
            | Fault::MalformedSse { after_tokens } => Some(after_tokens),
            _ => None,
        }
    }
}

/// Smallest `time_scale` (1000 times faster than real time: shorter sleeps are below the
/// timer's resolution).
pub const MIN_TIME_SCALE: f64 = 1e-3;
/// Largest `time_scale` (1000 times slower: a one-second step then takes a quarter of an hour).
pub const MAX_TIME_SCALE: f64 = 1e3;

/// How the emulator serves.
#[derive(Clone, Debug, PartialEq)]
pub struct EmulatorOptions {
    /// Address every instance listens on (default 127.0.0.1); ports come from the scenario
    /// (0 picks a free one; see `EmulatorHandle::addr`).
    pub bind: IpAddr,
    /// Wall seconds per simulated second (default 1; 2.0 runs everything twice as slow); from
    /// [`MIN_TIME_SCALE`] to [`MAX_TIME_SCALE`].
    pub time_scale: f64,
    /// Metric names; `None` follows each instance's engine preset.
    pub metrics_naming: Option<MetricsNaming>,
    /// Error body style; `None` follows each instance's engine preset.
    pub error_style: Option<ErrorStyle>,
    /// Faults active from the start.
    pub faults: Vec<(InstanceId, Fault)>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            time_scale: 1.0,
            metrics_naming: None,
            error_style: None,
            faults: Vec::new(),
        }
    }
}

/// Errors starting or driving the emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// An instance's port could not be bound.
    #[error("instance `{instance}`: cannot listen on {addr}: {source} (is the port in use?)")]
    Bind {
        /// Instance name.
        instance: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The engine model of an instance could not be built.
    #[error("instance `{instance}`: cannot build its engine model: {reason}")]
    Engine {
        /// Instance name.
        instance: String,
        /// Why.
        reason: String,
    },
    /// The id is not an emulated instance.
    #[error("instance id {0} is not in the scenario or not emulated here")]
    NoSuchInstance(InstanceId),
    /// `time_scale` is outside [`MIN_TIME_SCALE`, `MAX_TIME_SCALE`].
    #[error(
        "time scale {0} is out of range: give a number from {MIN_TIME_SCALE} to {MAX_TIME_SCALE} \
         (wall seconds per simulated second)"
    )]
    BadTimeScale(f64),
}

/// Builds the engine model of an instance (called again when a killed instance comes back).
pub type EngineFactory = Arc<dyn Fn(InstanceId) -> Result<Box<dyn StepEngine>, EmulatorError> + Send + Sync>;

struct Incarnation {
    kill: Arc<watch::Sender<bool>>,
    server: JoinHandle<()>,
    engine: JoinHandle<()>,
}

impl Incarnation {
    async fn stop(self) {
        self.kill.send_replace(true);
        let _ = self.server.await;
        self.engine.abort();
        let _ = self.engine.await;
    }
}

struct Slot {
    id: InstanceId,
    name: String,
    served_name: String,
    max_model_len: u32,
    prefix_caching: bool,
    naming: MetricsNaming,
    style: ErrorStyle,
    addr: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    live: Option<Incarnation>,
}

/// Running emulated instances.
pub struct EmulatorHandle {
    slots: Vec<Slot>,
    factory: EngineFactory,
    time_scale: f64,
}

impl EmulatorHandle {
    /// Serves `instances` of `scenario` (all when `None`) with the simulator's engine model
    /// (`SimEngine`: the same scheduler and step times as `simulate`).
    pub async fn start(
        scenario: &Scenario,
        instances: Option<Vec<InstanceId>>,
        opts: EmulatorOptions,
    ) -> Result<EmulatorHandle, EmulatorError> {
        let shared = Arc::new(scenario.clone());
        let factory: EngineFactory =
            Arc::new(move |id| Ok(Box::new(SimEngine::new(&shared, id)?) as Box<dyn StepEngine>));
        Self::start_with(scenario, instances, opts, factory).await
    }

    /// Serves `instances` of `scenario` (all when `None`) with engine models from `factory`.
    pub async fn start_with(
        scenario: &Scenario,
        instances: Option<Vec<InstanceId>>,
        opts: EmulatorOptions,
        factory: EngineFactory,
    ) -> Result<EmulatorHandle, EmulatorError> {
        if !(MIN_TIME_SCALE..=MAX_TIME_SCALE).contains(&opts.time_scale) {
            return Err(EmulatorError::BadTimeScale(opts.time_scale));
        }
        let ids = instances
            .unwrap_or_else(|| (0..scenario.instances.len()).map(|i| InstanceId(i as u32)).collect());
        let mut handle = EmulatorHandle { slots: Vec::new(), factory, time_scale: opts.time_scale };
        for id in ids {
            let inst = scenario.instances.get(id.index()).ok_or(EmulatorError::NoSuchInstance(id))?;
            let model = scenario.models.get(inst.model.index()).ok_or(EmulatorError::NoSuchInstance(id))?;
            let mut slot = Slot {
                id,
                name: inst.name.clone(),
                served_name: model.served_name.clone(),
                max_model_len: inst.engine.max_model_len,
                prefix_caching: inst.engine.enable_prefix_caching,
                naming: opts.metrics_naming.unwrap_or(MetricsNaming::of_preset(inst.engine.preset)),
                style: opts.error_style.unwrap_or(ErrorStyle::of_preset(inst.engine.preset)),
                addr: SocketAddr::new(opts.bind, inst.port),
                fault: Arc::new(watch::Sender::new(Fault::None)),
                live: None,
            };
            handle.launch(&mut slot).await?;
            tracing::info!(instance = %slot.name, "emulating on http://{}", slot.addr);
            handle.slots.push(slot);
        }
        for (id, fault) in opts.faults {
            handle.set_fault(id, fault).await?;
        }
        Ok(handle)
    }

    async fn launch(&self, slot: &mut Slot) -> Result<(), EmulatorError> {
        let listener = TcpListener::bind(slot.addr).await.map_err(|source| EmulatorError::Bind {
            instance: slot.name.clone(),
            addr: slot.addr,
            source,
        })?;
        if let Ok(addr) = listener.local_addr() {
            slot.addr = addr;
        }
        let engine = (self.factory)(slot.id)?;
        let (submit, rx) = mpsc::channel(1024);
        let (stats_tx, stats) = watch::channel(EngineStats::default());
        let kill = Arc::new(watch::Sender::new(false));
        let engine = tokio::spawn(engine_loop::run(engine, rx, stats_tx, self.time_scale));
        let ctx = Arc::new(InstanceCtx {
            served_name: slot.served_name.clone(),
            instance_name: slot.name.clone(),
            max_model_len: slot.max_model_len,
            prefix_caching: slot.prefix_caching,
            naming: slot.naming,
            style: slot.style,
            submit,
            stats,
            fault: Arc::clone(&slot.fault),
            kill: Arc::clone(&kill),
            next_id: AtomicU64::new(0),
        });
        let server = tokio::spawn(accept_loop(listener, http::router(ctx), kill.subscribe()));
        slot.live = Some(Incarnation { kill, server, engine });
        Ok(())
    }

    fn slot(&self, id: InstanceId) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// The address an instance listens on (its actual port when the scenario said 0).
    pub fn addr(&self, id: InstanceId) -> Option<SocketAddr> {
        self.slot(id).map(|s| s.addr)
    }

    /// The fault active on an instance.
    pub fn fault(&self, id: InstanceId) -> Option<Fault> {
        self.slot(id).map(|s| *s.fault.borrow())
    }

    /// Sets an instance's fault. `Kill` stops it; any other fault on a killed instance restarts
    /// it on the same port with a fresh engine.
    pub async fn set_fault(&mut self, id: InstanceId, fault: Fault) -> Result<(), EmulatorError> {
        let pos = self.slots.iter().position(|s| s.id == id).ok_or(EmulatorError::NoSuchInstance(id))?;
        let mut slot = self.slots.swap_remove(pos);
        slot.fault.send_replace(fault);
        let killed = slot.live.as_ref().is_none_or(|l| *l.kill.borrow());
        let result = match (fault, killed) {
            (Fault::Kill, _) => {
                if let Some(live) = slot.live.take() {
                    live.stop().await;
                }
                Ok(())
            }
            (_, true) => {
                if let Some(live) = slot.live.take() {
                    live.stop().await;
                }
                self.launch(&mut slot).await
            }
            (_, false) => Ok(()),
        };
        self.slots.push(slot);
        self.slots.sort_by_key(|s| s.id);
        result
    }

    /// Stops every instance.
    pub async fn shutdown(self) {
        for slot in self.slots {
            if let Some(live) = slot.live {
                live.stop().await;
            }
        }
    }
}

/// Accepts connections until `kill` is set, then drops the listener and every connection.
async fn accept_loop(listener: TcpListener, app: Router, mut kill: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let killed = async move {
        let _ = kill.wait_for(|&k| k).await;
    };
    tokio::pin!(killed);
    loop {
        tokio::select! {
            () = &mut killed => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let svc = TowerToHyperService::new(app.clone());
                    conns.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Serves `instances` of `scenario` (all when `None`) in real time with the simulator's engine
/// model until Ctrl-C or SIGTERM.
pub async fn serve_emulator(
    scenario: &Scenario,
    instances: Option<Vec<InstanceId>>,
    opts: EmulatorOptions,
) -> Result<(), EmulatorError> {
    let handle = EmulatorHandle::start(scenario, instances, opts).await?;
    shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}

/// Serves `instances` of `scenario` with engine models from `factory` until Ctrl-C or SIGTERM.
pub async fn serve_emulator_with(
    scenario: &Scenario,
    instances: Option<Vec<InstanceId>>,
    opts: EmulatorOptions,
    factory: EngineFactory,
) -> Result<(), EmulatorError> {
    let handle = EmulatorHandle::start_with(scenario, instances, opts, factory).await?;
    shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}
