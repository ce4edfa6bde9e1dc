//! `plan`: known answers on small problems, pruning against brute force, JSON, errors.

use sim::plan::{PlanError, PlanOptions, PlanReport, SloTarget, plan_text};
use sim::scenario::{KvCacheMode, Override};
use std::collections::BTreeSet;
use std::path::Path;

/// Two small models on H100s; `rate` requests/s, `share_a` of them for llama-3.1-8b.
fn two_models(rate: f64, share_a: f64, slo: &str) -> String {
    format!(
        r#"
name = "two-models"
seed = 7
[cluster]
gpu = "H100-80GB-SXM"
num_gpus = 3
[gpu_catalog."Tiny-12GB"]
memory_gib = 12
bf16_flops = 100e12
hbm_bytes_per_s = 1e12
[[instances]]
model = "llama-3.1-8b"
gpu = 0
engine = {{ max_model_len = 8192 }}
[[instances]]
model = "qwen2.5-7b"
gpu = 1
engine = {{ max_model_len = 8192 }}
[[workload.phases]]
name = "steady"
duration_s = 60
arrival = {{ process = "poisson", rate = {rate} }}
mix = {{ "llama-3.1-8b" = {share_a}, "qwen2.5-7b" = {share_b} }}
input_tokens = {{ dist = "uniform", min = 1500, max = 2500 }}
output_tokens = {{ dist = "uniform", min = 10, max = 30 }}
[slo]
{slo}
"#,
        share_b = 1.0 - share_a
    )
}

const SLO: &str = "ttft_p90_s = 1.0\ntpot_p90_s = 0.05";

fn opts() -> PlanOptions {
    PlanOptions { requests: 500, max_load: None, jobs: 2, ..PlanOptions::default() }
}

fn plan(text: &str, opts: &PlanOptions) -> Result<PlanReport, PlanError> {
    plan_text(text, Path::new("two-models.toml"), opts)
}

/// (layout, KV mode) of every passing layout in the report.
fn passing(r: &PlanReport) -> BTreeSet<String> {
    r.layouts.iter().filter(|l| l.passes).map(|l| format!("{} {:?}", l.layout, l.kv)).collect()
}

#[test]
fn a_light_workload_needs_one_replica_per_model() {
    let r = plan(&two_models(4.0, 0.5, SLO), &opts()).unwrap();
    assert!(r.feasible);
    let best = &r.layouts[0];
    assert_eq!((best.rank, best.gpus, best.replicas.clone()), (1, 2, vec![1, 1]));
    assert!(best.passes && best.margin.unwrap() > 0.0);
    // Ranked by cost: GPUs never decrease down the table.
    assert!(r.layouts.windows(2).all(|w| w[0].gpus <= w[1].gpus));
}

#[test]
fn a_heavy_model_gets_a_second_replica_and_the_light_one_keeps_one() {
    let r = plan(&two_models(12.0, 0.9, SLO), &opts()).unwrap();
    assert_eq!(r.layouts[0].replicas, vec![2, 1]);
    assert_eq!(r.layouts[0].gpus, 3);
    // One replica of the heavy model was tried and pruned everything with one replica.
    assert!(r.search.simulated >= 2);
    assert!(r.layouts.iter().all(|l| l.replicas[0] >= 2));
    // The cheaper miss is shown with the reason.
    assert_eq!(r.misses[0].replicas, vec![1, 1]);
    assert_eq!(r.misses[0].limiting.as_deref().map(|l| l.starts_with("llama-8b")), Some(true));
}

#[test]
fn pruning_never_drops_a_passing_layout_that_brute_force_finds() {
    let text = two_models(12.0, 0.9, SLO);
    let base = PlanOptions { colocate: 2, top: 1000, ..opts() };
    let pruned = plan(&text, &base).unwrap();
    let brute = plan(&text, &PlanOptions { prune: false, ..base }).unwrap();
    assert!(pruned.search.pruned > 0, "the test problem must exercise pruning");
    assert_eq!(brute.search.pruned, 0);
    assert!(brute.search.simulated > pruned.search.simulated);
    assert!(!passing(&brute).is_empty());
    assert_eq!(passing(&pruned), passing(&brute));
}

#[test]
fn judging_on_more_request_streams_only_removes_passing_layouts() {
    let text = two_models(12.0, 0.9, SLO);
    let base = PlanOptions { top: 1000, ..opts() };
    let one = plan(&text, &base).unwrap();
    let three = plan(&text, &PlanOptions { seeds: 3, ..base }).unwrap();
    assert_eq!(three.seeds, 3);
    assert!(passing(&three).is_subset(&passing(&one)));
    assert!(!passing(&three).is_empty());
}

