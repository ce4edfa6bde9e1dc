//! `live bench`: measures the harness itself on loopback, with no GPU and no real engine.
//!
//! - **Streams**: one emulated instance holds `streams` concurrent SSE streams (open-loop ramp,
//!   then all open at once), each emitting a token every `token_interval`, phase set by its
//!   arrival (as many instances and request arrivals spread real engines' steps). A bench engine
//!   records the instant it emitted every token; the load generator timestamps every chunk as
//!   usual. Lag = client timestamp - emission instant (HTTP formatting, kernel, client parsing,
//!   scheduling delays): the error the harness adds to every measured latency.
//! - **LB overhead**: an echo engine answers every request at once (all tokens, no step time);
//!   the same open-loop constant-rate stream is sent straight to it, then through the LB. The
//!   difference of the TTFT percentiles is what the proxy adds.
//!
//! It does not measure engines, and writes no run dir. Requests are matched to emissions by their
//! prompt length (`tag + 1` tokens).

use crate::client::{PromptBuilder, RunClock, secs_between};
use crate::emulator::{
    EmulatorError, EmulatorHandle, EmulatorOptions, EngineFactory, EngineLoad, NewRequest, StepEngine,
    StepOutput,
};
use crate::loadgen::{
    Finished, FixedSchedule, LoadConfig, LoadError, LoadSink, ModelTarget, Routing, run_load, stop_pair,
};
use crate::proxy::{LbError, LbOptions, LbServer};
use crate::sse::{ApiMode, DEFAULT_MAX_EVENT_BYTES};
use sim::metrics::{LatencyStats, percentile};
use sim::scenario::{Scenario, parse_scenario};
use sim::trace::{InstanceRow, RequestStatus};
use sim::workload::RequestSpec;
use sim::{InstanceId, ModelId, RequestId, SimDuration, SimTime};
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchOptions {
    /// Streams held at once (stream benchmark).
    pub streams: u32,
    /// Tokens per stream.
    pub tokens: u32,
    /// Time between two tokens of one stream.
    pub token_interval: Duration,
    /// Request rate of the LB-overhead benchmark, per second.
    pub rate: f64,
    /// Duration of each LB-overhead run.
    pub duration: Duration,
    /// Run the stream benchmark.
    pub run_streams: bool,
    /// Run the LB-overhead benchmark.
    pub run_lb: bool,
    /// Client connections held open on the LB during the LB-overhead benchmark (idle, plus one
    /// in ten more with half a request head sent): the LB's overhead under slow clients.
    pub idle_connections: u32,
}

/// Result of the stream benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamBench {
    /// Streams asked for.
    pub streams: u32,
    /// Most streams open at once (from the rows' send and end times).
    pub peak_concurrent: u32,
    /// Chunks matched to an emission.
    pub chunks: u64,
    /// Requests that did not end ok.
    pub failed: u64,
    /// Lag percentiles, seconds.
    pub lag: Option<LatencyStats>,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// CPU time of this process over the run / wall time (1.0 = one core busy).
    pub cpu_cores: Option<f64>,
}

/// TTFT of one LB-overhead run.
#[derive(Clone, Debug, PartialEq)]
pub struct EchoRun {
    /// Requests sent.
    pub sent: u64,
    /// Requests that did not end ok.
    pub failed: u64,
    /// Achieved send rate, per second.
    pub achieved_rate: f64,
    /// TTFT percentiles, seconds.
    pub ttft: Option<LatencyStats>,
    /// CPU time of this process over the run / wall time.
    pub cpu_cores: Option<f64>,
}

/// Result of the LB-overhead benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct LbBench {
    /// Offered rate, per second.
    pub rate: f64,
    /// Straight to the echo engine.
    pub direct: EchoRun,
    /// Through the LB.
    pub via_lb: EchoRun,
    /// Connections held open on the LB meanwhile (idle and half-sent).
    pub held_connections: u32,
}

