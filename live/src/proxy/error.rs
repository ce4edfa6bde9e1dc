//! The LB's errors: startup failures (`LbError`) and the vLLM-shaped JSON bodies it answers
//! clients with when it cannot forward a request (`ProxyFailure`).
//!
//! vLLM's error body changed shape between releases: 0.6.4 and 0.9.2 answer a flat
//! `{"object":"error","message",..,"type",..,"param":null,"code":N}` (vllm/entrypoints/openai/
//! protocol.py `ErrorResponse`), current vLLM nests it as `{"error":{"message",..,"type",..,
//! "param":null,"code":N}}`. Both the proxy and the emulator answer in the style of the engine
//! generation they stand for, so a client that parses one engine's errors parses ours. This file
//! does no I/O.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sim::scenario::EnginePreset;
use std::net::SocketAddr;

/// Which generation of vLLM's error body to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStyle {
    /// vLLM 0.6.4: flat `{"object":"error","message",...}`.
    Flat,
    /// Current vLLM: `{"error":{"message",...}}`.
    Nested,
}

impl ErrorStyle {
    /// The style an engine of `preset` answers in.
    pub fn of_preset(preset: EnginePreset) -> ErrorStyle {
        // The nested `ErrorInfo` body: absent from vllm 0.9.2 entrypoints/openai/protocol.py,
        // present in 0.11.0 and 0.19.0.
        match preset {
            EnginePreset::Vllm064 | EnginePreset::Vllm092 => ErrorStyle::Flat,
            // The reference engine answers V1's nested body (live/reference-engine/protocol.py).
            EnginePreset::Vllm0190 | EnginePreset::VllmV1 | EnginePreset::TransformersCb => {
                ErrorStyle::Nested
            }
        }
    }
}

/// A vLLM-shaped error body for `status` with `message`, serialised to JSON text.
pub fn vllm_error_body(style: ErrorStyle, status: StatusCode, message: &str) -> String {
    let kind = error_type(status);
    let code = status.as_u16();
    let body = match style {
        ErrorStyle::Flat => json!({
            "object": "error", "message": message, "type": kind, "param": null, "code": code,
        }),
        ErrorStyle::Nested => json!({
            "error": { "message": message, "type": kind, "param": null, "code": code },
        }),
    };
    body.to_string()
}

/// A complete JSON error response in vLLM's shape.
pub fn vllm_error_response(style: ErrorStyle, status: StatusCode, message: &str) -> Response {
    let body = vllm_error_body(style, status, message);
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// vLLM's `type` field for a status (the OpenAI client's exception class names).
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequestError",
        404 => "NotFoundError",
        408 | 504 => "GatewayTimeoutError",
        502 => "BadGatewayError",
        503 => "ServiceUnavailableError",
        _ if status.is_server_error() => "InternalServerError",
        _ => "BadRequestError",
    }
}

/// Why the LB answered a request itself instead of relaying an engine's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The body is not JSON or lacks a usable `model`.
    BadRequest(String),
    /// No instance serves the `model` asked for.
    UnknownModel(String),
    /// Every replica of the model is ejected by health checks.
    NoHealthyReplica(String),
    /// The engine could not be reached or broke the HTTP exchange (502).
    Upstream(String),
    /// The engine did not answer within the LB's timeout (504).
    Timeout(String),
}

impl ProxyFailure {
    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyFailure::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyFailure::UnknownModel(_) => StatusCode::NOT_FOUND,
            ProxyFailure::NoHealthyReplica(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyFailure::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyFailure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The message in the error body.
    pub fn message(&self) -> String {
        match self {
            ProxyFailure::BadRequest(m) => m.clone(),
            ProxyFailure::UnknownModel(m) => format!("The model `{m}` does not exist."),
            ProxyFailure::NoHealthyReplica(m) => {
                format!("no healthy replica serves model `{m}`: every instance is ejected by health checks")
            }
            ProxyFailure::Upstream(m) => format!("upstream engine failed: {m}"),
            ProxyFailure::Timeout(m) => format!("upstream engine timed out: {m}"),
        }
    }

    /// The response in `style`.
    pub fn into_response(self, style: ErrorStyle) -> Response {
        vllm_error_response(style, self.status(), &self.message())
    }
}

/// Errors starting or running the LB.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LbError {
    /// The listening socket could not be bound.
    #[error(
        "cannot bind the LB to {addr}: {source} (is another process using the port? pick another with --port)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client for upstream requests could not be built.
    #[error("cannot build the LB's HTTP client: {0}")]
    Client(String),
    /// The scenario has nothing to route to.
    #[error("scenario `{0}` has no instances: the LB needs at least one [[instances]] entry")]
    NoInstances(String),
    /// The server failed while running.
    #[error("the LB server failed: {0}")]
    Serve(std::io::Error),
}
