//! The signals that mean "stop": SIGINT (Ctrl-C), SIGTERM (what `timeout`, `docker stop`, `kill`
//! and a CI cancel send) and SIGHUP (the terminal closed). Every long-running command treats the
//! three alike: the first asks for a graceful stop, a second one for an immediate stop.
//!
//! Built on tokio's `signal::unix`; once a handler is installed, tokio keeps that signal from
//! terminating the process for the process's lifetime, so whoever installs it must act on it.
//! This module only listens; what a stop means is the caller's business.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Listeners for SIGINT, SIGTERM and SIGHUP. A signal whose handler cannot be installed is never
/// reported (the process then keeps the default action for it).
#[derive(Debug)]
pub struct StopSignals {
    listeners: Vec<(&'static str, Signal)>,
}

impl StopSignals {
    /// Installs the handlers. Must be called inside a tokio runtime.
    pub fn install() -> StopSignals {
        let kinds = [
            ("Ctrl-C (SIGINT)", SignalKind::interrupt()),
            ("SIGTERM", SignalKind::terminate()),
            ("SIGHUP", SignalKind::hangup()),
        ];
        let listeners =
            kinds.into_iter().filter_map(|(name, kind)| Some((name, signal(kind).ok()?))).collect();
        StopSignals { listeners }
    }

    /// Waits for the next stop signal and returns its name (e.g. `"SIGTERM"`). Never returns
    /// when no handler could be installed.
    pub async fn next(&mut self) -> &'static str {
        if self.listeners.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.listeners.iter_mut().map(|(name, s)| {
            let name = *name;
            Box::pin(async move {
                match s.recv().await {
                    Some(()) => name,
                    // The driver is gone (runtime shutting down): never fire.
                    None => std::future::pending().await,
                }
            })
        });
        futures_util::future::select_all(waits).await.0
    }
}

/// Resolves on the first SIGINT, SIGTERM or SIGHUP received after the call. The handlers are
/// installed by the call itself (inside a tokio runtime), not when the future is first polled, so
/// a signal that arrives in between is not lost, nor does it kill the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let mut signals = StopSignals::install();
    async move {
        signals.next().await;
    }
}
