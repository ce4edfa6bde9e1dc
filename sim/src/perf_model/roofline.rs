//! The roofline prior: a step is bound either by reading weights and KV from HBM or by tensor-core
//! FLOPs, whichever is slower, plus a fixed per-step overhead (scheduling, sampling, launches).
//!
//! It is a prior, not a measurement: it ignores kernel efficiency curves, CUDA-graph padding and
//! communication. Calibrated profiles replace it. AWQ int4 weights are read at ~4.16 bits but
//! dequantised on the fly, so AWQ matmuls reach a lower fraction of peak ([`AWQ_COMPUTE_PENALTY`]).
//!
//! AWQ kernels ([`Roofline::with_awq_kernel`]; every constant here is a GUESS, uncalibrated):
//! - Marlin (`--quantization awq_marlin`, or `awq` from vLLM 0.24 on): int4 weight reads, GEMMs at
//!   [`AWQ_COMPUTE_PENALTY`] of bf16 efficiency, at every batch size (the plain AWQ roofline).
//! - Legacy (`--quantization awq` up to vLLM 0.23): vllm 0.6.4 / 0.9.2 / 0.11.0
//!   model_executor/layers/quantization/awq.py `AWQLinearMethod.apply` checks
//!   `FP16_MATMUL_HEURISTIC_CONDITION = x.shape[:-1].numel() >= 256`. Below 256 tokens in the
//!   step it runs `ops.awq_gemm` on the int4 weights: int4 reads, GEMMs at
//!   [`AWQ_GEMM_COMPUTE_PENALTY`]. At or above, `ops.awq_dequantize` writes the whole weight out
//!   in fp16 and `torch.matmul` multiplies it: every step reads the int4 weights and writes the
//!   fp16 ones (the dequantise pass, memory-bound, serial with the GEMM), then a bf16-efficiency
//!   GEMM reads the fp16 weights, i.e. the bytes of a bf16 model.
//!   The step's token count is the scheduled one; CUDA-graph padding (which V1 applies to the
//!   linear layers' input) is not added.

use super::{BatchFeatures, MIN_STEP_S, larger};
use crate::scenario::{AwqKernel, GpuSpec, ModelSpec, WeightFormat};
use crate::time::SimDuration;

/// Fraction of bf16 tensor throughput AWQ GEMMs reach relative to bf16 GEMMs (dequantisation in the
/// main loop) on the Marlin kernels, vLLM's choice for an AWQ checkpoint unless `--quantization
/// awq` forces the legacy ones. A GUESS: "near-bf16 efficiency" (the cost model; Marlin
/// keeps close to fp16 GEMMs at large batches). It was 0.7 before the kernels were told apart:
/// vLLM users report AWQ ~25-30% slower than bf16 at high concurrency on H100s (Qwen3-8B: -27%
/// throughput), which argues for a lower value on Hopper, where Marlin lacks the wgmma path
/// cuBLAS uses. Calibrate before trusting either.
pub const AWQ_COMPUTE_PENALTY: f64 = 0.9;

/// The same for the legacy `awq_gemm` kernel below [`AWQ_DEQUANT_THRESHOLD_TOKENS`]. A GUESS
/// putting a 64-255-token step of the 70B at ~3.6x Marlin's time on an H100, in line with public
/// reports of the legacy path being several times slower than Marlin at serving batch sizes.
pub const AWQ_GEMM_COMPUTE_PENALTY: f64 = 0.25;

/// Tokens per step from which the legacy AWQ path dequantises whole weights to fp16 and
/// multiplies (vllm awq.py `AWQLinearMethod.apply`: `x.shape[:-1].numel() >= 256`).
pub const AWQ_DEQUANT_THRESHOLD_TOKENS: u32 = 256;

