//! Hostile replay files (issue 12 item 10): Azure traces and run-dir `requests.csv` with valid
//! structure but extreme numbers, NaN/inf, truncated lines, stray quotes and invalid UTF-8. Building
//! the generator and draining it returns requests or an error naming the file; it never panics.
//! `PROPTEST_CASES=20000 cargo test -p sim --lib replay_fuzz` is the longer run.

use super::*;
use proptest::prelude::*;
use std::fs;

/// Field values that are legal in shape but hostile in value.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "4294967295",
    "4294967296",
    "4000000000",
    "18446744073709551616",
    "1e308",
    "1e400",
    "-0",
    "NaN",
    "inf",
    "-inf",
    "0.5",
    "",
    " 7 ",
    "\"12\"",
    "\"",
    "\u{0}",
    "\u{FEFF}3",
];

const TIMESTAMPS: &[&str] = &[
    "2023-11-16 18:15:46.6805900",
    "2023-11-16 18:15:46",
    "0000-01-01 00:00:00",
    "4294967295-12-31 23:59:59.999999999",
    "9999-12-31T23:59:59.999999999",
    "1970-01-01 00:00:00.0000000001",
    "2024-02-29 23:59:59",
    "2023-02-29 00:00:00",
    "2023-11-16 18:15:46.",
    "2023-11-16",
    "",
    "2023-11-16 18:15:46.6805900,extra",
];

const MODELS: &[&str] = &["a", "b", "", "zzz", "\"a\"", "a,b"];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(list)
}

fn azure_row() -> impl Strategy<Value = String> {
    (pick(TIMESTAMPS), pick(NUMBERS), pick(NUMBERS)).prop_map(|(t, c, g)| format!("{t},{c},{g}"))
}

fn run_dir_row() -> impl Strategy<Value = String> {
    (pick(NUMBERS), pick(MODELS), pick(NUMBERS), pick(NUMBERS), pick(NUMBERS))
        .prop_map(|(id, m, s, p, o)| format!("{id},{m},{s},{p},{o}"))
}

/// Applies byte-level damage: truncation, an invalid UTF-8 byte, a dropped separator.
fn damage(mut bytes: Vec<u8>, cuts: &[(usize, u8)]) -> Vec<u8> {
    for &(at, kind) in cuts {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match kind % 4 {
            0 => bytes.truncate(at),
            1 => bytes.insert(at, 0xFF),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, b'\n'),
        }
    }
    bytes
}

/// Builds a replay generator over `bytes` and drains it (at most a bounded number of requests).
fn replay_bytes(bytes: &[u8], speedup: f64) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("t.csv"), bytes).unwrap();
    let w = workload(vec![PhaseSpec {
        mix: vec![(ModelId(0), 1.0)],
        ..phase(ArrivalSpec::Replay { path: "t.csv".into(), speedup })
    }]);
    let keys = vec!["a".to_string(), "b".to_string()];
    let Ok(mut g) = WorkloadGenerator::with_model_keys(&w, &keys, 1, dir.path()) else { return };
    let planned = g.planned_requests();
    let mut popped = 0u64;
    while let Some(r) = g.pop() {
        assert!(r.num_prompt_tokens >= 1 && r.max_tokens >= 1, "{r:?}");
        popped += 1;
        assert!(popped <= 10_000, "a small file cannot replay more requests than rows");
    }
    if g.error().is_none() {
        assert_eq!(planned, Some(popped), "a checked replay issues exactly the rows it planned");
    }
}

fn speedup() -> impl Strategy<Value = f64> {
    prop_oneof![Just(1.0), Just(1e-300), Just(1e300), Just(f64::MIN_POSITIVE), 0.01f64..100.0]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_azure_traces_never_panic(
        rows in proptest::collection::vec(azure_row(), 0..12),
        cuts in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        s in speedup(),
    ) {
        let text = format!("TIMESTAMP,ContextTokens,GeneratedTokens\n{}\n", rows.join("\n"));
        replay_bytes(&damage(text.into_bytes(), &cuts), s);
    }

    #[test]
    fn hostile_run_dir_rows_never_panic(
        rows in proptest::collection::vec(run_dir_row(), 0..12),
        cuts in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        s in speedup(),
    ) {
        let text = format!("id,model,scheduled_s,prompt_tokens,max_tokens\n{}\n", rows.join("\n"));
        replay_bytes(&damage(text.into_bytes(), &cuts), s);
    }

    #[test]
    fn random_bytes_as_a_replay_file_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        replay_bytes(&bytes, 1.0);
    }
}
