//! Exports of a live run in the formats of the benchmarking tools users already run, so their
//! tooling reads our runs: genai-perf's `profile_export.json` and aiperf's `profile_export.jsonl`
//! with `profile_export_aiperf.json`/`.csv`. Reading those files back is `crate::import`'s job.

pub mod aiperf;
pub mod genai_perf;

use serde_json::{Value, json};

/// The load of a run as genai-perf names it (`experiment.mode`/`value`); aiperf's aggregate file
/// carries the same object under its `modelsguard` key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Experiment {
    /// `--concurrency N` (closed loop).
    Concurrency(u32),
    /// `--request-rate R` (open loop).
    RequestRate(f64),
    /// A replayed trace: labelled `request_rate` with the mean rate the requests were sent at.
    Replay,
}

impl Experiment {
    /// `{"mode": ..., "value": ...}`; a replay's rate is (n - 1) / (last send - first send) of
    /// `sends` (0 with fewer than two sends).
    pub fn to_json(self, sends: &SendSpan) -> Value {
        match self {
            Experiment::Concurrency(n) => json!({"mode": "concurrency", "value": n}),
            Experiment::RequestRate(r) => json!({"mode": "request_rate", "value": r}),
            Experiment::Replay => json!({"mode": "request_rate", "value": sends.mean_rate()}),
        }
    }
}

/// Count and first/last time of the sends seen, nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SendSpan {
    count: u64,
    first_ns: u64,
    last_ns: u64,
}

impl SendSpan {
    /// Records one send.
    pub fn add(&mut self, ns: u64) {
        if self.count == 0 {
            (self.first_ns, self.last_ns) = (ns, ns);
        }
        self.first_ns = self.first_ns.min(ns);
        self.last_ns = self.last_ns.max(ns);
        self.count += 1;
    }

    /// Sends per second between the first and the last send (0 when undefined).
    pub fn mean_rate(&self) -> f64 {
        if self.count >= 2 && self.last_ns > self.first_ns {
            (self.count - 1) as f64 / ((self.last_ns - self.first_ns) as f64 / 1e9)
        } else {
            0.0
        }
    }
}
