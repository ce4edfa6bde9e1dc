//! Reads aiperf's `profile_export.jsonl`: one `MetricRecordInfo` a line (`metadata` with
//! wall-clock `request_start_ns`, `metrics` as `{value, unit}` in display units, `error`), as
//! defined in aiperf `aiperf/common/models/record_models.py` and documented in
//! `docs/tutorials/working-with-profile-exports.md`.
//!
//! aiperf keeps no per-chunk timestamps in this file, but its metrics rebuild them exactly
//! (`aiperf/metrics/types/ttft_metric.py`, `inter_chunk_latency_metric.py`,
//! `request_latency_metric.py`): the first chunk arrives `time_to_first_token` after the start,
//! each next one `inter_chunk_latency[i]` after the previous, the last response
//! `request_latency` after the start. Lengths are the server's own counts when aiperf recorded
//! them (`usage_prompt_tokens`, `usage_completion_tokens`: what the engine processed, which is
//! what a replay must reproduce), else aiperf's tokenizer counts (`input_sequence_length`,
//! `output_sequence_length`; `error_isl` for failed requests); each chunk counts one token.
//! aiperf records carry no model and no requested output length (max_tokens = output tokens)
//! unless our own writer added them (`modelsguard` object). If a `profile_export_aiperf.json` lies
//! next to the file, it gives the load (our `modelsguard.experiment`, else aiperf's
//! `input_config`: `phases` in aiperf 0.13, `loadgen` before) and the model name.

use super::{
    ImportError, ImportedExport, ImportedLoad, ImportedRequest, concurrency, count, load_of, req_u64,
};
use crate::export::aiperf::OWN_FIELDS_KEY;
use serde_json::Value;
use sim::trace::RequestStatus;
use std::path::Path;

/// Nanoseconds in one `unit` of aiperf's time units (`MetricTimeUnit`: ns, us, ms, sec).
fn ns_per(unit: &str) -> Option<f64> {
    match unit {
        "ns" => Some(1.0),
        "us" => Some(1e3),
        "ms" => Some(1e6),
        "sec" | "s" => Some(1e9),
        _ => None,
    }
}

/// A time metric of `metrics` in nanoseconds (None when absent).
fn time_ns(path: &Path, line: usize, metrics: &Value, tag: &str) -> Result<Option<Vec<u64>>, ImportError> {
    let Some(m) = metrics.get(tag) else { return Ok(None) };
    let err = |reason: String| ImportError::Field {
        path: path.to_path_buf(),
        location: format!("line {line}"),
        field: format!("metrics.{tag}"),
        reason,
    };
    let unit = m.get("unit").and_then(Value::as_str).unwrap_or("");
    let scale =
        ns_per(unit).ok_or_else(|| err(format!("unit {unit:?} is not a time unit (ns, us, ms, sec)")))?;
    let to_ns = |v: &Value| {
        v.as_f64()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .map(|x| (x * scale).round() as u64)
            .ok_or_else(|| err(format!("{v} is not a non-negative number")))
    };
    match m.get("value") {
        Some(Value::Array(items)) => items.iter().map(to_ns).collect::<Result<Vec<_>, _>>().map(Some),
        Some(v) => to_ns(v).map(|x| Some(vec![x])),
        None => Err(err("has no value".into())),
    }
}

/// The load and model name in `profile_export_aiperf.json` next to `path`, if any (an unreadable
/// or unparsable file counts as absent); a concurrency in it past `u32::MAX` is an error naming
/// that file and field.
fn sibling_config(path: &Path) -> Result<(ImportedLoad, Option<String>), ImportError> {
    let Some(dir) = path.parent() else { return Ok((ImportedLoad::Unknown, None)) };
    let sibling = dir.join(crate::export::aiperf::PROFILE_EXPORT_AIPERF_JSON);
    let Some(v) = std::fs::read_to_string(&sibling).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
    else {
        return Ok((ImportedLoad::Unknown, None));
    };
    let own = load_of(&sibling, &format!("{OWN_FIELDS_KEY}.experiment"), &v[OWN_FIELDS_KEY]["experiment"])?;
    if own != ImportedLoad::Unknown {
        return Ok((own, None));
    }
    let cfg = &v["input_config"];
    // aiperf 0.13: `phases: [{kind, type, concurrency, request_rate}]`; earlier: `loadgen: {...}`.
    let (location, profiling) = match cfg["phases"]
        .as_array()
        .and_then(|ps| ps.iter().enumerate().find(|(_, p)| p["kind"].as_str() != Some("warmup")))
    {
        Some((k, p)) => (format!("input_config.phases[{k}]"), p),
        None => ("input_config.loadgen".to_string(), &cfg["loadgen"]),
    };
    let load = if let Some(r) = profiling.get("request_rate").and_then(Value::as_f64).filter(|r| *r > 0.0) {
        ImportedLoad::RequestRate(r)
    } else if let Some(c) = concurrency(&sibling, &location, "concurrency", &profiling["concurrency"])? {
        ImportedLoad::Concurrency(c)
    } else {
        ImportedLoad::Unknown
    };
    let model = cfg["models"]["items"][0]["name"]
        .as_str()
        .or_else(|| cfg["endpoint"]["model_names"][0].as_str())
        .map(str::to_string);
    Ok((load, model))
}

