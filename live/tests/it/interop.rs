//! Interop with genai-perf and aiperf: a live run's exports parse the way those tools parse them,
//! and `import` turns them (and a real aiperf 0.13.0 export, `tests/fixtures/aiperf-0.13.0`) back
//! into run dirs with the same requests and chunk times.

use crate::loadgen::{opts, req, scenario};
use crate::mock::Mock;
use crate::tool_parsers::{aiperf_validate_aggregate, aiperf_validate_record, genai_perf_parse};
use live::export::aiperf::{
    PROFILE_EXPORT_AIPERF_CSV, PROFILE_EXPORT_AIPERF_JSON, PROFILE_EXPORT_JSONL, STAT_KEYS,
};
use live::export::genai_perf::PROFILE_EXPORT_JSON;
use live::import::{ImportFormat, ImportOptions, ImportedLoad, import_export};
use live::loadgen::FixedSchedule;
use live::run::{Target, live_run_with_source};
use sim::scenario::{ArrivalSpec, RouterPolicy, Scenario};
use sim::trace::{RequestRow, RequestStatus, Source, TokenRow, read_run_dir};
use std::path::Path;

fn tokens(dir: &Path) -> Vec<TokenRow> {
    let mut r = csv::Reader::from_path(dir.join("tokens.csv")).unwrap();
    r.deserialize().collect::<Result<_, _>>().unwrap()
}

/// What a run dir says of one request, with times shifted so the first send is 0 (imports
/// start at the first send).
#[derive(Clone, Debug)]
struct Seen {
    id: u64,
    model: String,
    prompt_tokens: u32,
    output_tokens: u32,
    chunks: Vec<f64>,
    /// Send, first token, end.
    times: [Option<f64>; 3],
}

fn shifted(rows: &[RequestRow], toks: &[TokenRow]) -> Vec<Seen> {
    let t0 = rows.iter().map(|r| r.send_s).fold(f64::INFINITY, f64::min);
    let mut out: Vec<Seen> = rows
        .iter()
        .map(|r| Seen {
            id: r.id,
            model: r.model.clone(),
            prompt_tokens: r.prompt_tokens,
            output_tokens: r.output_tokens,
            chunks: toks.iter().filter(|t| t.id == r.id).map(|t| t.time_s - t0).collect(),
            times: [Some(r.send_s - t0), r.first_token_s.map(|t| t - t0), r.end_s.map(|t| t - t0)],
        })
        .collect();
    out.sort_by_key(|x| x.id);
    out
}

fn assert_same(a: &[Seen], b: &[Seen]) {
    assert_eq!(a.len(), b.len());
    let close = |x: f64, y: f64| (x - y).abs() < 2e-9;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.id, &x.model, x.prompt_tokens, x.output_tokens),
            (y.id, &y.model, y.prompt_tokens, y.output_tokens),
            "request {}",
            x.id
        );
        assert_eq!(x.chunks.len(), y.chunks.len(), "chunks of request {}", x.id);
        assert!(
            x.chunks.iter().zip(&y.chunks).all(|(p, q)| close(*p, *q)),
            "chunk times of {}: {:?} vs {:?}",
            x.id,
            x.chunks,
            y.chunks
        );
        for (p, q) in x.times.iter().zip(&y.times) {
            let same = match (p, q) {
                (Some(p), Some(q)) => close(*p, *q),
                (p, q) => p.is_none() && q.is_none(),
            };
            assert!(same, "{x:?} vs {y:?}");
        }
    }
}

