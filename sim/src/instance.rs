//! One engine instance: vLLM's scheduler plus the step-time model, stepping one batch at a time.
//!
//! The same `Instance` runs inside the discrete-event simulation (as fast as possible) and inside
//! the live emulator (paced by the wall clock): it knows nothing about events, routing or files.
//! A driver calls [`Instance::begin_step`] when the instance is idle and has work, waits the
//! returned duration (simulated or real), then calls [`Instance::end_step`].

use crate::cluster::static_kv_budget;
use crate::engine::{Rejection, Request, Scheduler, StepEvents};
use crate::ids::InstanceId;
use crate::perf_model::{BatchFeatures, StepTimeModel};
use crate::scenario::Scenario;
use crate::time::{SimDuration, SimTime};

/// An engine instance with its scheduler and step-time model.
pub struct Instance {
    /// Which instance of the scenario this is.
    pub id: InstanceId,
    scheduler: Scheduler,
    perf: StepTimeModel,
    in_step: bool,
}

impl Instance {
    /// Builds instance `id` of `scenario`: static KV sized like vLLM, step times from its perf spec.
    pub fn new(scenario: &Scenario, id: InstanceId) -> Instance {
        let spec = &scenario.instances[id.index()];
        let model = &scenario.models[spec.model.index()];
        let gpu = &scenario.gpus[spec.gpu.index()];
        let budget = static_kv_budget(model, gpu, &spec.engine);
        Instance {
            id,
            scheduler: Scheduler::new(&spec.engine, budget.num_gpu_blocks),
            perf: StepTimeModel::from_spec(&spec.perf, model, gpu),
            in_step: false,
        }
    }

    /// Queues a request; rejected requests come back with the reason.
    pub fn add_request(&mut self, req: Request) -> Result<(), Box<Rejection>> {
        self.scheduler.add_request(req).map_err(Box::new)
    }

    /// Starts a step when idle and there is work; returns its duration.
    pub fn begin_step(&mut self) -> Option<SimDuration> {
        if self.in_step || !self.scheduler.has_unfinished_requests() {
            return None;
        }
        let out = self.scheduler.schedule();
        if out.num_scheduled_requests == 0 {
            return None;
        }
        let batch = BatchFeatures {
            num_scheduled_requests: out.num_scheduled_requests,
            num_prefill_tokens: out.num_prefill_tokens,
            num_decode_seqs: out.num_decode_seqs,
            num_kv_tokens_read: out.num_kv_tokens_read,
            num_prefill_attn_pairs: out.num_prefill_attn_pairs,
        };
        self.in_step = true;
        Some(self.perf.step_time(&batch))
    }

    /// Ends the running step at `now`, appending finished requests and tokens to `events`.
    pub fn end_step(&mut self, now: SimTime, events: &mut StepEvents) {
        if self.in_step {
            self.in_step = false;
            self.scheduler.update_from_output(now, events);
        }
    }

    /// True while a step is running.
    pub fn is_busy(&self) -> bool {
        self.in_step
    }

    /// The scheduler, for metrics (`num_running`, `num_waiting`, `kv_cache_usage`, ...).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Mutable scheduler access (e.g. `set_record_tokens`).
    pub fn scheduler_mut(&mut self) -> &mut Scheduler {
        &mut self.scheduler
    }

    /// The step-time model.
    pub fn perf(&self) -> &StepTimeModel {
        &self.perf
    }
}
