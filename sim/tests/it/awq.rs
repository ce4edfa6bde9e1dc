//! AWQ kernels as each vLLM release picks them from `--quantization` (vllm awq_marlin.py
//! `AWQMarlinConfig.override_quantization_method` up to 0.23, auto_awq.py `AutoAWQConfig` from
//! 0.24) and what the roofline prior charges for them (vllm awq.py `AWQLinearMethod.apply`:
//! dequantise to fp16 and multiply from 256 tokens per step); the checkpoint the 70B is loaded
//! from.

use crate::scenario_errors::{BASE, parse};
use sim::perf_model::{BatchFeatures, StepTimeModel};
use sim::scenario::*;
use std::path::Path;

fn whatif() -> ScenarioFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/whatif-70b-awq-marlin.toml");
    load_scenario(&path, &[]).unwrap()
}

fn variant<'a>(f: &'a ScenarioFile, name: &str) -> &'a Scenario {
    f.variants.iter().find(|v| v.variant == name).unwrap()
}

/// The 70B instance `i` of `s`'s step-time model.
fn roofline(s: &Scenario, i: usize) -> sim::perf_model::Roofline {
    let inst = &s.instances[i];
    let (m, g) = (&s.models[inst.model.index()], &s.gpus[inst.gpu.index()]);
    let model = StepTimeModel::for_instance(inst, m, g);
    match model.roofline() {
        Some(r) => r.clone(),
        None => panic!("expected the roofline prior, got {model:?}"),
    }
}

#[test]
fn with_quantization_awq_a_70b_step_of_256_tokens_dequantises_and_with_awq_marlin_it_does_not() {
    let f = whatif();
    for (name, legacy) in
        [("baseline", true), ("managed", true), ("baseline-awq-marlin", false), ("managed-awq-marlin", false)]
    {
        let s = variant(&f, name);
        for i in [4, 5] {
            let expected = if legacy { Quantization::Awq } else { Quantization::AwqMarlin };
            assert_eq!(s.instances[i].engine.quantization, Some(expected), "{name}");
            let r = roofline(s, i);
            assert_eq!(r.dequantises(256), legacy, "{name}: 256 tokens");
            assert!(!r.dequantises(255), "{name}: awq_gemm below 256 tokens");
        }
        assert_eq!(s.instances[0].engine.quantization, None, "bf16 models take no flag");
    }
    // The dequantise pass makes a 256-token step of the seed's 70B slower than Marlin's.
    let b = BatchFeatures {
        num_scheduled_requests: 1,
        num_prefill_tokens: 256,
        num_decode_seqs: 0,
        num_kv_tokens_read: 256,
        num_prefill_attn_pairs: 256 * 128,
        max_seq_len: 256,
    };
    let legacy = roofline(variant(&f, "baseline"), 4).step_time_s(&b, 0);
    let marlin = roofline(variant(&f, "baseline-awq-marlin"), 4).step_time_s(&b, 0);
    assert!(legacy > marlin + 0.05, "legacy {legacy} s vs Marlin {marlin} s");
}

#[test]
fn awq_runs_marlin_kernels_from_vllm_0_24_on_but_legacy_ones_before() {
    let m = model_catalog().into_iter().find(|m| m.name == "llama-3.3-70b-awq").unwrap();
    for (preset, kernel) in [
        (EnginePreset::Vllm064, AwqKernel::Legacy),
        (EnginePreset::Vllm092, AwqKernel::Legacy),
        (EnginePreset::Vllm0190, AwqKernel::Legacy),
        (EnginePreset::VllmV1, AwqKernel::Marlin),
    ] {
        let e = engine_preset_defaults(preset, &m);
        assert_eq!(e.quantization, Some(Quantization::Awq), "the seed's flag is the default");
        assert_eq!(e.awq_kernel(), Some(kernel), "{}", preset.name());
        assert_eq!(preset.awq_kernel(Quantization::AwqMarlin), AwqKernel::Marlin);
    }
}

#[test]
fn the_70b_is_loaded_from_an_awq_checkpoint_and_served_under_the_seeds_name() {
    let f = whatif();
    let s = &variant(&f, "baseline").models;
    let m = s.iter().find(|m| m.name == "llama-3.3-70b-awq").unwrap();
    assert_eq!(m.served_name, "meta-llama/Llama-3.3-70B-Instruct");
    assert_eq!(m.model_path, "casperhansen/llama-3.3-70b-instruct-awq");
    let small = s.iter().find(|m| m.name == "llama-3.1-8b").unwrap();
    assert_eq!(small.model_path, small.served_name);
}

#[test]
fn a_models_table_sets_the_checkpoint_path() {
    let text = format!("{BASE}\n[models.\"llama-3.1-8b\"]\nmodel_path = \"/ckpt/llama-8b\"\n");
    let f = parse(&text, &[]).unwrap();
    assert_eq!(f.variants[0].models[0].model_path, "/ckpt/llama-8b");
    let f = parse(BASE, &["models.\"qwen2.5-7b\".model_path=/x/qwen"]).unwrap();
    assert_eq!(f.variants[0].models[1].model_path, "/x/qwen");
}