fn import_opts() -> ImportOptions {
    ImportOptions::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_exports_parse_like_the_tools_and_import_back_to_the_same_requests() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sc = scenario(&["ok", "err500"], vec![], RouterPolicy::RoundRobin, 60.0);
    // A replay: the genai-perf export must say the rate it was sent at, not 0.0.
    sc.workload.phases[0].arrival =
        ArrivalSpec::Replay { path: "trace.csv".into(), speedup: 1.0, options: Default::default() };
    let mut source = FixedSchedule::new(vec![
        req(0, 0, 0, 3),
        req(1, 20, 0, 5),
        req(2, 40, 1, 4),
        req(3, 60, 0, 1),
        req(4, 80, 0, 6),
    ]);
    let mut o = opts(Target::Lb(mock.url()), dir.path());
    o.tokens_csv = Some(true);
    o.genai_perf_export = true;
    o.aiperf_export = true;
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    assert_eq!((report.load.ok, report.load.failed), (4, 1));
    let run = read_run_dir(dir.path()).unwrap();
    let ok_rows: Vec<RequestRow> =
        run.requests.iter().filter(|r| r.status == RequestStatus::Ok).cloned().collect();
    let toks = tokens(dir.path());

    // genai-perf reads it: prompts are strings, one word per prompt token, TTFT and latency as ours.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(PROFILE_EXPORT_JSON)).unwrap())
            .unwrap();
    let parsed = genai_perf_parse(&doc).expect("genai-perf parses the export");
    let ((mode, value), reqs) = &parsed[0];
    assert_eq!(mode, "request_rate");
    assert!(value.parse::<f64>().unwrap() > 0.0, "replay labelled with its rate, got {value}");
    assert_eq!(reqs.len(), ok_rows.len());
    // Requests appear in completion order; match them to rows by send time.
    let (ts0, row0) = (
        reqs.iter().map(|q| q.timestamp).min().unwrap(),
        ok_rows.iter().map(|q| q.send_s).fold(f64::INFINITY, f64::min),
    );
    for r in reqs {
        let send = row0 + (r.timestamp - ts0) as f64 / 1e9;
        let row = ok_rows.iter().find(|x| (x.send_s - send).abs() < 1e-6).unwrap();
        assert_eq!(r.input_words, row.prompt_tokens as usize, "genai-perf's input length");
        assert_eq!(r.output_chunks.len(), row.output_tokens as usize);
        assert!((r.ttft as f64 / 1e9 - row.ttft_s.unwrap()).abs() < 1e-6);
    }

    // aiperf reads it: every line validates, the aggregate JSON and CSV have aiperf's shape.
    let jsonl = std::fs::read_to_string(dir.path().join(PROFILE_EXPORT_JSONL)).unwrap();
    let records: Vec<serde_json::Value> = jsonl.lines().map(|l| aiperf_validate_record(l).unwrap()).collect();
    assert_eq!(records.len(), 5, "failed requests are error records");
    assert_eq!(records.iter().filter(|r| !r["error"].is_null()).count(), 1);
    let agg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(PROFILE_EXPORT_AIPERF_JSON)).unwrap())
            .unwrap();
    aiperf_validate_aggregate(&agg).unwrap();
    assert_eq!(agg["request_count"]["avg"], 4.0);
    assert_eq!(agg["error_request_count"]["avg"], 1.0);
    let p50 = agg["time_to_first_token"]["p50"].as_f64().unwrap();
    let mut ttfts: Vec<f64> = ok_rows.iter().map(|r| r.ttft_s.unwrap() * 1e3).collect();
    ttfts.sort_by(f64::total_cmp);
    assert!((p50 - sim::metrics::percentile(&ttfts, 50.0).unwrap()).abs() < 1e-6);
    let csv = std::fs::read_to_string(dir.path().join(PROFILE_EXPORT_AIPERF_CSV)).unwrap();
    let mut lines = csv.split("\r\n");
    assert_eq!(lines.next().unwrap(), format!("Metric,{}", STAT_KEYS.join(",")));
    assert!(csv.contains("\r\n\r\nMetric,Value\r\n") && csv.contains("\r\nRequest Count,4.00\r\n"), "{csv}");

    let expected = shifted(&ok_rows, &toks);
    // genai-perf export -> run dir: same ok requests, lengths and chunk times.
    let gp_dir = dir.path().join("from-genai-perf");
    let rep = import_export(&dir.path().join(PROFILE_EXPORT_JSON), &sc, &gp_dir, &import_opts()).unwrap();
    assert_eq!((rep.format, rep.requests), (ImportFormat::GenaiPerf, 4));
    assert!(matches!(rep.load, ImportedLoad::RequestRate(r) if r > 0.0));
    let imported = read_run_dir(&gp_dir).unwrap();
    assert_eq!(imported.meta.source, Source::Live);
    assert_same(&shifted(&imported.requests, &tokens(&gp_dir)), &expected);

    // aiperf export -> run dir: same requests (the failed one too), lengths and chunk times.
    let ai_dir = dir.path().join("from-aiperf");
    let rep = import_export(&dir.path().join(PROFILE_EXPORT_JSONL), &sc, &ai_dir, &import_opts()).unwrap();
    assert_eq!((rep.format, rep.requests), (ImportFormat::Aiperf, 5));
    assert!(matches!(rep.load, ImportedLoad::RequestRate(r) if r > 0.0));
    let imported = read_run_dir(&ai_dir).unwrap();
    assert_eq!(imported.requests.iter().filter(|r| r.status == RequestStatus::Error).count(), 1);
    // session_num is our request id, the model rides in our extra field. The failed request was
    // not the first sent, so both imports start at the same send.
    let ok: Vec<RequestRow> =
        imported.requests.iter().filter(|r| r.status == RequestStatus::Ok).cloned().collect();
    assert_same(&shifted(&ok, &tokens(&ai_dir)), &expected);
    let key = |r: &RequestRow| (r.id, r.model.clone(), r.max_tokens, r.status);
    let (mut a, mut b): (Vec<_>, Vec<_>) =
        (imported.requests.iter().map(key).collect(), run.requests.iter().map(key).collect());
    a.sort_by_key(|x| x.0);
    b.sort_by_key(|x| x.0);
    assert_eq!(a, b, "every request, the failed one too, with its model and max_tokens");
}

