//! `simulate` and `live run` replay the same trace file, in every format, to the same request
//! stream (content included), and the live client's prompts really share the trace's prefixes.

use live::client::PromptBuilder;
use live::loadgen::RequestSource;
use sim::scenario::{Scenario, parse_scenario};
use sim::workload::RequestSpec;
use std::path::Path;

const SCENARIO: &str = r#"
name = "t"
seed = 7

[cluster]
gpu = "H100-80GB-SXM"
num_gpus = 2

[[instances]]
model = "llama-3.1-8b"
gpu = 0

[[instances]]
model = "qwen2.5-7b"
gpu = 1

[[workload.phases]]
arrival = { process = "replay", path = "PATH", speedup = 2.0, block_size = 4 }
"#;

/// The same rows in each format: (seconds, model, input, output, block ids).
const ROWS: [(f64, &str, u32, u32, &[u64]); 3] = [
    (0.0, "llama-3.1-8b", 10, 3, &[1, 2, 3]),
    (0.5, "qwen2.5-7b", 8, 2, &[1, 2]),
    (2.25, "llama-3.1-8b", 12, 5, &[1, 4, 5]),
];

fn files() -> Vec<(&'static str, String)> {
    let mut azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n".to_string();
    let mut mooncake = String::new();
    let mut burst = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n".to_string();
    let mut generic = "time_s,model,input_tokens,output_tokens,block_ids\n".to_string();
    let mut run_dir = "id,model,scheduled_s,prompt_tokens,max_tokens\n".to_string();
    for (n, (t, m, i, o, b)) in ROWS.iter().enumerate() {
        let ms = (t * 1000.0) as u64;
        azure += &format!("2024-05-10 00:00:{:02}.{:03},{i},{o}\n", ms / 1000, ms % 1000);
        mooncake += &format!(
            "{{\"timestamp\": {ms}, \"input_length\": {i}, \"output_length\": {o}, \"hash_ids\": {b:?}}}\n"
        );
        burst += &format!("{t},{m},{i},{o},0,Conversation log\n");
        let ids: Vec<String> = b.iter().map(u64::to_string).collect();
        generic += &format!("{t},{m},{i},{o},{}\n", ids.join(" "));
        run_dir += &format!("{n},{m},{t},{i},{o}\n");
    }
    vec![
        ("azure.csv", azure),
        ("trace.jsonl", mooncake),
        ("burst.csv", burst),
        ("generic.csv", generic),
        ("requests.csv", run_dir),
    ]
}

fn scenario(dir: &Path, file: &str) -> Scenario {
    let text = SCENARIO.replace("PATH", file);
    let mut f = parse_scenario(&text, &dir.join("s.toml"), &[]).unwrap();
    f.variants.remove(0)
}

fn sim_stream(sc: &Scenario, dir: &Path) -> Vec<RequestSpec> {
    let mut g = sim::simulation::scenario_workload(sc, dir).unwrap();
    std::iter::from_fn(|| g.pop()).collect()
}

fn live_stream(sc: &Scenario, dir: &Path) -> Vec<RequestSpec> {
    let mut g = live::run::workload_source(sc, dir).unwrap();
    let source: &mut dyn RequestSource = &mut g;
    let mut out = Vec::new();
    while source.peek_time().is_some() {
        out.push(source.pop().unwrap());
    }
    assert!(source.is_exhausted() && source.error().is_none());
    out
}

#[test]
fn simulate_and_live_run_replay_every_format_to_the_same_stream() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files() {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    for (name, _) in files() {
        let sc = scenario(dir.path(), name);
        let (sim, live) = (sim_stream(&sc, dir.path()), live_stream(&sc, dir.path()));
        assert_eq!(sim.len(), ROWS.len(), "{name}");
        assert_eq!(sim, live, "{name}: the simulator and the live source agree, content included");
        let lengths: Vec<(u32, u32)> = sim.iter().map(|r| (r.num_prompt_tokens, r.max_tokens)).collect();
        assert_eq!(lengths, ROWS.iter().map(|r| (r.2, r.3)).collect::<Vec<_>>(), "{name}");
        let with_blocks = matches!(name, "trace.jsonl" | "generic.csv");
        assert_eq!(sim.iter().all(|r| r.content.num_shared_tokens() > 0), with_blocks, "{name}");
        if matches!(name, "burst.csv" | "generic.csv" | "requests.csv") {
            assert_eq!(
                sim.iter().map(|r| r.model.0).collect::<Vec<_>>(),
                vec![0, 1, 0],
                "{name}: model column"
            );
        }
    }
}

#[test]
fn live_prompts_share_token_ids_exactly_where_the_trace_blocks_are_equal() {
    let dir = tempfile::tempdir().unwrap();
    let (name, text) = files().swap_remove(1);
    std::fs::write(dir.path().join(name), text).unwrap();
    let sc = scenario(dir.path(), name);
    let reqs = live_stream(&sc, dir.path());
    let b = PromptBuilder { range: sc.workload.prompt_token_id_range, seed: sc.seed };
    let ids: Vec<Vec<u32>> = reqs.iter().map(|r| b.token_ids(r)).collect();
    assert_eq!(ids[0].len(), 10);
    assert_eq!(ids[1][..8], ids[0][..8], "blocks 1, 2 (4 tokens each) shared");
    assert_eq!(ids[2][..4], ids[0][..4], "block 1 shared");
    assert_ne!(ids[2][4..8], ids[0][4..8], "block 4 is not block 2");
}
