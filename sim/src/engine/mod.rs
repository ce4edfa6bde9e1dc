//! One vLLM engine instance, as the simulator models it: vLLM's `Scheduler`, `KVCacheManager`
//! (`KvCacheManager`) and `Request`, named as in `vllm/v1/core/sched` so a vLLM engineer
//! recognises them.
//!
//! The engine decides batches and tracks KV blocks; it has no clock and no step-time model. A
//! driver calls [`Scheduler::schedule`], asks `perf_model` how long the batch takes, then calls
//! [`Scheduler::update_from_output`] with the step's end time and collects [`StepEvents`].

pub mod content;
pub mod kv_cache;
pub mod request;
pub mod sched;

pub use content::{ContentSegment, PromptContent};
pub use kv_cache::KvCacheManager;
pub use request::{Request, RequestStatus};
pub use sched::{Rejection, RejectionKind, Scheduler, SchedulerOutput, StepEvents};
