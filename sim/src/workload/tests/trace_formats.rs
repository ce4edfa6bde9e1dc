//! The trace readers: every format replays the same rows to the same requests; windows, rate
//! scaling and model assignment; errors name the file, line and column.

use super::*;
use crate::engine::PromptContent;
use crate::scenario::{ReplayModels, ReplayOptions, TraceFormat};
use crate::workload::{ReplayStats, WorkloadError};
use std::fs;

/// The same four requests (seconds, model, input, output, block ids of 4 tokens) in each format.
const ROWS: [(f64, &str, u32, u32, &[u64]); 4] = [
    (0.0, "a", 10, 3, &[1, 2, 3]),
    (0.5, "b", 8, 2, &[1, 2]),
    (2.25, "a", 12, 5, &[1, 4, 5]),
    (4.0, "b", 7, 1, &[9, 9]),
];

fn azure() -> String {
    let mut s = "TIMESTAMP,ContextTokens,GeneratedTokens\n".to_string();
    for (t, _, i, o, _) in ROWS {
        let ns = (t * 1e7).round() as u64;
        s += &format!("2024-05-10 00:00:{:02}.{:07},{i},{o}\n", ns / 10_000_000, ns % 10_000_000);
    }
    s
}

fn mooncake() -> String {
    ROWS.iter()
        .map(|(t, _, i, o, b)| {
            format!(
                "{{\"timestamp\": {}, \"input_length\": {i}, \"output_length\": {o}, \"hash_ids\": {b:?}}}\n",
                t * 1000.0
            )
        })
        .collect()
}

fn burstgpt() -> String {
    let mut s = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n".to_string();
    for (t, m, i, o, _) in ROWS {
        s += &format!("{},{m},{i},{o},{},Conversation log\n", t + 100.0, i + o);
    }
    s
}

fn generic() -> String {
    let mut s = "time_s,model,input_tokens,output_tokens,session_id,block_ids\n".to_string();
    for (t, m, i, o, b) in ROWS {
        let ids: Vec<String> = b.iter().map(u64::to_string).collect();
        s += &format!("{t},{m},{i},{o},s1,{}\n", ids.join(" "));
    }
    s
}

fn run_dir() -> String {
    let mut s = "id,model,scheduled_s,prompt_tokens,max_tokens\n".to_string();
    // Completion order: the reader sorts by scheduled_s.
    for (n, (t, m, i, o, _)) in ROWS.iter().enumerate().rev() {
        s += &format!("{n},{m},{t},{i},{o}\n");
    }
    s
}

fn opts(f: impl FnOnce(&mut ReplayOptions)) -> ReplayOptions {
    let mut o = ReplayOptions { block_size: 4, ..ReplayOptions::default() };
    f(&mut o);
    o
}

fn trace_phase(path: &str, speedup: f64, options: ReplayOptions) -> PhaseSpec {
    let mix = vec![(ModelId(0), 1.0), (ModelId(1), 1.0)];
    PhaseSpec { mix, ..phase(ArrivalSpec::Replay { path: path.into(), speedup, options }) }
}

fn build(dir: &Path, phases: Vec<PhaseSpec>) -> Result<WorkloadGenerator, WorkloadError> {
    WorkloadGenerator::with_model_keys(&workload(phases), &["a".into(), "b".into()], 5, dir)
}

fn requests(dir: &Path, phases: Vec<PhaseSpec>) -> Vec<RequestSpec> {
    let mut g = build(dir, phases).unwrap();
    let v: Vec<_> = std::iter::from_fn(|| g.pop()).collect();
    assert!(g.error().is_none());
    v
}