impl LbBench {
    /// TTFT p50 through the LB minus TTFT p50 direct, seconds.
    pub fn overhead_p50(&self) -> Option<f64> {
        Some(self.via_lb.ttft.as_ref()?.p50 - self.direct.ttft.as_ref()?.p50)
    }
}

/// Everything `live bench` measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BenchReport {
    /// The stream benchmark, when run.
    pub streams: Option<StreamBench>,
    /// The LB-overhead benchmark, when run.
    pub lb: Option<LbBench>,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The options make no sense.
    #[error("bench options: {0}")]
    Options(String),
    /// The built-in bench scenario failed to load (a bug).
    #[error("internal: the bench scenario: {0}")]
    Scenario(String),
    /// The emulator failed.
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    /// The LB failed.
    #[error(transparent)]
    Lb(#[from] LbError),
    /// The load generator failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(String),
}

fn ms(s: f64) -> String {
    format!("{:.3}", s * 1e3)
}

impl BenchReport {
    /// The results as markdown tables (milliseconds).
    pub fn table(&self) -> String {
        let mut out = String::new();
        if let Some(s) = &self.streams {
            let _ = writeln!(
                out,
                "| streams | peak open | chunks | failed | lag p50 ms | lag p99 ms | lag max ms | wall s | CPU cores |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
            let (p50, p99, max) = s
                .lag
                .as_ref()
                .map_or(("-".into(), "-".into(), "-".into()), |l| (ms(l.p50), ms(l.p99), ms(l.max)));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {p50} | {p99} | {max} | {:.1} | {} |",
                s.streams,
                s.peak_concurrent,
                s.chunks,
                s.failed,
                s.wall_s,
                s.cpu_cores.map_or("-".into(), |c| format!("{c:.2}"))
            );
            out.push('\n');
        }
        if let Some(b) = &self.lb {
            let _ = writeln!(
                out,
                "| path @ {:.0} req/s, {} connections held on the LB | sent | failed | achieved req/s | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | CPU cores |",
                b.rate, b.held_connections
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
            for (name, r) in [("direct", &b.direct), ("through LB", &b.via_lb)] {
                let (p50, p90, p99) = r
                    .ttft
                    .as_ref()
                    .map_or(("-".into(), "-".into(), "-".into()), |l| (ms(l.p50), ms(l.p90), ms(l.p99)));
                let _ = writeln!(
                    out,
                    "| {name} | {} | {} | {:.0} | {p50} | {p90} | {p99} | {} |",
                    r.sent,
                    r.failed,
                    r.achieved_rate,
                    r.cpu_cores.map_or("-".into(), |c| format!("{c:.2}"))
                );
            }
            let _ = writeln!(
                out,
                "\nLB overhead at p50: {} ms",
                b.overhead_p50().map_or("-".into(), |o| format!("{:.3}", o * 1e3))
            );
        }
        out
    }
}

/// Runs the benchmarks `opts` selects.
pub async fn run_bench(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    if opts.streams == 0 || opts.tokens == 0 || opts.token_interval.is_zero() {
        return Err(BenchError::Options("streams, tokens and the token interval must be > 0".into()));
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        return Err(BenchError::Options(format!("rate must be > 0 requests/s, got {}", opts.rate)));
    }
    let mut report = BenchReport::default();
    if opts.run_streams {
        report.streams = Some(stream_bench(opts).await?);
    }
    if opts.run_lb {
        report.lb = Some(lb_bench(opts).await?);
    }
    Ok(report)
}

const BENCH_SCENARIO: &str = r#"
name = "live-bench"
[cluster]
gpu = "H100-80GB-SXM"
[[instances]]
model = "llama-3.1-8b"
gpu = 0
port = 8001
[router]
policy = "round_robin"
[workload]
prompt_token_id_range = [1, 2]
[[workload.phases]]
num_requests = 1
arrival = { process = "constant", rate = 1.0 }
input_tokens = { dist = "fixed", value = 1 }
output_tokens = { dist = "fixed", value = 1 }
"#;

/// The bench scenario: one instance on a free port.
fn bench_scenario() -> Result<Scenario, BenchError> {
    let file = parse_scenario(BENCH_SCENARIO, Path::new("live-bench.toml"), &[])
        .map_err(|e| BenchError::Scenario(e.to_string()))?;
    let mut s = file.variants.into_iter().next().ok_or_else(|| BenchError::Scenario("no variant".into()))?;
    for i in &mut s.instances {
        i.port = 0;
    }
    Ok(s)
}

/// Emission instants of every token, by tag (prompt length - 1) and token index.
type EmitLog = Arc<Mutex<Vec<Vec<Instant>>>>;

/// A bench engine: every request gets a token each `period` ticks from its arrival, no batching
/// limit, no KV. With a zero tick it answers at once (echo).
struct BenchEngine {
    tick: SimDuration,
    period: u64,
    ticks: u64,
    running: Vec<BenchRequest>,
    log: Option<EmitLog>,
}

struct BenchRequest {
    id: RequestId,
    tag: usize,
    next_due: u64,
    produced: u32,
    max_tokens: u32,
}

impl StepEngine for BenchEngine {
    fn add_request(&mut self, req: NewRequest) -> Result<(), String> {
        if req.num_prompt_tokens == 0 || req.max_tokens == 0 {
            return Err("the bench engine needs a prompt and max_tokens > 0".into());
        }
        self.running.push(BenchRequest {
            id: req.id,
            tag: req.num_prompt_tokens as usize - 1,
            next_due: self.ticks + self.period,
            produced: 0,
            max_tokens: req.max_tokens,
        });
        Ok(())
    }

