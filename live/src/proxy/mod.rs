//! The live LB: an HTTP proxy in front of the engine instances that routes each request by its
//! `model` with the simulator's own router (`sim::router`), so live and simulated routing are
//! the same code.
//!
//! The proxy owns the router's inputs: `in_flight` per backend is exact (taken when a request is
//! routed, given back when its response ends or fails), `polled` is refreshed by polling each
//! backend's `/metrics` every `router.poll_interval_s` (queue-aware only), health checks eject
//! and readmit backends. Responses stream through chunk by chunk. Endpoints: `POST
//! /v1/completions`, `POST /v1/chat/completions`, `GET /health`, `GET /v1/models` (the served
//! names), `GET /metrics` (the LB's own Prometheus text). It does not tokenize, rewrite bodies,
//! log prompts or terminate TLS.
//!
//! Client limits (`listen.rs`, `body.rs`): a connection cap answered with a 503, a header-read
//! timeout that also closes idle keep-alive connections, a body size limit (413) and a body read
//! timeout (408), so slow or idle clients cannot starve `/health` or the requests of others.

mod body;
mod error;
mod forward;
mod listen;
mod monitor;
pub mod prom;
mod table;

pub use crate::signals::shutdown_signal;
pub use error::{ErrorStyle, LbError, ProxyFailure, vllm_error_body, vllm_error_response};
pub use forward::{RequestPeek, peek_request};
pub use monitor::Monitors;
pub use table::{BackendInfo, BackendStats, UpstreamErrorKind};

use axum::Router as HttpRouter;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sim::ids::{InstanceId, ModelId};
use sim::router::build_router;
use sim::scenario::{RouterPolicy, RouterSpec, Scenario};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use table::BackendTable;

/// How the LB listens, reaches its backends and gives up on them.
#[derive(Clone, Debug, PartialEq)]
pub struct LbOptions {
    /// Address to listen on (default 127.0.0.1: the LB is not exposed unless asked).
    pub bind: IpAddr,
    /// Port to listen on (default 8080; 0 picks a free one).
    pub port: u16,
    /// Host of every backend; a backend's URL is `http://{upstream_host}:{instance.port}`.
    pub upstream_host: String,
    /// Time between health checks of one backend (default 500 ms).
    pub health_interval: Duration,
    /// Timeout of one health check (default 500 ms).
    pub health_timeout: Duration,
    /// Failed health checks in a row that eject a backend (default 2: a dead one is out within
    /// about 1 s; a connect failure while forwarding ejects at once).
    pub unhealthy_threshold: u32,
    /// TCP connect timeout to a backend (default 1 s).
    pub connect_timeout: Duration,
    /// Longest wait for a backend's response headers before answering 504 (default 600 s:
    /// non-streaming requests get headers only when generation ends).
    pub first_byte_timeout: Duration,
    /// Longest silence between two body chunks before the stream is cut (default 300 s).
    pub idle_timeout: Duration,
    /// Retries on other replicas after a connect failure or 5xx, before any byte reached the
    /// client (default 2).
    pub max_retries: u32,
    /// Error body style; `None` takes the first instance's engine preset.
    pub error_style: Option<ErrorStyle>,
    /// Seed of the randomised policies; `None` takes the scenario's seed.
    pub seed: Option<u64>,
    /// How long a shutdown waits for open responses before it drops them (default 5 s).
    pub shutdown_grace: Duration,
    /// Client connections served at once; one more gets a 503 at once (default 4096, lowered to
    /// what the open-files limit allows).
    pub max_connections: usize,
    /// Longest wait for a client's complete request head, counted from when the connection is
    /// ready for a request: closes connections that send nothing, half a head, or stay idle
    /// between keep-alive requests (default 30 s; nginx's `client_header_timeout` is 60 s).
    pub client_header_timeout: Duration,
    /// Longest wait for a client's whole request body before a 408 (default 30 s).
    pub client_body_timeout: Duration,
    /// Largest request body accepted; larger ones get a 413 (default 32 MiB: a 128k-token prompt
    /// as JSON token ids is about 1 MiB).
    pub max_body_bytes: usize,
}

impl Default for LbOptions {
    fn default() -> Self {
        LbOptions {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            upstream_host: "127.0.0.1".into(),
            health_interval: Duration::from_millis(500),
            health_timeout: Duration::from_millis(500),
            unhealthy_threshold: 2,
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(300),
            max_retries: 2,
            error_style: None,
            seed: None,
            shutdown_grace: Duration::from_secs(5),
            max_connections: 4096,
            client_header_timeout: Duration::from_secs(30),
            client_body_timeout: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
        }
    }
}

/// The LB's shared state; cheap to clone. Build it with `LbState::new`, serve it with `app`.
#[derive(Clone)]
pub struct LbState {
    inner: Arc<Inner>,
}

