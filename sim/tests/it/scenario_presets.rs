//! Known answers: vLLM preset defaults, derived knobs, and the KV capacity they leave.

use crate::scenario_errors::{BASE, parse};
use sim::cluster::static_kv_budget;
use sim::scenario::*;

const GIB: f64 = (1u64 << 30) as f64;

fn model(name: &str) -> ModelSpec {
    model_catalog().into_iter().find(|m| m.name == name).unwrap()
}

fn h100() -> GpuSpec {
    gpu_catalog().into_iter().find(|g| g.name == "H100-80GB-SXM").unwrap()
}

#[test]
fn vllm_064_on_llama_8b_enables_chunked_prefill_with_a_512_token_budget() {
    let e = engine_preset_defaults(EnginePreset::Vllm064, &model("llama-3.1-8b"));
    assert_eq!(e.max_model_len, 131072);
    assert!(e.enable_chunked_prefill, "max_model_len > 32768 turns chunked prefill on in 0.6.4");
    assert_eq!(e.max_num_batched_tokens, 512);
    assert_eq!(e.max_num_seqs, 256);
    assert!(!e.enable_prefix_caching);
    assert_eq!(e.block_size, 16);
    assert_eq!(e.gpu_memory_utilization, 0.9);
    assert_eq!(e.kv_cache, KvCacheMode::Static);
    assert_eq!(e.num_gpu_blocks_override, None);
}

#[test]
fn vllm_064_on_qwen_7b_has_no_chunked_prefill_and_a_max_model_len_budget() {
    let e = engine_preset_defaults(EnginePreset::Vllm064, &model("qwen2.5-7b"));
    assert_eq!(e.max_model_len, 32768);
    assert!(!e.enable_chunked_prefill);
    assert_eq!(e.max_num_batched_tokens, 32768);
}

#[test]
fn vllm_v1_defaults_on_an_h100_class_gpu() {
    for name in ["llama-3.1-8b", "qwen2.5-7b", "llama-3.3-70b-awq"] {
        let e = engine_preset_defaults(EnginePreset::VllmV1, &model(name));
        assert_eq!((e.max_num_seqs, e.max_num_batched_tokens), (1024, 8192), "{name}");
        assert!(e.enable_chunked_prefill && e.enable_prefix_caching, "{name}");
        assert_eq!(e.block_size, 16);
    }
}

#[test]
fn vllm_v1_uses_the_small_batch_defaults_on_an_a100_and_an_l40s() {
    for gpu in ["A100-80GB", "L40S"] {
        let f =
            parse(BASE, &[&format!("cluster.gpu={gpu}"), "instances.0.engine.max_model_len=16384"]).unwrap();
        let e = &f.variants[0].instances[0].engine;
        assert_eq!((e.max_num_seqs, e.max_num_batched_tokens), (256, 2048), "{gpu}");
    }
}

#[test]
fn setting_max_model_len_rederives_the_064_chunked_prefill_and_budget() {
    let f = parse(BASE, &["defaults.engine.preset=vllm-0.6.4", "instances.0.engine.max_model_len=16384"])
        .unwrap();
    let e = &f.variants[0].instances[0].engine;
    assert!(!e.enable_chunked_prefill);
    assert_eq!(e.max_num_batched_tokens, 16384);
}

#[test]
fn disabling_chunked_prefill_in_v1_makes_the_budget_max_model_len() {
    let f = parse(BASE, &["instances.1.engine.enable_chunked_prefill=false"]).unwrap();
    assert_eq!(f.variants[0].instances[1].engine.max_num_batched_tokens, 32768);
}

#[test]
fn the_activation_reserve_follows_the_documented_formula() {
    let m = model("llama-3.1-8b");
    let v1 = default_activation_reserve_bytes(EnginePreset::VllmV1, &m, 8192, 1024);
    let expected = (1u64 << 30) + 8192 * (4 * 4096 + 2 * 14336) * 2 + 1024 * 128256 * 4;
    assert_eq!(v1, expected);
    let v0 = default_activation_reserve_bytes(EnginePreset::Vllm064, &m, 8192, 1024);
    assert_eq!(v1 - v0, 1 << 29, "only V1 counts 0.5 GiB of CUDA graphs");
    assert_eq!(engine_preset_defaults(EnginePreset::VllmV1, &m).activation_reserve_bytes, expected);
}

