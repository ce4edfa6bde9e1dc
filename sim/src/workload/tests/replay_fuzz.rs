//! Hostile replay files (issue 12 item 10): every trace format (Azure, run-dir `requests.csv`,
//! Mooncake JSONL, BurstGPT, generic CSV) with valid structure but extreme numbers, NaN/inf,
//! truncated lines, stray quotes and invalid UTF-8, under varied replay options. Building the
//! generator and draining it returns requests or an error naming the file; it never panics.
//! `PROPTEST_CASES=20000 cargo test -p sim --lib replay_fuzz` is the longer run.

use super::*;
use crate::scenario::{ReplayModels, ReplayOptions};
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

const MODELS: &[&str] = &["a", "b", "a", "b", "", "zzz", "\"a\"", "a,b"];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(list)
}

/// Mostly an ordinary token count, sometimes a hostile one (so whole files stay readable often
/// enough for their rows to reach the generator).
fn num() -> impl Strategy<Value = String> {
    prop_oneof![6 => (0u32..5000).prop_map(|n| n.to_string()), 1 => pick(NUMBERS).prop_map(str::to_owned)]
}

/// Mostly `{T}` (replaced by an in-order time of the row's format), sometimes a hostile value.
fn time(hostile: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![6 => Just("{T}".to_string()), 1 => pick(hostile).prop_map(str::to_owned)]
}

/// Joins rows, putting row `i`'s in-order time (`at(i)`) where it has `{T}`.
fn join(rows: &[String], at: impl Fn(usize) -> String) -> String {
    rows.iter().enumerate().map(|(i, r)| r.replace("{T}", &at(i)) + "\n").collect()
}

fn azure_row() -> impl Strategy<Value = String> {
    (time(TIMESTAMPS), num(), num()).prop_map(|(t, c, g)| format!("{t},{c},{g}"))
}

fn run_dir_row() -> impl Strategy<Value = String> {
    (num(), pick(MODELS), time(NUMBERS), num(), num())
        .prop_map(|(id, m, s, p, o)| format!("{id},{m},{s},{p},{o}"))
}

fn mooncake_row() -> impl Strategy<Value = String> {
    let ids = proptest::sample::select(vec![
        "[]",
        "[1, 2, 3]",
        "[18446744073709551615]",
        "[-1]",
        "[1.5]",
        "null",
        "{}",
    ]);
    (time(NUMBERS), num(), num(), ids).prop_map(|(t, i, o, h)| {
        let q = |v: &str| if v.is_empty() { "null".to_string() } else { v.to_string() };
        format!(
            "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": {}, \"hash_ids\": {h}}}",
            q(&t),
            q(&i),
            q(&o)
        )
    })
}

fn burstgpt_row() -> impl Strategy<Value = String> {
    (time(NUMBERS), pick(MODELS), num(), num(), num())
        .prop_map(|(t, m, i, o, n)| format!("{t},{m},{i},{o},{n},Conversation log"))
}

fn generic_row() -> impl Strategy<Value = String> {
    let ids = proptest::sample::select(vec![
        "",
        "1 2 3",
        "1 2 3",
        "1 4",
        "1 4",
        "18446744073709551616",
        "-1",
        "x",
        "1  2",
    ]);
    (time(NUMBERS), pick(MODELS), num(), num(), ids)
        .prop_map(|(t, m, i, o, b)| format!("{t},{m},{i},{o},s1,{b}"))
}

/// A trace file of one format: its name, header and rows.
fn trace_file() -> impl Strategy<Value = (&'static str, String)> {
    let rows = |r: BoxedStrategy<String>| proptest::collection::vec(r, 0..12);
    prop_oneof![
        rows(azure_row().boxed()).prop_map(|r| (
            "t.csv",
            format!(
                "TIMESTAMP,ContextTokens,GeneratedTokens\n{}",
                join(&r, |i| format!("2024-05-10 00:{:02}:{:02}.5", i / 60, i % 60))
            )
        )),
        rows(run_dir_row().boxed()).prop_map(|r| (
            "requests.csv",
            format!("id,model,scheduled_s,prompt_tokens,max_tokens\n{}", join(&r, |i| format!("{i}.25")))
        )),
        rows(mooncake_row().boxed()).prop_map(|r| ("t.jsonl", join(&r, |i| (i * 700).to_string()))),
        rows(burstgpt_row().boxed()).prop_map(|r| (
            "burst.csv",
            format!(
                "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n{}\n",
                join(&r, |i| format!("{}", 100 + i))
            )
        )),
        rows(generic_row().boxed()).prop_map(|r| (
            "generic.csv",
            format!(
                "time_s,model,input_tokens,output_tokens,session_id,block_ids\n{}",
                join(&r, |i| format!("{i}.5"))
            )
        )),
    ]
}

/// Replay options that pass `ReplayOptions::check` (as a loaded scenario's do), at their extremes.
fn options() -> impl Strategy<Value = ReplayOptions> {
    (
        prop_oneof![4 => Just(0.0), 1 => Just(1e-9), 1 => Just(1e300), 1 => 0.0f64..10.0],
        prop_oneof![4 => Just(None), 1 => Just(Some(1e300)), 1 => (0.0f64..10.0).prop_map(Some)],
        prop_oneof![Just(1.0), Just(1000.0), Just(1e-300), 0.01f64..20.0],
        proptest::sample::select(vec![ReplayModels::Auto, ReplayModels::Trace, ReplayModels::Mix]),
        proptest::sample::select(vec![1u32, 4, 512, u32::MAX]),
    )
        .prop_map(|(start_s, end_s, rate_scale, models, block_size)| ReplayOptions {
            start_s,
            end_s,
            rate_scale,
            models,
            block_size,
            ..ReplayOptions::default()
        })
        .prop_filter("valid options", |o| o.check(None).is_ok())
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

/// Builds a replay generator over `bytes` written as `name` and drains it.
fn replay_bytes(name: &str, bytes: &[u8], speedup: f64, options: ReplayOptions) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(name), bytes).unwrap();
    let copies = options.rate_scale.ceil().max(1.0) as u64;
    let w = workload(vec![PhaseSpec {
        mix: vec![(ModelId(0), 1.0)],
        ..phase(ArrivalSpec::Replay { path: name.into(), speedup, options })
    }]);
    let keys = vec!["a".to_string(), "b".to_string()];
    let r = WorkloadGenerator::with_model_keys(&w, &keys, 1, dir.path());
    let Ok(mut g) = r else { return };
    let planned = g.planned_requests();
    let mut popped = 0u64;
    while let Some(r) = g.pop() {
        assert!(r.num_prompt_tokens >= 1 && r.max_tokens >= 1, "{r:?}");
        popped += 1;
        // At most `ceil(rate_scale)` copies of each row (13 lines with the damage's newlines).
        assert!(popped <= 64 * copies, "{popped} requests from a file of a few rows");
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
    fn hostile_traces_of_every_format_never_panic(
        (name, text) in trace_file(),
        cuts in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..2),
        s in speedup(),
        o in options(),
    ) {
        replay_bytes(name, &damage(text.into_bytes(), &cuts), s, o);
    }

    #[test]
    fn random_bytes_as_a_replay_file_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        name in proptest::sample::select(vec!["t.csv", "t.jsonl", "requests.csv"]),
    ) {
        replay_bytes(name, &bytes, 1.0, ReplayOptions::default());
    }
}
