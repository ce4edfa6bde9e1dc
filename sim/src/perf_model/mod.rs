//! Step-time models: how long one engine step takes, as a function of the batch it runs.
//!
//! Two sources: a [`Roofline`] prior computed from the model architecture and GPU specs (used when
//! no profile exists; every output then says "uncalibrated"), and linear coefficients fitted from
//! live traces (`profiles/*.toml`, see `calibration`). Neither knows about requests or queues: the
//! input is the [`BatchFeatures`] of one `SchedulerOutput`.

mod roofline;

pub use roofline::Roofline;

use crate::scenario::{GpuSpec, InstanceSpec, ModelSpec, PerfSpec, StepCoefficients};
use crate::time::SimDuration;

/// A fitted profile may extrapolate below zero for tiny batches; a step never takes less than a
/// microsecond.
const MIN_STEP_S: f64 = 1e-6;

/// The larger of `a` and `b`, or `b` when either is NaN (which finite specs never produce): a
/// plain compare, cheaper than `f64::max` in the per-step loops.
#[inline]
fn larger(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

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

    /// The model of instance `spec` (of `model` on `gpu`): [`StepTimeModel::from_spec`], with the
    /// roofline prior charging the AWQ kernels its engine's `--quantization` selects
    /// ([`Roofline::with_awq_kernel`]). Calibrated profiles are used as they are.
    pub fn for_instance(spec: &InstanceSpec, model: &ModelSpec, gpu: &GpuSpec) -> StepTimeModel {
        match (&spec.perf, spec.engine.awq_kernel()) {
            (PerfSpec::Roofline { mfu, bandwidth_efficiency, step_overhead_s }, Some(kernel)) => {
                let r = Roofline::new(model, gpu, *mfu, *bandwidth_efficiency, *step_overhead_s);
                StepTimeModel::Roofline(r.with_awq_kernel(model, gpu, *mfu, kernel))
            }
            _ => StepTimeModel::from_spec(&spec.perf, model, gpu),
        }
    }

    /// Duration of a step running `batch`. An empty batch takes no time.
    #[inline]
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
        SimDuration::from_secs_f64(larger(secs, MIN_STEP_S))
    }

    /// Durations of consecutive pure-decode steps of `num_seqs` requests (one token each), the
    /// first reading `first_kv_tokens_read` KV tokens and each next one `num_seqs` more (a decode
    /// stretch): `out[i]` is [`StepTimeModel::step_time`] of step `i`, at least a nanosecond.
    pub fn decode_step_times(&self, num_seqs: u32, first_kv_tokens_read: u64, out: &mut [SimDuration]) {
        if let (StepTimeModel::Roofline(r), 1..) = (self, num_seqs) {
            return r.decode_step_times(num_seqs, first_kv_tokens_read, out);
        }
        let mut batch = BatchFeatures {
            num_scheduled_requests: num_seqs,
            num_prefill_tokens: 0,
            num_decode_seqs: num_seqs,
            num_kv_tokens_read: first_kv_tokens_read,
            num_prefill_attn_pairs: 0,
        };
        for d in out.iter_mut() {
            *d = self.step_time(&batch).max(SimDuration(1));
            batch.num_kv_tokens_read += u64::from(num_seqs);
        }
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

    proptest::proptest! {
        #[test]
        fn decode_step_times_equal_one_step_time_per_batch(
            model in 0usize..3,
            gpu in 0usize..4,
            mfu in 0.05f64..1.0,
            overhead in 0.0f64..0.01,
            num_seqs in 1u32..512,
            first_kv in 0u64..4_000_000,
            len in 1usize..40,
            linear: bool,
            legacy_awq: bool,
        ) {
            let models = crate::scenario::model_catalog();
            let gpus = crate::scenario::gpu_catalog();
            let (m, g) = (&models[model % models.len()], &gpus[gpu % gpus.len()]);
            let mut roofline = Roofline::new(m, g, mfu, 0.8, overhead);
            if legacy_awq {
                roofline = roofline.with_awq_kernel(m, g, mfu, crate::scenario::AwqKernel::Legacy);
            }
            let m = if linear {
                StepTimeModel::Linear(StepCoefficients {
                    fixed_s: overhead,
                    per_prefill_token_s: 1e-5,
                    per_decode_seq_s: mfu * 1e-4,
                    per_kv_token_s: -mfu * 1e-9,
                    per_prefill_attn_pair_s: 0.0,
                })
            } else {
                StepTimeModel::Roofline(roofline)
            };
            let mut got = vec![SimDuration::ZERO; len];
            m.decode_step_times(num_seqs, first_kv, &mut got);
            for (i, &d) in got.iter().enumerate() {
                let b = BatchFeatures {
                    num_scheduled_requests: num_seqs,
                    num_prefill_tokens: 0,
                    num_decode_seqs: num_seqs,
                    num_kv_tokens_read: first_kv + i as u64 * u64::from(num_seqs),
                    num_prefill_attn_pairs: 0,
                };
                proptest::prop_assert_eq!(d, m.step_time(&b).max(SimDuration(1)), "step {}", i);
            }
        }
    }
}
