//! ModelsGuard's simulator: a discrete-event model of a multi-model vLLM serving cluster.
//!
//! A scenario (`scenario`) describes GPUs, models, engine instances, a router and a workload.
//! The workload generator (`workload`) turns it into a deterministic request stream; the router
//! (`router`) picks a replica; each instance's `engine` (vLLM's `Scheduler` and `KvCacheManager`)
//! batches requests step by step, with step times from `perf_model`; `simulation` drives it all on
//! an event queue (`des`) and reports rows to observers (`observe`), which write the run dir
//! (`trace`) and the summary (`metrics`); `bench` times repeated runs of one variant (the
//! simulator's own speed). Nothing here does network I/O; the live harness reuses the workload,
//! router and trace modules against real endpoints.

#![deny(missing_docs)]

pub mod bench;
pub mod cluster;
pub mod des;
pub mod engine;
pub mod explain;
pub mod ids;
pub mod instance;
pub mod metrics;
pub mod observe;
pub mod perf_model;
pub mod plan;
pub mod router;
pub mod runner;
pub mod scenario;
pub mod simulation;
pub mod sweep;
pub mod time;
pub mod trace;
pub mod workload;

pub use ids::{BlockId, GpuId, InstanceId, ModelId, RequestId};
pub use time::{SimDuration, SimTime};
