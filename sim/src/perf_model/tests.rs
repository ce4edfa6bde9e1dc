//! Known answers for the step model's terms, and the decode-stretch fast path against single steps.

use super::*;
use crate::scenario::{EnginePreset, engine_preset_defaults, gpu_catalog, model_catalog};

fn coefficients() -> StepCoefficients {
    StepCoefficients {
        fixed_s: 0.005,
        per_prefill_token_s: 1e-5,
        per_decode_seq_s: 1e-4,
        per_kv_token_s: 1e-7,
        per_prefill_attn_pair_s: 0.0,
    }
}

fn batch(prefill: u32, decode: u32, kv: u64) -> BatchFeatures {
    BatchFeatures {
        num_scheduled_requests: u32::from(prefill > 0) + decode,
        num_prefill_tokens: prefill,
        num_decode_seqs: decode,
        num_kv_tokens_read: kv,
        num_prefill_attn_pairs: 0,
        max_seq_len: 100,
    }
}

fn graphs(sizes: &[u32], eager_fixed_s: f64) -> CudaGraphSpec {
    CudaGraphSpec { capture_sizes: sizes.to_vec(), eager_fixed_s, ..CudaGraphSpec::default() }
}

#[test]
fn linear_model_adds_its_terms() {
    let m = StepTimeModel::linear(coefficients());
    let b = BatchFeatures { num_scheduled_requests: 3, ..batch(100, 2, 1000) };
    // 5 ms + 1 ms + 0.2 ms + 0.1 ms
    assert_eq!(m.step_time(&b), SimDuration(6_300_000));
    assert!(m.is_calibrated());
    assert_eq!(m.step_time(&BatchFeatures::default()), SimDuration::ZERO);
}

#[test]
fn a_graph_step_pays_its_padding_as_decode_sequences() {
    let m = StepTimeModel::linear(coefficients()).with_overheads(
        CpuCost::default(),
        &graphs(&[1, 2, 4, 8, 16], 0.002),
        false,
        0.0,
    );
    // 5 decodes run the 8-graph: 3 padding tokens at 0.1 ms each.
    let b = batch(0, 5, 0);
    assert_eq!(m.graph_mode(&b), GraphMode::Padded(3));
    assert_eq!(m.step_time(&b), SimDuration(5_000_000 + 800_000));
    // 16 exactly: no padding.
    assert_eq!(m.graph_mode(&batch(0, 16, 0)), GraphMode::Padded(0));
    // A mixed step of 10 prefill + 2 decode tokens (12 <= 16) runs the 16-graph: 4 padding.
    assert_eq!(m.graph_mode(&batch(10, 2, 12)), GraphMode::Padded(4));
}

#[test]
fn a_step_above_the_largest_graph_runs_eagerly_and_pays_the_eager_cost() {
    let m = StepTimeModel::linear(coefficients()).with_overheads(
        CpuCost::default(),
        &graphs(&[1, 2, 4, 8], 0.002),
        false,
        0.0,
    );
    let b = batch(100, 2, 0);
    assert_eq!(m.graph_mode(&b), GraphMode::Eager);
    // 5 ms + 1 ms prefill + 0.2 ms decodes + 2 ms eager.
    assert_eq!(m.step_time(&b), SimDuration(8_200_000));
    // No graphs at all: no padding, no eager cost.
    let plain = StepTimeModel::linear(coefficients());
    assert_eq!(plain.graph_mode(&b), GraphMode::NoGraphs);
    assert_eq!(plain.step_time(&b), SimDuration(6_200_000));
}

#[test]
fn vllm_064_graphs_serve_only_short_pure_decode_batches() {
    // vllm 0.6.4 worker/model_runner.py _use_captured_graph: decode_only and max_decode_seq_len
    // <= max_seq_len_to_capture.
    let spec = CudaGraphSpec {
        decode_only: true,
        max_seq_len_to_capture: Some(8192),
        ..graphs(&[1, 2, 4, 8], 1e-3)
    };
    let m = StepTimeModel::linear(coefficients()).with_overheads(CpuCost::default(), &spec, false, 0.0);
    assert_eq!(m.graph_mode(&batch(0, 3, 0)), GraphMode::Padded(1));
    assert_eq!(m.graph_mode(&batch(1, 2, 0)), GraphMode::Eager, "a mixed step is eager");
    let long = BatchFeatures { max_seq_len: 8193, ..batch(0, 3, 0) };
    assert_eq!(m.graph_mode(&long), GraphMode::Eager, "a long context is eager");
    let at_limit = BatchFeatures { max_seq_len: 8192, ..batch(0, 3, 0) };
    assert_eq!(m.graph_mode(&at_limit), GraphMode::Padded(1));
}