fn write_all(dir: &Path) {
    for (name, text) in [
        ("azure.csv", azure()),
        ("trace.jsonl", mooncake()),
        ("burst.csv", burstgpt()),
        ("generic.csv", generic()),
        ("requests.csv", run_dir()),
    ] {
        fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn every_format_replays_the_same_rows_to_the_same_requests() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path());
    let get = |name: &str, models: ReplayModels| {
        requests(dir.path(), vec![trace_phase(name, 2.0, opts(|o| o.models = models))])
    };
    let times: Vec<u64> = ROWS.iter().map(|r| SimDuration::from_secs_f64(r.0 / 2.0).0).collect();
    let with_models = get("generic.csv", ReplayModels::Trace);
    assert_eq!(with_models.iter().map(|r| r.arrival.0).collect::<Vec<_>>(), times);
    let models: Vec<u32> = with_models.iter().map(|r| r.model.0).collect();
    assert_eq!(models, vec![0, 1, 0, 1], "the model column, mapped to scenario keys");
    let lengths: Vec<(u32, u32)> = with_models.iter().map(|r| (r.num_prompt_tokens, r.max_tokens)).collect();
    assert_eq!(lengths, ROWS.iter().map(|r| (r.2, r.3)).collect::<Vec<_>>());
    for name in ["burst.csv", "requests.csv", "."] {
        let mut got = get(name, ReplayModels::Trace);
        got.iter_mut().for_each(|r| r.content = PromptContent::trace_blocks(&[], 4, 1));
        let mut want = with_models.clone();
        want.iter_mut().for_each(|r| r.content = PromptContent::Unique);
        assert_eq!(got, want, "{name}: same stream (no block ids in this format)");
    }
    // Formats without models take them from the mix, which draws the same for each.
    let mixed = get("generic.csv", ReplayModels::Mix);
    assert_eq!(
        get("trace.jsonl", ReplayModels::Auto),
        mixed,
        "Mooncake and the generic CSV agree, blocks too"
    );
    let unique = |mut v: Vec<RequestSpec>| {
        v.iter_mut().for_each(|r| r.content = PromptContent::Unique);
        v
    };
    assert_eq!(get("azure.csv", ReplayModels::Auto), unique(mixed.clone()));
    assert_eq!(get("burst.csv", ReplayModels::Mix), unique(mixed));
}

#[test]
fn block_ids_become_shared_content_at_the_engine_block_size() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path());
    let reqs = requests(dir.path(), vec![trace_phase("trace.jsonl", 1.0, opts(|_| {}))]);
    let hashes: Vec<Vec<u64>> = reqs.iter().map(|r| r.content.block_hashes(2).collect()).collect();
    assert_eq!(reqs[0].content.num_shared_tokens(), 10, "4 + 4 + the 2-token tail");
    assert_eq!(hashes[0].len(), 5);
    assert_eq!(hashes[1][..], hashes[0][..4], "8 tokens of blocks 1, 2: 4 engine blocks shared");
    assert_eq!(hashes[2][..2], hashes[0][..2], "trace block 1 shared");
    assert!(hashes[2][2..].iter().all(|h| !hashes[0].contains(h)), "trace block 4 is not 2: no more");
    assert!(hashes[3].iter().all(|h| !hashes[0].contains(h)));
}

#[test]
fn a_window_selects_source_time_and_every_speedup_replays_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path());
    let windowed = |speedup: f64, start: f64, duration: f64| {
        let o = opts(|o| o.start_s = start);
        let p = PhaseSpec { duration_s: Some(duration), ..trace_phase("generic.csv", speedup, o) };
        let then = PhaseSpec { num_requests: Some(1), ..phase(ArrivalSpec::Constant { rate: 1.0 }) };
        requests(dir.path(), vec![p, then])
    };
    let base = windowed(1.0, 0.5, 2.0);
    assert_eq!(base.iter().map(|r| r.num_prompt_tokens).collect::<Vec<_>>(), vec![8, 12, 100]);
    assert_eq!(
        arrivals(&base),
        vec![0.0, 1.75, 3.0],
        "offsets from the window start; next phase at its end + 1 s"
    );
    for speedup in [0.5, 2.0, 4.0, 10.0] {
        let fast = windowed(speedup, 0.5, 2.0);
        let strip = |v: &[RequestSpec]| -> Vec<(u32, u32, PromptContent)> {
            v.iter().map(|r| (r.num_prompt_tokens, r.max_tokens, r.content.clone())).collect()
        };
        assert_eq!(strip(&fast), strip(&base), "speedup {speedup}: the same requests");
        assert!((secs(fast[1].arrival) - 1.75 / speedup).abs() < 1e-9);
        assert!((secs(fast[2].arrival) - (2.0 / speedup + 1.0)).abs() < 1e-9);
    }
    let g = build(
        dir.path(),
        vec![trace_phase("generic.csv", 1.0, opts(|o| (o.start_s, o.end_s) = (0.5, Some(2.5))))],
    )
    .unwrap();
    let stats = g.replay_stats();
    assert_eq!(stats.len(), 1);
    let s: &ReplayStats = &stats[0].1;
    assert_eq!((s.format, s.rows_read, s.outside_window, s.sent), (TraceFormat::Csv, 4, 2, 2));
    assert!(s.to_string().contains("4 rows read, 2 skipped (outside the window), 2 sent"), "{s}");
}

