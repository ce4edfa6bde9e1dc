//! Asking a running load to stop: a [`StopHandle`] / [`StopSignal`] pair, and a signal fired by
//! Ctrl-C. A stop means "send nothing more, let in-flight requests finish for a grace period,
//! then write what was recorded"; an immediate stop (a second Ctrl-C) skips the grace period.
//! Neither ever discards rows.

use tokio::sync::watch;

/// How far a stop has gone.
const RUNNING: u8 = 0;
const GRACEFUL: u8 = 1;
const IMMEDIATE: u8 = 2;

/// Fires the paired [`StopSignal`]s.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<u8>);

/// Resolves once the paired [`StopHandle`] fires.
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<u8>);

/// A connected handle and signal.
pub fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(RUNNING);
    (StopHandle(tx), StopSignal(rx))
}

impl StopHandle {
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
    /// A signal that fires on Ctrl-C (SIGINT): the first asks for a graceful stop, the second for
    /// an immediate one. Spawns a task on the current tokio runtime; if the handler cannot be
    /// installed the signal never fires (the run then ends by itself or by its deadline). Note
    /// that once installed, tokio keeps SIGINT from terminating the process for its lifetime.
    pub fn ctrl_c() -> StopSignal {
        let (handle, signal) = stop_pair();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return std::future::pending::<()>().await;
            }
            handle.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                handle.stop_now();
            }
            // Keep the sender alive so receivers keep seeing the stop, not a closed channel.
            std::future::pending::<()>().await
        });
        signal
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
