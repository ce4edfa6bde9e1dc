//! One emulated instance's HTTP surface: vLLM-compatible `/v1/completions`,
//! `/v1/chat/completions`, `/health`, `/v1/models`, `/metrics`, plus `POST /admin/fault` for
//! fault injection.
//!
//! Handlers parse the body, submit it to the instance's engine task and turn its token events
//! into SSE chunks (or one JSON body when `stream` is false). Faults are read when a request
//! starts (`kill` acts at once, see `serve`). It does not own the engine and never blocks it: a
//! slow reader only grows its own channel.

use super::Fault;
use super::engine_loop::{Submit, TokenEvent};
use super::metrics::{EngineStats, MetricsNaming, render};
use super::wire::{self, Endpoint, ResponseMeta};
use crate::proxy::{ErrorStyle, vllm_error_response};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// Everything a handler needs; shared by one incarnation's connections.
pub(crate) struct InstanceCtx {
    pub served_name: String,
    pub instance_name: String,
    pub max_model_len: u32,
    /// The instance's engine has prefix caching on (usage then carries `prompt_tokens_details`).
    pub prefix_caching: bool,
    pub naming: MetricsNaming,
    pub style: ErrorStyle,
    pub submit: mpsc::Sender<Submit>,
    pub stats: watch::Receiver<EngineStats>,
    pub fault: Arc<watch::Sender<Fault>>,
    /// Set to stop this incarnation (the accept loop watches it).
    pub kill: Arc<watch::Sender<bool>>,
    pub next_id: AtomicU64,
}

/// The routes of one instance.
pub(crate) fn router(ctx: Arc<InstanceCtx>) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route("/admin/fault", post(set_fault).get(get_fault))
        .with_state(ctx)
}

async fn completions(State(ctx): State<Arc<InstanceCtx>>, body: Bytes) -> Response {
    generate(ctx, Endpoint::Completions, body).await
}

async fn chat_completions(State(ctx): State<Arc<InstanceCtx>>, body: Bytes) -> Response {
    generate(ctx, Endpoint::Chat, body).await
}

/// 200 while the engine loop runs; 503 once it has ended (a failure in the loop closes its
/// request channel), so the LB ejects an instance that can no longer serve.
async fn health(State(ctx): State<Arc<InstanceCtx>>) -> Response {
    if ctx.submit.is_closed() {
        return (StatusCode::SERVICE_UNAVAILABLE, "engine loop stopped: the instance cannot serve")
            .into_response();
    }
    StatusCode::OK.into_response()
}

async fn models(State(ctx): State<Arc<InstanceCtx>>) -> Response {
    axum::Json(serde_json::json!({"object": "list", "data": [{
        "id": ctx.served_name, "object": "model", "created": unix_now(), "owned_by": "vllm",
        "root": ctx.served_name, "max_model_len": ctx.max_model_len,
    }]}))
    .into_response()
}

async fn metrics(State(ctx): State<Arc<InstanceCtx>>) -> Response {
    let stats = *ctx.stats.borrow();
    let text = render(ctx.naming, &ctx.served_name, &stats);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn get_fault(State(ctx): State<Arc<InstanceCtx>>) -> Response {
    axum::Json(*ctx.fault.borrow()).into_response()
}

async fn set_fault(State(ctx): State<Arc<InstanceCtx>>, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("not a fault: {e}; e.g. {{\"fault\":\"stall\",\"after_tokens\":3}}");
            return vllm_error_response(ctx.style, StatusCode::BAD_REQUEST, &msg);
        }
    };
    ctx.fault.send_replace(fault);
    tracing::warn!(instance = %ctx.instance_name, ?fault, "fault injected");
    if fault == Fault::Kill {
        // Let this answer go out before the connections are dropped.
        let kill = Arc::clone(&ctx.kill);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            kill.send_replace(true);
        });
    }
    axum::Json(fault).into_response()
}