#[test]
fn colocation_offers_layouts_with_fewer_gpus_in_both_kv_modes() {
    let r = plan(&two_models(4.0, 0.5, SLO), &PlanOptions { colocate: 2, top: 1000, ..opts() }).unwrap();
    let one_gpu: Vec<_> = r.layouts.iter().filter(|l| l.gpus == 1).collect();
    assert!(!one_gpu.is_empty(), "two 8B-class models fit one H100 together");
    let kvs: BTreeSet<String> = one_gpu.iter().map(|l| format!("{:?}", l.kv)).collect();
    assert_eq!(kvs.len(), 2, "static and elastic: {kvs:?}");
    for l in &one_gpu {
        assert_eq!(l.shared.len(), 1);
        if l.kv == Some(KvCacheMode::Static) {
            let u = l.shared[0].gpu_memory_utilization.as_ref().unwrap();
            assert!(u.iter().sum::<f64>() <= 0.9 + 1e-9, "static shares split the fraction: {u:?}");
        }
    }
}

#[test]
fn a_vllm_0_6_4_variant_shares_gpus_with_static_kv_only() {
    let old = PlanOptions {
        colocate: 2,
        top: 1000,
        overrides: vec!["defaults.engine.preset=vllm-0.6.4".parse().unwrap()],
        ..opts()
    };
    let r = plan(&two_models(4.0, 0.5, SLO), &old).unwrap();
    assert!(r.layouts.iter().any(|l| l.kv == Some(KvCacheMode::Static)));
    assert!(r.layouts.iter().chain(&r.misses).all(|l| l.kv != Some(KvCacheMode::Elastic)));
    assert_eq!(r.search.not_started, 0);
    assert!(r.notes.iter().any(|n| n.contains("kvcached needs vLLM >= 0.8.4")), "{:?}", r.notes);
    let err = plan(&two_models(4.0, 0.5, SLO), &PlanOptions { kv_modes: vec![KvCacheMode::Elastic], ..old })
        .unwrap_err();
    assert!(matches!(err, PlanError::BadOption { option: "--kv", .. }), "{err}");
}

#[test]
fn the_headroom_search_brackets_the_highest_sustained_load() {
    let o = PlanOptions { max_load: Some(8.0), bisect_steps: 3, top: 1, ..opts() };
    let r = plan(&two_models(4.0, 0.5, SLO), &o).unwrap();
    let h = r.layouts[0].max_load.unwrap();
    assert!(h.sustained > 1.0, "a light load leaves headroom: {h:?}");
    let fails = h.fails_at.expect("8x the load overloads one replica");
    assert!(fails > h.sustained && fails <= 8.0);
    assert!(r.search.simulations > r.search.simulated);
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let text = two_models(12.0, 0.9, SLO);
    let one = plan(&text, &PlanOptions { jobs: 1, colocate: 2, ..opts() }).unwrap();
    let two = plan(&text, &PlanOptions { jobs: 2, colocate: 2, ..opts() }).unwrap();
    assert_eq!(one.layouts, two.layouts);
    assert_eq!((one.search.simulated, one.search.pruned), (two.search.simulated, two.search.pruned));
}

