//! Built-in catalogues of GPUs and models that scenario files refer to by name.
//!
//! A scenario may add entries (`[gpu_catalog."name"]`, `[model_catalog."name"]`); an added entry
//! with a built-in's name replaces it. This module holds facts only; it does not decide which
//! entries a scenario uses.

use super::types::{GpuSpec, ModelSpec, WeightFormat};

/// Bytes of `g` GiB, rounded to a whole MiB.
fn gib_bytes(g: f64) -> u64 {
    ((g * 1024.0).round() as u64) * 1024 * 1024
}

/// The GPUs a scenario can name in `[cluster]`.
///
/// `memory_bytes` is the total `torch.cuda.mem_get_info()` reports (what vLLM multiplies by
/// `gpu_memory_utilization`), not the marketing size:
/// - `H100-80GB-SXM`: 85,017,493,504 B (79.18 GiB), measured with `cudaMemGetInfo` on an
///   "NVIDIA H100 80GB HBM3" (nvidia-smi: 81559 MiB). 989 TFLOP/s dense bf16 and 3.35 TB/s HBM3
///   (NVIDIA H100 Tensor Core GPU datasheet, SXM5 column; the 1979 TFLOP/s figure is with sparsity).
/// - `H200`: 139.80 GiB (PyTorch's "total capacity of 139.80 GiB" on 141 GB H200s). Same compute as
///   H100 SXM (989 TFLOP/s dense bf16), 4.8 TB/s HBM3e (NVIDIA H200 datasheet).
/// - `A100-80GB`: 79.15 GiB (PyTorch's "total capacity of 79.15 GiB" on A100-SXM4-80GB).
///   312 TFLOP/s dense bf16, 2.039 TB/s HBM2e (NVIDIA A100 datasheet, SXM 80GB column).
/// - `L40S`: 44.39 GiB (PyTorch reports 44.3-44.5 GiB on 48 GB GDDR6 cards). 362 TFLOP/s dense
///   bf16 (362.05; 733 with sparsity), 864 GB/s (NVIDIA L40S datasheet).
pub fn gpu_catalog() -> Vec<GpuSpec> {
    let gpu = |name: &str, memory_bytes: u64, bf16_flops: f64, hbm_bytes_per_s: f64| GpuSpec {
        name: name.to_string(),
        memory_bytes,
        bf16_flops,
        hbm_bytes_per_s,
    };
    vec![
        gpu("H100-80GB-SXM", 85_017_493_504, 989e12, 3.35e12),
        gpu("H200", gib_bytes(139.80), 989e12, 4.8e12),
        gpu("A100-80GB", gib_bytes(79.15), 312e12, 2.039e12),
        gpu("L40S", gib_bytes(44.39), 362e12, 864e9),
    ]
}

/// The models a scenario can name in `[[instances]]` and workload mixes.
///
/// Architecture numbers are the `config.json` of each Hugging Face repo (`num_hidden_layers`,
/// `hidden_size`, `num_attention_heads`, `num_key_value_heads`, `intermediate_size`, `vocab_size`,
/// `tie_word_embeddings`, `max_position_embeddings`); head_dim = hidden / heads = 128 for all of
/// them. `qwen2.5-32b` is Qwen/Qwen2.5-32B-Instruct (64 layers, hidden 5120, 40 heads, 8 KV heads,
/// intermediate 27648, vocab 152064, 32768 positions, bf16, untied embeddings).
/// `llama-3.3-70b-awq` is served under the base model's name, as the seed's clients ask for it
/// (`--served-model-name meta-llama/Llama-3.3-70B-Instruct`), but loaded from an AWQ checkpoint:
/// the seed's table gives `meta-llama/Llama-3.3-70B-Instruct` as its path, a repo of bf16 weights
/// (~140 GB, no AWQ quantization config) that vLLM refuses to run with `--quantization awq`.
/// `casperhansen/llama-3.3-70b-instruct-awq` (AutoAWQ, 4-bit, group size 128, the shape the
/// catalogue's `AwqInt4` memory model assumes) is the default; set `[models."llama-3.3-70b-awq"]
/// model_path` to use another.
pub fn model_catalog() -> Vec<ModelSpec> {
    #[allow(clippy::too_many_arguments)]
    fn model(
        name: &str,
        served_name: &str,
        model_path: &str,
        num_layers: u32,
        hidden_size: u32,
        num_attention_heads: u32,
        num_kv_heads: u32,
        intermediate_size: u32,
        vocab_size: u32,
        max_position_embeddings: u32,
        weight_format: WeightFormat,
    ) -> ModelSpec {
        ModelSpec {
            name: name.to_string(),
            served_name: served_name.to_string(),
            model_path: model_path.to_string(),
            num_layers,
            hidden_size,
            num_attention_heads,
            num_kv_heads,
            head_dim: 128,
            intermediate_size,
            vocab_size,
            tie_word_embeddings: false,
            weight_format,
            max_position_embeddings,
            kv_cache_dtype_bytes: 2,
        }
    }
    vec![
        model(
            "llama-3.1-8b",
            "meta-llama/Llama-3.1-8B-Instruct",
            "meta-llama/Llama-3.1-8B-Instruct",
            32,
            4096,
            32,
            8,
            14336,
            128256,
            131072,
            WeightFormat::Bf16,
        ),
        model(
            "qwen2.5-7b",
            "Qwen/Qwen2.5-7B-Instruct",
            "Qwen/Qwen2.5-7B-Instruct",
            28,
            3584,
            28,
            4,
            18944,
            152064,
            32768,
            WeightFormat::Bf16,
        ),
        model(
            "qwen2.5-32b",
            "Qwen/Qwen2.5-32B-Instruct",
            "Qwen/Qwen2.5-32B-Instruct",
            64,
            5120,
            40,
            8,
            27648,
            152064,
            32768,
            WeightFormat::Bf16,
        ),
        model(
            "llama-3.3-70b-awq",
            "meta-llama/Llama-3.3-70B-Instruct",
            "casperhansen/llama-3.3-70b-instruct-awq",
            80,
            8192,
            64,
            8,
            28672,
            128256,
            131072,
            WeightFormat::AwqInt4,
        ),
    ]
}
