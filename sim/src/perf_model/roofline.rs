//! The roofline prior: a step's GPU time is bound either by reading weights and KV from HBM or by
//! tensor-core FLOPs, whichever is slower, plus a fixed per-step GPU overhead (sampling, launch
//! gaps).
//!
//! It is a prior, not a measurement: it ignores kernel efficiency curves and communication.
//! Calibrated profiles replace it. What it does count (issue 10 item 4): the input embedding table
//! is not read whole each step, only the rows of the step's tokens; the lm_head runs only at the
//! sampled positions (one per scheduled request: vLLM computes logits at each request's last
//! token, `gpu_model_runner.py` `logits_indices`), not for every prompt token; CUDA-graph padding
//! tokens run through the linear layers. AWQ int4 weights are read at ~4.16 bits but dequantised
//! on the fly, so AWQ matmuls reach a lower fraction of peak ([`AWQ_COMPUTE_PENALTY`]). CPU
//! time, eager-step cost and the padding rule are the step model's (`super`).

use super::{BatchFeatures, larger};
use crate::scenario::{GpuSpec, ModelSpec, WeightFormat};

/// Fraction of bf16 tensor throughput AWQ GEMMs reach relative to bf16 GEMMs (dequantisation in the
/// main loop). vLLM users report AWQ ~25-30% slower than bf16 at high concurrency.
pub const AWQ_COMPUTE_PENALTY: f64 = 0.7;

/// Precomputed roofline terms of one model on one GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Roofline {
    /// Weight bytes every step reads whole: all but an untied input embedding table.
    streamed_weight_bytes: f64,
    /// Bytes of one input embedding row (untied; 0 when tied: lm_head reads the table anyway).
    embedding_row_bytes: f64,
    kv_bytes_per_token: f64,
    /// FLOPs per token through the transformer layers (2 x non-embedding parameters).
    linear_flops_per_token: f64,
    /// FLOPs of the lm_head per sampled position (2 x vocab x hidden).
    lm_head_flops_per_row: f64,
    /// Attention FLOPs per (query token, context token) pair: 4 x layers x heads x head_dim.
    attn_flops_per_pair: f64,
    bytes_per_s: f64,
    flops_per_s: f64,
    overhead_s: f64,
}