struct Inner {
    table: Arc<BackendTable>,
    served_names: Vec<String>,
    by_served_name: HashMap<String, ModelId>,
    client: reqwest::Client,
    probe_client: reqwest::Client,
    opts: LbOptions,
    style: ErrorStyle,
    poll_interval: Option<Duration>,
    /// The router's settings (the prefix-aware policy hashes prompts by its block size).
    router: RouterSpec,
    unknown_model_total: AtomicU64,
    rejected_connections_total: AtomicU64,
}

impl Inner {
    fn count_unknown_model(&self) {
        self.unknown_model_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refused connection; returns the total so far.
    fn count_rejected_connection(&self) -> u64 {
        self.rejected_connections_total.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl LbState {
    /// State for routing `scenario`'s instances with `opts`. Starts no task: call `spawn_monitors`
    /// for health checks and polling (tests may instead call `check_health_once` and
    /// `poll_metrics_once` to step them by hand).
    pub fn new(scenario: &Scenario, opts: LbOptions) -> Result<LbState, LbError> {
        if scenario.instances.is_empty() {
            return Err(LbError::NoInstances(scenario.name.clone()));
        }
        let infos = scenario
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| BackendInfo {
                instance: InstanceId(i as u32),
                name: inst.name.clone(),
                model: inst.model,
                url: format!("http://{}:{}", host_for_url(&opts.upstream_host), inst.port),
            })
            .collect();
        let router =
            build_router(&scenario.router, scenario.models.len(), opts.seed.unwrap_or(scenario.seed));
        let table =
            Arc::new(BackendTable::new(infos, scenario.models.len(), router, opts.unhealthy_threshold));
        let served_names: Vec<String> = scenario.models.iter().map(|m| m.served_name.clone()).collect();
        let mut by_served_name = HashMap::new();
        for (i, name) in served_names.iter().enumerate() {
            by_served_name.entry(name.clone()).or_insert(ModelId(i as u32));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(opts.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LbError::Client(e.to_string()))?;
        let probe_client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(opts.connect_timeout.min(opts.health_timeout))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| LbError::Client(e.to_string()))?;
        let style =
            opts.error_style.unwrap_or_else(|| ErrorStyle::of_preset(scenario.instances[0].engine.preset));
        let polls = matches!(scenario.router.policy, RouterPolicy::QueueAware | RouterPolicy::PrefixAware);
        let poll_interval =
            polls.then(|| Duration::from_secs_f64(scenario.router.poll_interval_s.max(0.001)));
        Ok(LbState {
            inner: Arc::new(Inner {
                table,
                served_names,
                by_served_name,
                client,
                probe_client,
                opts,
                style,
                poll_interval,
                router: scenario.router.clone(),
                unknown_model_total: AtomicU64::new(0),
                rejected_connections_total: AtomicU64::new(0),
            }),
        })
    }

    fn model_id(&self, served_name: &str) -> Option<ModelId> {
        let id = *self.inner.by_served_name.get(served_name)?;
        // A model with no instance is as unknown to clients as one not in the scenario.
        self.inner.table.infos().iter().any(|b| b.model == id).then_some(id)
    }

    /// Starts the health-check and metrics-poll loops; they stop when the result is dropped.
    pub fn spawn_monitors(&self) -> Monitors {
        monitor::spawn(self)
    }

    /// Runs one health check of every backend now.
    pub async fn check_health_once(&self) {
        let n = self.inner.table.infos().len();
        futures_util::future::join_all((0..n).map(|b| monitor::check_health(self, b))).await;
    }

    /// Polls every backend's `/metrics` now (whatever the policy).
    pub async fn poll_metrics_once(&self) {
        let n = self.inner.table.infos().len();
        futures_util::future::join_all((0..n).map(|b| monitor::poll_metrics(self, b))).await;
    }

    /// The backends, indexed like the scenario's instances.
    pub fn backends(&self) -> &[BackendInfo] {
        self.inner.table.infos()
    }

    /// Every backend's live figures, indexed like `backends()`.
    pub fn stats(&self) -> Vec<BackendStats> {
        self.inner.table.stats()
    }

    /// Requests that named a model no instance serves.
    pub fn unknown_model_total(&self) -> u64 {
        self.inner.unknown_model_total.load(Ordering::Relaxed)
    }

    /// Client connections answered with a 503 because the connection cap was reached.
    pub fn rejected_connections_total(&self) -> u64 {
        self.inner.rejected_connections_total.load(Ordering::Relaxed)
    }

    /// The LB's Prometheus text.
    pub fn render_metrics(&self) -> String {
        let infos = self.backends();
        let stats = self.stats();
        let mut out = String::new();
        type Pick = fn(&BackendStats) -> f64;
        let gauges: [(&str, &str, &str, Pick); 4] = [
            (
                "modelsguard_lb_backend_in_flight",
                "gauge",
                "Requests routed to the backend and not yet finished.",
                |s| f64::from(s.in_flight),
            ),
            (
                "modelsguard_lb_backend_healthy",
                "gauge",
                "1 while the backend is admitted, 0 while ejected.",
                |s| f64::from(u8::from(s.healthy)),
            ),
            (
                "modelsguard_lb_routed_total",
                "counter",
                "Requests routed to the backend (retries count again).",
                |s| s.routed_total as f64,
            ),
            ("modelsguard_lb_ejections_total", "counter", "Times the backend was ejected.", |s| {
                s.ejections_total as f64
            }),
        ];
        for (name, kind, help, pick) in gauges {
            prom::write_header(&mut out, name, kind, help);
            for (info, s) in infos.iter().zip(&stats) {
                let model = &self.inner.served_names[info.model.index()];
                prom::write_sample(
                    &mut out,
                    name,
                    &[("instance", &info.name), ("model_name", model)],
                    pick(s),
                );
            }
        }
        let name = "modelsguard_lb_upstream_errors_total";
        prom::write_header(&mut out, name, "counter", "Failed upstream exchanges by kind.");
        for (info, s) in infos.iter().zip(&stats) {
            let model = &self.inner.served_names[info.model.index()];
            for kind in UpstreamErrorKind::ALL {
                let labels =
                    [("instance", info.name.as_str()), ("model_name", model), ("kind", kind.label())];
                prom::write_sample(&mut out, name, &labels, s.upstream_errors_total[kind as usize] as f64);
            }
        }
        let name = "modelsguard_lb_unknown_model_total";
        prom::write_header(&mut out, name, "counter", "Requests naming a model no instance serves.");
        prom::write_sample(&mut out, name, &[], self.unknown_model_total() as f64);
        let name = "modelsguard_lb_rejected_connections_total";
        prom::write_header(
            &mut out,
            name,
            "counter",
            "Client connections refused (503) at the connection cap.",
        );
        prom::write_sample(&mut out, name, &[], self.rejected_connections_total() as f64);
        out
    }
}

/// Brackets IPv6 literals for use in a URL.
fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() }
}

