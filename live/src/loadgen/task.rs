//! One spawned request: runs the exchange under the per-request timeout and the run's
//! cancellation, and always reports back exactly once — even if it panics (a drop guard reports
//! an internal error), so `requests.csv` never loses a request that was sent.

use crate::client::{self, ExchangeOptions, RequestFailure, RequestRecord, RunClock};
use sim::RequestId;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What a finished task hands back to the driver.
#[derive(Debug)]
pub(crate) struct TaskResult {
    pub id: RequestId,
    pub record: RequestRecord,
    pub result: Result<(), RequestFailure>,
}

/// Everything one task needs.
pub(crate) struct Job {
    pub id: RequestId,
    pub http: reqwest::Client,
    pub url: String,
    pub body: String,
    pub clock: RunClock,
    pub opts: ExchangeOptions,
    pub timeout: Duration,
    pub cancel: watch::Receiver<Option<RequestFailure>>,
    pub results: mpsc::UnboundedSender<TaskResult>,
}

/// Reports an internal error if dropped before [`Reporter::send`] (a panicking task).
struct Reporter {
    id: RequestId,
    tx: Option<mpsc::UnboundedSender<TaskResult>>,
}

impl Reporter {
    fn send(mut self, record: RequestRecord, result: Result<(), RequestFailure>) {
        if let Some(tx) = self.tx.take() {
            // The driver outlives every task it waits for; if it is gone nobody needs the row.
            let _ = tx.send(TaskResult { id: self.id, record, result });
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(TaskResult {
                id: self.id,
                record: RequestRecord::default(),
                result: Err(RequestFailure::error("internal: the request task ended without a result")),
            });
        }
    }
}

/// Waits until the driver cancels, returning its reason.
async fn cancelled(rx: &mut watch::Receiver<Option<RequestFailure>>) -> RequestFailure {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or_else(|| RequestFailure::error("cancelled")),
        // The driver dropped its sender: it no longer waits for us; end quietly.
        Err(_) => RequestFailure::error("cancelled: the load generator stopped"),
    }
}

pub(crate) async fn run_job(job: Job) {
    let Job { id, http, url, body, clock, opts, timeout, mut cancel, results } = job;
    let reporter = Reporter { id, tx: Some(results) };
    let mut rec = RequestRecord::default();
    let result = tokio::select! {
        r = tokio::time::timeout(timeout, client::execute(&http, &url, body, clock, opts, &mut rec)) => {
            match r {
                Ok(r) => r,
                Err(_) => Err(RequestFailure::timeout(format!(
                    "no complete response within the per-request timeout of {:.3}s ({} chunks received)",
                    timeout.as_secs_f64(),
                    rec.chunks.len()
                ))),
            }
        }
        f = cancelled(&mut cancel) => Err(f),
    };
    if result.is_err() && rec.send.is_some() {
        // The exchange was dropped mid-way: it ended now.
        rec.end = Some(rec.end.unwrap_or_else(|| clock.now()));
    }
    reporter.send(rec, result);
}
