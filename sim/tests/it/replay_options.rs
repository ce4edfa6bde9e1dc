//! Replay options in scenario files: each bad value is an error naming the field; lengths are
//! optional in a replay phase.

use super::scenario_errors::BASE;
use sim::scenario::{ArrivalSpec, ReplayModels, TraceFormat, parse_scenario};

/// BASE with its phase replaced by a replay of `trace.csv` with `extra` arrival keys, parsed in
/// a dir holding that trace.
fn replay(
    extra: &str,
    phase_extra: &str,
) -> Result<sim::scenario::ScenarioFile, sim::scenario::ScenarioError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trace.csv"), "TIMESTAMP,ContextTokens,GeneratedTokens\n").unwrap();
    let text = BASE
        .replace("duration_s = 10\n", phase_extra)
        .replace(
            "arrival = { process = \"poisson\", rate = 5.0 }",
            &format!("arrival = {{ process = \"replay\", path = \"trace.csv\"{extra} }}"),
        )
        .replace("input_tokens = { dist = \"fixed\", value = 100 }\n", "")
        .replace("output_tokens = { dist = \"fixed\", value = 10 }\n", "");
    parse_scenario(&text, &dir.path().join("s.toml"), &[])
}

#[track_caller]
fn fails(extra: &str, phase_extra: &str, field: &str, fragment: &str) {
    let e = replay(extra, phase_extra).expect_err("the scenario should be rejected");
    assert_eq!(e.field, field, "wrong field in: {e}");
    assert!(e.reason.contains(fragment), "reason lacks {fragment:?}: {e}");
}

const ARRIVAL: &str = "workload.phases[0].arrival";

#[test]
fn a_replay_phase_needs_no_length_distributions_and_takes_every_option() {
    let f = replay(
        ", format = \"azure\", start_s = 5, end_s = 65, rate_scale = 2.5, models = \"trace\", \
         model_map = { gpt = \"llama-3.1-8b\" }, block_size = 16, speedup = 2",
        "",
    )
    .unwrap();
    let ArrivalSpec::Replay { speedup, options, .. } = &f.variants[0].workload.phases[0].arrival else {
        panic!("not a replay")
    };
    assert_eq!(*speedup, 2.0);
    assert_eq!(options.format, Some(TraceFormat::Azure));
    assert_eq!((options.start_s, options.end_s, options.rate_scale), (5.0, Some(65.0), 2.5));
    assert_eq!((options.models, options.block_size), (ReplayModels::Trace, 16));
    assert_eq!(options.model_map.get("gpt").map(String::as_str), Some("llama-3.1-8b"));
}

#[test]
fn every_bad_replay_option_names_its_field() {
    let f = |n: &str| format!("{ARRIVAL}.{n}");
    fails(", start_s = -1", "", &f("start_s"), "seconds >= 0");
    fails(", start_s = nan", "", &f("start_s"), "seconds >= 0");
    fails(", start_s = 10, end_s = 10", "", &f("end_s"), "> start_s (10)");
    fails(", end_s = inf", "", &f("end_s"), "> start_s");
    fails(", end_s = 20", "duration_s = 10\n", "workload.phases[0].duration_s", "not both");
    fails(", rate_scale = 0", "", &f("rate_scale"), "rate_scale must be");
    fails(", rate_scale = -2", "", &f("rate_scale"), "rate_scale must be");
    fails(", rate_scale = 5000", "", &f("rate_scale"), "(0, 1000]");
    fails(", block_size = 0", "", &f("block_size"), "at least 1 token");
    fails(", models = \"mix\", model_map = { a = \"b\" }", "", &f("model_map"), "remove one");
    fails(", speedup = 0", "", &f("speedup"), "positive");
}

#[test]
fn unknown_formats_and_model_sources_are_named() {
    let e = replay(", format = \"parquet\"", "").unwrap_err();
    assert!(e.field.contains("format") || e.reason.contains("parquet"), "{e}");
    assert!(e.reason.contains("azure"), "lists the formats: {e}");
    let e = replay(", models = \"round_robin\"", "").unwrap_err();
    assert!(e.reason.contains("trace"), "lists the choices: {e}");
    let e = replay(", window = 3", "").unwrap_err();
    assert!(e.reason.contains("unknown field"), "{e}");
}

#[test]
fn a_load_multiplier_compresses_a_replay_window_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = "time_s,input_tokens,output_tokens\n".to_string();
    for i in 0..50 {
        text += &format!("{},{},1\n", f64::from(i) * 0.5, i + 1);
    }
    std::fs::write(dir.path().join("t.csv"), text).unwrap();
    let scenario = BASE.replace(
        "arrival = { process = \"poisson\", rate = 5.0 }",
        "arrival = { process = \"replay\", path = \"t.csv\", start_s = 2 }",
    );
    let f = parse_scenario(&scenario, &dir.path().join("s.toml"), &[]).unwrap();
    let base = f.variants[0].workload.clone();
    let rows = |w: &sim::scenario::WorkloadSpec| {
        sim::workload::open_loop_requests(w, 2, 1, dir.path())
            .unwrap()
            .into_iter()
            .map(|r| (r.num_prompt_tokens, r.arrival.as_secs_f64()))
            .collect::<Vec<_>>()
    };
    let at_1 = rows(&base);
    assert_eq!(
        at_1.iter().map(|r| r.0).collect::<Vec<_>>(),
        (5..=24).collect::<Vec<_>>(),
        "window [2, 12) s"
    );
    for s in [0.5, 2.0, 8.0] {
        let mut w = base.clone();
        sim::plan::scale_load(&mut w, s);
        assert_eq!(w.phases[0].duration_s, Some(10.0), "the window is source time");
        let scaled = rows(&w);
        assert_eq!(scaled.len(), at_1.len(), "load x{s}: the same rows");
        for (a, b) in scaled.iter().zip(&at_1) {
            assert_eq!(a.0, b.0);
            assert!((a.1 - b.1 / s).abs() < 1e-6, "load x{s}: {} vs {}", a.1, b.1 / s);
        }
    }
}
