//! Fast-forward of pure-decode stretches changes nothing: over random small scenarios (presets,
//! async scheduling on and off, block sizes, budgets, tight KV caches with preemption, prefix
//! caching on and off, static and elastic KV with small page limits, reserves and map latencies,
//! instances alone on their GPU or colocated, every router policy, open and closed loop with and
//! without re-issue delays, output delays, drains with work in flight) and the shipped scenarios,
//! a run with it on writes the same `requests.csv`, `instances.csv` and `summary.json` bytes as a
//! run stepping every step one by one.

use proptest::prelude::*;
use sim::ids::InstanceId;
use sim::instance::Instance;
use sim::runner::simulate_to_dir;
use sim::scenario::{Override, Scenario, load_scenario, parse_scenario};
use sim::simulation::{SimOptions, SimStats};
use std::path::{Path, PathBuf};

const COMPARED: [&str; 3] = ["requests.csv", "instances.csv", "summary.json"];

/// Runs `scenario` with fast-forward `on` into a fresh dir; returns the dir and the counters.
fn run(scenario: &Scenario, base_dir: &Path, on: bool, tokens: bool) -> (tempfile::TempDir, SimStats) {
    let dir = tempfile::tempdir().unwrap();
    let opts = SimOptions { fast_forward: on, ..SimOptions::default() };
    let run = simulate_to_dir(scenario, base_dir, dir.path(), tokens, "2025-01-01T00:00:00Z", opts).unwrap();
    (dir, run.stats)
}

