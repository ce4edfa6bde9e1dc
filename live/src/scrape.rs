//! Polls each instance's `/metrics` every interval and turns the answer into `instances.csv`
//! rows ([`InstanceRow`]), sent to the load generator (which routes on them and hands them to the
//! trace). All instances of one tick share one timestamp, the tick's start.
//!
//! A scrape that fails or times out produces no row (the trace shows the gap); it is counted in
//! [`ScrapeStats`] with its last reason. Parsing is `prom`'s job.

use crate::client::{RunClock, error_chain};
use crate::loadgen::InstanceSample;
use crate::prom::{VllmMetrics, parse_vllm_metrics};
use sim::trace::InstanceRow;
use sim::{InstanceId, SimTime};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Most bytes of a `/metrics` body read.
const MAX_METRICS_BYTES: usize = 8 << 20;

/// One instance to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// Index in the scenario.
    pub instance: InstanceId,
    /// Instance name.
    pub name: String,
    /// Model key.
    pub model: String,
    /// GPU index.
    pub gpu: u32,
    /// Full URL of its metrics, e.g. `http://127.0.0.1:8001/metrics`.
    pub metrics_url: String,
}

/// How scraping went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Rows produced.
    pub rows: u64,
    /// Scrapes that failed (connection, status, timeout, no vLLM series).
    pub failures: u64,
    /// The last failure's reason.
    pub last_failure: Option<String>,
}

fn to_u32(v: Option<f64>) -> u32 {
    // Gauges are whole numbers; round and clamp whatever a server sends.
    v.map_or(0, |x| x.round().clamp(0.0, f64::from(u32::MAX)) as u32)
}

/// The row of `target` at `time` from `m`; `None` when `m` holds none of the vLLM series (not a
/// vLLM server, or an empty scrape). Missing series read as 0.
pub fn instance_row(time: SimTime, target: &ScrapeTarget, m: &VllmMetrics) -> Option<InstanceRow> {
    if *m == VllmMetrics::default() {
        return None;
    }
    Some(InstanceRow {
        time_s: time.as_secs_f64(),
        instance: target.name.clone(),
        model: target.model.clone(),
        gpu: target.gpu,
        num_requests_running: to_u32(m.num_requests_running),
        num_requests_waiting: to_u32(m.num_requests_waiting),
        kv_cache_usage: m.kv_cache_usage.unwrap_or(0.0).clamp(0.0, 1.0),
        num_preemptions_total: m.num_preemptions_total.map_or(0, |x| x.round().max(0.0) as u64),
        mapped_pages: None,
        gpu_pool_free_bytes: None,
    })
}

/// Fetches and parses one `/metrics`.
pub async fn scrape_once(http: &reqwest::Client, url: &str) -> Result<VllmMetrics, String> {
    let mut resp = http.get(url).send().await.map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(c) = resp.chunk().await.map_err(|e| format!("GET {url}: {}", error_chain(&e)))? {
        if body.len() + c.len() > MAX_METRICS_BYTES {
            return Err(format!("GET {url}: body larger than {MAX_METRICS_BYTES} bytes"));
        }
        body.extend_from_slice(&c);
    }
    Ok(parse_vllm_metrics(&String::from_utf8_lossy(&body)))
}

/// Runs [`scrape_loop`] on a thread of its own, with its own single-threaded runtime and HTTP
/// client, until `stop` turns true; the receiver gets its stats when it ends.
///
/// Why a thread: parsing a large `/metrics` page (vLLM's histograms run to hundreds of KB) is CPU
/// work; on the load generator's runtime it delayed the sends scheduled just after each scrape
/// (issue 12). Measured with the ignored test `measure_send_lag` (debug build, the 2-core dev
/// machine under a load of 7, 400 req/s, a 1 MB page scraped every second): send lag p99 24.5 ms,
/// max 69 ms, in a burst right after a scrape, with the scraper on the load generator's runtime;
/// p99 7-14 ms, max 16-35 ms with it on this thread (4 runs); 7.9 ms and 18 ms without scraping.
/// What remains is the two cores being shared, which the run's send-lag warning reports. Its own
/// client keeps its connections off the load generator's pool, which it may share a host with.
pub fn spawn_scraper(
    targets: Vec<ScrapeTarget>,
    interval: Duration,
    clock: RunClock,
    tx: mpsc::Sender<InstanceSample>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<ScrapeStats>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("modelsguard-scrape".into()).spawn(move || {
        let failed = |reason: String| ScrapeStats {
            failures: 1,
            last_failure: Some(reason),
            ..ScrapeStats::default()
        };
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = done_tx.send(failed(format!("cannot start the scraper's runtime: {e}")));
                return;
            }
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build();
        let stats = match http {
            Ok(http) => rt.block_on(scrape_loop(http, targets, interval, clock, tx, stop)),
            Err(e) => failed(format!("cannot build the scraper's HTTP client: {}", error_chain(&e))),
        };
        let _ = done_tx.send(stats);
    })?;
    Ok(done_rx)
}

/// Scrapes every target each `interval` until `stop` turns true or `tx` closes. Each scrape may
/// take at most `max(interval, 1 s)`.
pub async fn scrape_loop(
    http: reqwest::Client,
    targets: Vec<ScrapeTarget>,
    interval: Duration,
    clock: RunClock,
    tx: mpsc::Sender<InstanceSample>,
    mut stop: watch::Receiver<bool>,
) -> ScrapeStats {
    let mut stats = ScrapeStats::default();
    let per_scrape = interval.max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Biased to the tick: the first round always runs (the first tick is immediate); later
        // ticks are never ready at once, so a stop is seen before the next round.
        tokio::select! {
            biased;
            _ = tick.tick() => {}
            r = stop.wait_for(|&s| s) => { let _ = r; return stats; }
        }
        let now = clock.now();
        let mut set = tokio::task::JoinSet::new();
        for (k, t) in targets.iter().enumerate() {
            let (http, url) = (http.clone(), t.metrics_url.clone());
            set.spawn(async move {
                let r = tokio::time::timeout(per_scrape, scrape_once(&http, &url)).await;
                (k, r.unwrap_or_else(|_| Err(format!("GET {url}: no answer within {per_scrape:?}"))))
            });
        }
        let mut results: Vec<Option<Result<VllmMetrics, String>>> = vec![None; targets.len()];
        while let Some(j) = set.join_next().await {
            if let Ok((k, r)) = j {
                results[k] = Some(r);
            }
        }
        for (t, r) in targets.iter().zip(results) {
            let r = r.unwrap_or_else(|| Err("internal: scrape task failed".to_string()));
            let row = r.and_then(|m| {
                instance_row(now, t, &m)
                    .ok_or_else(|| format!("{}: no vllm: series in /metrics", t.metrics_url))
            });
            match row {
                Ok(row) => {
                    stats.rows += 1;
                    if tx.send(InstanceSample { instance: t.instance, row }).await.is_err() {
                        return stats;
                    }
                }
                Err(e) => {
                    stats.failures += 1;
                    stats.last_failure = Some(e);
                }
            }
        }
    }
}