#[test]
fn llama_8b_on_an_h100_at_0_9_gets_54_to_55_gib_of_kv() {
    let m = model("llama-3.1-8b");
    let b = static_kv_budget(&m, &h100(), &engine_preset_defaults(EnginePreset::VllmV1, &m));
    let kv_gib = b.kv_bytes as f64 / GIB;
    assert!((54.0..55.0).contains(&kv_gib), "V1 KV {kv_gib:.2} GiB");
    assert_eq!(b.block_bytes, 2 << 20, "a 16-token block of Llama-8B is 2 MiB");
    assert!((440_000..455_000).contains(&b.capacity_tokens(16)), "{}", b.capacity_tokens(16));
    let b0 = static_kv_budget(&m, &h100(), &engine_preset_defaults(EnginePreset::Vllm064, &m));
    let kv0 = b0.kv_bytes as f64 / GIB;
    assert!((54.0..56.0).contains(&kv0), "0.6.4 KV {kv0:.2} GiB");
}

#[test]
fn qwen_7b_on_an_h100_holds_about_a_million_tokens() {
    let m = model("qwen2.5-7b");
    let b = static_kv_budget(&m, &h100(), &engine_preset_defaults(EnginePreset::VllmV1, &m));
    assert!((54.0..56.0).contains(&(b.kv_bytes as f64 / GIB)));
    assert!((1_000_000..1_050_000).contains(&b.capacity_tokens(16)), "{}", b.capacity_tokens(16));
}

#[test]
fn the_awq_70b_on_an_h100_has_about_31_gib_of_kv_and_cannot_hold_131072_tokens() {
    let m = model("llama-3.3-70b-awq");
    let b = static_kv_budget(&m, &h100(), &engine_preset_defaults(EnginePreset::VllmV1, &m));
    let kv = b.kv_bytes as f64 / GIB;
    assert!((30.0..33.0).contains(&kv), "{kv:.2}");
    let tokens = b.capacity_tokens(16);
    assert!((95_000..110_000).contains(&tokens) && tokens < 131_072, "{tokens}");
}

#[test]
fn instance_engine_tables_override_defaults_which_override_the_preset() {
    let text =
        format!("{BASE}\n[defaults.engine]\npreset = \"vllm-0.6.4\"\nmax_num_seqs = 128\nblock_size = 32\n");
    let f = parse(&text, &["instances.1.engine.max_num_seqs=64"]).unwrap();
    let [a, b] = [&f.variants[0].instances[0].engine, &f.variants[0].instances[1].engine];
    assert_eq!((a.preset, a.max_num_seqs, a.block_size), (EnginePreset::Vllm064, 128, 32));
    assert_eq!((b.max_num_seqs, b.block_size), (64, 32));
    assert_eq!(a.max_num_batched_tokens, 512, "the 0.6.4 rule still derives the budget");
}

#[test]
fn the_activation_reserve_can_be_given_in_gib() {
    let f = parse(BASE, &["instances.0.engine.activation_reserve_gib=2.5"]).unwrap();
    assert_eq!(f.variants[0].instances[0].engine.activation_reserve_bytes, 5 << 29);
}

#[test]
fn resolution_of_a_plain_h100_instance_matches_the_public_preset_defaults() {
    let f = parse(BASE, &[]).unwrap();
    let s = &f.variants[0];
    for inst in &s.instances {
        let m = &s.models[inst.model.index()];
        assert_eq!(inst.engine, engine_preset_defaults(EnginePreset::VllmV1, m));
    }
}

#[test]
fn the_catalogues_hold_the_documented_facts() {
    let h = h100();
    assert_eq!(h.memory_bytes, 85_017_493_504);
    assert_eq!((h.bf16_flops, h.hbm_bytes_per_s), (989e12, 3.35e12));
    let awq = model("llama-3.3-70b-awq");
    assert_eq!(awq.served_name, "meta-llama/Llama-3.3-70B-Instruct");
    assert_eq!(awq.weight_format, WeightFormat::AwqInt4);
    let gib = awq.weight_bytes() as f64 / GIB;
    assert!((36.5..37.5).contains(&gib), "AWQ 70B weights {gib:.2} GiB");
    assert_eq!(model("qwen2.5-7b").kv_bytes_per_token(), 56 * 1024);
    assert_eq!(model("llama-3.3-70b-awq").kv_bytes_per_token(), 320 * 1024);
}

