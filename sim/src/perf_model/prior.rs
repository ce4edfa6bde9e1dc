//! What each engine preset adds to a step besides the GPU's arithmetic, where no profile says:
//! CPU time, CUDA-graph capture sizes and eligibility, the eager-step cost, the output delay.
//!
//! The CUDA-graph sizes and rules follow the engines' source (cited per preset); every cost
//! constant is a guess, marked `GUESS` with the anchor it comes from. A calibrated profile
//! replaces the costs; the graph *rule* (which batches may run a graph) always comes from the
//! preset, because it is the engine's code, not a measurement. This module computes no step
//! times.

use crate::scenario::{CpuCost, CudaGraphSpec, EngineConfig, EnginePreset, ModelSpec, StepOverheads};

/// vLLM 0.6.4's `max_seq_len_to_capture` default (`vllm/engine/arg_utils.py`
/// `EngineArgs.max_seq_len_to_capture`), capped at `max_model_len` (`vllm/config.py`
/// `ModelConfig._verify_cuda_graph`).
const V064_MAX_SEQ_LEN_TO_CAPTURE: u32 = 8192;

/// The reference engine's CUDA-graph sizes (`live/reference-engine/graphs.py`
/// `DEFAULT_CAPTURE_SIZES`, its `--cuda-graph-sizes` default): it replaces transformers 5.17's lazy
/// capture at multiples of 64 query tokens (`generation/continuous_batching/model_runner.py`
/// `maybe_pad_inputs`) by a fixed list, as vLLM does, and runs larger steps eagerly.
const CB_CAPTURE_SIZES: [u32; 15] = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];

/// GUESS: launch overhead per transformer layer of a step run without CUDA graphs. Eager PyTorch
/// (vLLM 0.6.4, transformers) launches ~15 kernels per layer at ~4 us each; V1's compiled
/// (inductor) model fuses most of them. For Llama-3.1-8B (32 layers): 1.9 ms eager, 0.6 ms V1.
const EAGER_S_PER_LAYER_PYTORCH: f64 = 60e-6;
const EAGER_S_PER_LAYER_V1: f64 = 20e-6;

/// GUESS: CPU time per step. V1 schedules and processes outputs in a separate process, overlapped
/// with the GPU under async scheduling, so it only shows when it exceeds the GPU time. vLLM 0.6.4
/// schedules and prepares inputs in Python before each step, ~25 us per sequence group (its
/// output processing is already async: `use_async_output_proc`). transformers-cb: fitted by eye
/// to the reference engine's decode-only steps on an H200 (10.5 ms at 1 sequence, 20.6 ms at
/// 33-64; `reference-engine-facts.md`), most of it the engine's own Python per step.
const CPU_V1: CpuCost = CpuCost { fixed_s: 1.0e-3, per_request_s: 5e-6 };
const CPU_V064: CpuCost = CpuCost { fixed_s: 1.5e-3, per_request_s: 25e-6 };
const CPU_CB: CpuCost = CpuCost { fixed_s: 10e-3, per_request_s: 150e-6 };

/// GUESS: pipeline delay of the reference engine's async batching: "the first token reaches the
/// client about one step after the prefill step ends" (`reference-engine-facts.md`), one ~12 ms
/// decode step of the H200 measurements. vLLM: 0 (its output processing overlaps the next step
/// and takes well under a millisecond; not measured).
const OUTPUT_DELAY_CB_S: f64 = 0.012;

/// Which batches may run a CUDA graph under `engine`'s preset: `(decode_only,
/// max_seq_len_to_capture)`.
///
/// - vLLM 0.6.4 (`vllm/worker/model_runner.py` `ModelInputForGPUBuilder._use_captured_graph`):
///   decode-only batches whose longest sequence is at most `max_seq_len_to_capture` (8192, capped
///   at `max_model_len`); prefill and mixed steps run eagerly.
/// - vLLM V1 (vllm 0.33.0 `vllm/v1/worker/gpu_model_runner.py` `_get_num_input_tokens` with the
///   default `CUDAGraphMode.FULL_AND_PIECEWISE`): any batch up to the largest capture size, mixed
///   prefill included (piecewise graphs).
/// - transformers-cb: any batch up to 512 padded query tokens.
///
/// vLLM 0.9.2 and 0.19.0 are taken as current V1 here and below (not read for these rules: 0.9.2's
/// capture sizes were multiples of 8 up to 512, as 0.11.0's).
pub fn cuda_graph_rule(engine: &EngineConfig) -> (bool, Option<u32>) {
    match engine.preset {
        EnginePreset::Vllm064 => (true, Some(V064_MAX_SEQ_LEN_TO_CAPTURE.min(engine.max_model_len))),
        EnginePreset::Vllm092
        | EnginePreset::Vllm0190
        | EnginePreset::VllmV1
        | EnginePreset::TransformersCb => (false, None),
    }
}

