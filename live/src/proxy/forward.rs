//! Forwarding one OpenAI request: read `model`, route, send upstream, relay the answer chunk by
//! chunk.
//!
//! Retries happen only while nothing has reached the client: a connect failure (which also
//! ejects the backend) or a 5xx status is retried once per remaining replica, up to
//! `LbOptions::max_retries`. A timeout waiting for response headers is a 504 and is not retried
//! (the engine may be working on it); a broken exchange is a 502. Once the first byte is relayed,
//! a failure can only cut the stream: the client sees an incomplete body, and the failure is
//! counted. Prompts are never logged.

use super::LbState;
use super::error::ProxyFailure;
use super::table::{Lease, UpstreamErrorKind};
use crate::prompt_ids::prompt_token_ids;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, header};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use serde_json::Value;
use sim::engine::PromptContent;
use sim::router::{RouteRequest, route_block_hashes};
use sim::scenario::RouterPolicy;
use std::time::Duration;

/// What the LB reads from a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPeek {
    /// The `model` field (served name).
    pub model: String,
    /// Prompt size for the router: token ids when given as ids, else text counted by
    /// [`crate::text_tokens::count_text_tokens`] (the emulator's rule).
    pub num_prompt_tokens: u32,
}

/// Reads `model` and the prompt size from a completions or chat body.
pub fn peek_request(body: &[u8]) -> Result<RequestPeek, ProxyFailure> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ProxyFailure::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    let model = match v.get("model") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(ProxyFailure::BadRequest("`model` must be a string".into())),
        None => {
            return Err(ProxyFailure::BadRequest(
                "the request has no `model` field: the LB routes by it".into(),
            ));
        }
    };
    let prompt = v.get("prompt").map(prompt_size).unwrap_or(0);
    let chat = match v.get("messages") {
        Some(Value::Array(msgs)) => msgs.iter().filter_map(|m| m.get("content")).map(prompt_size).sum(),
        _ => 0,
    };
    let n = prompt.saturating_add(chat);
    Ok(RequestPeek { model, num_prompt_tokens: u32::try_from(n).unwrap_or(u32::MAX) })
}

/// Tokens in a prompt: an id array counts its ids, text by the declared rule of
/// [`crate::text_tokens`]; lists (batches, chat content parts) add up their items.
fn prompt_size(v: &Value) -> u64 {
    match v {
        Value::String(s) => crate::text_tokens::count_text_tokens(s) as u64,
        Value::Array(items) if items.iter().all(Value::is_number) => items.len() as u64,
        Value::Array(items) => items.iter().map(prompt_size).sum(),
        Value::Object(part) => part.get("text").map(prompt_size).unwrap_or(0),
        _ => 0,
    }
}

/// How one upstream attempt ended before any byte went to the client.
enum Attempt {
    /// Relay this response (success, 4xx, or a 5xx not worth retrying).
    Relay(reqwest::Response),
    /// Retry elsewhere if possible; otherwise answer with `failure` or relay `response`.
    Retryable { failure: ProxyFailure, response: Option<reqwest::Response> },
    /// Answer with this failure.
    Fatal(ProxyFailure),
}

/// Forwards a POST to `path` (e.g. `/v1/completions`).
pub async fn forward(state: LbState, path: &'static str, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let style = state.inner.style;
    let peek = match peek_request(&body) {
        Ok(p) => p,
        Err(f) => return f.into_response(style),
    };
    let Some(model) = state.model_id(&peek.model) else {
        state.inner.count_unknown_model();
        return ProxyFailure::UnknownModel(peek.model).into_response(style);
    };
    // The prefix-aware policy hashes the prompt's token blocks itself (`crate::prompt_ids`).
    let hashes = match state.inner.router.policy {
        RouterPolicy::PrefixAware => serde_json::from_slice::<Value>(&body).map_or_else(
            |_| Vec::new(),
            |v| {
                let ids = prompt_token_ids(&v);
                let content = PromptContent::from_token_ids(&ids, state.inner.router.prefix.block_tokens);
                route_block_hashes(&state.inner.router, &content)
            },
        ),
        _ => Vec::new(),
    };
    let req = RouteRequest { model, num_prompt_tokens: peek.num_prompt_tokens, block_hashes: &hashes };
    let table = &state.inner.table;
    let Some(mut lease) = table.lease(&req, &[]) else {
        return ProxyFailure::NoHealthyReplica(peek.model).into_response(style);
    };
    let mut excluded = vec![lease.backend()];
    let mut retries_left = state.inner.opts.max_retries;
    loop {
        match attempt(&state, &lease, path, &headers, &body).await {
            Attempt::Relay(resp) => return relay(resp, lease, state.inner.opts.idle_timeout),
            Attempt::Fatal(failure) => return named(failure.into_response(style), &lease),
            Attempt::Retryable { failure, response } => {
                let next = if retries_left > 0 { table.lease(&req, &excluded) } else { None };
                if let Some(next) = next {
                    tracing::info!(
                        model = %peek.model,
                        from = %lease.info().name,
                        to = %next.info().name,
                        "retrying on another replica: {}", failure.message()
                    );
                    retries_left -= 1;
                    excluded.push(next.backend());
                    lease = next;
                    continue;
                }
                return match response {
                    Some(resp) => relay(resp, lease, state.inner.opts.idle_timeout),
                    None => named(failure.into_response(style), &lease),
                };
            }
        }
    }
}

