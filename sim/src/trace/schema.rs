//! The run-dir schema shared by the simulator and the live harness.
//!
//! A run dir holds `run.json` ([`RunMeta`]), `requests.csv` ([`RequestRow`]), `instances.csv`
//! ([`InstanceRow`]), optional `tokens.csv` ([`TokenRow`]) and `summary.json`
//! (`crate::metrics::RunSummary`). Times in CSVs are seconds since the run started, printed with
//! nanosecond precision. Bump [`SCHEMA_VERSION`] on any incompatible change; readers refuse other
//! versions with an error that names the file.

use serde::{Deserialize, Serialize};

/// Version of the run-dir layout written into `run.json` and `summary.json`.
pub const SCHEMA_VERSION: u32 = 1;

/// File names inside a run dir.
pub mod files {
    /// Run metadata.
    pub const RUN_JSON: &str = "run.json";
    /// One row per request.
    pub const REQUESTS_CSV: &str = "requests.csv";
    /// Per-instance time series.
    pub const INSTANCES_CSV: &str = "instances.csv";
    /// Per-token / per-chunk timestamps (optional).
    pub const TOKENS_CSV: &str = "tokens.csv";
    /// Aggregates.
    pub const SUMMARY_JSON: &str = "summary.json";
    /// Present only in a partial run dir: one line saying why the run did not finish (written
    /// when the run starts, replaced by the reason when it stops early, removed when it completes,
    /// so a run killed outright still carries it).
    pub const PARTIAL: &str = "PARTIAL";
}

/// The `requests.csv` header, in column order (the fields of [`RequestRow`]).
pub const REQUEST_COLUMNS: [&str; 20] = [
    "id",
    "model",
    "instance",
    "phase",
    "scheduled_s",
    "send_s",
    "first_token_s",
    "end_s",
    "prompt_tokens",
    "output_tokens",
    "max_tokens",
    "cached_tokens",
    "preemptions",
    "status",
    "error",
    "ttft_s",
    "e2e_s",
    "tpot_s",
    "itl_mean_s",
    "itl_max_s",
];

/// Who produced a run dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The discrete-event simulator.
    Sim,
    /// The live harness against real (or emulated) endpoints.
    Live,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// All output tokens arrived.
    Ok,
    /// The server or connection failed (reason in `error`).
    Error,
    /// No answer within the per-request timeout or before the run's deadline.
    Timeout,
    /// Refused before running (e.g. longer than `max_model_len`, no replica for the model).
    Rejected,
}

impl RequestStatus {
    /// The CSV spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Ok => "ok",
            RequestStatus::Error => "error",
            RequestStatus::Timeout => "timeout",
            RequestStatus::Rejected => "rejected",
        }
    }
}

/// One row of `requests.csv`. Latency columns are empty when they do not apply (no first token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRow {
    /// Request id (issue order, identical across variants and between sim and live).
    pub id: u64,
    /// Model key (scenario name of the model).
    pub model: String,
    /// Instance name that served it (empty when rejected before routing).
    pub instance: String,
    /// Workload phase index.
    pub phase: u32,
    /// When the workload scheduled the request, seconds.
    pub scheduled_s: f64,
    /// When it was actually sent (live) / reached the router (sim), seconds.
    pub send_s: f64,
    /// First non-empty token, seconds.
    pub first_token_s: Option<f64>,
    /// Last byte / finish, seconds.
    pub end_s: Option<f64>,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Output tokens received (sim: generated).
    pub output_tokens: u32,
    /// Output tokens requested.
    pub max_tokens: u32,
    /// Prompt tokens served from the prefix cache at admission (sim only; empty for live).
    pub cached_tokens: Option<u32>,
    /// Times this request was preempted (sim only).
    pub preemptions: Option<u32>,
    /// Outcome.
    pub status: RequestStatus,
    /// Failure reason (empty when ok).
    pub error: String,
    /// first_token - send, seconds.
    pub ttft_s: Option<f64>,
    /// end - send, seconds.
    pub e2e_s: Option<f64>,
    /// (e2e - ttft) / (output_tokens - 1), seconds; empty when fewer than 2 tokens.
    pub tpot_s: Option<f64>,
    /// Mean gap between consecutive tokens, seconds.
    pub itl_mean_s: Option<f64>,
    /// Largest gap between consecutive tokens, seconds.
    pub itl_max_s: Option<f64>,
}

/// One row of `instances.csv`: the state of one instance at one sample time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    /// Sample time, seconds.
    pub time_s: f64,
    /// Instance name.
    pub instance: String,
    /// Model key.
    pub model: String,
    /// GPU index.
    pub gpu: u32,
    /// `vllm:num_requests_running`.
    pub num_requests_running: u32,
    /// `vllm:num_requests_waiting`.
    pub num_requests_waiting: u32,
    /// `vllm:kv_cache_usage_perc` as a fraction in [0, 1].
    pub kv_cache_usage: f64,
    /// `vllm:num_preemptions_total` so far.
    pub num_preemptions_total: u64,
    /// Elastic KV: pages currently mapped by this instance (empty for static KV).
    pub mapped_pages: Option<u32>,
    /// Elastic KV: free bytes left in this GPU's shared pool (empty for static KV).
    pub gpu_pool_free_bytes: Option<u64>,
}

/// One row of `tokens.csv`: one streamed chunk (live) or one generated token (sim).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRow {
    /// Request id.
    pub id: u64,
    /// Chunk index within the request, from 0.
    pub index: u32,
    /// Arrival time, seconds.
    pub time_s: f64,
    /// Tokens in the chunk (sim: always 1).
    pub tokens: u32,
}

/// `run.json`: what produced the run dir and with which inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// [`SCHEMA_VERSION`] at write time.
    pub schema_version: u32,
    /// Sim or live.
    pub source: Source,
    /// Scenario name.
    pub scenario_name: String,
    /// Variant name.
    pub variant: String,
    /// Master seed.
    pub seed: u64,
    /// `modelsguard` version.
    pub version: String,
    /// Wall-clock start, RFC 3339 (informational; not part of the deterministic outputs).
    pub started_at: String,
    /// Host and GPU facts (live), or "simulated".
    pub host: String,
    /// True when every instance's step times come from a calibrated profile.
    pub calibrated: bool,
    /// The full resolved scenario.
    pub scenario: crate::scenario::Scenario,
}