/// Asserts both modes write identical files and count the same steps.
fn assert_same_output(scenario: &Scenario, base_dir: &Path, tokens: bool) {
    let (ff, ff_stats) = run(scenario, base_dir, true, tokens);
    let (step, step_stats) = run(scenario, base_dir, false, tokens);
    for file in COMPARED.iter().chain(tokens.then_some(&"tokens.csv")) {
        let a = std::fs::read_to_string(ff.path().join(file)).unwrap();
        let b = std::fs::read_to_string(step.path().join(file)).unwrap();
        if a != b {
            let line = a.lines().zip(b.lines()).position(|(x, y)| x != y);
            let show =
                |s: &str| line.and_then(|l| s.lines().nth(l)).unwrap_or("(length differs)").to_string();
            panic!(
                "{} {file} differs at line {line:?}:\n  fast-forward: {}\n  step by step: {}",
                scenario.variant,
                show(&a),
                show(&b)
            );
        }
    }
    assert_eq!(ff_stats, step_stats, "{}", scenario.variant);
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn the_seed_scenario_runs_identically_with_and_without_fast_forward() {
    // Shortened phases keep the test quick; the load still builds batches of several requests.
    let overrides: Vec<Override> = [
        "workload.phases.0.duration_s=20",
        "workload.phases.1.duration_s=20",
        "workload.phases.2.duration_s=10",
    ]
    .iter()
    .map(|o| o.parse().unwrap())
    .collect();
    let file = load_scenario(&scenarios_dir().join("seed-6xh100.toml"), &overrides).unwrap();
    assert_eq!(file.variants.len(), 2);
    for scenario in &file.variants {
        assert_same_output(scenario, &file.base_dir, false);
    }
}

#[test]
fn the_closed_loop_benchmark_scenario_runs_identically_with_and_without_fast_forward() {
    let file = load_scenario(&scenarios_dir().join("seed-benchmark-all-models.toml"), &[]).unwrap();
    for scenario in &file.variants {
        assert_same_output(scenario, &file.base_dir, false);
    }
}

#[test]
fn colocated_instances_never_fast_forward_and_run_identically() {
    // Three instances share one GPU (static split and elastic pool variants): each step must see
    // its co-tenants' contention and pool activity, so the veto keeps them stepping one by one.
    let file = load_scenario(&scenarios_dir().join("whatif-three-8b-one-gpu.toml"), &[]).unwrap();
    for scenario in &file.variants {
        for i in 0..scenario.instances.len() {
            let mut inst = Instance::new(scenario, InstanceId(i as u32));
            inst.set_fast_forward(true);
            assert!(!inst.can_fast_forward(), "{} instance {i}", scenario.variant);
        }
        assert_same_output(scenario, &file.base_dir, false);
    }
}

#[test]
fn token_recording_runs_identically_with_and_without_fast_forward() {
    let file = parse_scenario(&small_scenario(&Knobs::default()), Path::new("t.toml"), &[]).unwrap();
    assert_same_output(&file.variants[0], &file.base_dir, true);
}

#[test]
fn elastic_instances_alone_on_their_gpu_may_fast_forward() {
    let file = load_scenario(&scenarios_dir().join("seed-6xh100.toml"), &[]).unwrap();
    let managed = file.variants.iter().find(|v| v.variant == "managed").unwrap();
    for i in 0..managed.instances.len() {
        let mut inst = Instance::new(managed, InstanceId(i as u32));
        assert!(inst.is_elastic());
        inst.set_fast_forward(true);
        assert!(inst.can_fast_forward(), "managed instance {i}");
    }
}

#[test]
fn elastic_stretches_run_identically_through_reserve_refills_and_demand_maps() {
    // Tiny pages budget, no reserve beyond one page, a visible map latency: stretches must end
    // before each demand map and refill the reserve exactly when step by step does.
    for (min_reserve, extra, gib) in [(0, 0, 0.6), (1, 0, 0.6), (2, 3, 1.5), (5, 0, 3.0)] {
        let k = Knobs {
            elastic: Some(ElasticKnobs {
                min_reserve,
                extra_reserve: extra,
                max_memory_gib: Some(gib),
                map_latency_s: 0.003,
                overhead_factor: 1.07,
            }),
            rate: 30.0,
            num_requests: 80,
            output: (20, 300),
            // Samples and polls land inside stretches: pages and pool bytes must read as step by step.
            sample_s: 0.05,
            poll_s: 0.07,
            ..Knobs::default()
        };
        let text = small_scenario(&k);
        let file = parse_scenario(&text, Path::new("ff.toml"), &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_same_output(&file.variants[0], &file.base_dir, false);
    }
}

/// Elastic KV knobs of a small scenario.
#[derive(Clone, Debug)]
struct ElasticKnobs {
    min_reserve: u32,
    extra_reserve: u32,
    /// Each instance's page limit (small: preemptions and demand maps).
    max_memory_gib: Option<f64>,
    map_latency_s: f64,
    overhead_factor: f64,
}

/// The random part of a small scenario.
#[derive(Clone, Debug)]
struct Knobs {
    seed: u64,
    /// 0: vllm-v1, 1: vllm-0.6.4, 2: transformers-cb.
    preset: usize,
    /// Sets `async_scheduling` instead of the preset's default.
    async_scheduling: Option<bool>,
    /// Closed loop: a client's re-issue delay, seconds.
    reissue_delay_s: Option<f64>,
    chunked: bool,
    caching: bool,
    block_size: u32,
    max_num_seqs: u32,
    budget: u32,
    /// Extra KV blocks beyond one max_model_len request (small = preemptions).
    extra_blocks: u32,
    replicas: u32,
    policy: &'static str,
    poll_s: f64,
    sample_s: f64,
    closed_loop: Option<u32>,
    rate: f64,
    num_requests: u32,
    prompt: (u32, u32),
    output: (u32, u32),
    prefix: (u32, u32, f64),
    drain_s: f64,
    overhead_s: f64,
    /// Elastic KV (kvcached) instead of static.
    elastic: Option<ElasticKnobs>,
    /// The last instance shares GPU 0 with the first (compute contention, one elastic pool).
    colocate: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            seed: 7,
            preset: 0,
            async_scheduling: None,
            reissue_delay_s: None,
            chunked: true,
            caching: true,
            block_size: 16,
            max_num_seqs: 16,
            budget: 512,
            extra_blocks: 40,
            replicas: 2,
            policy: "round_robin",
            poll_s: 0.2,
            sample_s: 0.3,
            closed_loop: None,
            rate: 20.0,
            num_requests: 60,
            prompt: (20, 300),
            output: (1, 120),
            prefix: (64, 2, 0.5),
            drain_s: 600.0,
            overhead_s: 0.002,
            elastic: None,
            colocate: false,
        }
    }
}

