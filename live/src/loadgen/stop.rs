//! Asking a running load to stop: a [`StopHandle`] / [`StopSignal`] pair, and a signal fired by
//! Ctrl-C, SIGTERM or SIGHUP. A stop means "send nothing more, let in-flight requests finish for a grace period,
//! then write what was recorded"; an immediate stop (a second Ctrl-C) skips the grace period.
//! Neither ever discards rows.

use crate::signals::StopSignals;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// How far a stop has gone.
const RUNNING: u8 = 0;
const GRACEFUL: u8 = 1;
const IMMEDIATE: u8 = 2;

/// Fires the paired [`StopSignal`]s.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<u8>, Arc<OnceLock<String>>);

/// Resolves once the paired [`StopHandle`] fires.
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<u8>, Arc<OnceLock<String>>);

/// A connected handle and signal.
pub fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(RUNNING);
    let cause = Arc::new(OnceLock::new());
    (StopHandle(tx, Arc::clone(&cause)), StopSignal(rx, cause))
}

impl StopHandle {
    /// [`StopHandle::stop`], recording what asked for it (e.g. `"SIGTERM"`) unless a cause was
    /// already recorded.
    pub fn stop_because(&self, cause: &str) {
        let _ = self.1.set(cause.to_string());
        self.stop();
    }

    /// Asks the load to stop sending and to give in-flight requests the grace period.
    pub fn stop(&self) {
        self.0.send_if_modified(|s| {
            let was = *s;
            *s = (*s).max(GRACEFUL);
            was != *s
        });
    }

    /// Asks the load to stop now: in-flight requests are cancelled without a grace period.
    pub fn stop_now(&self) {
        self.0.send_replace(IMMEDIATE);
    }
}

impl StopSignal {
    /// A signal that fires on Ctrl-C (SIGINT), SIGTERM or SIGHUP: the first asks for a graceful
    /// stop (recording the signal's name as the cause), the second for an immediate one. The
    /// handlers are installed before this returns, and a task on the current tokio runtime
    /// watches them; a handler that cannot be installed never fires (see [`crate::signals`]).
    pub fn on_signals() -> StopSignal {
        let (handle, signal) = stop_pair();
        let mut signals = StopSignals::install();
        tokio::spawn(async move {
            let first = signals.next().await;
            handle.stop_because(first);
            signals.next().await;
            handle.stop_now();
            // Keep the sender alive so receivers keep seeing the stop, not a closed channel.
            std::future::pending::<()>().await
        });
        signal
    }

    /// What asked for the stop (a signal's name), when the handle recorded it.
    pub fn cause(&self) -> Option<&str> {
        self.1.get().map(String::as_str)
    }

    /// True once any stop was asked.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow() >= GRACEFUL
    }

    /// Waits until a stop (graceful or immediate) is asked. If the handle is dropped without
    /// firing, waits forever.
    pub async fn stopped(&mut self) {
        self.wait_level(GRACEFUL).await;
    }

    /// Waits until an immediate stop is asked.
    pub async fn stopped_now(&mut self) {
        self.wait_level(IMMEDIATE).await;
    }

    async fn wait_level(&mut self, level: u8) {
        if self.0.wait_for(|&s| s >= level).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
