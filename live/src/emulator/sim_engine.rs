//! The simulator's own engine model (`sim::instance::Instance`: vLLM's `Scheduler` plus the
//! instance's step-time model) behind the emulator's `StepEngine`, so emulated and simulated
//! instances batch, preempt and pace tokens by the same code: the same step periods, async
//! scheduling and output delay.
//!
//! Prefix caching: the emulator hashes each prompt's token ids itself, one content segment per
//! full block chained like vLLM's `hash_block_tokens` (`PromptContent::from_token_ids`; text
//! prompts count one pseudo-id per word, `crate::prompt_ids`), so prompts that share leading
//! token blocks hit the engine model's prefix cache exactly as they would in vLLM.

use super::EmulatorError;
use super::engine_loop::{EngineLoad, NewRequest, StepEngine, StepOutput};
use sim::engine::{PromptContent, Request, StepEvents};
use sim::ids::{InstanceId, ModelId};
use sim::instance::Instance;
use sim::scenario::Scenario;
use sim::time::{SimDuration, SimTime};
use sim::workload::RequestSpec;

/// One scenario instance's engine model, ready for the emulator.
pub struct SimEngine {
    instance: Instance,
    model: ModelId,
    block_size: u32,
    events: StepEvents,
    /// Prompt tokens of finished requests, and those of them that hit the prefix cache.
    prefix_cache: (u64, u64),
}

impl SimEngine {
    /// Instance `id` of `scenario`, recording every sampled token.
    pub fn new(scenario: &Scenario, id: InstanceId) -> Result<SimEngine, EmulatorError> {
        let spec = scenario.instances.get(id.index()).ok_or(EmulatorError::NoSuchInstance(id))?;
        if scenario.models.get(spec.model.index()).is_none() || scenario.gpus.get(spec.gpu.index()).is_none()
        {
            return Err(EmulatorError::Engine {
                instance: spec.name.clone(),
                reason: "its model or GPU id is not in the scenario".into(),
            });
        }
        let mut instance = Instance::new(scenario, id);
        instance.scheduler_mut().set_record_tokens(true);
        Ok(SimEngine {
            instance,
            model: spec.model,
            block_size: spec.engine.block_size,
            events: StepEvents::default(),
            prefix_cache: (0, 0),
        })
    }
}

impl StepEngine for SimEngine {
    fn add_request(&mut self, req: NewRequest) -> Result<(), String> {
        let spec = RequestSpec {
            id: req.id,
            phase: 0,
            arrival: req.arrival,
            model: self.model,
            num_prompt_tokens: req.num_prompt_tokens,
            max_tokens: req.max_tokens,
            content: PromptContent::from_token_ids(&req.token_ids, self.block_size),
        };
        self.instance.add_request(Request::new(&spec, req.arrival)).map_err(|r| r.reason.clone())
    }

    fn begin_step(&mut self, now: SimTime) -> Option<SimDuration> {
        self.instance.begin_step(now)
    }

    fn output_delay(&self) -> SimDuration {
        self.instance.output_delay()
    }

    fn end_step(&mut self, now: SimTime, out: &mut StepOutput) {
        self.events.clear();
        self.instance.end_step(now, &mut self.events);
        out.tokens.extend_from_slice(&self.events.tokens);
        out.finished
            .extend(self.events.finished.iter().map(|r| (r.request_id, r.num_cached_tokens.unwrap_or(0))));
        for r in &self.events.finished {
            self.prefix_cache.0 += u64::from(r.num_prompt_tokens);
            self.prefix_cache.1 += u64::from(r.num_cached_tokens.unwrap_or(0));
        }
    }

    fn load(&self) -> EngineLoad {
        let s = self.instance.scheduler();
        EngineLoad {
            running: s.num_running(),
            waiting: self.instance.num_waiting(),
            kv_usage: s.kv_cache_usage(),
            preemptions_total: s.num_preemptions_total(),
            num_gpu_blocks: s.num_gpu_blocks(),
            block_size: self.block_size,
            prefix_cache_queries_total: self.prefix_cache.0,
            prefix_cache_hits_total: self.prefix_cache.1,
        }
    }
}