const MAX_MODEL_LEN: u32 = 1024;

fn small_scenario(k: &Knobs) -> String {
    // kvcached runs on V1 engines only.
    let preset = match (&k.elastic, k.preset) {
        (Some(_), 0) => "vllm-v1",
        (Some(_), _) => "vllm-0.19.0",
        (None, p) => ["vllm-v1", "vllm-0.6.4", "transformers-cb"][p],
    };
    // transformers takes blocks of at least 4 tokens.
    let block_size = if preset == "transformers-cb" { k.block_size.max(4) } else { k.block_size };
    // Without chunked prefill vLLM needs the budget to hold a whole max_model_len prompt.
    // vLLM also needs it to hold one token per sequence.
    let budget = k.budget.max(k.max_num_seqs);
    let budget = if k.chunked { budget } else { budget.max(MAX_MODEL_LEN) };
    let blocks = MAX_MODEL_LEN.div_ceil(block_size) * 102 / 100 + 1 + k.extra_blocks;
    // A fixed block count is a static-pool knob: elastic instances refuse it.
    let blocks_line =
        if k.elastic.is_some() { String::new() } else { format!("num_gpu_blocks_override = {blocks}\n") };
    let arrival = match (k.closed_loop, k.reissue_delay_s) {
        (Some(c), None) => format!("{{ process = \"closed_loop\", concurrency = {c} }}"),
        (Some(c), Some(d)) => format!(
            "{{ process = \"closed_loop\", concurrency = {c}, reissue_delay_s = {{ dist = \"exponential\", mean = {d} }} }}"
        ),
        (None, _) => format!("{{ process = \"poisson\", rate = {} }}", k.rate),
    };
    let async_line = k.async_scheduling.map(|a| format!("async_scheduling = {a}\n")).unwrap_or_default();
    let kv_lines = match &k.elastic {
        Some(e) => {
            let limit = e.max_memory_gib.map_or(String::new(), |g| format!(", max_memory_gib = {g}"));
            format!(
                "kv_cache = \"elastic\"\ngpu_memory_utilization = 0.9\nelastic = {{ min_reserve_pages = {}, \
                 max_reserve_pages = {}, map_latency_s = {}, step_overhead_factor = {}, \
                 prefix_cache_max_tokens = 512{limit} }}\n",
                e.min_reserve,
                e.min_reserve + e.extra_reserve,
                e.map_latency_s,
                e.overhead_factor
            )
        }
        // Two static instances on one GPU take a share each.
        None if k.colocate => "gpu_memory_utilization = 0.45\n".to_string(),
        None => String::new(),
    };
    let mut text = format!(
        r#"
name = "ff"
seed = {seed}
[cluster]
gpu = "H100-80GB-SXM"
num_gpus = {gpus}
[defaults.engine]
preset = "{preset}"
block_size = {bs}
max_num_seqs = {seqs}
max_num_batched_tokens = {budget}
enable_chunked_prefill = {chunked}
enable_prefix_caching = {caching}
max_model_len = {mml}
{blocks_line}{async_line}{kv_lines}[router]
policy = "{policy}"
poll_interval_s = {poll}
[workload.prefix]
tokens = {pt}
groups = {pg}
fraction = {pf}
[[workload.phases]]
num_requests = {n}
arrival = {arrival}
input_tokens = {{ dist = "uniform", min = {pmin}, max = {pmax} }}
output_tokens = {{ dist = "uniform", min = {omin}, max = {omax} }}
[output]
sample_interval_s = {sample}
drain_timeout_s = {drain}
[perf]
step_overhead_s = {overhead}
"#,
        seed = k.seed,
        gpus = k.replicas + 1,
        bs = block_size,
        seqs = k.max_num_seqs,
        chunked = k.chunked,
        caching = k.caching,
        mml = MAX_MODEL_LEN,
        policy = k.policy,
        poll = k.poll_s,
        pt = k.prefix.0,
        pg = k.prefix.1,
        pf = k.prefix.2,
        n = k.num_requests,
        pmin = k.prompt.0,
        pmax = k.prompt.1,
        omin = k.output.0,
        omax = k.output.1,
        sample = k.sample_s,
        drain = k.drain_s,
        overhead = k.overhead_s,
    );
    // `replicas` instances of one model and one of another, each on its own GPU, or the last
    // one on the first's.
    for i in 0..k.replicas {
        text += &format!("[[instances]]\nmodel = \"llama-3.1-8b\"\ngpu = {i}\n");
    }
    let last_gpu = if k.colocate { 0 } else { k.replicas };
    text += &format!("[[instances]]\nmodel = \"qwen2.5-7b\"\ngpu = {last_gpu}\n");
    text
}

