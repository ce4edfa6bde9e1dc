//! Stop requests (Ctrl-C, SIGTERM, SIGHUP) as a level: 0 running, 1 stop gracefully (finish in-flight
//! requests for the grace period, then stop the engines), 2 stop now.

use tokio::sync::watch;

/// The receiving side: the campaign checks and awaits it.
#[derive(Clone, Debug)]
pub struct Interrupt(watch::Receiver<u8>);

/// The sending side.
#[derive(Clone, Debug)]
pub struct InterruptHandle(watch::Sender<u8>);

/// A connected handle and interrupt.
pub fn interrupt_pair() -> (InterruptHandle, Interrupt) {
    let (tx, rx) = watch::channel(0);
    (InterruptHandle(tx), Interrupt(rx))
}

impl InterruptHandle {
    /// Raises the level by one (at most 2: the second request means "now").
    pub fn interrupt(&self) {
        self.0.send_modify(|l| *l = (*l + 1).min(2));
    }
}

impl Interrupt {
    /// An interrupt raised by Ctrl-C (SIGINT), SIGTERM and SIGHUP (see `live::signals`). Spawns
    /// a task on the current tokio runtime; where a handler cannot be installed that signal is
    /// ignored.
    pub fn on_signals() -> Interrupt {
        let (handle, interrupt) = interrupt_pair();
        let mut signals = live::signals::StopSignals::install();
        tokio::spawn(async move {
            loop {
                signals.next().await;
                handle.interrupt();
            }
        });
        interrupt
    }

    /// The current level (0: not interrupted).
    pub fn level(&self) -> u8 {
        *self.0.borrow()
    }

    /// Waits until the level rises and returns it; never returns once every handle is gone.
    pub async fn raised(&mut self) -> u8 {
        let seen = self.level();
        loop {
            if self.0.changed().await.is_err() {
                return std::future::pending().await;
            }
            let now = *self.0.borrow_and_update();
            if now > seen {
                return now;
            }
        }
    }
}
