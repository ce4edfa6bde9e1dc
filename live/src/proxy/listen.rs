//! The LB's accept loop: the client-side limits that keep `/health` answering while slow, idle
//! or half-sent clients hold connections.
//!
//! - **Connection cap**: at most `LbOptions::max_connections` client connections are served at
//!   once; one more is answered at once with a 503 in vLLM's error shape (`Connection: close`) and
//!   counted, never queued. The cap is lowered, with a warning, when the process may not open
//!   enough file descriptors for it (each client connection can hold one upstream connection).
//! - **Header-read timeout**: hyper's `header_read_timeout` (hyper >= 1.4 starts it as soon as a
//!   connection waits for a request), so a connection that sends no request, half a request head,
//!   or stays idle between keep-alive requests for `client_header_timeout` is closed.
//! - **Graceful shutdown**: on stop, the listener closes, idle connections end and open responses
//!   get `shutdown_grace` to finish.
//!
//! Body limits (size, read timeout) are the handlers' (`body.rs`): they need the request's route.
//! This file does not route or forward.

use super::LbState;
use super::error::vllm_error_body;
use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// File descriptors kept back from the cap for the listener, health probes, metrics polls, logs.
const RESERVED_FDS: u64 = 64;

/// How long a rejected connection may keep sending before it is closed (so the kernel does not
/// reset the connection, and the 503 with it, while the client's request is still arriving).
const REJECT_DRAIN: Duration = Duration::from_secs(1);

/// Raises the soft open-files limit to the hard one (as Go's runtime and nginx's
/// `worker_rlimit_nofile` do) and returns the soft limit in force, when it can be read.
fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            return Some(hard);
        }
        Some(soft)
    }
    #[cfg(not(unix))]
    None
}

/// The connection cap actually enforced: `wanted`, lowered to what the open-files limit allows
/// (two descriptors per connection: the client's and one upstream).
pub(super) fn effective_cap(wanted: usize) -> usize {
    let Some(limit) = raise_fd_limit() else { return wanted.max(1) };
    let allowed = usize::try_from(limit.saturating_sub(RESERVED_FDS) / 2).unwrap_or(usize::MAX).max(1);
    if allowed < wanted {
        tracing::warn!(
            wanted,
            allowed,
            fd_limit = limit,
            "the open-files limit (ulimit -n) allows fewer client connections than max_connections; \
             capping at {allowed} (raise the hard limit to serve more)"
        );
    }
    wanted.min(allowed).max(1)
}

/// Accepts and serves connections on `listener` until `stop` turns true, then waits up to
/// `grace` for open responses. Returns whether they all finished in time.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    state: LbState,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> bool {
    let opts = &state.inner.opts;
    let cap = effective_cap(opts.max_connections);
    let slots = Arc::new(Semaphore::new(cap));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(opts.client_header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            r = stop.wait_for(|&s| s) => { let _ = r; break; }
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Streams are many small writes: without TCP_NODELAY, Nagle's algorithm holds each chunk
        // until the client's delayed ACK (~40 ms on Linux).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on an accepted connection: {e}");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let rejected = state.inner.count_rejected_connection();
            // Warn at the first refusal and every 1000th after, not once per connection.
            if rejected % 1000 == 1 {
                tracing::warn!(cap, rejected, "client connections refused with 503: at the connection cap");
            }
            tokio::spawn(reject_busy(stream, state.inner.style, cap));
            continue;
        };
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("client connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(grace) => false,
    }
}

/// Answers a connection over the cap with a 503 and closes it.
async fn reject_busy(mut stream: TcpStream, style: super::ErrorStyle, cap: usize) {
    let body = vllm_error_body(
        style,
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "the LB is serving its maximum of {cap} client connections; retry later or raise --max-connections"
        ),
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Read what the client still sends, so closing does not reset the connection before it
    // has read the answer.
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REJECT_DRAIN, drain).await;
}