async fn attempt(state: &LbState, lease: &Lease, path: &str, headers: &HeaderMap, body: &Bytes) -> Attempt {
    let info = lease.info();
    let url = format!("{}{}", info.url, path);
    let mut req = state.inner.client.post(&url).body(body.clone());
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::AUTHORIZATION] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v.clone());
        }
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let sent = tokio::time::timeout(state.inner.opts.first_byte_timeout, req.send()).await;
    let resp = match sent {
        Err(_) => {
            lease.record_error(UpstreamErrorKind::Timeout);
            tracing::warn!(backend = %info.name, "no response headers within {:?}", state.inner.opts.first_byte_timeout);
            return Attempt::Fatal(ProxyFailure::Timeout(format!(
                "{} sent no response within {:.1} s",
                info.name,
                state.inner.opts.first_byte_timeout.as_secs_f64()
            )));
        }
        Ok(Err(e)) if e.is_connect() => {
            lease.record_error(UpstreamErrorKind::Connect);
            if state.inner.table.eject(lease.backend()) {
                tracing::warn!(backend = %info.name, "ejected: connect failed: {e}");
            }
            return Attempt::Retryable {
                failure: ProxyFailure::Upstream(format!(
                    "cannot connect to {} at {}: {}",
                    info.name,
                    info.url,
                    root_cause(&e)
                )),
                response: None,
            };
        }
        Ok(Err(e)) if e.is_timeout() => {
            lease.record_error(UpstreamErrorKind::Timeout);
            return Attempt::Fatal(ProxyFailure::Timeout(format!("{}: {}", info.name, root_cause(&e))));
        }
        Ok(Err(e)) => {
            lease.record_error(UpstreamErrorKind::Protocol);
            tracing::warn!(backend = %info.name, "exchange failed before the response: {e}");
            return Attempt::Fatal(ProxyFailure::Upstream(format!(
                "{} broke the exchange: {}",
                info.name,
                root_cause(&e)
            )));
        }
        Ok(Ok(resp)) => resp,
    };
    if resp.status().is_server_error() {
        lease.record_error(UpstreamErrorKind::Status);
        tracing::warn!(backend = %info.name, status = resp.status().as_u16(), "upstream answered 5xx");
        let failure = ProxyFailure::Upstream(format!("{} answered {}", info.name, resp.status()));
        return Attempt::Retryable { failure, response: Some(resp) };
    }
    Attempt::Relay(resp)
}

/// The innermost error message (reqwest wraps hyper wraps io).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Hop-by-hop headers a proxy must not pass on (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Streams `resp` to the client as it arrives, holding `lease` until the body ends or fails.
fn relay(resp: reqwest::Response, lease: Lease, idle_timeout: Duration) -> Response<Body> {
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            headers.append(HeaderName::clone(name), value.clone());
        }
    }
    let instance = lease.info().name.clone();
    let upstream = resp.bytes_stream().boxed();
    let chunks = futures_util::stream::unfold(Some((upstream, lease)), move |state| async move {
        let (mut upstream, lease) = state?;
        match tokio::time::timeout(idle_timeout, upstream.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some((upstream, lease)))),
            Ok(None) => None,
            Ok(Some(Err(e))) => {
                lease.record_error(UpstreamErrorKind::Protocol);
                tracing::warn!(backend = %lease.info().name, "stream broke after the first byte: {}", root_cause(&e));
                Some((
                    Err(std::io::Error::other(format!("upstream {} broke the stream", lease.info().name))),
                    None,
                ))
            }
            Err(_) => {
                lease.record_error(UpstreamErrorKind::Timeout);
                tracing::warn!(backend = %lease.info().name, "stream stalled for {idle_timeout:?}; cutting it");
                Some((Err(std::io::Error::other(format!("upstream {} stalled", lease.info().name))), None))
            }
        }
    });
    let mut out = Body::from_stream(chunks).into_response();
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    name_instance(&mut out, &instance);
    out
}

/// Names the instance that served (or failed) the request in the response, for the load
/// generator's `instance` column.
fn name_instance(resp: &mut Response<Body>, instance: &str) {
    if let Ok(v) = HeaderValue::from_str(instance) {
        resp.headers_mut().insert(HeaderName::from_static(crate::client::INSTANCE_HEADER), v);
    }
}

fn named(mut resp: Response<Body>, lease: &Lease) -> Response<Body> {
    name_instance(&mut resp, &lease.info().name);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_id_prompts_count_ids_and_text_prompts_count_words() {
        let p = peek_request(br#"{"model":"m","prompt":[1,2,3,4]}"#).unwrap();
        assert_eq!(p, RequestPeek { model: "m".into(), num_prompt_tokens: 4 });
        let p = peek_request(br#"{"model":"m","prompt":"a b  c"}"#).unwrap();
        assert_eq!(p.num_prompt_tokens, 3);
    }

    #[test]
    fn chat_messages_count_the_words_of_every_content_part() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"one two three"}]}]}"#;
        assert_eq!(peek_request(body).unwrap().num_prompt_tokens, 5);
    }

    #[test]
    fn a_body_without_model_or_not_json_is_a_bad_request() {
        assert!(matches!(peek_request(br#"{"prompt":"x"}"#), Err(ProxyFailure::BadRequest(_))));
        assert!(matches!(peek_request(b"nope"), Err(ProxyFailure::BadRequest(_))));
        assert!(matches!(peek_request(br#"{"model":3}"#), Err(ProxyFailure::BadRequest(_))));
    }
}