    fn begin_step(&mut self, _now: SimTime) -> Option<SimDuration> {
        (!self.running.is_empty()).then_some(self.tick)
    }

    fn end_step(&mut self, _now: SimTime, out: &mut StepOutput) {
        self.ticks += 1;
        let at = Instant::now();
        let mut log = self.log.as_ref().map(|l| l.lock().unwrap_or_else(PoisonError::into_inner));
        for r in &mut self.running {
            if r.next_due > self.ticks {
                continue;
            }
            out.tokens.push((r.id, r.produced));
            if let Some(slot) = log.as_mut().and_then(|l| l.get_mut(r.tag)) {
                slot.push(at);
            }
            r.produced += 1;
            r.next_due = self.ticks + self.period;
            if r.produced == r.max_tokens {
                out.finished.push((r.id, 0));
            }
        }
        self.running.retain(|r| r.produced < r.max_tokens);
    }

    fn load(&self) -> EngineLoad {
        EngineLoad {
            running: self.running.len() as u32,
            num_gpu_blocks: 1,
            block_size: 16,
            ..EngineLoad::default()
        }
    }
}

/// Process CPU seconds (user + system); `None` off Linux.
fn cpu_seconds() -> Option<f64> {
    crate::procfs::cpu_seconds()
}

fn http_client() -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .map_err(|e| BenchError::Http(crate::client::error_chain(&e)))
}

fn load_config(base_url: String, served_name: &str, timeout: Duration) -> LoadConfig {
    LoadConfig {
        routing: Routing::Lb { base_url },
        models: vec![ModelTarget { key: "bench".into(), served_name: served_name.to_string() }],
        prompts: PromptBuilder { range: (1, 2), seed: 0 },
        mode: ApiMode::Completions,
        per_request_timeout: timeout,
        deadline: None,
        drain_timeout: timeout,
        grace: Duration::from_secs(1),
        progress: false,
        progress_in_place: false,
        keep_raw: false,
        max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
    }
}

fn spec(id: u64, at: SimTime, prompt: u32, max_tokens: u32) -> RequestSpec {
    RequestSpec {
        id: RequestId(id),
        phase: 0,
        arrival: at,
        model: ModelId(0),
        num_prompt_tokens: prompt,
        max_tokens,
        content: Default::default(),
    }
}

/// Keeps what the benchmarks need from each finished request.
#[derive(Default)]
struct Collect {
    /// (tag, send, end, chunk times) of every request.
    rows: Vec<(usize, SimTime, SimTime, Vec<SimTime>)>,
    ttft: Vec<f64>,
    failed: u64,
}

