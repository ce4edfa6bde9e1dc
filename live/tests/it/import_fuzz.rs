//! Hostile aiperf and genai-perf exports (issue 12 item 10): valid structure with extreme, negative,
//! fractional, non-finite and wrongly typed values, plus truncation and invalid UTF-8. `import`
//! returns a run dir or an error naming the file; it never panics. The longer run:
//! `PROPTEST_CASES=5000 cargo test -p live --test it import_fuzz`.

use crate::interop::{aiperf_fixture, llama_scenario};
use live::import::{ImportOptions, import_export};
use proptest::prelude::*;
use serde_json::Value;

const HOSTILE: &[&str] = &[
    "0",
    "-1",
    "1.5",
    "1e308",
    "-1e308",
    "18446744073709551615",
    "4294967296",
    "null",
    "true",
    "\"7\"",
    "[]",
    "[1e308,-1,0.5]",
    "{}",
    "{\"value\":1e308,\"unit\":\"sec\"}",
    "{\"value\":[],\"unit\":\"ns\"}",
    "{\"value\":1,\"unit\":\"fortnight\"}",
];

fn hostile(i: usize) -> Value {
    serde_json::from_str(HOSTILE[i % HOSTILE.len()]).unwrap()
}

/// Truncation and invalid bytes applied to the serialised text.
fn damage(mut bytes: Vec<u8>, cuts: &[(usize, u8)]) -> Vec<u8> {
    for &(at, kind) in cuts {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match kind % 3 {
            0 => bytes.truncate(at),
            1 => bytes.insert(at, 0xFF),
            _ => bytes.insert(at, b'\n'),
        }
    }
    bytes
}

/// Imports `bytes` written as `name`; any result but a panic is fine.
fn import(name: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join(name);
    std::fs::write(&src, bytes).unwrap();
    let _ = import_export(&src, &llama_scenario(), &dir.path().join("out"), &ImportOptions::default());
}

/// One edit of an object: the `key`-th key (in order) gets a hostile value.
fn set_nth(v: &mut Value, key: usize, value: Value) {
    if let Some(obj) = v.as_object_mut()
        && !obj.is_empty()
    {
        let k = obj.keys().nth(key % obj.len()).cloned().unwrap();
        obj.insert(k, value);
    }
}

fn genai_perf_doc(ts: Value, stamps: Value, outputs: Value, own: Value, payload: Value) -> Value {
    serde_json::json!({
        "experiments": [{
            "experiment": {"mode": "request_rate", "value": 1e308},
            "requests": [{
                "timestamp": ts,
                "response_timestamps": stamps,
                "response_outputs": outputs,
                "request_inputs": {"payload": payload},
                "modelsguard": own,
            }]
        }]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn hostile_aiperf_records_never_panic(
        edits in prop::collection::vec((0usize..3, 0usize..3, any::<usize>(), any::<usize>()), 1..6),
        cuts in prop::collection::vec((any::<usize>(), any::<u8>()), 0..2),
    ) {
        let text = std::fs::read_to_string(aiperf_fixture()).unwrap();
        let mut lines: Vec<Value> =
            text.lines().take(3).map(|l| serde_json::from_str(l).unwrap()).collect();
        for (line, part, key, value) in edits {
            let rec = &mut lines[line % 3];
            match part {
                0 => set_nth(&mut rec["metadata"], key, hostile(value)),
                1 => set_nth(&mut rec["metrics"], key, hostile(value)),
                _ => {
                    if let Some(m) = rec["metrics"].as_object_mut().and_then(|m| m.values_mut().nth(key % 20)) {
                        set_nth(m, value, hostile(key));
                    }
                }
            }
        }
        let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
        import("profile_export.jsonl", &damage(text.into_bytes(), &cuts));
    }

    #[test]
    fn hostile_genai_perf_exports_never_panic(
        ts in 0usize..64,
        stamps in prop::collection::vec(0usize..64, 0..4),
        outputs in prop::collection::vec(prop::sample::select(vec![
            "data: {\"choices\":[{\"text\":\"a\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":1e308}}\n\n",
            "data: {\"error\":{\"message\":null}}\n\n",
            "data: [DONE]\n\n",
            "data: {\n\n",
            "",
        ]), 0..4),
        own in 0usize..64,
        payload in prop::sample::select(vec![
            "{\"prompt\":[1,2,3],\"max_tokens\":4294967296}",
            "{\"prompt\":[[1],[2,3]],\"max_tokens\":-1}",
            "{\"messages\":[{\"content\":[{\"text\":\"hi\"}]}],\"max_completion_tokens\":1e308}",
            "{\"prompt\":\"hello world\",\"model\":7}",
            "not json",
            "",
        ]),
        cuts in prop::collection::vec((any::<usize>(), any::<u8>()), 0..2),
    ) {
        let stamps = Value::Array(stamps.into_iter().map(hostile).collect());
        let outputs = Value::Array(
            outputs.into_iter().map(|o| serde_json::json!({"response": o})).collect(),
        );
        let mut own_v = serde_json::json!({"id": 1, "prompt_tokens": 3, "output_tokens": 2, "max_tokens": 2});
        set_nth(&mut own_v, own, hostile(own / 4));
        let doc = genai_perf_doc(hostile(ts), stamps, outputs, own_v, Value::String(payload.into()));
        import("profile_export.json", &damage(doc.to_string().into_bytes(), &cuts));
    }
}
