//! Multi-turn sessions end to end: prefix-aware routing keeps a session's turns where its context
//! is cached, round-robin scatters them (issue 11, items 3 and 5).

use sim::metrics::RunSummary;
use sim::runner::simulate_summary;
use sim::scenario::{Override, Scenario, parse_scenario};
use sim::simulation::SimOptions;
use std::path::Path;

/// Two 8B replicas, prefix caching on; open-loop sessions with a long first prompt (a shared
/// document), several turns, and a think time between answer and next turn.
const SESSIONS: &str = r#"
name = "sessions-test"
seed = 11

[cluster]
gpu = "H100-80GB-SXM"
num_gpus = 2

[defaults.engine]
preset = "vllm-v1"
max_model_len = 16384
enable_prefix_caching = true

[[instances]]
model = "llama-3.1-8b"
gpu = 0

[[instances]]
model = "llama-3.1-8b"
gpu = 1

[router]
policy = "round_robin"

[[workload.phases]]
arrival = { process = "sessions", rate = 1.0, num_sessions = 40, turns = { dist = "uniform", min = 4, max = 8 }, think_time_s = { dist = "exponential", mean = 1.0 }, user_tokens = { dist = "uniform", min = 50, max = 300 }, max_context_tokens = 16384 }
input_tokens = { dist = "uniform", min = 3000, max = 6000 }
output_tokens = { dist = "uniform", min = 50, max = 200 }
"#;

fn scenario(sets: &[&str]) -> Scenario {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    parse_scenario(SESSIONS, Path::new("tests/sessions-test.toml"), &overrides).unwrap().variants.remove(0)
}

fn summary(s: &Scenario) -> RunSummary {
    simulate_summary(s, Path::new("."), SimOptions::default()).unwrap().summary
}

#[test]
fn prefix_aware_routing_beats_round_robin_on_ttft_and_hit_rate_for_multi_turn_sessions() {
    let rr = summary(&scenario(&["router.policy=round_robin"]));
    let pa = summary(&scenario(&["router.policy=prefix_aware"]));
    let (r, p) = (&rr.overall, &pa.overall);
    assert_eq!(r.requests, p.requests, "the same session stream under both policies");
    assert!(r.requests > 160, "40 sessions of 4-8 turns: {}", r.requests);
    assert_eq!((r.ok, p.ok), (r.requests, p.requests));
    let hit = |s: &RunSummary| s.models[0].prefix_cache.hit_rate.unwrap();
    let (hr, hp) = (hit(&rr), hit(&pa));
    assert!(hp > hr + 0.1, "prefix-aware hit rate {hp} vs round-robin {hr}");
    let (tr, tp) = (r.ttft.clone().unwrap(), p.ttft.clone().unwrap());
    assert!(tp.p50 < tr.p50, "TTFT p50: prefix-aware {} vs round-robin {}", tp.p50, tr.p50);
    assert!(tp.mean < tr.mean, "TTFT mean: prefix-aware {} vs round-robin {}", tp.mean, tr.mean);
    // Balanced: each replica gets a fair share of the requests.
    let counts: Vec<u64> = pa.instances.iter().map(|i| i.requests).collect();
    let total: u64 = counts.iter().sum();
    assert!(counts.iter().all(|&c| c * 4 > total), "prefix-aware spreads sessions: {counts:?}");
}

#[test]
fn a_session_run_is_deterministic_given_its_seed() {
    let s = scenario(&["router.policy=prefix_aware"]);
    let (a, b) = (summary(&s), summary(&s));
    assert_eq!(a.overall.requests, b.overall.requests);
    assert_eq!(a.overall.ttft.unwrap().p50, b.overall.ttft.unwrap().p50);
    assert_eq!(a.models[0].prefix_cache.hits, b.models[0].prefix_cache.hits);
}
