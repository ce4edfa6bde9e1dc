//! Whatever the bytes, parsing a scenario returns a value or an error; it never panics.

use proptest::prelude::*;
use sim::scenario::{Override, parse_scenario};
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