fn knobs() -> impl Strategy<Value = Knobs> {
    let engine = (
        0u64..1 << 40,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![1u32, 8, 16, 32]),
        1u32..40,
        16u32..2048,
        prop_oneof![0u32..8, 8u32..200, 200u32..4000],
    );
    let routing = (
        1u32..3,
        prop::sample::select(vec![
            "round_robin",
            "queue_aware",
            "least_outstanding",
            "power_of_two",
            "random",
        ]),
        0.01f64..1.5,
        0.01f64..1.5,
    );
    let load = (
        prop::option::of(1u32..12),
        0.5f64..80.0,
        1u32..120,
        (1u32..400, 0u32..500),
        (1u32..60, 0u32..300),
        (prop::sample::select(vec![0u32, 16, 100, 300]), 1u32..4, 0.0f64..1.0),
        prop_oneof![0.05f64..3.0, Just(600.0)],
        0.0001f64..0.01,
    );
    let pipeline = (0usize..3, prop::option::of(any::<bool>()), prop::option::of(0.0f64..0.05));
    let elastic = prop::option::of(
        (0u32..4, 0u32..3, prop::option::of(0.3f64..3.0), prop_oneof![Just(0.0), 0.0f64..0.01], 1.0f64..1.3)
            .prop_map(|(min_reserve, extra_reserve, max_memory_gib, map_latency_s, overhead_factor)| {
                ElasticKnobs { min_reserve, extra_reserve, max_memory_gib, map_latency_s, overhead_factor }
            }),
    );
    let layout = (elastic, any::<bool>());
    (engine, routing, load, pipeline, layout).prop_map(
        |(
            (seed, _, chunked, caching, block_size, max_num_seqs, budget, extra_blocks),
            (replicas, policy, poll_s, sample_s),
            (closed_loop, rate, num_requests, prompt, output, prefix, drain_s, overhead_s),
            (preset, async_scheduling, reissue_delay_s),
            (elastic, colocate),
        )| Knobs {
            seed,
            preset,
            async_scheduling,
            reissue_delay_s,
            // vLLM V1 and transformers always chunk (elastic KV runs on V1).
            chunked: chunked || preset != 1 || elastic.is_some(),
            caching,
            block_size,
            max_num_seqs,
            budget,
            extra_blocks,
            replicas,
            policy,
            poll_s,
            sample_s,
            closed_loop,
            rate,
            num_requests,
            prompt: (prompt.0, prompt.0 + prompt.1),
            output: (output.0, output.0 + output.1),
            prefix,
            drain_s,
            overhead_s,
            elastic,
            colocate,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_small_scenarios_run_identically_with_and_without_fast_forward(k in knobs()) {
        let text = small_scenario(&k);
        let file = parse_scenario(&text, Path::new("ff.toml"), &[])
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_same_output(&file.variants[0], &file.base_dir, false);
    }
}
