//! Shipped scenarios load; variants share the workload; resolution rules (ids, names, perf).

use crate::scenario_errors::{BASE, parse};
use sim::scenario::*;
use sim::{GpuId, ModelId};
use std::path::{Path, PathBuf};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn seed() -> ScenarioFile {
    load_scenario(&scenarios_dir().join("seed-6xh100.toml"), &[]).unwrap()
}

#[test]
fn every_shipped_scenario_loads() {
    let shared_traces = scenarios_dir().join("../../shared/traces");
    let mut n = 0;
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            match load_scenario(&path, &[]) {
                Ok(f) => {
                    assert!(!f.variants.is_empty());
                    n += 1;
                }
                // The trace scenarios replay the public traces of ../shared/traces, which live
                // beside the repository, not in it: a clone without them cannot load those.
                Err(e) if e.missing_file.as_deref().is_some_and(|f| f.starts_with(&shared_traces)) => {
                    eprintln!("skipped {}: {e}", path.display());
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(n >= 2);
}

#[test]
fn the_seed_scenario_has_the_seed_layout() {
    let f = seed();
    assert_eq!(f.name, "seed-6xh100");
    let names: Vec<&str> = f.variants.iter().map(|v| v.variant.as_str()).collect();
    assert_eq!(names, ["baseline", "managed"]);
    for s in &f.variants {
        assert_eq!(s.gpus.len(), 6);
        let models: Vec<&str> = s.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(models, ["llama-3.1-8b", "qwen2.5-7b", "llama-3.3-70b-awq"]);
        for (i, inst) in s.instances.iter().enumerate() {
            assert_eq!(inst.gpu, GpuId(i as u32));
            assert_eq!(inst.port, 8001 + i as u16);
            assert_eq!(inst.model, ModelId(i as u32 / 2));
        }
        assert_eq!(s.instances[4].name, "llama-3.3-70b-awq#0");
        assert_eq!(s.instances[5].engine.max_model_len, 32768);
    }
}

#[test]
fn the_seed_variants_are_the_baseline_and_managed_stacks() {
    let f = seed();
    let base = f.variant("baseline").unwrap();
    let managed = f.variant("managed").unwrap();
    for i in &base.instances {
        assert_eq!(i.engine.preset, EnginePreset::Vllm064);
        assert_eq!(i.engine.kv_cache, KvCacheMode::Static);
        assert!(i.engine.enable_prefix_caching);
    }
    assert_eq!(base.router.policy, RouterPolicy::RoundRobin);
    for i in &managed.instances {
        // kvcached-vllm:latest runs vLLM 0.19.0 (kvcached README, docker/Dockerfile.vllm).
        assert_eq!(i.engine.preset, EnginePreset::Vllm0190);
        assert_eq!(i.engine.kv_cache, KvCacheMode::Elastic);
        assert!(!i.engine.enable_prefix_caching);
    }
    assert_eq!(managed.router.policy, RouterPolicy::QueueAware);
    assert_eq!(managed.router.poll_interval_s, 1.0);
    assert_eq!(managed.router.score, LoadScore::RunningPlusWaiting);
}

#[test]
fn variants_share_the_workload_and_seed() {
    for file in ["seed-6xh100.toml", "seed-benchmark-all-models.toml"] {
        let f = load_scenario(&scenarios_dir().join(file), &[]).unwrap();
        let [a, b] = [&f.variants[0], &f.variants[1]];
        assert_eq!(a.workload, b.workload, "{file}");
        assert_eq!((a.seed, &a.models), (b.seed, &b.models), "{file}");
        assert_ne!(a.router, b.router);
    }
}

#[test]
fn the_seed_workload_mixes_three_models_with_a_shared_prompt_over_a_few_minutes() {
    let s = &seed().variants[0];
    let w = &s.workload;
    let total: f64 = w.phases.iter().map(|p| p.duration_s.unwrap()).sum();
    assert!((120.0..=600.0).contains(&total), "{total} s");
    assert!(w.phases.iter().all(|p| p.mix.len() == 3));
    assert!(w.prefix.tokens > 0 && w.prefix.fraction > 0.0);
}

#[test]
fn the_benchmark_scenario_mirrors_benchmark_all_models_10_100() {
    let f = load_scenario(&scenarios_dir().join("seed-benchmark-all-models.toml"), &[]).unwrap();
    let s = f.variant("baseline").unwrap();
    assert_eq!(s.workload.phases.len(), 3);
    for (i, p) in s.workload.phases.iter().enumerate() {
        assert_eq!(p.arrival, ArrivalSpec::closed_loop(10));
        assert_eq!(p.num_requests, Some(100));
        assert_eq!(p.mix, vec![(ModelId(i as u32), 1.0)]);
        assert_eq!(p.name, s.models[i].name);
    }
}

#[test]
fn variants_come_in_file_order_not_alphabetical() {
    let text = format!("{BASE}\n[variants.zeta]\n[variants.alpha]\ndescription = \"first letter\"\n");
    let f = parse(&text, &[]).unwrap();
    let names: Vec<&str> = f.variants.iter().map(|v| v.variant.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"]);
    assert_eq!(f.variants[1].description, "first letter");
}

#[test]
fn model_ids_follow_first_use_in_instances() {
    let f = parse(BASE, &["instances.0.model=qwen2.5-7b", "instances.1.model=llama-3.1-8b"]).unwrap();
    let s = &f.variants[0];
    assert_eq!(s.models[0].name, "qwen2.5-7b");
    assert_eq!(s.instances[1].model, ModelId(1));
}

#[test]
fn instances_get_default_names_and_ports() {
    let f = parse(BASE, &["instances.1.model=llama-3.1-8b"]).unwrap();
    let names: Vec<(&str, u16)> = f.variants[0].instances.iter().map(|i| (i.name.as_str(), i.port)).collect();
    assert_eq!(names, [("llama-3.1-8b#0", 8001), ("llama-3.1-8b#1", 8002)]);
    assert_eq!(f.base_dir, Path::new("dir"));
}

#[test]
fn without_a_mix_every_served_model_gets_an_equal_share() {
    let f = parse(BASE, &[]).unwrap();
    assert_eq!(f.variants[0].workload.phases[0].mix, vec![(ModelId(0), 0.5), (ModelId(1), 0.5)]);
}

#[test]
fn per_model_lengths_override_the_phase_lengths() {
    let text = format!(
        "{BASE}\n[workload.phases.per_model.\"qwen2.5-7b\"]\noutput_tokens = {{ dist = \"uniform\", min = 5, max = 9 }}\n"
    );
    let f = parse(&text, &[]).unwrap();
    let p = &f.variants[0].workload.phases[0];
    assert_eq!(
        p.per_model_lengths,
        vec![(ModelId(1), LengthDist::Fixed { value: 100 }, LengthDist::Uniform { min: 5, max: 9 })]
    );
}

#[test]
fn empirical_lengths_come_inline_or_from_a_csv_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lens.csv"), "ContextTokens,GeneratedTokens\n374,44\n396,109\n").unwrap();
    let text = BASE
        .replace(
            "input_tokens = { dist = \"fixed\", value = 100 }",
            "input_tokens = { dist = \"empirical\", file = \"lens.csv\", column = \"ContextTokens\" }",
        )
        .replace(
            "output_tokens = { dist = \"fixed\", value = 10 }",
            "output_tokens = { dist = \"empirical\", values = [3, 4] }",
        );
    let f = parse_scenario(&text, &dir.path().join("s.toml"), &[]).unwrap();
    let p = &f.variants[0].workload.phases[0];
    let LengthDist::Empirical { values, source } = &p.input_tokens else { panic!("{:?}", p.input_tokens) };
    assert_eq!(values, &vec![374, 396]);
    assert!(source.ends_with("lens.csv:ContextTokens"), "{source}");
    assert_eq!(p.output_tokens, LengthDist::Empirical { source: "inline".into(), values: vec![3, 4] });
}

const PROFILE: &str = r#"
model = "llama-3.1-8b"
gpu = "H100-80GB-SXM"
engine = "vllm-v1"
source = "test"
[coefficients]
fixed_s = 0.004
per_prefill_token_s = 2e-5
per_decode_seq_s = 1e-4
per_kv_token_s = 1e-8
"#;

#[test]
fn a_matching_profile_in_profiles_dir_replaces_the_roofline_prior() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    std::fs::write(dir.path().join("profiles/llama.toml"), PROFILE).unwrap();
    std::fs::write(dir.path().join("profiles/README.md"), "not a profile").unwrap();
    let text = format!("{BASE}\n[perf]\nprofiles_dir = \"profiles\"\nmfu = 0.4\n");
    let f = parse_scenario(&text, &dir.path().join("s.toml"), &[]).unwrap();
    let s = &f.variants[0];
    let PerfSpec::Profile { coefficients, path, .. } = &s.instances[0].perf else {
        panic!("{:?}", s.instances[0].perf)
    };
    assert_eq!(coefficients.fixed_s, 0.004);
    assert_eq!(coefficients.per_prefill_attn_pair_s, 0.0);
    assert!(path.ends_with("llama.toml"));
    assert!(
        matches!(
            s.instances[1].perf,
            PerfSpec::Roofline { mfu: 0.4, bandwidth_efficiency: 0.8, step_overhead_s: 0.002, .. }
        ),
        "the Qwen instance has no profile: {:?}",
        s.instances[1].perf
    );
    // The 0.6.4 preset does not match a vllm-v1 profile.
    let f = parse_scenario(
        &text,
        &dir.path().join("s.toml"),
        &["defaults.engine.preset=vllm-0.6.4".parse().unwrap()],
    )
    .unwrap();
    assert!(matches!(f.variants[0].instances[0].perf, PerfSpec::Roofline { .. }));
}

#[test]
fn an_explicit_profile_for_another_model_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), PROFILE).unwrap();
    let e =
        parse_scenario(BASE, &dir.path().join("s.toml"), &["instances.1.profile=p.toml".parse().unwrap()])
            .unwrap_err();
    assert_eq!(e.field, "instances[1].profile");
    assert!(e.reason.contains("fitted for model \"llama-3.1-8b\""), "{e}");
}

