//! Reading a client's request body under the LB's limits: at most `LbOptions::max_body_bytes`
//! (413) and within `LbOptions::client_body_timeout` (408), both answered in vLLM's error shape
//! so an OpenAI client reports them like an engine's errors. A `Content-Length` above the limit
//! is refused before a byte of the body is read. This file does not parse the body.

use super::LbState;
use super::error::vllm_error_response;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// The body, or the error response to send instead.
pub(super) async fn read_body(state: &LbState, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let opts = &state.inner.opts;
    let style = state.inner.style;
    let max = opts.max_body_bytes;
    let too_large = || {
        vllm_error_response(
            style,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body is larger than the LB's limit of {max} bytes (raise --max-body-bytes)"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let timeout = opts.client_body_timeout;
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(vllm_error_response(
            style,
            StatusCode::BAD_REQUEST,
            &format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err(vllm_error_response(
            style,
            StatusCode::REQUEST_TIMEOUT,
            &format!("the request body did not arrive within {:.3}s", timeout.as_secs_f64()),
        )),
    }
}
