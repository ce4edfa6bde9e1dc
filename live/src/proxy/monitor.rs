//! Background checks of the backends: `GET /health` every `health_interval` (eject after
//! `unhealthy_threshold` failures in a row, readmit on the first success) and, for queue-aware
//! routing, `GET /metrics` every `router.poll_interval_s` into the snapshot the router reads.
//!
//! Probes use their own connection-less client so a dead listener is seen at once (a pooled
//! keep-alive connection would outlive it). Ticks follow absolute deadlines; a slow probe
//! delays the next tick instead of bunching them. The loops never end on their own: drop the
//! `Monitors` to stop them.

use super::LbState;
use super::prom::parse_vllm_load;
use super::table::HealthChange;
use tokio::task::JoinHandle;
use tokio::time::{Duration, MissedTickBehavior, interval};

/// The running check loops; dropping this aborts them.
#[derive(Debug)]
pub struct Monitors {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts one health loop per backend and, when the policy reads polled load, one poll loop per
/// backend. Must be called inside a tokio runtime.
pub fn spawn(state: &LbState) -> Monitors {
    let mut tasks = Vec::new();
    for backend in 0..state.inner.table.infos().len() {
        let s = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = interval(s.inner.opts.health_interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                check_health(&s, backend).await;
            }
        }));
        if let Some(every) = state.inner.poll_interval {
            let s = state.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = interval(every);
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    poll_metrics(&s, backend).await;
                }
            }));
        }
    }
    Monitors { tasks }
}

/// One health check of one backend, recorded in the table.
pub async fn check_health(state: &LbState, backend: usize) {
    let info = &state.inner.table.infos()[backend];
    let timeout = state.inner.opts.health_timeout;
    let url = format!("{}/health", info.url);
    let ok = match state.inner.probe_client.get(&url).timeout(timeout).send().await {
        Ok(resp) => resp.status().is_success(),
        Err(_) => false,
    };
    match state.inner.table.record_health(backend, ok) {
        Some(HealthChange::Ejected) => tracing::warn!(backend = %info.name, "ejected: /health failed"),
        Some(HealthChange::Readmitted) => tracing::info!(backend = %info.name, "readmitted: /health ok"),
        None => {}
    }
}

/// One poll of one backend's `/metrics`; a failed or unreadable poll keeps the last value
/// (the router keeps acting on stale figures, as real LBs do).
pub async fn poll_metrics(state: &LbState, backend: usize) {
    let info = &state.inner.table.infos()[backend];
    let url = format!("{}/metrics", info.url);
    let timeout = state.inner.opts.health_timeout.max(Duration::from_secs(1));
    let text = match state.inner.probe_client.get(&url).timeout(timeout).send().await {
        Ok(resp) if resp.status().is_success() => resp.text().await.ok(),
        _ => None,
    };
    match text.as_deref().and_then(parse_vllm_load) {
        Some(load) => state.inner.table.record_poll(backend, load),
        None => tracing::debug!(backend = %info.name, "metrics poll failed; keeping the last figures"),
    }
}
