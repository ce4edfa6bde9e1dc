//! The emulator over real loopback sockets: the wire format, metrics and every fault mode as a
//! client sees it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::server_fixtures::scenario;
use futures_util::StreamExt;
use live::emulator::{
    EmulatorHandle, EmulatorOptions, EngineFactory, EngineLoad, Fault, MetricsNaming, NewRequest, StepEngine,
    StepOutput,
};
use serde_json::{Value, json};
use sim::ids::{InstanceId, RequestId};
use sim::scenario::{RouterPolicy, Scenario};
use sim::time::{SimDuration, SimTime};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Up to `max_running` requests; each step samples one token for each and lasts 5 ms.
struct ToyEngine {
    max_running: usize,
    running: Vec<(RequestId, u32, u32)>,
    waiting: VecDeque<(RequestId, u32, u32)>,
}

impl StepEngine for ToyEngine {
    fn add_request(&mut self, req: NewRequest) -> Result<(), String> {
        if req.num_prompt_tokens > 4096 {
            return Err(format!("prompt of {} tokens exceeds max_model_len 4096", req.num_prompt_tokens));
        }
        self.waiting.push_back((req.id, 0, req.max_tokens));
        Ok(())
    }

    fn begin_step(&mut self, _now: SimTime) -> Option<SimDuration> {
        while self.running.len() < self.max_running {
            let Some(r) = self.waiting.pop_front() else { break };
            self.running.push(r);
        }
        (!self.running.is_empty()).then_some(SimDuration::from_millis(5))
    }

    fn end_step(&mut self, _now: SimTime, out: &mut StepOutput) {
        for r in &mut self.running {
            out.tokens.push((r.0, r.1));
            r.1 += 1;
            if r.1 == r.2 {
                out.finished.push((r.0, 0));
            }
        }
        self.running.retain(|r| r.1 < r.2);
    }

    fn load(&self) -> EngineLoad {
        EngineLoad {
            running: self.running.len() as u32,
            waiting: self.waiting.len() as u32,
            kv_usage: 0.25,
            num_gpu_blocks: 256,
            block_size: 16,
            ..EngineLoad::default()
        }
    }
}

fn toy(max_running: usize) -> EngineFactory {
    Arc::new(move |_| Ok(Box::new(ToyEngine { max_running, running: vec![], waiting: VecDeque::new() })))
}

fn free_port_scenario() -> Scenario {
    scenario(RouterPolicy::RoundRobin, [0, 0, 0])
}

async fn start(opts: EmulatorOptions, max_running: usize) -> EmulatorHandle {
    EmulatorHandle::start_with(&free_port_scenario(), None, opts, toy(max_running)).await.unwrap()
}

