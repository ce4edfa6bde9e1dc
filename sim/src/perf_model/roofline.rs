//! The roofline prior: a step is bound either by reading weights and KV from HBM or by tensor-core
//! FLOPs, whichever is slower, plus a fixed per-step overhead (scheduling, sampling, launches).
//!
//! It is a prior, not a measurement: it ignores kernel efficiency curves, CUDA-graph padding and
//! communication. Calibrated profiles replace it. AWQ int4 weights are read at ~4.16 bits but
//! dequantised on the fly, so AWQ matmuls reach a lower fraction of peak ([`AWQ_COMPUTE_PENALTY`]).

use super::{BatchFeatures, MIN_STEP_S, larger};
use crate::scenario::{GpuSpec, ModelSpec, WeightFormat};
use crate::time::SimDuration;

/// Fraction of bf16 tensor throughput AWQ GEMMs reach relative to bf16 GEMMs (dequantisation in the
/// main loop). vLLM users report AWQ ~25-30% slower than bf16 at high concurrency.
pub const AWQ_COMPUTE_PENALTY: f64 = 0.7;

/// Precomputed roofline terms of one model on one GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Roofline {
    weight_bytes: f64,
    kv_bytes_per_token: f64,
    flops_per_token: f64,
    /// Attention FLOPs per (query token, context token) pair: 4 x layers x heads x head_dim.
    attn_flops_per_pair: f64,
    bytes_per_s: f64,
    flops_per_s: f64,
    overhead_s: f64,
}

impl Roofline {
    /// A prior for `model` on `gpu` reaching `mfu` of peak FLOP/s and `bandwidth_efficiency` of
    /// peak HBM bandwidth, with `step_overhead_s` fixed cost per step.
    pub fn new(
        model: &ModelSpec,
        gpu: &GpuSpec,
        mfu: f64,
        bandwidth_efficiency: f64,
        step_overhead_s: f64,
    ) -> Roofline {
        let penalty = match model.weight_format {
            WeightFormat::Bf16 => 1.0,
            WeightFormat::AwqInt4 => AWQ_COMPUTE_PENALTY,
        };
        Roofline {
            weight_bytes: model.weight_bytes() as f64,
            kv_bytes_per_token: model.kv_bytes_per_token() as f64,
            flops_per_token: model.flops_per_token(),
            attn_flops_per_pair: 4.0
                * f64::from(model.num_layers)
                * f64::from(model.num_attention_heads)
                * f64::from(model.head_dim),
            bytes_per_s: gpu.hbm_bytes_per_s * bandwidth_efficiency,
            flops_per_s: gpu.bf16_flops * mfu * penalty,
            overhead_s: step_overhead_s,
        }
    }

    /// [`StepTimeModel::decode_step_times`](super::StepTimeModel::decode_step_times) for the
    /// roofline: the same arithmetic as [`Roofline::step_time_s`] on each decode batch (bit for
    /// bit: a test checks it), with the per-batch constants hoisted out of the loop.
    pub(super) fn decode_step_times(
        &self,
        num_seqs: u32,
        first_kv_tokens_read: u64,
        out: &mut [SimDuration],
    ) {
        let n = f64::from(num_seqs);
        let flops_per_step = self.flops_per_token * n;
        // Exact: token counts stay far below 2^53.
        let mut kv = first_kv_tokens_read as f64;
        for d in out.iter_mut() {
            let bytes = self.weight_bytes + self.kv_bytes_per_token * kv;
            let flops = flops_per_step + self.attn_flops_per_pair * kv;
            let secs = self.overhead_s + larger(bytes / self.bytes_per_s, flops / self.flops_per_s);
            *d = SimDuration::from_secs_f64(larger(secs, MIN_STEP_S)).max(SimDuration(1));
            kv += n;
        }
    }

    /// Seconds one step of `b` takes.
    #[inline]
    pub fn step_time_s(&self, b: &BatchFeatures) -> f64 {
        let tokens = f64::from(b.num_prefill_tokens) + f64::from(b.num_decode_seqs);
        let bytes = self.weight_bytes + self.kv_bytes_per_token * b.num_kv_tokens_read as f64;
        // Decode attention reads each context token once per query; prefill chunks pay the pairs.
        let decode_pairs = b.num_kv_tokens_read.saturating_sub(u64::from(b.num_prefill_tokens)) as f64;
        let flops = self.flops_per_token * tokens
            + self.attn_flops_per_pair * (b.num_prefill_attn_pairs as f64 + decode_pairs);
        self.overhead_s + larger(bytes / self.bytes_per_s, flops / self.flops_per_s)
    }
}
