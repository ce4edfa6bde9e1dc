use super::*;
use crate::trace::{RequestRow, RequestStatus};
use crate::workload::WorkloadError;
use std::fs;

const AZURE: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\r\n\
2023-11-16 18:15:46.6805900,374,44\r\n\
2023-11-16 18:15:50.9951690,396,109\r\n\
2023-11-16 18:15:51.2224670,879,55\r\n\
2023-11-16 18:15:51.2224670,0,0\r\n\
2023-11-16 18:16:01.0000000,91,16\r\n";

fn replay(path: &str, speedup: f64) -> ArrivalSpec {
    ArrivalSpec::Replay { path: path.into(), speedup, options: Default::default() }
}

fn replay_phase(path: &str, speedup: f64, mix: Vec<(ModelId, f64)>) -> PhaseSpec {
    PhaseSpec { mix, ..phase(replay(path, speedup)) }
}

fn build(w: &WorkloadSpec, keys: &[&str], dir: &Path) -> Result<WorkloadGenerator, WorkloadError> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    WorkloadGenerator::with_model_keys(w, &keys, 3, dir)
}

fn all(mut g: WorkloadGenerator) -> Vec<RequestSpec> {
    let v: Vec<_> = std::iter::from_fn(|| g.pop()).collect();
    assert!(g.error().is_none());
    v
}

#[test]
fn an_azure_trace_replays_its_gaps_divided_by_the_speedup_and_its_lengths() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("azure.csv"), AZURE).unwrap();
    let w = workload(vec![replay_phase("azure.csv", 2.0, vec![(ModelId(1), 1.0)])]);
    let g = build(&w, &["a", "b"], dir.path()).unwrap();
    assert_eq!(g.planned_requests(), Some(5));
    let reqs = all(g);
    let t: Vec<u64> = reqs.iter().map(|r| r.arrival.0).collect();
    assert_eq!(t, vec![0, 2_157_289_500, 2_270_938_500, 2_270_938_500, 7_159_705_000]);
    let lengths: Vec<(u32, u32)> = reqs.iter().map(|r| (r.num_prompt_tokens, r.max_tokens)).collect();
    assert_eq!(lengths, vec![(374, 44), (396, 109), (879, 55), (1, 1), (91, 16)], "zero lengths become 1");
    assert!(reqs.iter().all(|r| r.model == ModelId(1)), "the mix picks the model");
}

#[test]
fn an_azure_replay_honours_count_and_time_bounds_and_the_next_phase_follows() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("azure.csv"), AZURE).unwrap();
    let mix = vec![(ModelId(0), 1.0)];
    let by_count = PhaseSpec { num_requests: Some(2), ..replay_phase("azure.csv", 1.0, mix.clone()) };
    let by_time = PhaseSpec { duration_s: Some(5.0), ..replay_phase("azure.csv", 1.0, mix) };
    let then = counted(ArrivalSpec::Constant { rate: 1.0 }, 1);
    let reqs = all(build(&workload(vec![by_count, then.clone()]), &["a"], dir.path()).unwrap());
    assert_eq!(arrivals(&reqs), vec![0.0, 4.314579, 5.314579]);
    let g = build(&workload(vec![by_time, then]), &["a"], dir.path()).unwrap();
    assert_eq!(g.planned_requests(), Some(5), "4 rows within 5 s, then 1");
    let reqs = all(g);
    assert_eq!(arrivals(&reqs), vec![0.0, 4.314579, 4.541877, 4.541877, 6.0]);
}

