//! The one error type of `plan`: why a capacity plan could not be computed.
//!
//! Each variant says what to change (a flag, an `[slo]` entry, the GPU count). Layouts that do not
//! start or miss the SLOs are not errors: they are search results.

use crate::scenario::ScenarioError;
use crate::simulation::SimError;

/// Why `plan` could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The scenario file (or an override) is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// No p90 TTFT or TPOT target for some model.
    #[error(
        "no SLO to plan for{}: set ttft_p90_s and/or tpot_p90_s in the scenario's [slo] table, or pass \
         --ttft-p90 SECONDS / --tpot-p90 SECONDS (or MODEL=SECONDS for one model)",
        if .models.is_empty() { String::new() } else { format!(" for {}", .models.join(", ")) }
    )]
    NoSlo {
        /// Models without any target (empty: none has one).
        models: Vec<String>,
    },
    /// A command-line SLO names a model the scenario does not serve.
    #[error("--{flag} names model \"{model}\", which the scenario does not serve; served: {served}")]
    UnknownSloModel {
        /// `ttft-p90` or `tpot-p90`.
        flag: &'static str,
        /// The name given.
        model: String,
        /// The served models, comma separated.
        served: String,
    },
    /// A command-line option has an unusable value.
    #[error("{option}: {reason}")]
    BadOption {
        /// The option, e.g. `--gpus`.
        option: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// One replica of a model does not start on one GPU of the planned kind.
    #[error("{model} fits no {gpu} GPU: {reason}")]
    ModelDoesNotFit {
        /// The model.
        model: String,
        /// The GPU kind.
        gpu: String,
        /// The loader's reason.
        reason: String,
    },
    /// The GPU budget cannot hold one replica of every model.
    #[error("{gpus} GPU(s) cannot hold one replica of each of the {models} models{hint}; raise --gpus")]
    TooFewGpus {
        /// GPUs available.
        gpus: u32,
        /// Models to place.
        models: usize,
        /// How colocation was set, for the message.
        hint: String,
    },
    /// The layout space is too large to enumerate.
    #[error(
        "{count}+ candidate layouts on {gpus} GPUs: too many to search; lower --gpus, \
         --max-replicas or --colocate"
    )]
    TooManyLayouts {
        /// Candidates counted before giving up.
        count: usize,
        /// GPUs of the level being enumerated.
        gpus: u32,
    },
    /// The plan's scenario uses an override `plan` cannot honour.
    #[error(
        "--set {path}: plan rebuilds [[instances]] for every layout, so an index into it means \
         nothing; use instances.*.FIELD (every instance) or [defaults.engine]"
    )]
    InstanceIndexOverride {
        /// The override's path.
        path: String,
    },
    /// An `instances.*` override of what `plan` chooses for every instance.
    #[error(
        "--set {path}: plan chooses each instance's GPU, and on shared GPUs its KV mode and \
         gpu_memory_utilization, per layout; set what dedicated GPUs keep with \
         --set defaults.engine.KNOB=..., other instance fields with instances.*.FIELD=..."
    )]
    PlacementOverride {
        /// The override's path.
        path: String,
    },
    /// A simulation failed (bad replay file, ...).
    #[error("simulating layout {layout}: {source}")]
    Simulation {
        /// The layout being simulated.
        layout: String,
        /// What failed.
        #[source]
        source: SimError,
    },
}