#[test]
fn only_a_batch_the_context_limit_can_exclude_needs_its_longest_context() {
    let spec = CudaGraphSpec {
        decode_only: true,
        max_seq_len_to_capture: Some(8192),
        ..graphs(&[1, 2, 4, 8], 1e-3)
    };
    let v064 = StepTimeModel::linear(coefficients()).with_overheads(CpuCost::default(), &spec, false, 0.0);
    assert!(v064.reads_max_seq_len(&batch(0, 8, 0)));
    assert!(!v064.reads_max_seq_len(&batch(0, 9, 0)), "eager anyway: above the largest graph");
    assert!(!v064.reads_max_seq_len(&batch(1, 2, 0)), "eager anyway: a mixed step");
    let v1 = StepTimeModel::linear(coefficients()).with_overheads(
        CpuCost::default(),
        &graphs(&[1, 2], 0.0),
        true,
        0.0,
    );
    assert!(!v1.reads_max_seq_len(&batch(0, 2, 0)), "no context limit");
    // Where it is not read, any value gives the same mode.
    for b in [batch(0, 9, 0), batch(1, 2, 0)] {
        let long = BatchFeatures { max_seq_len: u32::MAX, ..b };
        assert_eq!(v064.graph_mode(&b), v064.graph_mode(&long));
    }
}

#[test]
fn async_scheduling_overlaps_cpu_with_gpu_and_sync_adds_them() {
    let cpu = CpuCost { fixed_s: 0.001, per_request_s: 0.001 };
    let b = batch(0, 2, 0); // GPU: 5 ms + 0.2 ms; CPU: 1 ms + 2 ms
    let sync =
        StepTimeModel::linear(coefficients()).with_overheads(cpu.clone(), &graphs(&[], 0.0), false, 0.0);
    let asynch =
        StepTimeModel::linear(coefficients()).with_overheads(cpu.clone(), &graphs(&[], 0.0), true, 0.0);
    assert_eq!(sync.gpu_time_s(&b), 0.0052);
    assert_eq!(sync.cpu_time_s(&b), 0.003);
    assert_eq!(sync.step_time(&b), SimDuration(8_200_000));
    assert_eq!(asynch.step_time(&b), SimDuration(5_200_000));
    // A batch whose CPU time exceeds its GPU time: async is CPU-bound.
    let cpu_heavy = CpuCost { fixed_s: 0.001, per_request_s: 0.004 };
    let m = StepTimeModel::linear(coefficients()).with_overheads(cpu_heavy, &graphs(&[], 0.0), true, 0.0);
    assert_eq!(m.step_time(&b), SimDuration(9_000_000));
}

#[test]
fn the_output_delay_is_the_profiles() {
    let m = StepTimeModel::linear(coefficients()).with_overheads(
        CpuCost::default(),
        &graphs(&[], 0.0),
        true,
        0.011,
    );
    assert_eq!(m.output_delay(), SimDuration(11_000_000));
    assert_eq!(StepTimeModel::linear(coefficients()).output_delay(), SimDuration::ZERO);
}