/// The sizes `engine` captures CUDA graphs for, ascending.
///
/// - vLLM V1 (vllm 0.33.0 `vllm/config/vllm.py` `VllmConfig._set_cudagraph_sizes`): 1, 2, 4,
///   multiples of 8 below 256, multiples of 16 from 256, up to `min(2 x max_num_seqs, 512,
///   max_num_batched_tokens)`, plus `max_num_batched_tokens` and `max_num_seqs` when they fit
///   (vllm 0.11.0 used multiples of 8 all the way).
/// - vLLM 0.6.4 (`vllm/worker/model_runner.py` `_BATCH_SIZES_TO_CAPTURE`,
///   `_get_max_graph_batch_size`): 1, 2, 4, multiples of 8, up to `max_num_seqs` padded to that
///   grid (256 by default).
/// - transformers-cb: the reference engine's list up to 512 tokens (sizes above the token budget
///   dropped).
pub fn default_capture_sizes(engine: &EngineConfig) -> Vec<u32> {
    let seqs = engine.max_num_seqs.max(1);
    let tokens = engine.max_num_batched_tokens.max(1);
    let mut sizes: Vec<u32> = match engine.preset {
        EnginePreset::Vllm092 | EnginePreset::Vllm0190 | EnginePreset::VllmV1 => {
            let max = seqs.saturating_mul(2).min(512).min(tokens);
            let mut s: Vec<u32> = [1, 2, 4].into_iter().filter(|&x| x <= max).collect();
            s.extend((8..(max + 1).min(256)).step_by(8));
            s.extend((256..=max).step_by(16));
            s.extend([tokens, seqs].into_iter().filter(|&x| x <= max));
            s
        }
        EnginePreset::Vllm064 => {
            let padded = match seqs {
                0..=2 => seqs,
                3..=4 => 4,
                _ => seqs.div_ceil(8) * 8,
            };
            let max = padded.min(8192);
            [1, 2, 4].into_iter().chain((8..=max).step_by(8)).filter(|&x| x <= max).collect()
        }
        EnginePreset::TransformersCb => CB_CAPTURE_SIZES.into_iter().filter(|&x| x <= tokens).collect(),
    };
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// The roofline prior's CPU time, CUDA graphs and output delay for `model` under `engine`: the
/// preset's graph sizes and rule, and guessed costs (see the constants).
pub fn prior_overheads(model: &ModelSpec, engine: &EngineConfig) -> StepOverheads {
    let layers = f64::from(model.num_layers);
    let (cpu, eager_per_layer, output_delay_s) = match engine.preset {
        EnginePreset::Vllm092 | EnginePreset::Vllm0190 | EnginePreset::VllmV1 => {
            (CPU_V1, EAGER_S_PER_LAYER_V1, 0.0)
        }
        EnginePreset::Vllm064 => (CPU_V064, EAGER_S_PER_LAYER_PYTORCH, 0.0),
        EnginePreset::TransformersCb => (CPU_CB, EAGER_S_PER_LAYER_PYTORCH, OUTPUT_DELAY_CB_S),
    };
    let (decode_only, max_seq_len_to_capture) = cuda_graph_rule(engine);
    StepOverheads {
        cpu,
        cuda_graphs: CudaGraphSpec {
            capture_sizes: default_capture_sizes(engine),
            // Whole nanoseconds: the value survives a JSON round trip (run.json) exactly.
            eager_fixed_s: (eager_per_layer * layers * 1e9).round() / 1e9,
            decode_only,
            max_seq_len_to_capture,
        },
        output_delay_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{engine_preset_defaults, model_catalog};

    fn engine(preset: EnginePreset) -> EngineConfig {
        engine_preset_defaults(preset, &model_catalog()[0])
    }

    #[test]
    fn v1_captures_vllm_0_33s_grid_up_to_512_tokens_for_any_batch() {
        let e = engine(EnginePreset::VllmV1);
        let s = default_capture_sizes(&e);
        assert_eq!(&s[..6], &[1, 2, 4, 8, 16, 24]);
        assert_eq!(s.iter().filter(|&&x| x < 256).count(), 3 + 31);
        assert_eq!(&s[s.len() - 3..], &[480, 496, 512]);
        assert_eq!(cuda_graph_rule(&e), (false, None));
    }

    #[test]
    fn v064_captures_decode_batches_up_to_256_and_8192_tokens_of_context() {
        let e = engine(EnginePreset::Vllm064);
        let s = default_capture_sizes(&e);
        assert_eq!(&s[..5], &[1, 2, 4, 8, 16]);
        assert_eq!(s.last(), Some(&256));
        assert_eq!(s.len(), 3 + 32);
        assert_eq!(cuda_graph_rule(&e), (true, Some(8192)));
        let mut short = e.clone();
        short.max_model_len = 4096;
        assert_eq!(cuda_graph_rule(&short), (true, Some(4096)));
    }

    #[test]
    fn transformers_cb_captures_the_reference_engines_sizes_up_to_512() {
        let e = engine(EnginePreset::TransformersCb);
        assert_eq!(default_capture_sizes(&e), CB_CAPTURE_SIZES.to_vec());
        let p = prior_overheads(&model_catalog()[0], &e);
        assert_eq!(p.output_delay_s, OUTPUT_DELAY_CB_S);
        assert!(!p.cuda_graphs.decode_only);
    }
}
