//! Whatever the bytes, parsing a scenario returns a value or an error; it never panics.

use proptest::prelude::*;
use sim::scenario::{DEFAULT_MAX_REQUESTS, Override, parse_scenario};
use std::path::{Path, PathBuf};

fn seed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/seed-6xh100.toml")
}

fn seed_text() -> String {
    std::fs::read_to_string(seed_path()).unwrap()
}

/// Fragments that are meaningful to the schema, to push mutations past the TOML parser.
const FRAGMENTS: &[&str] = &[
    "0",
    "-1",
    "1e400",
    "4294967296",
    "0.0",
    "\"\"",
    "[]",
    "{}",
    "true",
    "\"llama-3.1-8b\"",
    "=",
    "[[instances]]",
    "\n[variants.x]\nset = { \"router.policy\" = 3 }\n",
    "\nnum_gpus = 0\n",
    "\ngpu = 99\n",
    "\"H200\"",
    "{ dist = \"empirical\", values = [] }",
    "{ process = \"replay\", path = \"nope\" }",
    ".",
    "*",
    "\nmax_model_len = 0\n",
    "\ngpu_memory_utilization = 1e-9\n",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, fragment: usize },
    Replace { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..FRAGMENTS.len()).prop_map(|(at, fragment)| Mutation::Insert { at, fragment }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Delete { at, len } => {
                let at = at % n;
                let end = (at + len).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            Mutation::Insert { at, fragment } => {
                let at = (at % n).min(bytes.len());
                bytes.splice(at..at, FRAGMENTS[fragment].bytes());
            }
            Mutation::Replace { at, byte } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_scenario(&text, Path::new("fuzz.toml"), &[]);
    }

    #[test]
    fn mutations_of_the_seed_scenario_never_panic(mutations in proptest::collection::vec(mutation(), 1..6)) {
        let text = mutate(&seed_text(), &mutations);
        let _ = parse_scenario(&text, &seed_path(), &[]);
    }

    #[test]
    fn random_overrides_never_panic(
        path in "[a-z_.*0-9\"]{0,40}",
        value in prop_oneof![Just("1".to_string()), Just("-5".to_string()), Just("x".to_string()),
                             Just("[]".to_string()), Just("{ a = 1 }".to_string()), "[ -~]{0,12}"],
    ) {
        if let Ok(ov) = format!("{path}={value}").parse::<Override>() {
            let _ = parse_scenario(&seed_text(), &seed_path(), &[ov]);
        }
    }
}

/// Real fields of the seed scenario, so `--set` reaches the schema and the resource guards.
const FIELDS: &[&str] = &[
    "workload.phases.0.arrival.rate",
    "workload.phases.*.duration_s",
    "workload.phases.1.num_requests",
    "workload.phases.2.arrival.burstiness",
    "workload.phases.*.input_tokens.mean",
    "workload.phases.*.output_tokens.max",
    "workload.phases.0.input_tokens.std",
    "workload.prefix.tokens",
    "workload.prefix.groups",
    "workload.prompt_token_id_range",
    "instances.*.engine.max_num_seqs",
    "instances.0.engine.max_model_len",
    "instances.*.engine.gpu_memory_utilization",
    "defaults.engine.block_size",
    "cluster.num_gpus",
    "router.poll_interval_s",
    "output.sample_interval_s",
    "seed",
];

/// Values that parse as TOML but are hostile to the field.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-inf",
    "1e-300",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "\"\"",
    "[]",
    "[0, -1]",
    "{}",
    "true",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Issue 12 item 10: hostile `--set` values on real fields never panic, and a scenario that
    /// loads plans no more requests than the default `output.max_requests` (no unbounded allocation).
    #[test]
    fn hostile_set_values_on_real_fields_never_panic_or_plan_unbounded_work(
        sets in proptest::collection::vec((0..FIELDS.len(), 0..VALUES.len()), 1..4),
    ) {
        let ovs: Vec<Override> = sets
            .iter()
            .filter_map(|&(f, v)| format!("{}={}", FIELDS[f], VALUES[v]).parse().ok())
            .collect();
        let Ok(file) = parse_scenario(&seed_text(), &seed_path(), &ovs) else { return Ok(()) };
        for sc in &file.variants {
            let Ok(g) = sim::workload::WorkloadGenerator::new(&sc.workload, sc.models.len(), sc.seed, Path::new("."))
            else { continue };
            if let Some(n) = g.planned_requests() {
                prop_assert!(n <= DEFAULT_MAX_REQUESTS, "{n} planned over the limit {DEFAULT_MAX_REQUESTS}");
            }
        }
    }
}

/// Regression (found by the calibrate suite): an arrival near the end of simulated time (a replay
/// slowed down a trillion times puts its second row ~584 years in) overflowed the grid
/// computation of the paused periodic events when they resumed.
#[test]
fn an_arrival_at_the_end_of_simulated_time_does_not_overflow_the_sampling_grid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.csv"),
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00,10,2\n2024-05-10 01:00:00,10,2\n",
    )
    .unwrap();
    let text = r#"
name = "far"
seed = 1
[cluster]
gpu = "H200"
num_gpus = 1
[[instances]]
model = "llama-3.1-8b"
gpu = 0
[output]
sample_interval_s = 0.7
[[workload.phases]]
arrival = { process = "replay", path = "t.csv", speedup = 1e-12 }
"#;
    let file = parse_scenario(text, &dir.path().join("s.toml"), &[]).unwrap();
    let run =
        sim::runner::simulate_summary(&file.variants[0], dir.path(), sim::simulation::SimOptions::default());
    // Either outcome is fine as long as it is an outcome: the far request may be refused.
    if let Ok(run) = run {
        assert!(run.summary.overall.requests <= 2);
    }
}