#[test]
fn azure_replay_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unsorted.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:50.0,1,1\n2023-11-16 18:15:49.0,1,1\n",
            "unsorted.csv:3: its time is earlier than the row before (line 2)",
        ),
        (
            "tokens.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:50.0,12x,1\n",
            "tokens.csv:2: column 2 (ContextTokens): \"12x\"",
        ),
        (
            "stamp.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n16/11/2023,1,1\n",
            "stamp.csv:2: column 1 (TIMESTAMP): \"16/11/2023\"",
        ),
        ("empty.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "empty.csv: no request rows"),
        ("other.csv", "a,b\n1,2\n", "other.csv: not a replay file"),
    ];
    for (name, text, want) in cases {
        fs::write(dir.path().join(name), text).unwrap();
        let w = workload(vec![replay_phase(name, 1.0, vec![(ModelId(0), 1.0)])]);
        let e = build(&w, &["a"], dir.path()).unwrap_err().to_string();
        assert!(e.contains(want), "{e} should contain {want:?}");
    }
    let w = workload(vec![replay_phase("missing.csv", 1.0, vec![(ModelId(0), 1.0)])]);
    let e = build(&w, &["a"], dir.path()).unwrap_err();
    assert!(matches!(&e, WorkloadError::Io { path, .. } if path.ends_with("missing.csv")), "{e}");
}

#[test]
fn an_azure_replay_without_a_mix_or_with_a_bad_speedup_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("azure.csv"), AZURE).unwrap();
    let e = build(&workload(vec![replay_phase("azure.csv", 1.0, vec![])]), &["a"], dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs a model mix"), "{e}");
    let e =
        build(&workload(vec![replay_phase("azure.csv", 0.0, vec![(ModelId(0), 1.0)])]), &["a"], dir.path())
            .unwrap_err();
    assert!(e.to_string().contains("speedup must be"), "{e}");
}

fn row(id: u64, model: &str, scheduled_s: f64, prompt_tokens: u32, max_tokens: u32) -> RequestRow {
    RequestRow {
        id,
        model: model.into(),
        instance: "i0".into(),
        phase: 0,
        scheduled_s,
        send_s: scheduled_s,
        first_token_s: Some(scheduled_s + 0.1),
        end_s: Some(scheduled_s + 1.0),
        prompt_tokens,
        output_tokens: max_tokens,
        max_tokens,
        cached_tokens: None,
        preemptions: None,
        status: RequestStatus::Ok,
        error: String::new(),
        ttft_s: Some(0.1),
        e2e_s: Some(1.0),
        tpot_s: None,
        itl_mean_s: None,
        itl_max_s: None,
    }
}

fn write_run_dir(dir: &Path, rows: &[RequestRow]) {
    fs::create_dir_all(dir).unwrap();
    let mut w = csv::Writer::from_path(dir.join("requests.csv")).unwrap();
    for r in rows {
        w.serialize(r).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn a_run_dir_replays_in_issue_order_with_its_models_and_lengths() {
    let dir = tempfile::tempdir().unwrap();
    // Rows in completion order, as a run writes them.
    let rows = [
        row(2, "qwen", 11.5, 30, 3),
        row(0, "llama", 10.0, 10, 1),
        row(1, "llama", 10.0, 20, 2),
        row(3, "qwen", 13.0, 40, 4),
    ];
    write_run_dir(&dir.path().join("run"), &rows);
    let w = workload(vec![PhaseSpec { mix: vec![], ..phase(replay("run", 0.5)) }]);
    let g = build(&w, &["llama", "qwen"], dir.path()).unwrap();
    let reqs = all(g);
    let got: Vec<(f64, u32, u32)> =
        reqs.iter().map(|r| (secs(r.arrival), r.model.0, r.num_prompt_tokens)).collect();
    assert_eq!(got, vec![(0.0, 0, 10), (0.0, 0, 20), (3.0, 1, 30), (6.0, 1, 40)]);
    assert_eq!(reqs.iter().map(|r| r.max_tokens).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    // The requests.csv file itself works as well as its run dir.
    let file = workload(vec![PhaseSpec { mix: vec![], ..phase(replay("run/requests.csv", 0.5)) }]);
    assert_eq!(all(build(&file, &["llama", "qwen"], dir.path()).unwrap()), reqs);
}

#[test]
fn a_run_dir_naming_a_model_the_scenario_lacks_is_rejected_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write_run_dir(dir.path(), &[row(0, "llama", 0.0, 1, 1), row(1, "mistral", 1.0, 1, 1)]);
    let w = workload(vec![phase(replay(".", 1.0))]);
    let e = build(&w, &["llama"], dir.path()).unwrap_err().to_string();
    assert!(e.contains("requests.csv:3: model \"mistral\" is not in this scenario"), "{e}");
}