/// Reads every record (profiling phase only; warmup records are skipped).
pub(super) fn read(path: &Path, text: &str) -> Result<ImportedExport, ImportError> {
    let (load, model) = sibling_config(path)?;
    let mut requests = Vec::new();
    let (mut warmup, mut server_counts, mut own_max_tokens) = (0usize, 0usize, 0usize);
    for (k, raw) in text.lines().enumerate() {
        let line = k + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let loc = format!("line {line}");
        let v: Value = serde_json::from_str(raw).map_err(|e| ImportError::Field {
            path: path.to_path_buf(),
            location: format!("line {line} column {}", e.column()),
            field: "(JSON)".into(),
            reason: format!("{e}; each line of profile_export.jsonl must be one JSON record"),
        })?;
        let field = |f: &str, reason: &str| ImportError::Field {
            path: path.to_path_buf(),
            location: loc.clone(),
            field: f.into(),
            reason: reason.into(),
        };
        let meta = v.get("metadata").filter(|m| m.is_object()).ok_or_else(|| field("metadata", "missing"))?;
        if meta.get("benchmark_phase").and_then(Value::as_str) == Some("warmup") {
            warmup += 1;
            continue;
        }
        let start = req_u64(path, &loc, meta, "request_start_ns")?;
        let metrics = v.get("metrics").cloned().unwrap_or(Value::Null);
        let ttft = time_ns(path, line, &metrics, "time_to_first_token")?.and_then(|v| v.first().copied());
        let icl = time_ns(path, line, &metrics, "inter_chunk_latency")?.unwrap_or_default();
        let latency = time_ns(path, line, &metrics, "request_latency")?.and_then(|v| v.first().copied());
        let mut chunks = Vec::new();
        if let Some(t) = ttft {
            let mut at = start.saturating_add(t);
            chunks.push((at, 1));
            for gap in icl {
                at = at.saturating_add(gap);
                chunks.push((at, 1));
            }
        }
        let value = |tag: &str| count(metrics.get(tag).and_then(|m| m.get("value")));
        let error = v.get("error").filter(|e| e.is_object());
        let failure = error.map(|e| {
            let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            let status = if kind.eq_ignore_ascii_case("timeout") {
                RequestStatus::Timeout
            } else {
                RequestStatus::Error
            };
            (status, format!("{kind}: {msg}"))
        });
        let end_ns = match (latency, failure.is_some()) {
            (Some(l), _) => Some(start.saturating_add(l)),
            (None, true) => meta.get("request_end_ns").and_then(Value::as_u64),
            (None, false) => {
                return Err(field("metrics.request_latency", "missing on a request without an error"));
            }
        };
        let usage = (value("usage_prompt_tokens"), value("usage_completion_tokens"));
        server_counts += usize::from(usage.0.is_some() || usage.1.is_some());
        let output_tokens =
            usage.1.or_else(|| value("output_sequence_length")).or_else(|| value("output_token_count"));
        let output_tokens = output_tokens.unwrap_or(chunks.len() as u32);
        let isl = value("input_sequence_length").or_else(|| value("error_isl"));
        let own = v.get(OWN_FIELDS_KEY);
        let own_model = own.and_then(|o| o.get("model")).and_then(Value::as_str).map(str::to_string);
        let max_tokens = count(own.and_then(|o| o.get("max_tokens")));
        own_max_tokens += usize::from(max_tokens.is_some());
        requests.push(ImportedRequest {
            // The request index for single-turn runs (session index otherwise: then not unique,
            // and the import numbers requests in send order).
            id: meta.get("session_num").and_then(Value::as_u64),
            model: own_model.or_else(|| model.clone()),
            send_ns: start,
            chunks,
            end_ns,
            prompt_tokens: usage.0.or(isl).unwrap_or(0),
            output_tokens,
            max_tokens: max_tokens.unwrap_or(output_tokens),
            http_status: error.and_then(|e| count(e.get("code"))).and_then(|c| u16::try_from(c).ok()),
            failure,
        });
    }
    let mut notes = Vec::new();
    if warmup > 0 {
        notes.push(format!("{warmup} warmup records skipped"));
    }
    if server_counts > 0 {
        notes.push(format!(
            "{server_counts} requests take their lengths from the server's usage counts (usage_prompt_tokens, \
             usage_completion_tokens), not aiperf's tokenizer"
        ));
    }
    if own_max_tokens < requests.len() {
        notes.push(
            "aiperf records do not say how many tokens were asked for; max_tokens = output tokens".into(),
        );
    }
    Ok(ImportedExport { requests, load, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(metrics: &str) -> String {
        let metrics = metrics.replace('\n', "");
        format!(
            r#"{{"metadata":{{"session_num":0,"request_start_ns":1000000000,"request_end_ns":1000000000,"worker_id":"w","record_processor_id":"r","benchmark_phase":"profiling"}},"metrics":{metrics},"error":null}}"#
        )
    }

    #[test]
    fn chunk_times_are_rebuilt_from_ttft_and_inter_chunk_latencies() {
        let text = rec(
            r#"{"time_to_first_token":{"value":2.5,"unit":"ms"},"inter_chunk_latency":{"value":[1.0,0.5],"unit":"ms"},
                "request_latency":{"value":4.0,"unit":"ms"},"input_sequence_length":{"value":7,"unit":"tokens"},
                "output_sequence_length":{"value":3,"unit":"tokens"}}"#,
        );
        let x = read(Path::new("p.jsonl"), &text).unwrap();
        let r = &x.requests[0];
        let s = 1_000_000_000;
        assert_eq!(r.chunks, vec![(s + 2_500_000, 1), (s + 3_500_000, 1), (s + 4_000_000, 1)]);
        assert_eq!((r.end_ns, r.prompt_tokens, r.output_tokens), (Some(s + 4_000_000), 7, 3));
        assert!(r.failure.is_none());
    }

    #[test]
    fn a_concurrency_past_u32_max_in_the_sibling_config_is_refused_by_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("profile_export.jsonl");
        std::fs::write(&jsonl, rec(r#"{"request_latency":{"value":4.0,"unit":"ms"}}"#)).unwrap();
        let sibling = dir.path().join(crate::export::aiperf::PROFILE_EXPORT_AIPERF_JSON);
        let config = |phases: &str| format!(r#"{{"input_config":{{"phases":[{phases}]}}}}"#);
        // u32::MAX streams is the most; one more (or a float past it) is refused, not truncated.
        std::fs::write(&sibling, config(r#"{"kind":"profiling","concurrency":4294967295}"#)).unwrap();
        let x = read(&jsonl, &std::fs::read_to_string(&jsonl).unwrap()).unwrap();
        assert_eq!(x.load, ImportedLoad::Concurrency(u32::MAX));
        for c in ["4294967296", "1e300"] {
            let phases =
                format!(r#"{{"kind":"warmup","concurrency":1}},{{"kind":"profiling","concurrency":{c}}}"#);
            std::fs::write(&sibling, config(&phases)).unwrap();
            let e = read(&jsonl, &std::fs::read_to_string(&jsonl).unwrap()).unwrap_err().to_string();
            assert!(
                e.contains("profile_export_aiperf.json")
                    && e.contains("input_config.phases[1]")
                    && e.contains("`concurrency`"),
                "{e}"
            );
        }
        // Our own experiment record, and the pre-0.13 `loadgen`, are checked the same way.
        std::fs::write(
            &sibling,
            r#"{"modelsguard":{"experiment":{"mode":"concurrency","value":4294967296}}}"#,
        )
        .unwrap();
        let e = read(&jsonl, &std::fs::read_to_string(&jsonl).unwrap()).unwrap_err().to_string();
        assert!(e.contains("modelsguard.experiment") && e.contains("`value`"), "{e}");
        std::fs::write(&sibling, r#"{"input_config":{"loadgen":{"concurrency":18446744073709551615}}}"#)
            .unwrap();
        let e = read(&jsonl, &std::fs::read_to_string(&jsonl).unwrap()).unwrap_err().to_string();
        assert!(e.contains("input_config.loadgen") && e.contains("`concurrency`"), "{e}");
    }

    #[test]
    fn bad_units_and_missing_fields_name_line_and_field() {
        let text = format!("\n{}", rec(r#"{"request_latency":{"value":4.0,"unit":"parsecs"}}"#));
        let e = read(Path::new("p.jsonl"), &text).unwrap_err().to_string();
        assert!(
            e.contains("p.jsonl") && e.contains("line 2") && e.contains("metrics.request_latency"),
            "{e}"
        );
        let e = read(Path::new("p.jsonl"), r#"{"metadata":{},"metrics":{}}"#).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("request_start_ns"), "{e}");
        let e = read(Path::new("p.jsonl"), "{not json").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
