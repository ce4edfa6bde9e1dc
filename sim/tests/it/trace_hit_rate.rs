//! A replayed Mooncake trace's simulated prefix-cache hit rate against the bound its `hash_ids`
//! allow (`sim::workload::prefix_reuse_bound`): close to it with caching on, zero with it off.

use sim::runner::simulate_summary;
use sim::scenario::{Override, parse_scenario};
use sim::simulation::SimOptions;
use sim::workload::{ReuseBound, open_loop_requests, prefix_reuse_bound};
use std::path::{Path, PathBuf};

const SCENARIO: &str = r#"
name = "mooncake-hit-rate"
seed = 1

[cluster]
gpu = "H200"
num_gpus = 1

[defaults.engine]
enable_prefix_caching = true
max_model_len = 65536

[[instances]]
model = "llama-3.1-8b"
gpu = 0

[[workload.phases]]
arrival = { process = "replay", path = "mooncake_excerpt.jsonl", speedup = 0.1 }
"#;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// (simulated hits / queries, the bound) for the scenario with `sets` applied.
fn hit_rates(sets: &[&str], cache_blocks: Option<u64>) -> (u64, u64, ReuseBound) {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    let file = parse_scenario(SCENARIO, &fixtures().join("s.toml"), &overrides).unwrap();
    let s = &file.variants[0];
    let run = simulate_summary(s, &fixtures(), SimOptions::default()).unwrap();
    let p = run.summary.models[0].prefix_cache;
    let requests = open_loop_requests(&s.workload, 1, s.seed, &fixtures()).unwrap();
    let e = &s.instances[0].engine;
    let max_len = e.max_model_len;
    let bound = prefix_reuse_bound(&requests, e.block_size, cache_blocks, |r| {
        r.num_prompt_tokens + r.max_tokens <= max_len
    });
    (p.hits, p.queries, bound)
}

#[test]
fn the_simulated_hit_rate_is_within_a_few_points_of_what_the_hash_ids_allow() {
    // A cache larger than the excerpt (3.7 M prompt tokens): the infinite-cache bound.
    let (hits, queries, bound) = hit_rates(&["defaults.engine.num_gpu_blocks_override=300000"], None);
    assert_eq!(queries, bound.queried_tokens, "the same requests are admitted and counted");
    let (sim, ideal) = (hits as f64 / queries as f64, bound.hit_rate().unwrap());
    assert!(ideal > 0.3, "the excerpt reuses prefixes: {ideal}");
    assert!(sim <= ideal + 1e-9 && ideal - sim < 0.02, "simulated {sim:.3} vs bound {ideal:.3}");
    // A cache of 20k blocks (320k tokens): the LRU bound of that size.
    let (hits, queries, bound) = hit_rates(&["defaults.engine.num_gpu_blocks_override=20000"], Some(20_000));
    let (sim, lru) = (hits as f64 / queries as f64, bound.hit_rate().unwrap());
    assert!(lru < ideal, "a smaller cache allows less: {lru} vs {ideal}");
    assert!((sim - lru).abs() < 0.02, "simulated {sim:.3} vs LRU bound {lru:.3}");
}

#[test]
fn with_prefix_caching_off_nothing_hits() {
    let (hits, _, bound) = hit_rates(&["defaults.engine.enable_prefix_caching=false"], None);
    assert_eq!(hits, 0);
    assert!(bound.hit_tokens > 0, "the trace would allow hits");
}
