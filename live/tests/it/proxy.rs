//! The LB proxy against fake engines on loopback ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::server_fixtures::{FakeEngine, Mode, scenario};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use live::proxy::{ErrorStyle, LbOptions, LbState, UpstreamErrorKind, app};
use serde_json::{Value, json};
use sim::scenario::RouterPolicy;
use std::time::Duration;
use tower::ServiceExt;

struct Rig {
    engines: Vec<FakeEngine>,
    lb: LbState,
}

async fn rig(policy: RouterPolicy, opts: LbOptions) -> Rig {
    let engines =
        vec![FakeEngine::start("a#0").await, FakeEngine::start("a#1").await, FakeEngine::start("b#0").await];
    let ports = [engines[0].port, engines[1].port, engines[2].port];
    let lb = LbState::new(&scenario(policy, ports), opts).unwrap();
    Rig { engines, lb }
}

async fn send(lb: &LbState, path: &str, body: Value) -> Response<Body> {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    app(lb.clone()).oneshot(req).await.unwrap()
}

async fn complete(lb: &LbState, model: &str) -> (StatusCode, Value) {
    let resp =
        send(lb, "/v1/completions", json!({"model": model, "prompt": [1, 2, 3], "max_tokens": 2})).await;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn served_by(lb: &LbState, model: &str) -> String {
    let (status, body) = complete(lb, model).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["backend"].as_str().unwrap().to_string()
}

async fn get_text(lb: &LbState, path: &str) -> String {
    let resp = app(lb.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// Waits (bounded) until `cond` holds on the LB's stats.
async fn eventually(lb: &LbState, what: &str, cond: impl Fn(&LbState) -> bool) {
    for _ in 0..200 {
        if cond(lb) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for: {what}");
}

fn in_flight(lb: &LbState) -> Vec<u32> {
    lb.stats().iter().map(|s| s.in_flight).collect()
}

#[tokio::test]
async fn requests_are_routed_by_model_and_round_robin_over_its_replicas() {
    let rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    let mut picks = Vec::new();
    for _ in 0..4 {
        picks.push(served_by(&rig.lb, "org/a").await);
    }
    assert_eq!(picks, ["a#0", "a#1", "a#0", "a#1"]);
    assert_eq!(served_by(&rig.lb, "org/b").await, "b#0");
    let routed: Vec<u64> = rig.lb.stats().iter().map(|s| s.routed_total).collect();
    assert_eq!(routed, [2, 2, 1]);
    assert_eq!(in_flight(&rig.lb), [0, 0, 0]);
}

#[tokio::test]
async fn an_unknown_model_gets_a_404_in_vllms_error_shape() {
    let rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    let (status, body) = complete(&rig.lb, "org/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["object"], "error");
    assert_eq!(body["type"], "NotFoundError");
    assert_eq!(body["code"], 404);
    assert!(body["message"].as_str().unwrap().contains("org/nope"));
    assert_eq!(rig.lb.unknown_model_total(), 1);
    assert!(rig.engines.iter().all(|e| e.hits() == 0));
}

#[tokio::test]
async fn a_body_without_a_model_is_a_bad_request_in_the_nested_style_when_asked() {
    let opts = LbOptions { error_style: Some(ErrorStyle::Nested), ..LbOptions::default() };
    let rig = rig(RouterPolicy::RoundRobin, opts).await;
    let resp = send(&rig.lb, "/v1/chat/completions", json!({"messages": []})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], 400);
    assert_eq!(body["error"]["type"], "BadRequestError");
}

#[tokio::test]
async fn v1_models_lists_every_served_name() {
    let rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    let models: Value = serde_json::from_str(&get_text(&rig.lb, "/v1/models").await).unwrap();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["org/a", "org/b"]);
    assert!(get_text(&rig.lb, "/health").await.is_empty());
}

#[tokio::test]
async fn queue_aware_herds_onto_the_replica_that_looked_idle_at_the_last_poll() {
    let rig = rig(RouterPolicy::QueueAware, LbOptions::default()).await;
    rig.engines[0].set_load(5, 0);
    rig.engines[1].set_load(0, 0);
    rig.lb.poll_metrics_once().await;
    for e in &rig.engines {
        e.set_mode(Mode::Gated);
    }
    let mut open = Vec::new();
    for _ in 0..3 {
        let resp =
            send(&rig.lb, "/v1/completions", json!({"model": "org/a", "prompt": "hi", "stream": true})).await;
        open.push(resp);
    }
    // The LB itself has 3 requests on a#1 but routes by the stale poll: all pile onto a#1.
    assert_eq!(in_flight(&rig.lb), [0, 3, 0]);
    assert_eq!((rig.engines[0].hits(), rig.engines[1].hits()), (0, 3));

    rig.engines[0].set_load(0, 0);
    rig.engines[1].set_load(3, 0);
    rig.lb.poll_metrics_once().await;
    open.push(
        send(&rig.lb, "/v1/completions", json!({"model": "org/a", "prompt": "hi", "stream": true})).await,
    );
    assert_eq!(in_flight(&rig.lb), [1, 3, 0]);
    for e in &rig.engines {
        e.release();
    }
    for resp in open {
        resp.into_body().collect().await.unwrap();
    }
    assert_eq!(in_flight(&rig.lb), [0, 0, 0]);
}

#[tokio::test]
async fn least_outstanding_spreads_by_the_lbs_own_in_flight_count_and_ignores_polls() {
    let rig = rig(RouterPolicy::LeastOutstanding, LbOptions::default()).await;
    rig.engines[1].set_load(50, 50);
    rig.lb.poll_metrics_once().await;
    for e in &rig.engines {
        e.set_mode(Mode::Gated);
    }
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(
            send(&rig.lb, "/v1/completions", json!({"model": "org/a", "prompt": "hi", "stream": true})).await,
        );
    }
    assert_eq!(in_flight(&rig.lb), [2, 2, 0]);
    // A client that goes away gives its slot back, like a finished response.
    drop(open);
    eventually(&rig.lb, "in-flight slots released", |lb| in_flight(lb) == [0, 0, 0]).await;
}

#[tokio::test]
async fn streamed_chunks_pass_through_before_the_upstream_finishes() {
    let rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    rig.engines[0].set_mode(Mode::Gated);
    let resp =
        send(&rig.lb, "/v1/completions", json!({"model": "org/a", "prompt": "hi", "stream": true})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut first = Vec::new();
    while !first.ends_with(b"\n\n") {
        let frame = body.frame().await.unwrap().unwrap();
        first.extend_from_slice(frame.data_ref().unwrap());
    }
    // The upstream is still holding its last chunk behind the gate.
    assert_eq!(first, b"data: {\"backend\":\"a#0\"}\n\n");
    assert_eq!(in_flight(&rig.lb), [1, 0, 0]);
    rig.engines[0].release();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: [DONE]\n\n");
    assert_eq!(in_flight(&rig.lb), [0, 0, 0]);
}

#[tokio::test]
async fn a_connect_failure_ejects_the_backend_and_retries_on_another_replica() {
    let mut rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    let dead = rig.engines.remove(1);
    let port = dead.kill().await;
    assert_eq!(served_by(&rig.lb, "org/a").await, "a#0");
    // Round-robin now picks a#1: refused, ejected, retried on a#0.
    assert_eq!(served_by(&rig.lb, "org/a").await, "a#0");
    let s = rig.lb.stats()[1];
    assert!(!s.healthy);
    assert_eq!(s.ejections_total, 1);
    assert_eq!(s.upstream_errors_total[UpstreamErrorKind::Connect as usize], 1);
    assert_eq!(served_by(&rig.lb, "org/a").await, "a#0");
    assert_eq!(rig.lb.stats()[1].routed_total, 1, "an ejected backend gets no new requests");

    let back = FakeEngine::start_on("a#1", port).await;
    rig.lb.check_health_once().await;
    assert!(rig.lb.stats()[1].healthy, "a healthy check readmits it");
    let picks = [served_by(&rig.lb, "org/a").await, served_by(&rig.lb, "org/a").await];
    assert!(picks.contains(&"a#1".to_string()), "{picks:?}");
    assert_eq!(back.hits(), 1);
}

#[tokio::test]
async fn a_killed_backend_is_ejected_by_health_checks_and_readmitted_when_it_returns() {
    let mut rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    let _monitors = rig.lb.spawn_monitors();
    let dead = rig.engines.remove(1);
    let port = dead.kill().await;
    eventually(&rig.lb, "a#1 ejected", |lb| !lb.stats()[1].healthy).await;
    assert_eq!(rig.lb.stats()[1].ejections_total, 1);
    assert_eq!(rig.lb.stats()[1].routed_total, 0, "ejected by health checks, not by a request");
    for _ in 0..3 {
        assert_eq!(served_by(&rig.lb, "org/a").await, "a#0");
    }

    let back = FakeEngine::start_on("a#1", port).await;
    eventually(&rig.lb, "a#1 readmitted", |lb| lb.stats()[1].healthy).await;
    let picks = [served_by(&rig.lb, "org/a").await, served_by(&rig.lb, "org/a").await];
    assert!(picks.contains(&"a#1".to_string()), "{picks:?}");
    assert_eq!(back.hits(), 1);
    assert_eq!(rig.lb.stats()[1].ejections_total, 1);
}

#[tokio::test]
async fn a_5xx_before_any_byte_is_retried_on_another_replica() {
    let rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    rig.engines[0].set_mode(Mode::Status(500));
    assert_eq!(served_by(&rig.lb, "org/a").await, "a#1");
    let s = rig.lb.stats()[0];
    assert_eq!(s.upstream_errors_total[UpstreamErrorKind::Status as usize], 1);
    assert!(s.healthy, "a 5xx does not eject");
    assert_eq!(in_flight(&rig.lb), [0, 0, 0]);
}

#[tokio::test]
async fn when_every_replica_answers_5xx_the_last_answer_is_relayed() {
    let rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    rig.engines[0].set_mode(Mode::Status(503));
    rig.engines[1].set_mode(Mode::Status(503));
    let (status, body) = complete(&rig.lb, "org/a").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["message"], "boom");
    assert_eq!((rig.engines[0].hits(), rig.engines[1].hits()), (1, 1));
}

#[tokio::test]
async fn unreachable_replicas_give_a_502_then_a_503_in_vllms_shape() {
    let mut rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    let b = rig.engines.remove(1);
    let a = rig.engines.remove(0);
    a.kill().await;
    b.kill().await;
    let (status, body) = complete(&rig.lb, "org/a").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["object"], "error");
    assert_eq!(body["type"], "BadGatewayError");
    assert_eq!(body["code"], 502);
    assert!(rig.lb.stats()[..2].iter().all(|s| !s.healthy && s.upstream_errors() == 1));
    let (status, body) = complete(&rig.lb, "org/a").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "both are ejected now: {body}");
    assert_eq!(body["code"], 503);
}

