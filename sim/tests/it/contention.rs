//! Colocation contention end to end: known answers for the `gpu_share` model (only GPU-bound
//! prefill contends; async scheduling hides the rest of a step), against `serialize`.

use crate::simulation::Collect;
use sim::scenario::{Override, PerfSpec, Scenario, StepCoefficients, parse_scenario};
use sim::simulation::{SimOptions, simulate};
use sim::trace::RequestStatus;
use std::path::Path;

/// Two 8B instances sharing GPU 0; two closed-loop streams (round-robin: one per instance),
/// 100-token prompts, 10 output tokens, two requests in all.
const SHARED_GPU: &str = r#"
name = "contention-test"
seed = 3

[cluster]
gpu = "H100-80GB-SXM"
num_gpus = 1

[defaults.engine]
preset = "vllm-v1"
max_model_len = 4096
gpu_memory_utilization = 0.45

[[instances]]
model = "llama-3.1-8b"
gpu = 0

[[instances]]
model = "llama-3.1-8b"
gpu = 0

[router]
policy = "round_robin"

[[workload.phases]]
num_requests = 2
arrival = { process = "closed_loop", concurrency = 2 }
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 10 }
"#;

/// Step time = 5 ms + 0.1 ms per prefill token + 1 ms per decoding sequence: a 100-token
/// prefill step is 15 ms, two thirds of it prefill; a one-sequence decode step is 6 ms.
fn scenario(sets: &[&str]) -> Scenario {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    let mut s = parse_scenario(SHARED_GPU, Path::new("tests/contention.toml"), &overrides)
        .unwrap()
        .variants
        .remove(0);
    for i in &mut s.instances {
        i.perf = PerfSpec::Profile {
            path: "test".into(),
            coefficients: StepCoefficients {
                fixed_s: 0.005,
                per_prefill_token_s: 1e-4,
                per_decode_seq_s: 1e-3,
                per_kv_token_s: 0.0,
                per_prefill_attn_pair_s: 0.0,
            },
            overheads: Default::default(),
            fit: None,
        };
    }
    s
}

/// (TTFT, TPOT) of each of the two requests, which run side by side from t = 0.
fn ttft_tpot(sets: &[&str]) -> Vec<(f64, f64)> {
    let s = scenario(sets);
    let mut c = Collect::default();
    simulate(&s, Path::new("."), &mut c, SimOptions::default()).unwrap();
    assert_eq!(c.requests.len(), 2);
    let instances: std::collections::BTreeSet<_> = c.requests.iter().map(|r| r.instance.clone()).collect();
    assert_eq!(instances.len(), 2, "one request per instance");
    c.requests
        .iter()
        .map(|r| {
            assert_eq!(r.status, RequestStatus::Ok);
            (r.ttft_s.unwrap(), r.tpot_s.unwrap())
        })
        .collect()
}

#[track_caller]
fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-6, "{a} != {b}");
}

#[test]
fn gpu_share_slows_prefill_beside_prefill_and_leaves_async_decode_alone() {
    // Both prefill at once: exposed 2/3, co-tenant GPU share 2/3: 15 ms x (1 + 1 x 2/3 x 2/3).
    // Decode steps have no prefill: nothing exposed under async scheduling, 6 ms.
    for (ttft, tpot) in
        ttft_tpot(&["cluster.contention={ model = \"gpu_share\", slowdown = 1.0, decode_gpu_share = 0.0 }"])
    {
        close(ttft, 0.015 * (1.0 + 4.0 / 9.0));
        close(tpot, 0.006);
    }
    // The old rule doubles every step beside a busy co-tenant, + 10 %.
    for (ttft, tpot) in ttft_tpot(&["cluster.contention={ model = \"serialize\", overhead = 0.1 }"]) {
        close(ttft, 0.015 * 2.2);
        close(tpot, 0.006 * 2.2);
    }
    for (ttft, tpot) in ttft_tpot(&["cluster.contention={ model = \"none\" }"]) {
        close(ttft, 0.015);
        close(tpot, 0.006);
    }
}

#[test]
fn without_async_scheduling_decode_steps_wait_for_their_gpu_share() {
    // Decode: exposed 0.5 (its GPU share), co-tenant's 0.5: 6 ms x 1.25. Prefill: both GPU
    // shares 2/3 + 1/3 x 0.5 = 5/6: 15 ms x (1 + 25/36).
    let sets = [
        "cluster.contention={ model = \"gpu_share\", slowdown = 1.0, decode_gpu_share = 0.5 }",
        "defaults.engine.async_scheduling=false",
    ];
    for (ttft, tpot) in ttft_tpot(&sets) {
        close(ttft, 0.015 * (1.0 + 25.0 / 36.0));
        close(tpot, 0.006 * 1.25);
    }
}

#[test]
fn time_slice_stretches_decode_by_a_turn_and_prefill_by_its_share() {
    // Both prefill at once (prefill share 2/3): 15 ms x (1 + 1 x (1.0 x 1/3 + 0.4 x 2/3)).
    // Decode beside a decoding co-tenant: a whole turn, 6 ms x 2.
    for (ttft, tpot) in
        ttft_tpot(&["cluster.contention={ model = \"time_slice\", decode = 1.0, prefill = 0.4 }"])
    {
        close(ttft, 0.015 * (1.0 + 1.0 / 3.0 + 0.4 * 2.0 / 3.0));
        close(tpot, 0.006 * 2.0);
    }
    // Out-of-range values name their field.
    let bad: Override = "cluster.contention={ model = \"time_slice\", prefill = -1 }".parse().unwrap();
    let e = parse_scenario(SHARED_GPU, Path::new("tests/contention.toml"), &[bad]).unwrap_err();
    assert_eq!(e.field, "cluster.contention.prefill");
}

/// The reference engine's default contention follows how its steps run: `time_slice` when every
/// engine replays CUDA graphs (GPU-bound), `gpu_share` when they run eagerly (CPU-heavy).
#[test]
fn the_reference_engine_default_depends_on_cuda_graphs() {
    use sim::scenario::{ContentionSpec, load_scenario};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let load =
        |f: &str| load_scenario(&dir.join(f), &[]).unwrap_or_else(|e| panic!("{e}")).variants.remove(0);
    for f in [
        "coloc-h200-bursts-graphs.toml",
        "coloc-h200-three-bursts-graphs.toml",
        "routing-h200-2x-llama8b-graphs.toml",
    ] {
        assert_eq!(load(f).contention, ContentionSpec::REFERENCE_ENGINE_GRAPHS_H200, "{f}");
    }
    for f in ["coloc-h200-bursts.toml", "coloc-h200-three-bursts.toml", "routing-h200-2x-llama8b.toml"] {
        assert_eq!(load(f).contention, ContentionSpec::REFERENCE_ENGINE_H200, "{f}");
    }
}