#[test]
fn json_output_parses_and_carries_the_table() {
    let r = plan(&two_models(4.0, 0.5, SLO), &opts()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
    assert_eq!(v["scenario"], "two-models");
    assert_eq!(v["layouts"][0]["replicas"], serde_json::json!([1, 1]));
    assert_eq!(v["models"][0]["ttft_p90_s"], 1.0);
    assert!(v["layouts"][0]["models"][1]["ttft_p90_s"].as_f64().unwrap() > 0.0);
    assert!(v["search"]["simulated"].as_u64().unwrap() >= 1);
    let table = r.table();
    assert!(table.contains("llama-8b x1 | qwen-7b x1"), "{table}");
    assert!(table.contains("margin"), "{table}");
}

#[test]
fn command_line_targets_override_the_scenario_per_model() {
    let mut o = opts();
    o.ttft_p90 = vec!["qwen2.5-7b=0.001".parse().unwrap()];
    let r = plan(&two_models(4.0, 0.5, SLO), &o).unwrap();
    assert!(!r.feasible, "a 1 ms TTFT target cannot be met");
    assert_eq!(r.models[0].ttft_p90_s, Some(1.0));
    assert_eq!(r.models[1].ttft_p90_s, Some(0.001));
    assert!(r.layouts.is_empty());
    assert!(r.misses[0].limiting.as_deref().unwrap().starts_with("qwen-7b TTFT"));
    assert!(r.table().contains("NO layout on <= 3 GPUs meets the targets"));
}

#[test]
fn no_target_anywhere_is_an_error_saying_where_to_set_one() {
    let err = plan(&two_models(4.0, 0.5, "ttft_s = 2.0"), &opts()).unwrap_err();
    assert!(matches!(err, PlanError::NoSlo { .. }), "{err}");
    assert!(err.to_string().contains("--ttft-p90"), "{err}");
    let ok = PlanOptions { tpot_p90: vec!["0.05".parse().unwrap()], ..opts() };
    assert!(plan(&two_models(4.0, 0.5, "ttft_s = 2.0"), &ok).is_ok());
}

#[test]
fn a_model_that_fits_no_gpu_is_named() {
    let o = PlanOptions { gpu: Some("Tiny-12GB".into()), ..opts() };
    let err = plan(&two_models(4.0, 0.5, SLO), &o).unwrap_err();
    match &err {
        PlanError::ModelDoesNotFit { model, gpu, .. } => {
            assert_eq!((model.as_str(), gpu.as_str()), ("llama-3.1-8b", "Tiny-12GB"));
        }
        other => panic!("expected ModelDoesNotFit, got {other}"),
    }
}

#[test]
fn too_few_gpus_for_one_replica_of_each_model_is_an_error() {
    let err = plan(&two_models(4.0, 0.5, SLO), &PlanOptions { gpus: Some(1), ..opts() }).unwrap_err();
    assert!(matches!(err, PlanError::TooFewGpus { gpus: 1, models: 2, .. }), "{err}");
    // With colocation one GPU can hold both.
    let r = plan(&two_models(4.0, 0.5, SLO), &PlanOptions { gpus: Some(1), colocate: 2, ..opts() }).unwrap();
    assert!(r.layouts.iter().all(|l| l.gpus == 1));
}

#[test]
fn an_slo_for_a_model_not_served_is_an_error() {
    let o = PlanOptions { ttft_p90: vec!["mistral-7b=1".parse().unwrap()], ..opts() };
    let err = plan(&two_models(4.0, 0.5, SLO), &o).unwrap_err();
    assert!(matches!(err, PlanError::UnknownSloModel { .. }), "{err}");
}

#[test]
fn an_override_of_one_instance_by_index_is_refused() {
    let o = PlanOptions {
        overrides: vec!["instances.0.engine.max_num_seqs=8".parse::<Override>().unwrap()],
        ..opts()
    };
    let err = plan(&two_models(4.0, 0.5, SLO), &o).unwrap_err();
    assert!(matches!(err, PlanError::InstanceIndexOverride { .. }), "{err}");
    let every =
        PlanOptions { overrides: vec!["instances.*.engine.max_num_seqs=8".parse().unwrap()], ..opts() };
    assert!(plan(&two_models(4.0, 0.5, SLO), &every).is_ok());
}

#[test]
fn an_override_of_what_each_layout_places_is_refused() {
    for set in [
        "instances.*.gpu=0",
        "instances.*.engine.kv_cache=static",
        "instances.*.engine.gpu_memory_utilization=0.5",
        "instances.*.engine={ max_num_seqs = 8 }",
    ] {
        let o = PlanOptions { overrides: vec![set.parse::<Override>().unwrap()], ..opts() };
        let err = plan(&two_models(4.0, 0.5, SLO), &o).unwrap_err();
        assert!(matches!(err, PlanError::PlacementOverride { .. }), "{set}: {err}");
    }
    // What dedicated GPUs keep is set in [defaults.engine].
    let o = PlanOptions {
        overrides: vec!["defaults.engine.gpu_memory_utilization=0.85".parse().unwrap()],
        ..opts()
    };
    assert!(plan(&two_models(4.0, 0.5, SLO), &o).is_ok());
}

#[test]
fn slo_targets_parse_with_and_without_a_model() {
    assert_eq!("0.5".parse::<SloTarget>().unwrap(), SloTarget { model: None, seconds: 0.5 });
    let t: SloTarget = "llama-3.1-8b=0.25".parse().unwrap();
    assert_eq!((t.model.as_deref(), t.seconds), (Some("llama-3.1-8b"), 0.25));
    assert!("fast".parse::<SloTarget>().is_err());
    assert!("=1".parse::<SloTarget>().is_err());
    assert!("-1".parse::<SloTarget>().is_err());
}

#[test]
fn an_unknown_gpu_is_blamed_on_the_gpu_option_not_on_an_internal_override() {
    let o = PlanOptions { gpu: Some("H999".into()), ..opts() };
    let err = plan(&two_models(4.0, 0.5, SLO), &o).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("--gpu: unknown GPU \"H999\""), "{err}");
    assert!(!err.contains("--set"), "{err}");
}