#[test]
fn the_presets_priors_differ_where_the_engines_do() {
    let model = &model_catalog()[0];
    let gpu = &gpu_catalog()[0];
    let prior = |preset| {
        let e = engine_preset_defaults(preset, model);
        let perf = PerfSpec::Roofline {
            mfu: 0.5,
            bandwidth_efficiency: 0.8,
            step_overhead_s: 0.002,
            overheads: prior_overheads(model, &e),
        };
        StepTimeModel::from_spec(&perf, model, gpu, &e)
    };
    let (v1, v0, cb) =
        (prior(EnginePreset::VllmV1), prior(EnginePreset::Vllm064), prior(EnginePreset::TransformersCb));
    assert!(v1.async_scheduling() && !v0.async_scheduling() && cb.async_scheduling());
    // A mixed step of 100 prompt tokens and 50 decodes: V1 runs a piecewise graph, 0.6.4 eagerly.
    let mixed = batch(100, 50, 10_000);
    assert_eq!(v1.graph_mode(&mixed), GraphMode::Padded(2));
    assert_eq!(v0.graph_mode(&mixed), GraphMode::Eager);
    assert_eq!(cb.graph_mode(&mixed), GraphMode::Padded(42)); // 192
    // A 300-sequence decode: V1 pads to 304, 0.6.4 has no graph above 256.
    let decode = batch(0, 300, 300_000);
    assert_eq!(v1.graph_mode(&decode), GraphMode::Padded(4));
    assert_eq!(v0.graph_mode(&decode), GraphMode::Eager);
    // 0.6.4 pays CPU time serially and it grows with the batch; V1 hides it behind the GPU.
    assert!(v0.step_time(&decode) > v1.step_time(&decode));
    assert_eq!(v1.step_time(&decode), SimDuration::from_secs_f64(v1.gpu_time_s(&decode)));
    assert!(!v1.is_calibrated());
}

proptest::proptest! {
    #[test]
    fn decode_step_times_equal_one_step_time_per_batch(
        model in 0usize..4,
        gpu in 0usize..4,
        mfu in 0.05f64..1.0,
        overhead in 0.0f64..0.01,
        num_seqs in 1u32..600,
        first_kv in 0u64..4_000_000,
        first_max_seq_len in 8150u32..8250,
        len in 1usize..80,
        linear: bool,
        async_scheduling: bool,
        cpu_per_request in 0.0f64..1e-4,
        graph_kind in 0usize..3,
        eager in 0.0f64..0.005,
        legacy_awq: bool,
    ) {
        let models = model_catalog();
        let gpus = gpu_catalog();
        let (m, g) = (&models[model % models.len()], &gpus[gpu % gpus.len()]);
        let base = if linear {
            StepTimeModel::linear(StepCoefficients {
                fixed_s: overhead,
                per_prefill_token_s: 1e-5,
                per_decode_seq_s: mfu * 1e-4,
                per_kv_token_s: -mfu * 1e-9,
                per_prefill_attn_pair_s: 0.0,
            })
        } else {
            // vLLM 0.19.0 runs `--quantization awq` on the legacy kernels (dequantising from 256
            // tokens); current V1 on Marlin. A bf16 model is the same under either.
            let preset = if legacy_awq { EnginePreset::Vllm0190 } else { EnginePreset::VllmV1 };
            let e = engine_preset_defaults(preset, m);
            let perf = PerfSpec::Roofline { mfu, bandwidth_efficiency: 0.8, step_overhead_s: overhead, overheads: Default::default() };
            StepTimeModel::from_spec(&perf, m, g, &e)
        };
        let spec = match graph_kind {
            0 => CudaGraphSpec::default(),
            1 => graphs(&[1, 2, 4, 8, 16, 32, 64, 128, 256, 512], eager),
            // vLLM 0.6.4: pure decode only, contexts up to 8192 (the stretch crosses it).
            _ => CudaGraphSpec { decode_only: true, max_seq_len_to_capture: Some(8192), ..graphs(&[1, 2, 4, 8, 16, 256], eager) },
        };
        let cpu = CpuCost { fixed_s: 0.001, per_request_s: cpu_per_request };
        let m = base.with_overheads(cpu, &spec, async_scheduling, 0.0);
        let mut got = vec![SimDuration::ZERO; len];
        m.decode_step_times(num_seqs, first_kv, first_max_seq_len, &mut got);
        for (i, &d) in got.iter().enumerate() {
            let b = BatchFeatures {
                num_scheduled_requests: num_seqs,
                num_prefill_tokens: 0,
                num_decode_seqs: num_seqs,
                num_kv_tokens_read: first_kv + i as u64 * u64::from(num_seqs),
                num_prefill_attn_pairs: 0,
                max_seq_len: first_max_seq_len + i as u32,
            };
            proptest::prop_assert_eq!(d, m.step_time(&b).max(SimDuration(1)), "step {}", i);
        }
    }
}