impl LoadSink for Collect {
    fn on_finished(&mut self, done: Finished) -> io::Result<()> {
        if done.row.status != RequestStatus::Ok {
            self.failed += 1;
        }
        if let Some(t) = done.row.ttft_s {
            self.ttft.push(t);
        }
        let tag = done.row.prompt_tokens.saturating_sub(1) as usize;
        let rec = done.record;
        let send = rec.send.unwrap_or(SimTime::ZERO);
        let end = rec.end.unwrap_or(send);
        self.rows.push((tag, send, end, rec.chunks.iter().map(|c| c.time).collect()));
        Ok(())
    }

    fn on_instance_sample(&mut self, _row: &InstanceRow) -> io::Result<()> {
        Ok(())
    }
}

fn peak_concurrent(rows: &[(usize, SimTime, SimTime, Vec<SimTime>)]) -> u32 {
    let mut edges: Vec<(SimTime, i32)> = rows.iter().flat_map(|r| [(r.1, 1), (r.2, -1)]).collect();
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut open, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        peak = peak.max(open);
    }
    peak.max(0) as u32
}

async fn stream_bench(opts: &BenchOptions) -> Result<StreamBench, BenchError> {
    let scenario = bench_scenario()?;
    let served = scenario.models.first().map(|m| m.served_name.clone()).unwrap_or_default();
    let n = opts.streams as usize;
    let log: EmitLog = Arc::new(Mutex::new(vec![Vec::with_capacity(opts.tokens as usize); n]));
    let tick = Duration::from_millis(1);
    let period = (opts.token_interval.as_nanos() / tick.as_nanos()).max(1) as u64;
    let engine_log = Arc::clone(&log);
    let factory: EngineFactory = Arc::new(move |_id| {
        Ok(Box::new(BenchEngine {
            tick: SimDuration::from_millis(1),
            period,
            ticks: 0,
            running: Vec::new(),
            log: Some(Arc::clone(&engine_log)),
        }) as Box<dyn StepEngine>)
    });
    let emu = EmulatorHandle::start_with(&scenario, None, EmulatorOptions::default(), factory).await?;
    let addr = emu.addr(InstanceId(0)).ok_or(EmulatorError::NoSuchInstance(InstanceId(0)))?;
    // Open every stream within 20% of one stream's life, so all are open together for most of it.
    let life = opts.token_interval.as_secs_f64() * f64::from(opts.tokens);
    let ramp = (life * 0.2).max(0.001);
    let specs = (0..opts.streams)
        .map(|k| {
            let at = SimTime::from_secs_f64(ramp * f64::from(k) / f64::from(opts.streams));
            spec(u64::from(k), at, k + 1, opts.tokens)
        })
        .collect();
    let mut source = FixedSchedule::new(specs);
    let timeout = Duration::from_secs_f64(life * 3.0 + 30.0);
    let cfg = load_config(format!("http://{addr}"), &served, timeout);
    let clock = RunClock::start_now();
    let (_stop_handle, stop) = stop_pair();
    let mut sink = Collect::default();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    run_load(&mut source, cfg, http_client()?, clock, &mut sink, None, stop).await?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| (b - a) / wall.max(1e-9));
    emu.shutdown().await;
    let emitted = log.lock().unwrap_or_else(PoisonError::into_inner);
    let mut lags = Vec::new();
    for (tag, _, _, chunks) in &sink.rows {
        let Some(emits) = emitted.get(*tag) else { continue };
        for (c, e) in chunks.iter().zip(emits) {
            let e =
                SimTime(u64::try_from(e.saturating_duration_since(clock.start()).as_nanos()).unwrap_or(0));
            lags.push(secs_between(e, *c));
        }
    }
    Ok(StreamBench {
        streams: opts.streams,
        peak_concurrent: peak_concurrent(&sink.rows),
        chunks: lags.len() as u64,
        failed: sink.failed,
        lag: LatencyStats::from_samples(&mut lags),
        wall_s: wall,
        cpu_cores: cpu,
    })
}