impl Roofline {
    /// A prior for `model` on `gpu` reaching `mfu` of peak FLOP/s and `bandwidth_efficiency` of
    /// peak HBM bandwidth, with `step_overhead_s` fixed GPU time per step.
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
        let (vocab, hidden) = (f64::from(model.vocab_size), f64::from(model.hidden_size));
        // Embeddings stay bf16 in every weight format (`ModelSpec::weight_bytes`).
        let (table_bytes, row_bytes) =
            if model.tie_word_embeddings { (0.0, 0.0) } else { (vocab * hidden * 2.0, hidden * 2.0) };
        Roofline {
            streamed_weight_bytes: model.weight_bytes() as f64 - table_bytes,
            embedding_row_bytes: row_bytes,
            kv_bytes_per_token: model.kv_bytes_per_token() as f64,
            linear_flops_per_token: 2.0 * (model.num_params() - model.embedding_params()) as f64,
            lm_head_flops_per_row: 2.0 * vocab * hidden,
            attn_flops_per_pair: 4.0
                * f64::from(model.num_layers)
                * f64::from(model.num_attention_heads)
                * f64::from(model.head_dim),
            bytes_per_s: gpu.hbm_bytes_per_s * bandwidth_efficiency,
            flops_per_s: gpu.bf16_flops * mfu * penalty,
            overhead_s: step_overhead_s,
        }
    }

    /// GPU seconds one step of `b` takes with `pad_tokens` CUDA-graph padding tokens.
    #[inline]
    pub fn step_time_s(&self, b: &BatchFeatures, pad_tokens: u32) -> f64 {
        let tokens = b.num_prefill_tokens.saturating_add(b.num_decode_seqs);
        let bytes = self.streamed_weight_bytes
            + self.embedding_row_bytes * f64::from(tokens)
            + self.kv_bytes_per_token * b.num_kv_tokens_read as f64;
        // Decode attention reads each context token once per query; prefill chunks pay the pairs.
        let decode_pairs = b.num_kv_tokens_read.saturating_sub(u64::from(b.num_prefill_tokens)) as f64;
        let flops = self.linear_flops_per_token * f64::from(tokens.saturating_add(pad_tokens))
            + self.lm_head_flops_per_row * f64::from(b.num_scheduled_requests)
            + self.attn_flops_per_pair * (b.num_prefill_attn_pairs as f64 + decode_pairs);
        self.overhead_s + larger(bytes / self.bytes_per_s, flops / self.flops_per_s)
    }

    /// The terms of [`Roofline::step_time_s`] that stay fixed over a decode stretch of
    /// `num_seqs` sequences with `pad_tokens` padding: `(bytes, flops)` before the KV read.
    #[inline]
    pub(super) fn decode_terms(&self, num_seqs: u32, pad_tokens: u32) -> (f64, f64) {
        let bytes = self.streamed_weight_bytes + self.embedding_row_bytes * f64::from(num_seqs);
        let flops = self.linear_flops_per_token * f64::from(num_seqs.saturating_add(pad_tokens))
            + self.lm_head_flops_per_row * f64::from(num_seqs);
        (bytes, flops)
    }

    /// [`Roofline::step_time_s`] of a pure-decode step reading `kv_tokens_read` KV tokens, from
    /// its [`Roofline::decode_terms`]: the same operations in the same order, so the same bits
    /// (a test checks it).
    #[inline]
    pub(super) fn decode_step_time_s(&self, (bytes, flops): (f64, f64), kv_tokens_read: f64) -> f64 {
        let bytes = bytes + self.kv_bytes_per_token * kv_tokens_read;
        let flops = flops + self.attn_flops_per_pair * kv_tokens_read;
        self.overhead_s + larger(bytes / self.bytes_per_s, flops / self.flops_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{gpu_catalog, model_catalog};

    fn llama8b() -> ModelSpec {
        model_catalog().into_iter().find(|m| m.name == "llama-3.1-8b").expect("in the catalogue")
    }

    fn h100() -> GpuSpec {
        gpu_catalog().into_iter().find(|g| g.name == "H100-80GB-SXM").expect("in the catalogue")
    }

    fn batch(prefill: u32, decode: u32, kv: u64) -> BatchFeatures {
        BatchFeatures {
            num_scheduled_requests: u32::from(prefill > 0) + decode,
            num_prefill_tokens: prefill,
            num_decode_seqs: decode,
            num_kv_tokens_read: kv,
            num_prefill_attn_pairs: 0,
            max_seq_len: 0,
        }
    }

    #[test]
    fn a_decode_step_reads_the_weights_but_only_the_embedding_rows_it_uses() {
        let m = llama8b();
        // Bandwidth-bound: 1 byte/s, so the time is the bytes read.
        let gpu = GpuSpec { hbm_bytes_per_s: 1.0, bf16_flops: 1e30, ..h100() };
        let r = Roofline::new(&m, &gpu, 1.0, 1.0, 0.0);
        let table = 128_256.0 * 4096.0 * 2.0;
        let expected = m.weight_bytes() as f64 - table + 4096.0 * 2.0;
        assert_eq!(r.step_time_s(&batch(0, 1, 0), 0), expected);
        // Eight tokens read eight rows.
        assert_eq!(r.step_time_s(&batch(0, 8, 0), 0), expected + 7.0 * 4096.0 * 2.0);
    }

    #[test]
    fn the_lm_head_runs_once_per_request_not_per_prompt_token() {
        let m = llama8b();
        // Compute-bound: 1 FLOP/s, so the time is the FLOPs.
        let gpu = GpuSpec { hbm_bytes_per_s: 1e30, bf16_flops: 1.0, ..h100() };
        let r = Roofline::new(&m, &gpu, 1.0, 1.0, 0.0);
        let linear = 2.0 * (m.num_params() - m.embedding_params()) as f64;
        let lm_head = 2.0 * 128_256.0 * 4096.0;
        // One 1000-token prompt chunk: 1000 tokens through the layers, one logits row.
        assert_eq!(r.step_time_s(&batch(1000, 0, 1000), 0), 1000.0 * linear + lm_head);
        // Padding tokens run through the layers only.
        assert_eq!(r.step_time_s(&batch(0, 3, 0), 5), 8.0 * linear + 3.0 * lm_head);
    }
}
