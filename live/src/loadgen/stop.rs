//! Asking a running load to stop: a [`StopHandle`] / [`StopSignal`] pair, and a signal fired by
//! Ctrl-C. Stopping means "send nothing more, let in-flight requests finish for a grace period,
//! then write what was recorded"; it never discards rows.

use tokio::sync::watch;

/// Fires the paired [`StopSignal`]s.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<bool>);

/// Resolves once the paired [`StopHandle`] fires (or is dropped after firing).
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<bool>);

/// A connected handle and signal.
pub fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(false);
    (StopHandle(tx), StopSignal(rx))
}

impl StopHandle {
    /// Asks the load to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl StopSignal {
    /// A signal that fires on Ctrl-C (SIGINT). Spawns a task on the current tokio runtime; if the
    /// handler cannot be installed the signal never fires (the run then ends by its deadline).
    pub fn ctrl_c() -> StopSignal {
        let (handle, signal) = stop_pair();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                handle.stop();
                // Keep the sender alive so the receiver sees `true`, not a closed channel.
                std::future::pending::<()>().await;
            }
        });
        signal
    }

    /// True once stop was asked.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until stop is asked. If the handle is dropped without firing, waits forever.
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|&s| s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