/// The legacy AWQ path at or above the threshold: dequantise, then a bf16 GEMM.
#[derive(Clone, Debug, PartialEq)]
struct DequantPath {
    /// Seconds of the dequantise pass (read int4 weights, write fp16 ones) per step.
    dequant_s: f64,
    /// Bytes the GEMMs read: the fp16 copies of the linear weights plus the bf16 embeddings.
    dense_weight_bytes: f64,
    /// bf16 GEMM throughput (no AWQ penalty).
    dense_flops_per_s: f64,
}

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
    /// The legacy AWQ kernels' large-step path (None: bf16, or AWQ on Marlin).
    dequant: Option<DequantPath>,
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
            dequant: None,
        }
    }

    /// This prior (built by [`Roofline::new`] with the same `model`, `gpu` and `mfu`) for an AWQ
    /// model running on `kernel` (see the module doc). Marlin keeps the plain AWQ roofline; a bf16
    /// model is unchanged.
    pub fn with_awq_kernel(
        mut self,
        model: &ModelSpec,
        gpu: &GpuSpec,
        mfu: f64,
        kernel: AwqKernel,
    ) -> Roofline {
        if model.weight_format != WeightFormat::AwqInt4 || kernel == AwqKernel::Marlin {
            return self;
        }
        let embedding_bytes = (model.embedding_params() * 2) as f64;
        let int4_linear_bytes = model.weight_bytes() as f64 - embedding_bytes;
        let bf16 = ModelSpec { weight_format: WeightFormat::Bf16, ..model.clone() };
        let fp16_linear_bytes = bf16.weight_bytes() as f64 - embedding_bytes;
        self.flops_per_s = gpu.bf16_flops * mfu * AWQ_GEMM_COMPUTE_PENALTY;
        self.dequant = Some(DequantPath {
            dequant_s: (int4_linear_bytes + fp16_linear_bytes) / self.bytes_per_s,
            dense_weight_bytes: bf16.weight_bytes() as f64,
            dense_flops_per_s: gpu.bf16_flops * mfu,
        });
        self
    }

    /// The dequantise-then-multiply path, when a step of `num_tokens` tokens takes it.
    #[inline]
    fn dequant_path(&self, num_tokens: u32) -> Option<&DequantPath> {
        self.dequant.as_ref().filter(|_| num_tokens >= AWQ_DEQUANT_THRESHOLD_TOKENS)
    }

    /// Whether a step of `num_tokens` tokens dequantises whole AWQ weights to fp16 (the legacy
    /// kernels at or above [`AWQ_DEQUANT_THRESHOLD_TOKENS`]).
    pub fn dequantises(&self, num_tokens: u32) -> bool {
        self.dequant_path(num_tokens).is_some()
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
        if let Some(p) = self.dequant_path(num_seqs) {
            for d in out.iter_mut() {
                let bytes = p.dense_weight_bytes + self.kv_bytes_per_token * kv;
                let flops = flops_per_step + self.attn_flops_per_pair * kv;
                let secs = self.overhead_s
                    + p.dequant_s
                    + larger(bytes / self.bytes_per_s, flops / p.dense_flops_per_s);
                *d = SimDuration::from_secs_f64(larger(secs, MIN_STEP_S)).max(SimDuration(1));
                kv += n;
            }
            return;
        }
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
        if let Some(p) = self.dequant_path(b.num_prefill_tokens + b.num_decode_seqs) {
            let bytes = p.dense_weight_bytes + self.kv_bytes_per_token * b.num_kv_tokens_read as f64;
            return self.overhead_s
                + p.dequant_s
                + larger(bytes / self.bytes_per_s, flops / p.dense_flops_per_s);
        }
        self.overhead_s + larger(bytes / self.bytes_per_s, flops / self.flops_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{gpu_catalog, model_catalog};

    fn setup() -> (ModelSpec, GpuSpec) {
        let m = model_catalog().into_iter().find(|m| m.name == "llama-3.3-70b-awq").unwrap();
        let g = gpu_catalog().into_iter().find(|g| g.name == "H100-80GB-SXM").unwrap();
        (m, g)
    }

    fn prefill(tokens: u32) -> BatchFeatures {
        BatchFeatures {
            num_scheduled_requests: 1,
            num_prefill_tokens: tokens,
            num_decode_seqs: 0,
            num_kv_tokens_read: u64::from(tokens),
            num_prefill_attn_pairs: u64::from(tokens) * u64::from(tokens) / 2,
        }
    }

    /// vllm awq.py `AWQLinearMethod.apply`: from 256 tokens per step the legacy path dequantises
    /// the 70B's ~35.6 GB of int4 linear weights into ~136.9 GB of fp16 ones every step (~64 ms at
    /// 80 % of an H100's 3.35 TB/s), then multiplies at bf16 efficiency reading the fp16 weights.
    #[test]
    fn a_legacy_awq_70b_step_of_256_tokens_pays_the_dequantise_then_multiply_path() {
        let (m, g) = setup();
        let (mfu, bw, overhead) = (0.5, 0.8, 0.002);
        let legacy = Roofline::new(&m, &g, mfu, bw, overhead).with_awq_kernel(&m, &g, mfu, AwqKernel::Legacy);
        let marlin = Roofline::new(&m, &g, mfu, bw, overhead).with_awq_kernel(&m, &g, mfu, AwqKernel::Marlin);
        assert_eq!(marlin, Roofline::new(&m, &g, mfu, bw, overhead), "Marlin is the plain AWQ prior");
        assert!(!legacy.dequantises(255) && legacy.dequantises(256) && !marlin.dequantises(4096));

        let emb = (m.embedding_params() * 2) as f64;
        let int4_linear = m.weight_bytes() as f64 - emb;
        let bf16 = ModelSpec { weight_format: WeightFormat::Bf16, ..m.clone() };
        let fp16_linear = bf16.weight_bytes() as f64 - emb;
        let bytes_per_s = g.hbm_bytes_per_s * bw;
        let dequant_s = (int4_linear + fp16_linear) / bytes_per_s;
        assert!((0.060..0.070).contains(&dequant_s), "{dequant_s}");

        let b = prefill(256);
        let flops = m.flops_per_token() * 256.0 + 4.0 * 80.0 * 64.0 * 128.0 * (256.0 * 256.0 / 2.0);
        let kv = m.kv_bytes_per_token() as f64 * 256.0;
        let gemm_s = ((bf16.weight_bytes() as f64 + kv) / bytes_per_s).max(flops / (g.bf16_flops * mfu));
        let expected = overhead + dequant_s + gemm_s;
        assert!(
            (legacy.step_time_s(&b) - expected).abs() < 1e-12,
            "{} vs {expected}",
            legacy.step_time_s(&b)
        );
        // Marlin at 256 tokens: int4 reads, GEMMs at the AWQ penalty, no dequantise pass.
        let marlin_s = overhead
            + ((m.weight_bytes() as f64 + kv) / bytes_per_s)
                .max(flops / (g.bf16_flops * mfu * AWQ_COMPUTE_PENALTY));
        assert!((marlin.step_time_s(&b) - marlin_s).abs() < 1e-12);
        // Below the threshold the legacy path runs awq_gemm on the int4 weights, slower than Marlin.
        let b = prefill(128);
        let awq_gemm_s = legacy.step_time_s(&b);
        let marlin_128 = marlin.step_time_s(&b);
        assert!(
            awq_gemm_s > 3.0 * marlin_128 && awq_gemm_s < 4.0 * marlin_128,
            "{awq_gemm_s} vs {marlin_128}"
        );
    }

    #[test]
    fn the_awq_kernel_leaves_a_bf16_model_alone() {
        let (_, g) = setup();
        let m = model_catalog().into_iter().find(|m| m.name == "llama-3.1-8b").unwrap();
        let plain = Roofline::new(&m, &g, 0.5, 0.8, 0.002);
        assert_eq!(plain.clone().with_awq_kernel(&m, &g, 0.5, AwqKernel::Legacy), plain);
    }
}