pub(crate) fn aiperf_fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aiperf-0.13.0").join(PROFILE_EXPORT_JSONL)
}

pub(crate) fn llama_scenario() -> Scenario {
    let mut sc = scenario(
        &["llama"],
        vec![crate::loadgen::instance("llama-0", 0, 8001)],
        RouterPolicy::RoundRobin,
        60.0,
    );
    sc.models[0].served_name = "meta-llama/Llama-3.1-8B-Instruct".into();
    sc
}

#[test]
fn a_real_aiperf_export_imports_to_its_requests_and_chunk_times() {
    let src = aiperf_fixture();
    let text = std::fs::read_to_string(&src).unwrap();
    // Expected, straight from the records: start, start + TTFT + cumulative ICL, start + latency.
    let want: Vec<(u64, u64, Vec<u64>, u64, u32, u32)> = text
        .lines()
        .map(|l| {
            let v = aiperf_validate_record(l).unwrap();
            let m = &v["metrics"];
            let start = v["metadata"]["request_start_ns"].as_u64().unwrap();
            let ns = |x: &serde_json::Value| (x.as_f64().unwrap() * 1e6).round() as u64;
            let mut t = start + ns(&m["time_to_first_token"]["value"]);
            let mut chunks = vec![t];
            for g in m["inter_chunk_latency"]["value"].as_array().unwrap() {
                t += ns(g);
                chunks.push(t);
            }
            let prompt = m["usage_prompt_tokens"]["value"].as_u64().unwrap() as u32;
            let out = m["usage_completion_tokens"]["value"].as_u64().unwrap() as u32;
            let id = v["metadata"]["session_num"].as_u64().unwrap();
            (id, start, chunks, start + ns(&m["request_latency"]["value"]), prompt, out)
        })
        .collect();
    let t0 = want.iter().map(|w| w.1).min().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sc = llama_scenario();
    let rep = import_export(&src, &sc, dir.path(), &import_opts()).unwrap();
    assert_eq!(
        (rep.format, rep.requests, rep.load),
        (ImportFormat::Aiperf, 10, ImportedLoad::Concurrency(2))
    );
    let run = read_run_dir(dir.path()).unwrap();
    let toks = tokens(dir.path());
    assert_eq!(run.requests.len(), want.len());
    let s = |ns: u64| (ns - t0) as f64 / 1e9;
    for (id, start, chunks, end, prompt, out) in &want {
        let r = run.requests.iter().find(|r| r.id == *id).unwrap();
        assert_eq!(
            (r.model.as_str(), r.instance.as_str(), r.status),
            ("llama", "llama-0", RequestStatus::Ok)
        );
        assert_eq!((r.prompt_tokens, r.output_tokens), (*prompt, *out));
        assert!((r.send_s - s(*start)).abs() < 1e-9 && (r.end_s.unwrap() - s(*end)).abs() < 1e-9);
        assert!((r.first_token_s.unwrap() - s(chunks[0])).abs() < 1e-9);
        let got: Vec<f64> = toks.iter().filter(|t| t.id == r.id).map(|t| t.time_s).collect();
        assert_eq!(got.len(), chunks.len());
        assert!(got.iter().zip(chunks).all(|(g, c)| (g - s(*c)).abs() < 1e-9), "request {id}");
    }
    assert_eq!(run.summary.overall.ok, 10);
}

