//! Observers: where engines and drivers report what happened (ripgrep's `Sink`).
//!
//! Components never write files: the simulation driver and the live harness hand rows to an
//! [`Observer`]; the trace writer is one observer, the summary builder another.

use crate::metrics::LogHistogram;
use crate::trace::{InstanceRow, RequestRow, TokenRow};
use std::io;

/// Receives the rows of a run as they happen. Only `on_request` is required.
pub trait Observer {
    /// A request ended (any status). Called exactly once per request.
    fn on_request(&mut self, row: &RequestRow) -> io::Result<()>;

    /// One instance's state at a sample time.
    fn on_instance_sample(&mut self, _row: &InstanceRow) -> io::Result<()> {
        Ok(())
    }

    /// A token (sim) or chunk (live) arrived. Only called when [`Observer::wants_tokens`] is true.
    fn on_token(&mut self, _row: &TokenRow) -> io::Result<()> {
        Ok(())
    }

    /// `count` inter-token gaps of `gap_s` seconds were observed for `model` (ITL distribution).
    fn on_itl(&mut self, _model: &str, _gap_s: f64, _count: u64) -> io::Result<()> {
        Ok(())
    }

    /// The inter-token gaps of every token `instance` (serving `model`) generated, as one
    /// histogram: the simulator reports ITL this way, once per instance at the end of a run,
    /// instead of one `on_itl` call per engine step.
    fn on_itl_histogram(
        &mut self,
        _model: &str,
        _instance: &str,
        _histogram: &LogHistogram,
    ) -> io::Result<()> {
        Ok(())
    }

    /// Whether this observer wants per-token rows (they cost time and space).
    fn wants_tokens(&self) -> bool {
        false
    }
}

/// Fans every call out to several observers, in order.
pub struct Tee<'a> {
    observers: Vec<&'a mut dyn Observer>,
}

impl<'a> Tee<'a> {
    /// Observes with each of `observers`.
    pub fn new(observers: Vec<&'a mut dyn Observer>) -> Self {
        Tee { observers }
    }
}

impl Observer for Tee<'_> {
    fn on_request(&mut self, row: &RequestRow) -> io::Result<()> {
        self.observers.iter_mut().try_for_each(|o| o.on_request(row))
    }
    fn on_instance_sample(&mut self, row: &InstanceRow) -> io::Result<()> {
        self.observers.iter_mut().try_for_each(|o| o.on_instance_sample(row))
    }
    fn on_token(&mut self, row: &TokenRow) -> io::Result<()> {
        for o in self.observers.iter_mut() {
            if o.wants_tokens() {
                o.on_token(row)?;
            }
        }
        Ok(())
    }
    fn on_itl(&mut self, model: &str, gap_s: f64, count: u64) -> io::Result<()> {
        self.observers.iter_mut().try_for_each(|o| o.on_itl(model, gap_s, count))
    }
    fn on_itl_histogram(&mut self, model: &str, instance: &str, h: &LogHistogram) -> io::Result<()> {
        self.observers.iter_mut().try_for_each(|o| o.on_itl_histogram(model, instance, h))
    }
    fn wants_tokens(&self) -> bool {
        self.observers.iter().any(|o| o.wants_tokens())
    }
}