#[test]
fn rate_scale_thins_or_superposes_shifted_copies_keeping_lengths() {
    let dir = tempfile::tempdir().unwrap();
    // 200 rows, one every 0.1 s, lengths 1..=200.
    let mut text = "time_s,input_tokens,output_tokens\n".to_string();
    for i in 0..200 {
        text += &format!("{},{},1\n", f64::from(i) * 0.1, i + 1);
    }
    fs::write(dir.path().join("t.csv"), text).unwrap();
    let scaled = |factor: f64| {
        let o = opts(|o| (o.rate_scale, o.end_s) = (factor, Some(20.0)));
        requests(dir.path(), vec![trace_phase("t.csv", 1.0, o)])
    };
    let lengths = |v: &[RequestSpec]| -> Vec<u32> {
        let mut l: Vec<u32> = v.iter().map(|r| r.num_prompt_tokens).collect();
        l.sort_unstable();
        l
    };
    let base = scaled(1.0);
    assert_eq!(base.len(), 200);
    let double = scaled(2.0);
    let mut twice: Vec<u32> = (1..=200).flat_map(|n| [n, n]).collect();
    twice.sort_unstable();
    assert_eq!(lengths(&double), twice, "two copies of every row");
    assert!(double.windows(2).all(|w| w[0].arrival <= w[1].arrival), "in time order");
    assert!(double.iter().all(|r| secs(r.arrival) < 20.0), "copies wrap inside the window");
    // The second copy is shifted by half the window: row k's copy arrives at (0.1 k + 10) mod 20.
    let n101: Vec<f64> =
        double.iter().filter(|r| r.num_prompt_tokens == 101).map(|r| secs(r.arrival)).collect();
    assert_eq!(n101.len(), 2);
    assert!((n101[0] - 0.0).abs() < 1e-6 && (n101[1] - 10.0).abs() < 1e-6, "{n101:?}");
    let half = scaled(0.5);
    assert!((60..=140).contains(&half.len()), "about half kept: {}", half.len());
    let kept = lengths(&half);
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "thinning keeps a subset of the rows");
    assert_eq!(scaled(0.5), half, "thinning is deterministic from the seed");
}

#[test]
fn trace_models_map_through_model_map_and_unknown_ones_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
                0,ChatGPT,5,1,6,x\n1,GPT-4,5,1,6,x\n";
    fs::write(dir.path().join("b.csv"), text).unwrap();
    let map = |pairs: &[(&str, &str)]| {
        opts(|o| o.model_map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    };
    let reqs =
        requests(dir.path(), vec![trace_phase("b.csv", 1.0, map(&[("ChatGPT", "b"), ("GPT-4", "a")]))]);
    assert_eq!(reqs.iter().map(|r| r.model.0).collect::<Vec<_>>(), vec![1, 0]);
    let e =
        build(dir.path(), vec![trace_phase("b.csv", 1.0, map(&[("ChatGPT", "b")]))]).unwrap_err().to_string();
    assert!(e.contains("b.csv:3: model \"GPT-4\" is not in this scenario") && e.contains("model_map"), "{e}");
    let bad_map = map(&[("ChatGPT", "c"), ("GPT-4", "a")]);
    let e = build(dir.path(), vec![trace_phase("b.csv", 1.0, bad_map)]).unwrap_err().to_string();
    assert!(e.contains("b.csv:2: model_map maps model \"ChatGPT\" to \"c\", which is not a model"), "{e}");
    let e =
        build(dir.path(), vec![trace_phase("b.csv", 1.0, opts(|o| o.format = Some(TraceFormat::Mooncake)))])
            .unwrap_err()
            .to_string();
    assert!(e.contains("b.csv:1: column 1:"), "a named format is read as such: {e}");
}

#[test]
fn reader_errors_name_the_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "m.jsonl",
            "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1, \"input_length\": -5}\n",
            "m.jsonl:2: column 35:",
        ),
        (
            "n.jsonl",
            "{\"timestamp\": -1, \"input_length\": 5, \"output_length\": 1}\n",
            "n.jsonl:1: timestamp -1",
        ),
        (
            "b.csv",
            "Timestamp,Model,Request tokens,Response tokens\n0,a,x,1\n",
            "b.csv:2: column 3 (Request tokens): \"x\"",
        ),
        (
            "g.csv",
            "time_s,input_tokens,output_tokens,block_ids\n0,5,1,1 z\n",
            "g.csv:2: column 4 (block_ids): \"z\"",
        ),
        ("h.csv", "time_s,input_tokens,output_tokens\n-1,5,1\n", "h.csv:2: column 1 (time_s): \"-1\""),
        ("r.csv", "id,model,scheduled_s,prompt_tokens,max_tokens\nq,a,0,1,1\n", "r.csv:2: column 1 (id)"),
        (
            "s.jsonl",
            "{\"timestamp\": 5, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1, \"input_length\": 5, \"output_length\": 1}\n",
            "s.jsonl:2: its time is earlier",
        ),
    ];
    for (name, text, want) in cases {
        fs::write(dir.path().join(name), text).unwrap();
        let e = build(dir.path(), vec![trace_phase(name, 1.0, opts(|_| {}))]).unwrap_err().to_string();
        assert!(e.contains(want), "{e} should contain {want:?}");
    }
}