#[test]
fn imports_name_the_file_line_and_field_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("profile_export.jsonl");
    let good = std::fs::read_to_string(aiperf_fixture()).unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(&bad, format!("{first}\n{}\n", first.replace("\"request_start_ns\"", "\"start\"")))
        .unwrap();
    let e = import_export(&bad, &llama_scenario(), &dir.path().join("out"), &import_opts())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("profile_export.jsonl") && e.contains("line 2") && e.contains("request_start_ns"),
        "{e}"
    );

    let two = scenario(&["a", "b"], vec![], RouterPolicy::RoundRobin, 60.0);
    let e = import_export(&aiperf_fixture(), &two, &dir.path().join("out2"), &import_opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--model"), "{e}");

    let other = dir.path().join("x.json");
    std::fs::write(&other, "{\"hello\": 1}").unwrap();
    let e = import_export(&other, &two, &dir.path().join("out3"), &import_opts()).unwrap_err().to_string();
    assert!(e.contains("x.json") && e.contains("--format"), "{e}");
}

#[test]
fn an_imported_run_dir_replays_through_the_simulators_workload_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let sc = llama_scenario();
    import_export(&aiperf_fixture(), &sc, dir.path(), &import_opts()).unwrap();
    let run = read_run_dir(dir.path()).unwrap();
    let mut replay = sc.clone();
    replay.workload.phases[0].arrival = ArrivalSpec::Replay {
        path: dir.path().display().to_string(),
        speedup: 1.0,
        options: Default::default(),
    };
    let keys: Vec<String> = replay.models.iter().map(|m| m.name.clone()).collect();
    let mut generator =
        sim::workload::WorkloadGenerator::with_model_keys(&replay.workload, &keys, replay.seed, dir.path())
            .unwrap();
    let mut stream = Vec::new();
    while let Some(spec) = generator.pop() {
        stream.push((spec.arrival.as_secs_f64(), spec.num_prompt_tokens, spec.max_tokens));
    }
    let mut want: Vec<(f64, u32, u32)> =
        run.requests.iter().map(|r| (r.send_s, r.prompt_tokens, r.max_tokens)).collect();
    want.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(stream.len(), want.len());
    for (g, w) in stream.iter().zip(&want) {
        assert!((g.0 - w.0).abs() < 1e-6 && (g.1, g.2) == (w.1, w.2), "{g:?} vs {w:?}");
    }
}
