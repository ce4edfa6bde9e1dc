//! The Python reference engine (`live/reference-engine/server.py`, tiny shape on the CPU), started as
//! a process and read with our own client, SSE and Prometheus code: streamed and plain completions,
//! chat, a refused request, `/metrics`, `/steps`, `/v1/models`, `/health`, and a client disconnect.
//!
//! It needs a Python with the engine's packages, named by `MODELSGUARD_REFENGINE_PYTHON`
//! (`live/reference-engine/setup-venv.sh` makes one and prints its path). Without it the test is
//! skipped, except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use live::client::{
    ExchangeOptions, PromptBuilder, RequestRecord, RunClock, execute, http_error_reason, request_body,
};
use live::prom::{parse_sample, parse_vllm_metrics};
use live::sse::{ApiMode, SseParser, StreamEvent, StreamInterpreter};
use serde_json::{Value, json};
use sim::workload::RequestSpec;
use sim::{ModelId, RequestId, SimTime};
use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON_ENV: &str = "MODELSGUARD_REFENGINE_PYTHON";
const SERVED: &str = "refengine/tiny";
const MAX_MODEL_LEN: u32 = 512;
const STEPS_HEADER: &str = "step,start_unix_s,duration_s,num_scheduled_requests,num_prefill_tokens,\
    num_decode_seqs,num_kv_tokens_read,num_padded_tokens,cuda_graph,captured";

/// The interpreter to run the engine with; `None` (skip) when unset outside CI.
fn python() -> Option<String> {
    match std::env::var(PYTHON_ENV) {
        Ok(p) if !p.trim().is_empty() => Some(p),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{PYTHON_ENV} is not set, so the reference engine cannot be tested: create its venv with \
             `export {PYTHON_ENV}=\"$(live/reference-engine/setup-venv.sh)\"` (.ci/run does this)"
        ),
        _ => {
            eprintln!(
                "skipping the reference-engine test: {PYTHON_ENV} is unset (set it to a Python with torch 2.11, \
                 transformers 5.17, aiohttp, prometheus_client, numpy and psutil, e.g. \
                 `export {PYTHON_ENV}=\"$(live/reference-engine/setup-venv.sh)\"`)"
            );
            None
        }
    }
}

/// The engine process; killed when dropped.
struct Engine {
    child: Child,
    base: String,
    log: tempfile::NamedTempFile,
}

impl Engine {
    fn start(python: &str) -> Engine {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/reference-engine/server.py");
        let args = [
            "--model",
            "tiny",
            "--served-model-name",
            SERVED,
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--port",
            &port.to_string(),
            "--block-size",
            "32",
            "--num-blocks",
            "64",
            "--max-batch-tokens",
            "64",
            "--max-num-seqs",
            "8",
            "--max-model-len",
            &MAX_MODEL_LEN.to_string(),
        ]
        .map(str::to_string);
        let child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python} {script}: {e} (is {PYTHON_ENV} a Python?)"));
        Engine { child, base: format!("http://127.0.0.1:{port}"), log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        let _ = self.log.reopen().unwrap().read_to_string(&mut text);
        text
    }