#[test]
fn transformers_cb_defaults_are_the_reference_engines_not_vllms() {
    let e = engine_preset_defaults(EnginePreset::TransformersCb, &model("llama-3.1-8b"));
    assert_eq!(e.block_size, 256);
    assert_eq!((e.max_num_batched_tokens, e.max_num_seqs), (8192, 1024));
    assert!(e.enable_chunked_prefill && !e.enable_prefix_caching && e.async_scheduling);
    assert_eq!(e.kv_cache, KvCacheMode::Static);
    assert_eq!(serde_json::to_value(EnginePreset::TransformersCb).unwrap(), "transformers-cb");
    assert!(!EnginePreset::TransformersCb.is_vllm());
    // It takes transformers' block sizes, not only vLLM's, but never elastic KV (kvcached is vLLM's).
    let f = parse(BASE, &["defaults.engine.preset=transformers-cb"]).unwrap();
    assert_eq!(f.variants[0].instances[0].engine.block_size, 256);
    let e =
        parse(BASE, &["defaults.engine.preset=transformers-cb", "defaults.engine.block_size=2"]).unwrap_err();
    assert!(e.field.ends_with("engine.block_size"), "{e}");
    let e = parse(BASE, &["defaults.engine.preset=vllm-v1", "defaults.engine.block_size=256"]).unwrap_err();
    assert!(e.reason.contains("vLLM's block sizes"), "{e}");
    let e = parse(BASE, &["defaults.engine.preset=transformers-cb", "defaults.engine.kv_cache=elastic"])
        .unwrap_err();
    assert!(e.reason.contains("transformers-cb can only run static KV"), "{e}");
}

#[test]
fn v1_and_064_differ_in_async_scheduling_and_cuda_graph_rules_and_agree_elsewhere_as_before() {
    let m = model("llama-3.1-8b");
    let (v1, v0) =
        (engine_preset_defaults(EnginePreset::VllmV1, &m), engine_preset_defaults(EnginePreset::Vllm064, &m));
    assert!(v1.async_scheduling && !v0.async_scheduling);
    let (p1, p0) = (sim::perf_model::prior_overheads(&m, &v1), sim::perf_model::prior_overheads(&m, &v0));
    assert!(!p1.cuda_graphs.decode_only && p0.cuda_graphs.decode_only);
    assert_eq!(
        (p1.cuda_graphs.max_seq_len_to_capture, p0.cuda_graphs.max_seq_len_to_capture),
        (None, Some(8192))
    );
    assert_eq!(p1.cuda_graphs.capture_sizes.last(), Some(&512));
    assert_eq!(p0.cuda_graphs.capture_sizes.last(), Some(&256));
    assert!(p0.cpu.per_request_s > p1.cpu.per_request_s, "0.6.4's CPU cost grows faster with the batch");
}

#[test]
fn qwen_32b_is_in_the_catalogue_with_its_config_json_shape() {
    let m = model("qwen2.5-32b");
    assert_eq!(m.served_name, "Qwen/Qwen2.5-32B-Instruct");
    assert_eq!((m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads), (64, 5120, 40, 8));
    assert_eq!((m.intermediate_size, m.vocab_size, m.max_position_embeddings), (27648, 152064, 32768));
    assert_eq!((m.head_dim, m.tie_word_embeddings, m.weight_format), (128, false, WeightFormat::Bf16));
    // ~32.8 B parameters (Qwen reports 32.5 B; biases and norms are left out here).
    let b = m.num_params() as f64 / 1e9;
    assert!((32.0..33.5).contains(&b), "{b}");
}

#[test]
fn the_full_sequence_admission_gate_is_on_from_vllm_0_19_and_absent_before() {
    for (preset, on) in [
        (EnginePreset::Vllm064, false),
        (EnginePreset::Vllm092, false),
        (EnginePreset::Vllm0190, true),
        (EnginePreset::VllmV1, true),
        (EnginePreset::TransformersCb, false),
    ] {
        let e = engine_preset_defaults(preset, &model("llama-3.1-8b"));
        assert_eq!(e.scheduler_reserve_full_isl, on, "{}", preset.name());
    }
    let f = parse(BASE, &["defaults.engine.scheduler_reserve_full_isl=false"]).unwrap();
    assert!(!f.variants[0].instances[0].engine.scheduler_reserve_full_isl);
}

#[test]
fn vllm_0_9_2_has_current_v1_batch_defaults() {
    for name in ["llama-3.1-8b", "qwen2.5-7b", "llama-3.3-70b-awq"] {
        let old = engine_preset_defaults(EnginePreset::Vllm092, &model(name));
        let new = engine_preset_defaults(EnginePreset::VllmV1, &model(name));
        assert_eq!(
            (
                old.max_num_seqs,
                old.max_num_batched_tokens,
                old.enable_chunked_prefill,
                old.enable_prefix_caching
            ),
            (
                new.max_num_seqs,
                new.max_num_batched_tokens,
                new.enable_chunked_prefill,
                new.enable_prefix_caching
            ),
            "{name}"
        );
        assert_eq!(old.activation_reserve_bytes, new.activation_reserve_bytes);
    }
}

#[test]
fn preset_names_round_trip_through_scenario_files() {
    for preset in EnginePreset::ALL {
        let f = parse(BASE, &[&format!("defaults.engine.preset={}", preset.name())]).unwrap();
        assert_eq!(f.variants[0].instances[0].engine.preset, preset);
    }
}
