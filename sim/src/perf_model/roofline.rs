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
//!   GEMM reads the fp16 weights, i.e. the streamed bytes of a bf16 model.
//!   The step's token count is the one the linear layers see: scheduled tokens plus CUDA-graph
//!   padding (a captured graph's input has the padded shape).

use super::{BatchFeatures, larger};
use crate::scenario::{AwqKernel, GpuSpec, ModelSpec, WeightFormat};

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
    /// Weight bytes the GEMMs stream: the fp16 copies of the linear weights plus the bf16
    /// embeddings, less an untied input table (whose rows are charged per token).
    dense_weight_bytes: f64,
    /// bf16 GEMM throughput (no AWQ penalty).
    dense_flops_per_s: f64,
}

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
    /// The legacy AWQ kernels' large-step path (None: bf16, or AWQ on Marlin).
    dequant: Option<DequantPath>,
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
        // The untied input table is not streamed (only its rows), as in `new`.
        let bf16_streamed = Roofline::new(&bf16, gpu, mfu, 1.0, 0.0).streamed_weight_bytes;
        self.flops_per_s = gpu.bf16_flops * mfu * AWQ_GEMM_COMPUTE_PENALTY;
        self.dequant = Some(DequantPath {
            dequant_s: (int4_linear_bytes + fp16_linear_bytes) / self.bytes_per_s,
            dense_weight_bytes: bf16_streamed,
            dense_flops_per_s: gpu.bf16_flops * mfu,
        });
        self
    }

    /// The dequantise-then-multiply path, when a step of `num_tokens` tokens takes it.
    #[inline]
    fn dequant_path(&self, num_tokens: u32) -> Option<&DequantPath> {
        self.dequant.as_ref().filter(|_| num_tokens >= AWQ_DEQUANT_THRESHOLD_TOKENS)
    }

    /// Whether a step of `num_tokens` tokens (padding included) dequantises whole AWQ weights to
    /// fp16 (the legacy kernels at or above [`AWQ_DEQUANT_THRESHOLD_TOKENS`]).
    pub fn dequantises(&self, num_tokens: u32) -> bool {
        self.dequant_path(num_tokens).is_some()
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
        if let Some(p) = self.dequant_path(tokens.saturating_add(pad_tokens)) {
            let bytes = p.dense_weight_bytes
                + self.embedding_row_bytes * f64::from(tokens)
                + self.kv_bytes_per_token * b.num_kv_tokens_read as f64;
            return self.overhead_s
                + p.dequant_s
                + larger(bytes / self.bytes_per_s, flops / p.dense_flops_per_s);
        }
        self.overhead_s + larger(bytes / self.bytes_per_s, flops / self.flops_per_s)
    }

    /// The terms of [`Roofline::step_time_s`] that stay fixed over a decode stretch of
    /// `num_seqs` sequences with `pad_tokens` padding (the legacy AWQ dequantise path included,
    /// which the padded token count selects once for the whole stretch).
    #[inline]
    pub(super) fn decode_terms(&self, num_seqs: u32, pad_tokens: u32) -> DecodeTerms {
        let flops = self.linear_flops_per_token * f64::from(num_seqs.saturating_add(pad_tokens))
            + self.lm_head_flops_per_row * f64::from(num_seqs);
        let rows = self.embedding_row_bytes * f64::from(num_seqs);
        match self.dequant_path(num_seqs.saturating_add(pad_tokens)) {
            Some(p) => DecodeTerms {
                bytes: p.dense_weight_bytes + rows,
                flops,
                fixed_s: self.overhead_s + p.dequant_s,
                flops_per_s: p.dense_flops_per_s,
            },
            None => DecodeTerms {
                bytes: self.streamed_weight_bytes + rows,
                flops,
                fixed_s: self.overhead_s,
                flops_per_s: self.flops_per_s,
            },
        }
    }

    /// [`Roofline::step_time_s`] of a pure-decode step reading `kv_tokens_read` KV tokens, from
    /// its [`Roofline::decode_terms`]: the same operations in the same order, so the same bits
    /// (a test checks it).
    #[inline]
    pub(super) fn decode_step_time_s(&self, t: &DecodeTerms, kv_tokens_read: f64) -> f64 {
        let bytes = t.bytes + self.kv_bytes_per_token * kv_tokens_read;
        let flops = t.flops + self.attn_flops_per_pair * kv_tokens_read;
        t.fixed_s + larger(bytes / self.bytes_per_s, flops / t.flops_per_s)
    }
}

/// What [`Roofline::step_time_s`] computes before a decode step's KV read, fixed over a stretch.
#[derive(Clone, Copy, Debug)]
pub(super) struct DecodeTerms {
    /// Bytes read besides the KV: streamed (or, dequantising, fp16) weights and embedding rows.
    bytes: f64,
    /// FLOPs besides attention: the linear layers (padding included) and the lm_head.
    flops: f64,
    /// The overhead, plus the dequantise pass on that path (added in `step_time_s`'s order).
    fixed_s: f64,
    /// GEMM throughput of the path.
    flops_per_s: f64,
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