fn url(h: &EmulatorHandle, i: u32, path: &str) -> String {
    format!("http://{}{path}", h.addr(InstanceId(i)).unwrap())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(h: &EmulatorHandle, i: u32, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(url(h, i, path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn stream_body(max_tokens: u32) -> Value {
    json!({"model": "org/a", "prompt": [1, 2, 3], "max_tokens": max_tokens, "stream": true,
        "stream_options": {"include_usage": true}})
}

/// The `data:` payloads of a complete SSE body.
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_string())
        .collect()
}

/// Reads SSE events until `n` have arrived.
async fn read_events(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    n: usize,
) -> Vec<String> {
    while buf.matches("\n\n").count() < n {
        let chunk = body.next().await.unwrap().unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    events(buf)
}

#[tokio::test]
async fn a_streamed_request_gets_max_tokens_chunks_then_usage_then_done() {
    let h = start(EmulatorOptions::default(), 4).await;
    let resp = post(&h, 0, "/v1/completions", stream_body(5)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(ev.len(), 5 + 2, "{ev:?}");
    for (k, e) in ev[..5].iter().enumerate() {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], "org/a");
        assert_eq!(v["choices"][0]["text"], " tok");
        let finish = if k == 4 { json!("length") } else { Value::Null };
        assert_eq!(v["choices"][0]["finish_reason"], finish);
    }
    let usage: Value = serde_json::from_str(&ev[5]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], json!({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}));
    assert_eq!(ev[6], "[DONE]");
    h.shutdown().await;
}

#[tokio::test]
async fn chat_streams_open_with_the_assistant_role_and_skip_usage_unless_asked() {
    let h = start(EmulatorOptions::default(), 4).await;
    let body = json!({"model": "org/a", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 2,
        "stream": true});
    let ev = events(&post(&h, 1, "/v1/chat/completions", body).await.text().await.unwrap());
    assert_eq!(ev.len(), 1 + 2 + 1, "{ev:?}");
    let role: Value = serde_json::from_str(&ev[0]).unwrap();
    assert_eq!(role["object"], "chat.completion.chunk");
    assert_eq!(role["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let tok: Value = serde_json::from_str(&ev[2]).unwrap();
    assert_eq!(tok["choices"][0]["delta"]["content"], " tok");
    assert_eq!(tok["choices"][0]["finish_reason"], "length");
    assert_eq!(ev[3], "[DONE]");
    h.shutdown().await;
}

#[tokio::test]
async fn a_non_streaming_request_gets_one_body_with_usage() {
    let h = start(EmulatorOptions::default(), 4).await;
    let resp =
        post(&h, 2, "/v1/completions", json!({"model": "org/b", "prompt": "a b c d", "max_tokens": 3})).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["text"], " tok tok tok");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_models_are_404_and_requests_the_engine_refuses_are_400() {
    let h = start(EmulatorOptions::default(), 4).await;
    let resp = post(&h, 0, "/v1/completions", json!({"model": "org/b", "prompt": "x"})).await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!((v["object"].as_str(), v["code"].as_u64()), (Some("error"), Some(404)));
    let long: Vec<u32> = vec![7; 5000];
    let resp = post(&h, 0, "/v1/completions", json!({"model": "org/a", "prompt": long})).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("max_model_len"), "{v}");
    let models: Value = client().get(url(&h, 2, "/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "org/b");
    assert_eq!(client().get(url(&h, 2, "/health")).send().await.unwrap().status(), 200);
    h.shutdown().await;
}

async fn metric(h: &EmulatorHandle, name: &str) -> f64 {
    let text = client().get(url(h, 0, "/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn metrics_show_running_and_waiting_requests_in_either_naming() {
    for naming in [MetricsNaming::Vllm064, MetricsNaming::V1] {
        let opts = EmulatorOptions { metrics_naming: Some(naming), ..EmulatorOptions::default() };
        let h = start(opts, 1).await;
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(post(&h, 0, "/v1/completions", stream_body(100_000)).await);
        }
        let kv = match naming {
            MetricsNaming::Vllm064 => "vllm:gpu_cache_usage_perc{model_name=\"org/a\"}",
            MetricsNaming::V1 => "vllm:kv_cache_usage_perc{model_name=\"org/a\",engine=\"0\"}",
        };
        assert_eq!(metric(&h, "vllm:num_requests_running").await, 1.0);
        assert_eq!(metric(&h, "vllm:num_requests_waiting").await, 2.0);
        assert_eq!(metric(&h, kv).await, 0.25);
        assert_eq!(metric(&h, "vllm:prompt_tokens_total").await, 9.0);
        drop(open);
        h.shutdown().await;
    }
}

#[tokio::test]
async fn a_killed_instance_cuts_open_streams_refuses_connections_and_comes_back() {
    let mut h = start(EmulatorOptions::default(), 4).await;
    let resp = post(&h, 0, "/v1/completions", stream_body(100_000)).await;
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    read_events(&mut body, &mut buf, 1).await;
    h.set_fault(InstanceId(0), Fault::Kill).await.unwrap();
    let mut cut = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => buf.push_str(std::str::from_utf8(&c).unwrap()),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut || !buf.contains("[DONE]"), "the stream ends without [DONE]");
    assert!(!buf.contains("[DONE]"));
    let err = client().get(url(&h, 0, "/health")).send().await.unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert_eq!(
        client().get(url(&h, 1, "/health")).send().await.unwrap().status(),
        200,
        "the others still serve"
    );

    h.set_fault(InstanceId(0), Fault::None).await.unwrap();
    let ev = events(&post(&h, 0, "/v1/completions", stream_body(2)).await.text().await.unwrap());
    assert_eq!(ev.last().unwrap(), "[DONE]");
    h.shutdown().await;
}

#[tokio::test]
async fn a_server_error_fault_answers_the_status_with_a_vllm_error_body() {
    let opts = EmulatorOptions {
        faults: vec![(InstanceId(0), Fault::ServerError { status: 503 })],
        ..Default::default()
    };
    let h = start(opts, 4).await;
    let resp = post(&h, 0, "/v1/completions", stream_body(2)).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!((v["object"].as_str(), v["code"].as_u64()), (Some("error"), Some(503)));
    assert_eq!(client().get(url(&h, 0, "/health")).send().await.unwrap().status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn a_mid_stream_error_fault_sends_the_error_event_then_done() {
    let opts = EmulatorOptions {
        faults: vec![(InstanceId(0), Fault::MidStreamError { after_tokens: 2 })],
        ..Default::default()
    };
    let h = start(opts, 4).await;
    let ev = events(&post(&h, 0, "/v1/completions", stream_body(10)).await.text().await.unwrap());
    assert_eq!(ev.len(), 2 + 2, "{ev:?}");
    let err: Value = serde_json::from_str(&ev[2]).unwrap();
    assert_eq!(err["error"]["code"], 500);
    assert!(err["error"]["message"].as_str().unwrap().contains("injected"));
    assert_eq!(ev[3], "[DONE]");
    h.shutdown().await;
}

#[tokio::test]
async fn a_malformed_sse_fault_sends_an_event_that_is_not_json() {
    let opts = EmulatorOptions {
        faults: vec![(InstanceId(0), Fault::MalformedSse { after_tokens: 1 })],
        ..Default::default()
    };
    let h = start(opts, 4).await;
    let ev = events(&post(&h, 0, "/v1/completions", stream_body(10)).await.text().await.unwrap());
    assert_eq!(ev.len(), 1 + 2, "{ev:?}");
    assert!(serde_json::from_str::<Value>(&ev[0]).is_ok());
    assert!(serde_json::from_str::<Value>(&ev[1]).is_err(), "{}", ev[1]);
    assert_eq!(ev[2], "[DONE]");
    h.shutdown().await;
}

#[tokio::test]
async fn a_stall_fault_stops_sending_but_keeps_the_connection_open() {
    let opts = EmulatorOptions {
        faults: vec![(InstanceId(0), Fault::Stall { after_tokens: 2 })],
        ..Default::default()
    };
    let h = start(opts, 4).await;
    let mut body = post(&h, 0, "/v1/completions", stream_body(10)).await.bytes_stream();
    let mut buf = String::new();
    assert_eq!(read_events(&mut body, &mut buf, 2).await.len(), 2);
    // 10 tokens take 50 ms; nothing more arrives however long we wait (bounded here).
    assert!(tokio::time::timeout(Duration::from_millis(500), body.next()).await.is_err());
    h.shutdown().await;
}

#[tokio::test]
async fn the_admin_endpoint_sets_and_reports_a_fault() {
    let h = start(EmulatorOptions::default(), 4).await;
    let set = post(&h, 1, "/admin/fault", json!({"fault": "server_error", "status": 502})).await;
    assert_eq!(set.status(), 200);
    assert_eq!(h.fault(InstanceId(1)), Some(Fault::ServerError { status: 502 }));
    let got: Value = client().get(url(&h, 1, "/admin/fault")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, json!({"fault": "server_error", "status": 502}));
    assert_eq!(post(&h, 1, "/v1/completions", stream_body(2)).await.status(), 502);
    assert_eq!(post(&h, 1, "/admin/fault", json!({"fault": "bogus"})).await.status(), 400);
    h.shutdown().await;
}

#[tokio::test]
async fn the_lb_streams_emulated_tokens_and_routes_around_a_killed_instance() {
    use live::proxy::{LbOptions, LbState, app};
    use tower::ServiceExt;
    let mut h = start(EmulatorOptions::default(), 4).await;
    let ports = [0, 1, 2].map(|i| h.addr(InstanceId(i)).unwrap().port());
    let lb = LbState::new(&scenario(RouterPolicy::RoundRobin, ports), LbOptions::default()).unwrap();
    let _monitors = lb.spawn_monitors();
    let through_lb = |body: Value| {
        let req = axum::http::Request::post("/v1/completions")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        app(lb.clone()).oneshot(req)
    };
    for _ in 0..2 {
        let resp = through_lb(stream_body(4)).await.unwrap();
        assert_eq!(resp.status(), 200);
        let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        let ev = events(std::str::from_utf8(&bytes).unwrap());
        assert_eq!(ev.len(), 4 + 2);
        assert_eq!(ev[5], "[DONE]");
    }
    assert_eq!(lb.stats().iter().map(|s| s.routed_total).collect::<Vec<_>>(), [1, 1, 0]);

    h.set_fault(InstanceId(0), Fault::Kill).await.unwrap();
    for _ in 0..200 {
        if !lb.stats()[0].healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!lb.stats()[0].healthy, "health checks eject the killed instance");
    for _ in 0..3 {
        assert_eq!(through_lb(stream_body(2)).await.unwrap().status(), 200);
    }
    assert_eq!(lb.stats()[0].routed_total, 1, "nothing more goes to the killed instance");
    assert_eq!(lb.stats()[1].routed_total, 4);
    h.shutdown().await;
}

/// Runs the load generator's own SSE parser and interpreter over a whole response body.
fn interpret(body: &str) -> Result<live::sse::StreamSummary, live::sse::StreamError> {
    let mut parser = live::sse::SseParser::new();
    let mut payloads = Vec::new();
    parser.push(body.as_bytes(), &mut payloads).unwrap();
    let mut it = live::sse::StreamInterpreter::new(live::sse::ApiMode::Completions);
    for p in &payloads {
        it.on_data(p)?;
    }
    it.finish()
}

#[tokio::test]
async fn the_load_generator_reads_each_stream_fault_as_the_failure_it_is() {
    use live::sse::StreamError;
    let mut h = start(EmulatorOptions::default(), 4).await;
    let ok = interpret(&post(&h, 0, "/v1/completions", stream_body(5)).await.text().await.unwrap()).unwrap();
    assert_eq!(ok.output_tokens, 5);
    let id = InstanceId(0);
    h.set_fault(id, Fault::MidStreamError { after_tokens: 2 }).await.unwrap();
    let err =
        interpret(&post(&h, 0, "/v1/completions", stream_body(5)).await.text().await.unwrap()).unwrap_err();
    assert!(matches!(err, StreamError::Server(ref m) if m.contains("injected")), "{err:?}");
    h.set_fault(id, Fault::MalformedSse { after_tokens: 2 }).await.unwrap();
    let err =
        interpret(&post(&h, 0, "/v1/completions", stream_body(5)).await.text().await.unwrap()).unwrap_err();
    assert!(matches!(err, StreamError::Malformed { .. }), "{err:?}");
    h.shutdown().await;
}

async fn start_sim(opts: EmulatorOptions) -> EmulatorHandle {
    EmulatorHandle::start(&free_port_scenario(), Some(vec![InstanceId(0)]), opts).await.unwrap()
}

#[tokio::test]
async fn the_simulators_engine_streams_max_tokens_chunks_then_usage_then_done() {
    let h = start_sim(EmulatorOptions { time_scale: 2.0, ..EmulatorOptions::default() }).await;
    let ev = events(&post(&h, 0, "/v1/completions", stream_body(6)).await.text().await.unwrap());
    assert_eq!(ev.len(), 6 + 2, "{ev:?}");
    let usage: Value = serde_json::from_str(&ev[6]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 6);
    assert_eq!(ev[7], "[DONE]");
    assert!(h.addr(InstanceId(1)).is_none(), "only the instances asked for are emulated");
    h.shutdown().await;
}

#[tokio::test]
async fn the_simulators_engine_caps_the_batch_at_max_num_seqs_and_queues_the_rest() {
    let h = start_sim(EmulatorOptions::default()).await;
    let mut open = Vec::new();
    for _ in 0..10 {
        open.push(post(&h, 0, "/v1/completions", stream_body(4000)).await);
    }
    // max_num_seqs is 8: once a step has admitted what it can, 8 run and 2 wait.
    let mut seen = (0.0, 0.0);
    for _ in 0..200 {
        seen = (metric(&h, "vllm:num_requests_running").await, metric(&h, "vllm:num_requests_waiting").await);
        if seen == (8.0, 2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, (8.0, 2.0));
    assert!(metric(&h, "vllm:gpu_cache_usage_perc").await > 0.0);
    drop(open);
    h.shutdown().await;
}

#[tokio::test]
async fn the_simulators_engine_refuses_a_request_longer_than_max_model_len() {
    let h = start_sim(EmulatorOptions::default()).await;
    let resp =
        post(&h, 0, "/v1/completions", json!({"model": "org/a", "prompt": [1, 2, 3], "max_tokens": 5000}))
            .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], 400);
    h.shutdown().await;
}

/// An emulated vLLM V1 instance with async scheduling on (the preset's default), on the
/// simulator's engine and the real clock.
async fn start_sim_async() -> EmulatorHandle {
    let mut s = free_port_scenario();
    for i in &mut s.instances {
        i.engine.preset = sim::scenario::EnginePreset::VllmV1;
        i.engine.async_scheduling = true;
    }
    EmulatorHandle::start(&s, Some(vec![InstanceId(0)]), EmulatorOptions::default()).await.unwrap()
}

// Regression: with async scheduling a request reaching an idle engine used to be stamped a few
// nanoseconds after the step start the loop asked the engine for, so the engine held it back for
// a "next" step that nothing would ever start, and the stream hung. The timeout only turns a hang
// into a failure; it does not measure anything.
#[tokio::test]
async fn an_async_scheduling_instance_serves_a_lone_request_and_another_after_idle() {
    let h = start_sim_async().await;
    for round in 0..2 {
        let body = tokio::time::timeout(Duration::from_secs(30), async {
            post(&h, 0, "/v1/completions", stream_body(5)).await.text().await.unwrap()
        })
        .await
        .unwrap_or_else(|_| panic!("request {round} never got a step"));
        let ev = events(&body);
        assert_eq!(ev.len(), 5 + 2, "request {round}: {ev:?}");
        assert_eq!(ev[6], "[DONE]");
        // Idle in between: the engine has finished and the next request starts a step of its own.
        for _ in 0..200 {
            if metric(&h, "vllm:num_requests_running").await == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metric(&h, "vllm:num_requests_running").await, 0.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown().await;
}

/// An engine whose first step with work fails (as the loop's clock did on a huge time scale).
struct FailingEngine {
    has_work: bool,
}

impl StepEngine for FailingEngine {
    fn add_request(&mut self, _req: NewRequest) -> Result<(), String> {
        self.has_work = true;
        Ok(())
    }
    fn begin_step(&mut self, _now: SimTime) -> Option<SimDuration> {
        assert!(!self.has_work, "injected engine-loop failure (test)");
        None
    }
    fn end_step(&mut self, _now: SimTime, _out: &mut StepOutput) {}
    fn load(&self) -> EngineLoad {
        EngineLoad::default()
    }
}

#[tokio::test]
async fn an_instance_whose_engine_loop_died_fails_its_health_check_so_the_lb_ejects_it() {
    let factory: EngineFactory = Arc::new(|_| Ok(Box::new(FailingEngine { has_work: false })));
    let h = EmulatorHandle::start_with(&free_port_scenario(), None, EmulatorOptions::default(), factory)
        .await
        .unwrap();
    let health = || async { client().get(url(&h, 0, "/health")).send().await.unwrap().status().as_u16() };
    assert_eq!(health().await, 200, "healthy before any request");
    // The request kills the loop; however its response ends, /health must then say so.
    let sent = client().post(url(&h, 0, "/v1/completions")).json(&stream_body(3)).send().await;
    if let Ok(resp) = sent {
        let _ = resp.text().await;
    }
    let mut status = health().await;
    for _ in 0..400 {
        if status != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        status = health().await;
    }
    assert_eq!(status, 503, "a dead engine loop must fail /health");
    h.shutdown().await;
}

#[tokio::test]
async fn time_scales_outside_the_documented_range_are_refused_before_serving() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300, 1e-300] {
        let opts = EmulatorOptions { time_scale: bad, ..EmulatorOptions::default() };
        let err = EmulatorHandle::start_with(&free_port_scenario(), None, opts, toy(1)).await.err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("out of range"), "time scale {bad}: {text}");
    }
}

#[tokio::test]
async fn a_repeated_prompt_reports_its_cached_blocks_in_usage_as_vllm_does() {
    let mut sc = free_port_scenario();
    sc.instances[0].engine.enable_prefix_caching = true;
    let block = sc.instances[0].engine.block_size;
    let h = EmulatorHandle::start(&sc, Some(vec![InstanceId(0)]), EmulatorOptions::default()).await.unwrap();
    // Four full blocks and a partial one: the second request finds the four full blocks cached.
    let prompt: Vec<u32> = (1..=4 * block + 3).collect();
    let body = json!({"model": "org/a", "prompt": prompt, "max_tokens": 2, "stream": true,
        "stream_options": {"include_usage": true}});
    let cached = |text: String| {
        let ev = events(&text);
        let usage: Value = serde_json::from_str(&ev[ev.len() - 2]).unwrap();
        usage["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64()
    };
    let first = cached(post(&h, 0, "/v1/completions", body.clone()).await.text().await.unwrap());
    let second = cached(post(&h, 0, "/v1/completions", body).await.text().await.unwrap());
    assert_eq!(first, Some(0), "nothing is cached before the first request");
    assert_eq!(second, Some(u64::from(4 * block)), "the full blocks of the first prompt are hits");
    h.shutdown().await;
}