#[test]
fn an_explicit_profile_of_a_same_shaped_catalogue_model_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), PROFILE).unwrap();
    // A second llama-shaped model under its own name (a copy of the catalogue entry's shape).
    let twin = "[model_catalog.\"llama-twin\"]\nserved_name = \"twin\"\nnum_layers = 32\nhidden_size = 4096\n\
                num_attention_heads = 32\nnum_kv_heads = 8\nhead_dim = 128\nintermediate_size = 14336\n\
                vocab_size = 128256\nmax_position_embeddings = 131072\n";
    let text = format!("{BASE}\n{twin}");
    let sets = |m: &str| {
        vec![format!("instances.1.model={m}").parse().unwrap(), "instances.1.profile=p.toml".parse().unwrap()]
    };
    let f = parse_scenario(&text, &dir.path().join("s.toml"), &sets("llama-twin")).unwrap();
    let PerfSpec::Profile { coefficients, .. } = &f.variants[0].instances[1].perf else {
        panic!("{:?}", f.variants[0].instances[1].perf)
    };
    assert_eq!(coefficients.fixed_s, 0.004);
    // Another shape (Qwen) is still refused, with the remedy.
    let e = parse_scenario(&text, &dir.path().join("s.toml"), &sets("qwen2.5-7b")).unwrap_err();
    assert_eq!(e.field, "instances[1].profile");
    assert!(e.reason.contains("of the same shape"), "{e}");
}

#[test]
fn a_bad_profile_file_is_reported_against_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), PROFILE.replace("fixed_s = 0.004", "fixed_s = -1.0")).unwrap();
    let e =
        parse_scenario(BASE, &dir.path().join("s.toml"), &["instances.0.profile=p.toml".parse().unwrap()])
            .unwrap_err();
    assert_eq!((e.file, e.field.as_str()), (dir.path().join("p.toml"), "coefficients.fixed_s"));
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let e = load_scenario(Path::new("/nonexistent/x.toml"), &[]).unwrap_err();
    assert_eq!(e.field, "(file)");
}

#[test]
fn a_resolved_scenario_round_trips_through_json() {
    for s in &seed().variants {
        let json = serde_json::to_string(s).unwrap();
        let back: Scenario = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, s);
    }
}

#[test]
fn loading_is_deterministic() {
    assert_eq!(seed(), seed());
}
