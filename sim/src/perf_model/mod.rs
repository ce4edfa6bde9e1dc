//! Step-time models: how long one engine step takes, as a function of the batch it runs.
//!
//! Two sources: a [`Roofline`] prior computed from the model architecture and GPU specs (used when
//! no profile exists; every output then says "uncalibrated"), and linear coefficients fitted from
//! live traces (`profiles/*.toml`, see `calibration`). Neither knows about requests or queues: the
//! input is the [`BatchFeatures`] of one `SchedulerOutput`.

mod roofline;

pub use roofline::Roofline;

use crate::scenario::{GpuSpec, ModelSpec, PerfSpec, StepCoefficients};
use crate::time::SimDuration;

/// What a step's batch looks like, as far as its duration is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchFeatures {
    /// Requests in the batch.
    pub num_scheduled_requests: u32,
    /// Prompt (or recompute) tokens computed in the step.
    pub num_prefill_tokens: u32,
    /// Requests decoding one token.
    pub num_decode_seqs: u32,
    /// KV tokens attention reads (context of every scheduled request, new tokens included).
    pub num_kv_tokens_read: u64,
    /// Sum over prefill chunks of new tokens x mean context: the quadratic part of attention.
    pub num_prefill_attn_pairs: u64,
}

/// A step-time model of one (model, GPU, engine) triple.
#[derive(Clone, Debug, PartialEq)]
pub enum StepTimeModel {
    /// Linear coefficients from a calibrated profile.
    Linear(StepCoefficients),
    /// The uncalibrated roofline prior.
    Roofline(Roofline),
}

impl StepTimeModel {
    /// The model an instance's [`PerfSpec`] asks for.
    pub fn from_spec(perf: &PerfSpec, model: &ModelSpec, gpu: &GpuSpec) -> StepTimeModel {
        match perf {
            PerfSpec::Profile { coefficients, .. } => StepTimeModel::Linear(coefficients.clone()),
            PerfSpec::Roofline { mfu, bandwidth_efficiency, step_overhead_s } => StepTimeModel::Roofline(
                Roofline::new(model, gpu, *mfu, *bandwidth_efficiency, *step_overhead_s),
            ),
        }
    }

    /// Duration of a step running `batch`. An empty batch takes no time.
    pub fn step_time(&self, batch: &BatchFeatures) -> SimDuration {
        if batch.num_scheduled_requests == 0 {
            return SimDuration::ZERO;
        }
        let secs = match self {
            StepTimeModel::Linear(c) => {
                c.fixed_s
                    + c.per_prefill_token_s * f64::from(batch.num_prefill_tokens)
                    + c.per_decode_seq_s * f64::from(batch.num_decode_seqs)
                    + c.per_kv_token_s * batch.num_kv_tokens_read as f64
                    + c.per_prefill_attn_pair_s * batch.num_prefill_attn_pairs as f64
            }
            StepTimeModel::Roofline(r) => r.step_time_s(batch),
        };
        // A fitted profile may extrapolate below zero for tiny batches; a step never takes less
        // than a microsecond.
        SimDuration::from_secs_f64(secs.max(1e-6))
    }

    /// True when the coefficients come from a calibrated profile.
    pub fn is_calibrated(&self) -> bool {
        matches!(self, StepTimeModel::Linear(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_model_adds_its_terms() {
        let m = StepTimeModel::Linear(StepCoefficients {
            fixed_s: 0.005,
            per_prefill_token_s: 1e-5,
            per_decode_seq_s: 1e-4,
            per_kv_token_s: 1e-7,
            per_prefill_attn_pair_s: 0.0,
        });
        let b = BatchFeatures {
            num_scheduled_requests: 3,
            num_prefill_tokens: 100,
            num_decode_seqs: 2,
            num_kv_tokens_read: 1000,
            num_prefill_attn_pairs: 0,
        };
        // 5 ms + 1 ms + 0.2 ms + 0.1 ms
        assert_eq!(m.step_time(&b), SimDuration(6_300_000));
        assert!(m.is_calibrated());
        assert_eq!(m.step_time(&BatchFeatures::default()), SimDuration::ZERO);
    }
}
