//! Fixtures for the server-side tests: a small resolved scenario and a scriptable fake engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sim::ids::{GpuId, ModelId};
use sim::scenario::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// A small model (Llama-3.2-1B-like) under `served_name`.
pub fn model(name: &str, served_name: &str) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        served_name: served_name.into(),
        model_path: served_name.into(),
        num_layers: 16,
        hidden_size: 2048,
        num_attention_heads: 32,
        num_kv_heads: 8,
        head_dim: 64,
        intermediate_size: 8192,
        vocab_size: 128_256,
        tie_word_embeddings: true,
        weight_format: WeightFormat::Bf16,
        max_position_embeddings: 8192,
        kv_cache_dtype_bytes: 2,
    }
}

/// vLLM 0.6.4-like engine settings.
pub fn engine(preset: EnginePreset) -> EngineConfig {
    EngineConfig {
        preset,
        max_num_seqs: 8,
        max_num_batched_tokens: 2048,
        block_size: 16,
        gpu_memory_utilization: 0.9,
        enable_prefix_caching: false,
        enable_chunked_prefill: true,
        max_model_len: 4096,
        kv_cache: KvCacheMode::Static,
        activation_reserve_bytes: 2 << 30,
        num_gpu_blocks_override: Some(256),
        elastic: Default::default(),
        async_scheduling: false,
        scheduler_reserve_full_isl: false,
        quantization: None,
    }
}

/// Step times of a few milliseconds.
pub fn perf() -> PerfSpec {
    PerfSpec::Profile {
        path: "test".into(),
        coefficients: StepCoefficients {
            fixed_s: 0.004,
            per_prefill_token_s: 0.000_01,
            per_decode_seq_s: 0.000_2,
            per_kv_token_s: 0.0,
            per_prefill_attn_pair_s: 0.0,
        },
        overheads: Default::default(),
        fit: None,
    }
}

/// Models `org/a` (instances 0 and 1 on `ports[0..2]`) and `org/b` (instance 2 on `ports[2]`).
pub fn scenario(policy: RouterPolicy, ports: [u16; 3]) -> Scenario {
    let gpu =
        GpuSpec { name: "H100".into(), memory_bytes: 80 << 30, bf16_flops: 989e12, hbm_bytes_per_s: 3.35e12 };
    let instance = |name: &str, model: u32, port: u16| InstanceSpec {
        name: name.into(),
        model: ModelId(model),
        gpu: GpuId(0),
        port,
        engine: engine(EnginePreset::Vllm064),
        perf: perf(),
        launch_command: None,
    };
    Scenario {
        name: "it".into(),
        variant: "default".into(),
        description: String::new(),
        seed: 7,
        gpus: vec![gpu],
        models: vec![model("a", "org/a"), model("b", "org/b")],
        instances: vec![
            instance("a#0", 0, ports[0]),
            instance("a#1", 0, ports[1]),
            instance("b#0", 1, ports[2]),
        ],
        router: RouterSpec {
            policy,
            poll_interval_s: 3600.0,
            poll_offset_s: 0.0,
            score: LoadScore::RunningPlusWaiting,
            prefix: Default::default(),
        },
        workload: WorkloadSpec {
            phases: vec![],
            prefix: PrefixSpec { tokens: 0, groups: 0, fraction: 0.0 },
            prompt_token_id_range: (100, 1000),
        },
        slo: SloSpec::default(),
        output: OutputSpec {
            sample_interval_s: 1.0,
            tokens_csv: false,
            drain_timeout_s: 10.0,
            max_samples: sim::scenario::DEFAULT_MAX_SAMPLES,
        },
        contention: Default::default(),
    }
}

/// What a fake engine does with `POST /v1/completions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `{"backend": name}` at once.
    Json,
    /// Streams `data: first`, waits for `release()`, then `data: [DONE]`.
    Gated,
    /// Answers this status with a JSON error.
    Status(u16),
    /// Never answers.
    Hang,
    /// Streams one chunk, then never sends another.
    StallAfterFirstChunk,
}

struct Ctl {
    name: String,
    mode: Mutex<Mode>,
    load: Mutex<(u32, u32)>,
    gate: watch::Sender<bool>,
    hits: AtomicUsize,
}

/// A fake engine on a loopback port: `/health`, `/metrics` with settable load, and
/// `/v1/completions` per `Mode`.
pub struct FakeEngine {
    /// Its port.
    pub port: u16,
    ctl: Arc<Ctl>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeEngine {
    /// Starts on a free port.
    pub async fn start(name: &str) -> FakeEngine {
        Self::start_on(name, 0).await
    }

    /// Starts on `port` (0: any free port).
    pub async fn start_on(name: &str, port: u16) -> FakeEngine {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ctl = Arc::new(Ctl {
            name: name.into(),
            mode: Mutex::new(Mode::Json),
            load: Mutex::new((0, 0)),
            gate: watch::Sender::new(false),
            hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/health", get(|| async { StatusCode::OK }))
            .route("/metrics", get(metrics))
            .route("/v1/completions", post(completions))
            .with_state(Arc::clone(&ctl));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        FakeEngine { port, ctl, stop: Some(tx), task: Some(task) }
    }

    /// Stops listening and closes every connection (idle ones at once); returns the port.
    pub async fn kill(mut self) -> u16 {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.port
    }

    /// Sets the completions behaviour.
    pub fn set_mode(&self, mode: Mode) {
        *self.ctl.mode.lock().unwrap() = mode;
    }

    /// Sets what `/metrics` reports as running and waiting.
    pub fn set_load(&self, running: u32, waiting: u32) {
        *self.ctl.load.lock().unwrap() = (running, waiting);
    }

    /// Lets every gated stream finish, now and later.
    pub fn release(&self) {
        self.ctl.gate.send_replace(true);
    }

    /// Completions requests received.
    pub fn hits(&self) -> usize {
        self.ctl.hits.load(Ordering::SeqCst)
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn metrics(State(ctl): State<Arc<Ctl>>) -> String {
    let (running, waiting) = *ctl.load.lock().unwrap();
    format!(
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name=\"x\"}} {running}.0\n\
         vllm:num_requests_waiting{{model_name=\"x\"}} {waiting}.0\nvllm:gpu_cache_usage_perc{{model_name=\"x\"}} 0.1\n"
    )
}

async fn completions(State(ctl): State<Arc<Ctl>>, _body: Bytes) -> Response {
    ctl.hits.fetch_add(1, Ordering::SeqCst);
    let mode = *ctl.mode.lock().unwrap();
    match mode {
        Mode::Json => axum::Json(serde_json::json!({"backend": ctl.name})).into_response(),
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            (status, axum::Json(serde_json::json!({"object": "error", "message": "boom", "code": code})))
                .into_response()
        }
        Mode::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Mode::Gated | Mode::StallAfterFirstChunk => {
            let ctl = Arc::clone(&ctl);
            let first = format!("data: {{\"backend\":\"{}\"}}\n\n", ctl.name);
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let ctl = Arc::clone(&ctl);
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, std::io::Error>(Bytes::from(first)), 1)),
                        1 if mode == Mode::Gated => {
                            let mut open = ctl.gate.subscribe();
                            let _ = open.wait_for(|&o| o).await;
                            Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), 2))
                        }
                        1 => {
                            std::future::pending::<()>().await;
                            None
                        }
                        _ => None,
                    }
                }
            });
            ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
        }
    }
}