#[test]
fn bad_replay_options_are_rejected_by_the_workload_too() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path());
    let bad = [
        (opts(|o| o.start_s = -1.0), "start_s"),
        (opts(|o| o.end_s = Some(0.0)), "end_s"),
        (opts(|o| o.rate_scale = 0.0), "rate_scale"),
        (opts(|o| o.rate_scale = f64::NAN), "rate_scale"),
        (opts(|o| o.block_size = 0), "block_size"),
        (opts(|o| o.models = ReplayModels::Trace), "no model column"),
        (opts(|o| o.format = Some(TraceFormat::RunDir)), "no id column"),
    ];
    for (o, want) in bad {
        let e = build(dir.path(), vec![trace_phase("azure.csv", 1.0, o)]).unwrap_err().to_string();
        assert!(e.contains(want), "{e} should contain {want:?}");
    }
    let both =
        PhaseSpec { duration_s: Some(1.0), ..trace_phase("azure.csv", 1.0, opts(|o| o.end_s = Some(2.0))) };
    assert!(build(dir.path(), vec![both]).unwrap_err().to_string().contains("not both"));
    let dir_as_azure = trace_phase(".", 1.0, opts(|o| o.format = Some(TraceFormat::Azure)));
    let e = build(dir.path(), vec![dir_as_azure]).unwrap_err().to_string();
    assert!(e.contains("format = \"azure\" but this is a directory"), "{e}");
    let mut w = workload(vec![trace_phase("azure.csv", 1.0, opts(|_| {}))]);
    w.prefix = PrefixSpec { tokens: 64, groups: 1, fraction: 1.0 };
    let e = WorkloadGenerator::new(&w, 2, 0, dir.path()).unwrap_err().to_string();
    assert!(e.contains("never added to replayed rows"), "{e}");
}

#[test]
fn a_window_holding_no_row_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path());
    let e = build(dir.path(), vec![trace_phase("generic.csv", 1.0, opts(|o| o.start_s = 60.0))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("generic.csv: none of its 4 rows is inside the replay window (start_s = 60"), "{e}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Superposing k copies sends every row of the window exactly k times, inside the window
        /// and in time order; and a speedup changes the spacing, never the rows.
        #[test]
        fn whole_rate_scales_send_every_row_k_times_and_speedups_keep_the_rows(
            gaps in proptest::collection::vec(0u32..5_000, 1..40),
            k in 1u32..5,
            speedup in 0.1f64..20.0,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut text = "time_s,input_tokens,output_tokens\n".to_string();
            let mut t = 0u64;
            for (i, g) in gaps.iter().enumerate() {
                t += u64::from(*g);
                text += &format!("{},{},1\n", t as f64 / 1000.0, i + 1);
            }
            fs::write(dir.path().join("t.csv"), text).unwrap();
            let window = t as f64 / 1000.0 + 1.0;
            let run = |scale: f64, speedup: f64| {
                let o = opts(|o| (o.rate_scale, o.end_s) = (scale, Some(window)));
                requests(dir.path(), vec![trace_phase("t.csv", speedup, o)])
            };
            let one = run(1.0, 1.0);
            prop_assert_eq!(one.len(), gaps.len());
            let many = run(f64::from(k), 1.0);
            let mut got: Vec<u32> = many.iter().map(|r| r.num_prompt_tokens).collect();
            got.sort_unstable();
            let mut want: Vec<u32> = (1..=gaps.len() as u32).flat_map(|n| vec![n; k as usize]).collect();
            want.sort_unstable();
            prop_assert_eq!(got, want);
            prop_assert!(many.windows(2).all(|w| w[0].arrival <= w[1].arrival));
            prop_assert!(many.iter().all(|r| secs(r.arrival) < window + 1e-6));
            let fast = run(1.0, speedup);
            let rows = |v: &[RequestSpec]| v.iter().map(|r| r.num_prompt_tokens).collect::<Vec<_>>();
            prop_assert_eq!(rows(&fast), rows(&one));
        }
    }
}