    /// Waits until `/health` answers 200 (importing torch can take a while on a busy machine).
    async fn wait_healthy(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the reference engine exited ({status}) before serving; its log:\n{}",
                    self.log_text()
                );
            }
            if let Ok(r) = http.get(self.url("/health")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no healthy engine after 300 s; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec(id: u64, num_prompt_tokens: u32, max_tokens: u32) -> RequestSpec {
    RequestSpec {
        id: RequestId(id),
        phase: 0,
        arrival: SimTime::ZERO,
        model: ModelId(0),
        num_prompt_tokens,
        max_tokens,
        content: Default::default(),
    }
}

/// What the engine was asked to compute, to check the step log against.
#[derive(Default)]
struct Work {
    prompt_tokens: u64,
    decode_tokens: u64,
    requests: u64,
    generated: u64,
}

impl Work {
    fn add(&mut self, prompt: u32, output: u32) {
        self.prompt_tokens += u64::from(prompt);
        // The prefill step samples the first token; every other token is one decode step.
        self.decode_tokens += u64::from(output - 1);
        self.requests += 1;
        self.generated += u64::from(output);
    }
}

/// Sends `spec` through the load generator's exchange and returns what it recorded.
async fn exchange(
    http: &reqwest::Client,
    engine: &Engine,
    spec: &RequestSpec,
    mode: ApiMode,
) -> RequestRecord {
    let ids = PromptBuilder { range: (0, 1000), seed: 7 }.token_ids(spec);
    let body = request_body(spec, SERVED, &ids, mode).to_string();
    let path = if mode == ApiMode::Chat { "/v1/chat/completions" } else { "/v1/completions" };
    let opts = ExchangeOptions { mode, keep_raw: false, max_event_bytes: 1 << 20 };
    let mut rec = RequestRecord::default();
    execute(http, &engine.url(path), body, RunClock::start_now(), opts, &mut rec).await.unwrap_or_else(|e| {
        panic!("{mode:?} request failed: {}; engine log:\n{}", e.reason, engine.log_text())
    });
    rec
}

async fn a_streamed_completion_is_one_chunk_per_token_then_usage_then_done(
    http: &reqwest::Client,
    engine: &Engine,
    work: &mut Work,
) {
    let s = spec(1, 40, 6);
    let rec = exchange(http, engine, &s, ApiMode::Completions).await;
    assert_eq!(rec.chunks.len(), 6);
    assert!(rec.chunks.iter().all(|c| c.tokens == 1));
    assert_eq!(rec.output_tokens, 6);
    work.add(40, 6);

    let ids = PromptBuilder { range: (0, 1000), seed: 7 }.token_ids(&s);
    let body = request_body(&s, SERVED, &ids, ApiMode::Completions).to_string();
    let resp = http.post(engine.url("/v1/completions")).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut events = Vec::new();
    SseParser::new().push(&resp.bytes().await.unwrap(), &mut events).unwrap();
    let mut interp = StreamInterpreter::new(ApiMode::Completions);
    let kinds: Vec<StreamEvent> = events.iter().map(|e| interp.on_data(e).unwrap()).collect();
    let mut expected = vec![StreamEvent::Text { tokens: 1 }; 6];
    expected.extend([StreamEvent::Usage, StreamEvent::Done]);
    assert_eq!(kinds, expected, "{events:?}");
    let summary = interp.finish().unwrap();
    assert_eq!((summary.usage.prompt_tokens, summary.usage.completion_tokens), (Some(40), Some(6)));
    assert_eq!(summary.finish_reason.as_deref(), Some("length"));
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["model"], SERVED);
    assert!(first["choices"][0]["text"].as_str().unwrap().starts_with(" w"), "{first}");
    work.add(40, 6);
}

async fn a_refused_request_is_a_vllm_400_and_the_next_one_is_served(
    http: &reqwest::Client,
    engine: &Engine,
    work: &mut Work,
) {
    let bad = json!({"model": SERVED, "prompt": [1, 2, 3], "max_tokens": 3, "min_tokens": 4});
    let resp = http.post(engine.url("/v1/completions")).body(bad.to_string()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let reason = http_error_reason(400, &resp.bytes().await.unwrap());
    assert!(reason.starts_with("HTTP 400: BadRequestError: min_tokens"), "{reason}");
    let too_long = json!({"prompt": [1, 2, 3], "max_tokens": MAX_MODEL_LEN});
    let resp = http.post(engine.url("/v1/completions")).body(too_long.to_string()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("maximum context length"), "{v}");

    let ok = json!({"model": SERVED, "prompt": [1, 2, 3], "max_tokens": 3});
    let resp = http.post(engine.url("/v1/completions")).body(ok.to_string()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    work.add(3, 3);
}

async fn chat_and_a_chunked_prefill_are_served(http: &reqwest::Client, engine: &Engine, work: &mut Work) {
    let rec = exchange(http, engine, &spec(2, 30, 4), ApiMode::Chat).await;
    assert_eq!((rec.chunks.len(), rec.output_tokens), (4, 4));
    work.add(30, 4);
    // 150 prompt tokens > --max-batch-tokens 64: prefilled over three steps.
    let rec = exchange(http, engine, &spec(3, 150, 2), ApiMode::Completions).await;
    assert_eq!(rec.output_tokens, 2);
    work.add(150, 2);
}

/// The value of the one sample of `name` in `text`.
fn sample(text: &str, name: &str) -> f64 {
    let found: Vec<f64> =
        text.lines().filter_map(parse_sample).filter(|s| s.name == name).map(|s| s.value).collect();
    assert_eq!(found.len(), 1, "{name} in\n{text}");
    found[0]
}

async fn metrics_have_the_vllm_names_and_count_the_work(
    http: &reqwest::Client,
    engine: &Engine,
    work: &Work,
) {
    let text = http.get(engine.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let m = parse_vllm_metrics(&text);
    assert!(m.num_requests_running.is_some() && m.num_requests_waiting.is_some(), "{text}");
    assert!(m.kv_cache_usage.is_some_and(|u| (0.0..=1.0).contains(&u)), "{text}");
    assert_eq!(m.num_preemptions_total, Some(0.0));
    assert_eq!(sample(&text, "vllm:prompt_tokens_total"), work.prompt_tokens as f64);
    assert_eq!(sample(&text, "vllm:generation_tokens_total"), work.generated as f64);
    for histogram in [
        "vllm:time_to_first_token_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
        "vllm:request_queue_time_seconds_count",
    ] {
        assert_eq!(sample(&text, histogram), work.requests as f64, "{histogram}");
    }
    let gaps = (work.generated - work.requests) as f64;
    assert_eq!(sample(&text, "vllm:inter_token_latency_seconds_count"), gaps);
    assert_eq!(sample(&text, "vllm:time_per_output_token_seconds_count"), gaps);
    assert!(sample(&text, "vllm:iteration_tokens_total_count") >= 1.0);
    let info = text.lines().filter_map(parse_sample).find(|s| s.name == "vllm:cache_config_info").unwrap();
    for (key, value) in
        [("model_name", SERVED), ("engine", "0"), ("block_size", "32"), ("num_gpu_blocks", "64")]
    {
        assert!(info.labels.contains(&(key, value.to_string())), "{key}={value} in {:?}", info.labels);
    }
}

/// One `/steps` row as numbers.
fn step_rows(csv: &str) -> Vec<Vec<f64>> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(STEPS_HEADER));
    lines
        .map(|l| {
            let row: Vec<f64> = l.split(',').map(|f| f.parse().unwrap()).collect();
            assert_eq!(row.len(), 10, "{l}");
            row
        })
        .collect()
}

async fn the_step_log_adds_up_to_the_work(http: &reqwest::Client, engine: &Engine, work: &Work) {
    // A step's row is written just after its tokens are handed out: allow the loop a moment.
    let mut rows = Vec::new();
    for _ in 0..100 {
        let csv = http.get(engine.url("/steps")).send().await.unwrap().text().await.unwrap();
        rows = step_rows(&csv);
        let decode: f64 = rows.iter().map(|r| r[5]).sum();
        if decode >= work.decode_tokens as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], i as f64, "steps are numbered from 0");
        assert!(r[1] > 1.6e9 && r[2] >= 0.0, "{r:?}");
        assert!(r[3] >= 1.0 && r[3] <= r[4] + r[5], "every scheduled request computes a token: {r:?}");
        assert_eq!(r[7], r[4] + r[5], "eager steps are not padded: {r:?}");
        assert!(r[6] >= r[4] + r[5], "the KV read includes the step's own tokens: {r:?}");
        assert_eq!((r[8], r[9]), (0.0, 0.0), "no CUDA graphs on the CPU: {r:?}");
    }
    let prefill: f64 = rows.iter().map(|r| r[4]).sum();
    let decode: f64 = rows.iter().map(|r| r[5]).sum();
    assert_eq!((prefill, decode), (work.prompt_tokens as f64, work.decode_tokens as f64));
}