async fn generate(ctx: Arc<InstanceCtx>, endpoint: Endpoint, body: Bytes) -> Response {
    let fault = *ctx.fault.borrow();
    if let Fault::ServerError { status } = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return vllm_error_response(ctx.style, status, "injected fault: the engine failed");
    }
    let req = match wire::parse_request(endpoint, &body) {
        Ok(r) => r,
        Err(msg) => return vllm_error_response(ctx.style, StatusCode::BAD_REQUEST, &msg),
    };
    if let Some(m) = &req.model
        && *m != ctx.served_name
    {
        return vllm_error_response(
            ctx.style,
            StatusCode::NOT_FOUND,
            &format!("The model `{m}` does not exist."),
        );
    }
    // Every emulated request runs to its length limit (there is no EOS), so `min_tokens` is met
    // once the default length is raised to it when `max_tokens` is absent.
    let max_tokens = req
        .max_tokens
        .unwrap_or(match endpoint {
            Endpoint::Completions => 16,
            Endpoint::Chat => ctx.max_model_len.saturating_sub(req.num_prompt_tokens),
        })
        .max(req.min_tokens);
    let (events, mut rx) = mpsc::unbounded_channel();
    let (accepted, accepted_rx) = oneshot::channel();
    let submit = Submit {
        num_prompt_tokens: req.num_prompt_tokens,
        max_tokens,
        token_ids: req.token_ids,
        events,
        accepted,
    };
    let engine_gone =
        || vllm_error_response(ctx.style, StatusCode::SERVICE_UNAVAILABLE, "the engine is not running");
    if ctx.submit.send(submit).await.is_err() {
        return engine_gone();
    }
    match accepted_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => return vllm_error_response(ctx.style, StatusCode::BAD_REQUEST, &reason),
        Err(_) => return engine_gone(),
    }
    let n = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let prefix = if endpoint == Endpoint::Chat { "chatcmpl" } else { "cmpl" };
    let meta = ResponseMeta {
        endpoint,
        id: format!("{prefix}-{}-{n}", ctx.instance_name),
        created: unix_now(),
        model: ctx.served_name.clone(),
        // Filled in from the engine when the request finishes (the usage chunk comes last).
        cached_tokens: ctx.prefix_caching.then_some(0),
    };
    if !req.stream {
        return whole_response(&ctx, meta, req.num_prompt_tokens, &mut rx, fault).await;
    }
    let stream = SseStream {
        meta,
        rx,
        fault,
        style: ctx.style,
        max_tokens,
        prompt_tokens: req.num_prompt_tokens,
        include_usage: req.include_usage,
        sent: 0,
        pending: VecDeque::new(),
        done: false,
        started: false,
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    }));
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn whole_response(
    ctx: &InstanceCtx,
    mut meta: ResponseMeta,
    prompt_tokens: u32,
    rx: &mut mpsc::UnboundedReceiver<TokenEvent>,
    fault: Fault,
) -> Response {
    let mut tokens = 0u32;
    loop {
        match rx.recv().await {
            Some(TokenEvent::Token { .. }) => tokens += 1,
            Some(TokenEvent::Finished { cached_tokens }) => {
                meta.cached_tokens = meta.cached_tokens.map(|_| cached_tokens);
                break;
            }
            None => {
                return vllm_error_response(
                    ctx.style,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the engine stopped",
                );
            }
        }
    }
    match fault {
        Fault::Stall { .. } => std::future::pending().await,
        Fault::MidStreamError { .. } => vllm_error_response(
            ctx.style,
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected fault: generation failed",
        ),
        Fault::MalformedSse { .. } => {
            ([(header::CONTENT_TYPE, "application/json")], "{\"id\": malformed").into_response()
        }
        _ => axum::Json(meta.full_response(prompt_tokens, tokens)).into_response(),
    }
}

/// Turns token events into SSE bytes, applying the stream faults.
struct SseStream {
    meta: ResponseMeta,
    rx: mpsc::UnboundedReceiver<TokenEvent>,
    fault: Fault,
    style: ErrorStyle,
    max_tokens: u32,
    prompt_tokens: u32,
    include_usage: bool,
    sent: u32,
    pending: VecDeque<String>,
    done: bool,
    started: bool,
}

impl SseStream {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if !self.started {
            self.started = true;
            if self.meta.endpoint == Endpoint::Chat {
                self.pending.push_back(self.meta.role_chunk());
            }
        }
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(Ok(Bytes::from(chunk)));
            }
            if self.done {
                return None;
            }
            if let Some(after) = self.fault.after_tokens()
                && self.sent >= after
            {
                self.done = true;
                match self.fault {
                    Fault::MidStreamError { .. } => {
                        let event = wire::stream_error_event(self.style, "injected fault: generation failed");
                        self.pending.push_back(event);
                        self.pending.push_back(wire::DONE.to_string());
                    }
                    Fault::MalformedSse { .. } => {
                        self.pending
                            .push_back("data: {\"id\": \"cmpl-broken\", \"choices\": [\n\n".to_string());
                        self.pending.push_back(wire::DONE.to_string());
                    }
                    // Stall: keep the connection open and send nothing more.
                    _ => std::future::pending::<()>().await,
                }
                continue;
            }
            match self.rx.recv().await {
                Some(TokenEvent::Token { index }) => {
                    self.sent += 1;
                    self.pending.push_back(self.meta.token_chunk(index + 1 >= self.max_tokens));
                }
                Some(TokenEvent::Finished { cached_tokens }) => {
                    self.meta.cached_tokens = self.meta.cached_tokens.map(|_| cached_tokens);
                    if self.include_usage {
                        self.pending.push_back(self.meta.usage_chunk(self.prompt_tokens, self.sent));
                    }
                    self.pending.push_back(wire::DONE.to_string());
                    self.done = true;
                }
                // The engine went away (killed): break the connection like a dead process.
                None => return Some(Err(std::io::Error::other("engine stopped"))),
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
