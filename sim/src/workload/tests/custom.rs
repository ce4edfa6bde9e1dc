use super::*;
use crate::workload::{WorkloadError, load_empirical_column, phase_from_custom_json};
use std::fs;

fn served() -> Vec<String> {
    vec!["meta-llama/Llama-3.1-8B-Instruct".into(), "Qwen/Qwen2.5-7B-Instruct".into()]
}

#[test]
fn the_seeds_custom_workload_json_becomes_a_closed_loop_phase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.json");
    let json = r#"{
        "models": ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"],
        "prompts": ["Your custom prompts here", "Hi", "", "Explain KV caching in one paragraph please."],
        "max_tokens_range": [128, 512],
        "temperature_range": [0.7, 1.0]
    }"#;
    fs::write(&path, json).unwrap();
    let p = phase_from_custom_json(&path, &served(), 200, Some(20)).unwrap();
    assert_eq!(p.name, "custom");
    assert_eq!((p.num_requests, p.duration_s), (Some(200), None));
    assert_eq!(p.arrival, ArrivalSpec::closed_loop(20));
    assert_eq!(p.mix, vec![(ModelId(1), 1.0), (ModelId(0), 1.0)]);
    let LengthDist::Empirical { values, .. } = &p.input_tokens else { panic!("{:?}", p.input_tokens) };
    assert_eq!(values, &vec![6, 1, 1, 11], "characters / 4 rounded up, at least 1");
    assert_eq!(p.output_tokens, LengthDist::Uniform { min: 128, max: 512 });
    // The phase runs.
    let mut g = generator(&workload(vec![p]), 2, 1);
    let reqs = drive(&mut g, |_| SimDuration::from_secs_f64(1.0));
    assert_eq!(reqs.len(), 200);
    assert!(
        reqs.iter()
            .all(|(r, _)| (128..=512).contains(&r.max_tokens) && [6, 1, 11].contains(&r.num_prompt_tokens))
    );
}

#[test]
fn custom_workload_errors_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.json");
    let cases = [
        (
            r#"{"models": ["gpt-4"], "prompts": ["x"], "max_tokens_range": [1, 2]}"#,
            Some(4),
            "model \"gpt-4\" is not served",
        ),
        (
            r#"{"models": ["Qwen/Qwen2.5-7B-Instruct"], "prompts": ["x"], "max_tokens_range": [1, 2]}"#,
            None,
            "pass a concurrency",
        ),
        (
            r#"{"models": ["Qwen/Qwen2.5-7B-Instruct"], "prompts": [], "max_tokens_range": [1, 2]}"#,
            Some(4),
            "\"prompts\" is empty",
        ),
        (
            r#"{"models": ["Qwen/Qwen2.5-7B-Instruct"], "prompts": ["x"], "max_tokens_range": [9, 2]}"#,
            Some(4),
            "1 <= lo <= hi",
        ),
        (
            r#"{"models": ["Qwen/Qwen2.5-7B-Instruct"], "prompts": ["x"], "max_tokens_range": "big"}"#,
            Some(4),
            "max_tokens_range",
        ),
    ];
    for (json, conc, want) in cases {
        fs::write(&path, json).unwrap();
        let e = phase_from_custom_json(&path, &served(), 10, conc).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(e.contains(want), "{e} should contain {want:?}");
    }
    let e = phase_from_custom_json(&dir.path().join("nope.json"), &served(), 10, Some(1)).unwrap_err();
    assert!(matches!(e, WorkloadError::Io { .. }), "{e}");
}

#[test]
fn an_empirical_column_is_read_with_errors_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lens.csv");
    fs::write(&path, "id,prompt_len\n0,12\n1,300.0\n2, 7 \n").unwrap();
    assert_eq!(load_empirical_column(&path, "prompt_len").unwrap(), vec![12, 300, 7]);
    let e = load_empirical_column(&path, "output_len").unwrap_err().to_string();
    assert!(e.contains("no column \"output_len\"") && e.contains("prompt_len"), "{e}");
    fs::write(&path, "id,prompt_len\n0,12\n1,-3\n").unwrap();
    let e = load_empirical_column(&path, "prompt_len").unwrap_err().to_string();
    assert!(e.contains("lens.csv:3: prompt_len \"-3\""), "{e}");
    fs::write(&path, "id,prompt_len\n").unwrap();
    assert!(load_empirical_column(&path, "prompt_len").unwrap_err().to_string().contains("no values"));
}