#[tokio::test]
async fn an_engine_that_sends_no_headers_in_time_gives_a_504_and_is_not_retried() {
    let opts = LbOptions { first_byte_timeout: Duration::from_millis(200), ..LbOptions::default() };
    let rig = rig(RouterPolicy::RoundRobin, opts).await;
    rig.engines[0].set_mode(Mode::Hang);
    let (status, body) = complete(&rig.lb, "org/a").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["type"], "GatewayTimeoutError");
    assert_eq!(body["code"], 504);
    assert_eq!(rig.engines[1].hits(), 0);
    assert_eq!(rig.lb.stats()[0].upstream_errors_total[UpstreamErrorKind::Timeout as usize], 1);
    assert_eq!(in_flight(&rig.lb), [0, 0, 0]);
}

#[tokio::test]
async fn a_stream_that_stalls_after_the_first_byte_is_cut_and_counted() {
    let opts = LbOptions { idle_timeout: Duration::from_millis(200), ..LbOptions::default() };
    let rig = rig(RouterPolicy::RoundRobin, opts).await;
    rig.engines[0].set_mode(Mode::StallAfterFirstChunk);
    let resp =
        send(&rig.lb, "/v1/completions", json!({"model": "org/a", "prompt": "hi", "stream": true})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().unwrap().starts_with(b"data: "));
    assert!(body.frame().await.unwrap().is_err(), "the client sees a broken body, not a clean end");
    assert_eq!(rig.lb.stats()[0].upstream_errors_total[UpstreamErrorKind::Timeout as usize], 1);
    assert_eq!(in_flight(&rig.lb), [0, 0, 0]);
}

#[tokio::test]
async fn the_lb_metrics_report_per_backend_figures() {
    let rig = rig(RouterPolicy::RoundRobin, LbOptions::default()).await;
    served_by(&rig.lb, "org/a").await;
    let text = get_text(&rig.lb, "/metrics").await;
    assert!(
        text.contains("modelsguard_lb_routed_total{instance=\"a#0\",model_name=\"org/a\"} 1.0"),
        "{text}"
    );
    assert!(text.contains("modelsguard_lb_backend_healthy{instance=\"b#0\",model_name=\"org/b\"} 1.0"));
    assert!(text.contains("modelsguard_lb_backend_in_flight{instance=\"a#1\",model_name=\"org/a\"} 0.0"));
    assert!(text.contains("modelsguard_lb_ejections_total{instance=\"a#1\",model_name=\"org/a\"} 0.0"));
    assert!(text.contains(
        "modelsguard_lb_upstream_errors_total{instance=\"a#0\",model_name=\"org/a\",kind=\"connect\"} 0.0"
    ));
}