/// One open-loop constant-rate run of 4-token requests against `base_url`.
async fn echo_run(base_url: String, served: &str, opts: &BenchOptions) -> Result<EchoRun, BenchError> {
    let count = (opts.rate * opts.duration.as_secs_f64()).round().max(1.0) as u64;
    let specs = (0..count).map(|k| spec(k, SimTime::from_secs_f64(k as f64 / opts.rate), 1, 4)).collect();
    let mut source = FixedSchedule::new(specs);
    let cfg = load_config(base_url, served, Duration::from_secs(30));
    let clock = RunClock::start_now();
    let (_stop_handle, stop) = stop_pair();
    let mut sink = Collect::default();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let report = run_load(&mut source, cfg, http_client()?, clock, &mut sink, None, stop).await?;
    let wall = t0.elapsed().as_secs_f64();
    let mut sends: Vec<f64> = sink.rows.iter().map(|r| r.1.as_secs_f64()).collect();
    sends.sort_by(f64::total_cmp);
    let span = match (percentile(&sends, 0.0), percentile(&sends, 100.0)) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => 0.0,
    };
    Ok(EchoRun {
        sent: report.sent,
        failed: sink.failed,
        achieved_rate: if span > 0.0 { (report.sent.saturating_sub(1)) as f64 / span } else { 0.0 },
        ttft: LatencyStats::from_samples(&mut sink.ttft),
        cpu_cores: cpu_seconds().zip(cpu0).map(|(b, a)| (b - a) / wall.max(1e-9)),
    })
}

async fn lb_bench(opts: &BenchOptions) -> Result<LbBench, BenchError> {
    let mut scenario = bench_scenario()?;
    let served = scenario.models.first().map(|m| m.served_name.clone()).unwrap_or_default();
    let factory: EngineFactory =
        Arc::new(|_id| {
            Ok(Box::new(BenchEngine {
                tick: SimDuration(0),
                period: 1,
                ticks: 0,
                running: Vec::new(),
                log: None,
            }) as Box<dyn StepEngine>)
        });
    let emu = EmulatorHandle::start_with(&scenario, None, EmulatorOptions::default(), factory).await?;
    let addr = emu.addr(InstanceId(0)).ok_or(EmulatorError::NoSuchInstance(InstanceId(0)))?;
    for i in &mut scenario.instances {
        i.port = addr.port();
    }
    let lb = LbServer::bind(&scenario, LbOptions { port: 0, ..LbOptions::default() }).await?;
    let lb_addr = lb.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let lb_task = tokio::spawn(lb.run(async move {
        let _ = stop_rx.await;
    }));
    // Held through both paths' runs (the LB's 30 s header timeout outlasts a default bench).
    let mut held = Vec::new();
    let half_sent = opts.idle_connections / 10;
    for k in 0..opts.idle_connections + half_sent {
        let mut conn = tokio::net::TcpStream::connect(lb_addr).await.map_err(|e| {
            BenchError::Options(format!("--idle-connections: connection {k} to the LB failed: {e}"))
        })?;
        if k >= opts.idle_connections {
            use tokio::io::AsyncWriteExt as _;
            let _ = conn.write_all(b"POST /v1/completions HTTP/1.1\r\nhost: lb\r\ncontent-le").await;
        }
        held.push(conn);
    }
    let held_connections = held.len() as u32;
    // Warm both paths (connections, caches) before measuring.
    let warm = BenchOptions { duration: Duration::from_millis(500), ..opts.clone() };
    echo_run(format!("http://{addr}"), &served, &warm).await?;
    echo_run(format!("http://{lb_addr}"), &served, &warm).await?;
    let direct = echo_run(format!("http://{addr}"), &served, opts).await?;
    let via_lb = echo_run(format!("http://{lb_addr}"), &served, opts).await?;
    drop(held);
    let _ = stop_tx.send(());
    let _ = lb_task.await;
    emu.shutdown().await;
    Ok(LbBench { rate: opts.rate, direct, via_lb, held_connections })
}