/// The LB's HTTP routes over `state` (no socket: tests drive it with `tower::ServiceExt::oneshot`).
pub fn app(state: LbState) -> HttpRouter {
    HttpRouter::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn completions(State(state): State<LbState>, headers: HeaderMap, body: Body) -> Response {
    match body::read_body(&state, &headers, body).await {
        Ok(body) => forward::forward(state, "/v1/completions", headers, body).await,
        Err(refused) => refused,
    }
}

async fn chat_completions(State(state): State<LbState>, headers: HeaderMap, body: Body) -> Response {
    match body::read_body(&state, &headers, body).await {
        Ok(body) => forward::forward(state, "/v1/chat/completions", headers, body).await,
        Err(refused) => refused,
    }
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn models(State(state): State<LbState>) -> Response {
    let data: Vec<serde_json::Value> = state
        .inner
        .served_names
        .iter()
        .enumerate()
        .filter(|(i, _)| state.backends().iter().any(|b| b.model.index() == *i))
        .map(|(_, name)| serde_json::json!({"id": name, "object": "model", "created": 0, "owned_by": "vllm", "root": name}))
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

async fn metrics(State(state): State<LbState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.render_metrics()).into_response()
}

/// A bound, not yet serving LB.
pub struct LbServer {
    state: LbState,
    listener: tokio::net::TcpListener,
}

impl LbServer {
    /// Binds `opts.bind:opts.port` for `scenario`'s instances.
    pub async fn bind(scenario: &Scenario, opts: LbOptions) -> Result<LbServer, LbError> {
        let addr = SocketAddr::new(opts.bind, opts.port);
        let state = LbState::new(scenario, opts)?;
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| LbError::Bind { addr, source })?;
        Ok(LbServer { state, listener })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, LbError> {
        self.listener.local_addr().map_err(LbError::Serve)
    }

    /// The state the server routes with.
    pub fn state(&self) -> &LbState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then waits up to `shutdown_grace` for open responses.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), LbError> {
        let grace = self.state.inner.opts.shutdown_grace;
        let _monitors = self.state.spawn_monitors();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let app = app(self.state.clone());
        if !listen::serve(self.listener, app, self.state.clone(), rx, grace).await {
            tracing::warn!("open responses still running {grace:?} after shutdown; dropping them");
        }
        Ok(())
    }
}

/// Runs the LB for `scenario` until Ctrl-C, SIGTERM or SIGHUP.
pub async fn serve_lb(scenario: &Scenario, opts: LbOptions) -> Result<(), LbError> {
    let server = LbServer::bind(scenario, opts).await?;
    if let Ok(addr) = server.local_addr() {
        tracing::info!("LB listening on http://{addr}");
    }
    server.run(shutdown_signal()).await
}