    fn awq70b() -> ModelSpec {
        model_catalog().into_iter().find(|m| m.name == "llama-3.3-70b-awq").expect("in the catalogue")
    }

    fn prefill(tokens: u32) -> BatchFeatures {
        BatchFeatures {
            num_scheduled_requests: 1,
            num_prefill_tokens: tokens,
            num_decode_seqs: 0,
            num_kv_tokens_read: u64::from(tokens),
            num_prefill_attn_pairs: u64::from(tokens) * u64::from(tokens) / 2,
            max_seq_len: tokens,
        }
    }

    /// vllm awq.py `AWQLinearMethod.apply`: from 256 tokens per step the legacy path dequantises
    /// the 70B's ~35.6 GB of int4 linear weights into ~136.9 GB of fp16 ones every step (~64 ms at
    /// 80 % of an H100's 3.35 TB/s), then multiplies at bf16 efficiency reading the fp16 weights.
    #[test]
    fn a_legacy_awq_70b_step_of_256_tokens_pays_the_dequantise_then_multiply_path() {
        let (m, g) = (awq70b(), h100());
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

        // Untied embeddings: the input table is read one row per token, not whole.
        let (vocab, hidden) = (f64::from(m.vocab_size), f64::from(m.hidden_size));
        let (table, row) = (vocab * hidden * 2.0, hidden * 2.0);
        let b = prefill(256);
        let linear = 2.0 * (m.num_params() - m.embedding_params()) as f64;
        let flops = linear * 256.0 + 2.0 * vocab * hidden + 4.0 * 80.0 * 64.0 * 128.0 * (256.0 * 256.0 / 2.0);
        let kv = m.kv_bytes_per_token() as f64 * 256.0;
        let gemm_s = ((bf16.weight_bytes() as f64 - table + row * 256.0 + kv) / bytes_per_s)
            .max(flops / (g.bf16_flops * mfu));
        let expected = overhead + dequant_s + gemm_s;
        let got = legacy.step_time_s(&b, 0);
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        // Marlin at 256 tokens: int4 reads, GEMMs at the AWQ penalty, no dequantise pass.
        let marlin_s = overhead
            + ((m.weight_bytes() as f64 - table + row * 256.0 + kv) / bytes_per_s)
                .max(flops / (g.bf16_flops * mfu * AWQ_COMPUTE_PENALTY));
        assert!((marlin.step_time_s(&b, 0) - marlin_s).abs() < 1e-12);
        // Below the threshold the legacy path runs awq_gemm on the int4 weights, slower than Marlin.
        let b = prefill(128);
        let awq_gemm_s = legacy.step_time_s(&b, 0);
        let marlin_128 = marlin.step_time_s(&b, 0);
        assert!(
            awq_gemm_s > 3.0 * marlin_128 && awq_gemm_s < 4.0 * marlin_128,
            "{awq_gemm_s} vs {marlin_128}"
        );
        // CUDA-graph padding counts toward the threshold: 250 tokens padded to 256 dequantise
        // (the pass plus bf16 GEMMs over 256 rows), unpadded they run awq_gemm. (With these
        // guessed constants the padded step is the faster one: awq_gemm at 250 tokens is
        // compute-bound at a quarter of bf16 efficiency.)
        let b = prefill(250);
        assert!(!legacy.dequantises(250));
        let flops = linear * 256.0 + 2.0 * vocab * hidden + 4.0 * 80.0 * 64.0 * 128.0 * (250.0 * 250.0 / 2.0);
        let kv = m.kv_bytes_per_token() as f64 * 250.0;
        let gemm_s = ((bf16.weight_bytes() as f64 - table + row * 250.0 + kv) / bytes_per_s)
            .max(flops / (g.bf16_flops * mfu));
        let got = legacy.step_time_s(&b, 6);
        assert!((got - (overhead + dequant_s + gemm_s)).abs() < 1e-12, "{got}");
        let awq_gemm_s = overhead
            + ((m.weight_bytes() as f64 - table + row * 250.0 + kv) / bytes_per_s)
                .max((flops - linear * 6.0) / (g.bf16_flops * mfu * AWQ_GEMM_COMPUTE_PENALTY));
        assert!((legacy.step_time_s(&b, 0) - awq_gemm_s).abs() < 1e-12);
    }

    #[test]
    fn the_awq_kernel_leaves_a_bf16_model_alone() {
        let (m, g) = (llama8b(), h100());
        let plain = Roofline::new(&m, &g, 0.5, 0.8, 0.002);
        assert_eq!(plain.clone().with_awq_kernel(&m, &g, 0.5, AwqKernel::Legacy), plain);
    }
}