async fn models_and_health_answer(http: &reqwest::Client, engine: &Engine) {
    let v: Value = http.get(engine.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"][0]["id"], SERVED);
    assert_eq!(v["data"][0]["owned_by"], "modelsguard-reference-engine");
    assert_eq!(v["data"][0]["max_model_len"], MAX_MODEL_LEN);
    assert_eq!(http.get(engine.url("/health")).send().await.unwrap().status(), 200);
}

async fn a_client_that_disconnects_cancels_its_request(http: &reqwest::Client, engine: &Engine, work: &Work) {
    let body = json!({"prompt": [5, 6, 7], "max_tokens": 400, "stream": true});
    let mut resp = http.post(engine.url("/v1/completions")).body(body.to_string()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _first = resp.chunk().await.unwrap().unwrap();
    drop(resp);
    let mut idle = false;
    for _ in 0..200 {
        let text = http.get(engine.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let m = parse_vllm_metrics(&text);
        if m.num_requests_running == Some(0.0) && m.num_requests_waiting == Some(0.0) {
            let generated = sample(&text, "vllm:generation_tokens_total") - work.generated as f64;
            assert!(
                generated < 400.0,
                "the request ran to its end ({generated} tokens) after the client left"
            );
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        idle,
        "the engine still runs the request after its client disconnected; log:\n{}",
        engine.log_text()
    );
}

#[tokio::test]
async fn the_reference_engine_speaks_the_vllm_protocol_and_logs_its_steps() {
    let Some(python) = python() else { return };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut engine = Engine::start(&python);
    engine.wait_healthy(&http).await;
    let mut work = Work::default();
    a_streamed_completion_is_one_chunk_per_token_then_usage_then_done(&http, &engine, &mut work).await;
    a_refused_request_is_a_vllm_400_and_the_next_one_is_served(&http, &engine, &mut work).await;
    chat_and_a_chunked_prefill_are_served(&http, &engine, &mut work).await;
    metrics_have_the_vllm_names_and_count_the_work(&http, &engine, &work).await;
    the_step_log_adds_up_to_the_work(&http, &engine, &work).await;
    models_and_health_answer(&http, &engine).await;
    a_client_that_disconnects_cancels_its_request(&http, &engine, &work).await;
}
