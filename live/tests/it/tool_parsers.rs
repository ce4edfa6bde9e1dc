//! The readers of genai-perf and aiperf, replicated in Rust so tests read our exports the way those
//! tools do. Each function names the Python it mirrors; where the tool would raise, these return
//! `Err` with the tool's reason.

use serde_json::Value;

/// What genai-perf derives from one request (nanoseconds; lengths with a whitespace tokenizer as
/// a stand-in for its Hugging Face one).
#[derive(Debug, PartialEq)]
pub struct GenaiPerfRequest {
    pub timestamp: u64,
    pub ttft: u64,
    pub request_latency: u64,
    pub input_words: usize,
    pub output_chunks: Vec<String>,
}

/// genai-perf's parse of a `profile_export.json`: `(mode, value)` of each experiment and its
/// requests.
pub type GenaiPerfParse = Vec<((String, String), Vec<GenaiPerfRequest>)>;

/// `LLMProfileDataParser._extract_openai_completion_text_output` / `_chat_text_output`: the
/// text of one response (`data: ` prefix removed, `[DONE]` empty); errors where Python raises.
fn extract_text(response: &str, completions: bool) -> Result<String, String> {
    let r = response.trim();
    if r.is_empty() || !r.starts_with("data:") {
        return Ok(String::new()); // not_data_sse_field
    }
    let r = r.trim_start_matches("data:").trim();
    if r == "[DONE]" {
        return Ok(String::new());
    }
    let v: Value = serde_json::from_str(r).map_err(|e| format!("load_json_str: {e}"))?;
    let choice = v["choices"].get(0).cloned().ok_or("IndexError: choices[0]")?;
    let obj = v.get("object").and_then(Value::as_str);
    let text = match (completions, obj) {
        (_, None) => choice["text"].as_str(),
        (true, Some("text_completion")) => choice["text"].as_str(),
        (false, Some("chat.completion.chunk")) => choice["delta"]["content"].as_str(),
        (false, Some("chat.completion")) => choice["message"]["content"].as_str(),
        (_, Some(o)) => return Err(format!("ValueError: Unknown OpenAI response object type '{o}'")),
    };
    Ok(text.unwrap_or("").to_string())
}

/// genai-perf's `LLMProfileDataParser` (perf_analyzer `genai-perf/genai_perf/profile_data_parser/
/// llm_profile_data_parser.py`): `_get_profile_metadata` (endpoint -> response format),
/// `_parse_profile_data` (results keyed by `(mode, str(value))`), `_parse_requests`,
/// `_preprocess_response` (responses without text dropped with their timestamps) and
/// `_get_input_payload` (`" ".join(payload["prompt"])`, which raises on non-strings).
pub fn genai_perf_parse(doc: &Value) -> Result<GenaiPerfParse, String> {
    if doc["service_kind"] != "openai" {
        return Err(format!("ValueError: Unknown service kind: {}", doc["service_kind"]));
    }
    let completions = match doc["endpoint"].as_str() {
        Some("v1/completions") => true,
        Some("v1/chat/completions") => false,
        other => return Err(format!("unsupported endpoint {other:?}")),
    };
    let mut out = Vec::new();
    for exp in doc["experiments"].as_array().ok_or("KeyError: experiments")? {
        let mode = exp["experiment"]["mode"].as_str().ok_or("KeyError: mode")?.to_string();
        // str(load_level): Python prints 2.0 for a float and 2 for an int.
        let value = match &exp["experiment"]["value"] {
            Value::Number(n) if n.is_f64() => format!("{:?}", n.as_f64().unwrap_or(0.0)),
            Value::Number(n) => n.to_string(),
            v => return Err(format!("KeyError: value ({v})")),
        };
        let mut reqs = Vec::new();
        for r in exp["requests"].as_array().ok_or("KeyError: requests")? {
            let ts = r["timestamp"].as_u64().ok_or("KeyError: timestamp")?;
            let stamps: Vec<u64> = r["response_timestamps"]
                .as_array()
                .ok_or("KeyError: response_timestamps")?
                .iter()
                .map(|t| t.as_u64().ok_or("bad timestamp"))
                .collect::<Result<_, _>>()?;
            let outputs = r["response_outputs"].as_array().ok_or("KeyError: response_outputs")?;
            let mut kept = Vec::new();
            for (t, o) in stamps.iter().zip(outputs) {
                let text = extract_text(o["response"].as_str().ok_or("KeyError: response")?, completions)?;
                // _preprocess_response: responses without content are removed.
                if !text.is_empty() {
                    kept.push((*t, text));
                }
            }
            let payload: Value =
                serde_json::from_str(r["request_inputs"]["payload"].as_str().ok_or("KeyError: payload")?)
                    .map_err(|e| format!("load_json_str: {e}"))?;
            let input = if completions {
                let parts = payload["prompt"].as_array().ok_or("TypeError: prompt is not a list")?;
                let strs: Option<Vec<&str>> = parts.iter().map(Value::as_str).collect();
                strs.ok_or("TypeError: sequence item 0: expected str instance, int found")?.join(" ")
            } else {
                let ms = payload["messages"].as_array().ok_or("KeyError: messages")?;
                let strs: Option<Vec<&str>> = ms.iter().map(|m| m["content"].as_str()).collect();
                strs.ok_or("TypeError: content is not a str")?.join(" ")
            };
            let Some(&(first, _)) = kept.first() else { continue };
            let last = kept.last().map_or(first, |(t, _)| *t);
            reqs.push(GenaiPerfRequest {
                timestamp: ts,
                ttft: first - ts,
                request_latency: last - ts,
                input_words: input.split_whitespace().count(),
                output_chunks: kept.into_iter().map(|(_, t)| t).collect(),
            });
        }
        out.push(((mode, value), reqs));
    }
    Ok(out)
}

/// aiperf's `MetricRecordInfo.model_validate_json` of one `profile_export.jsonl` line
/// (`aiperf/common/models/record_models.py`, 0.13.0): required metadata fields and types, metrics
/// as `{value, unit}`, `error` as `ErrorDetails` (message required) or null.
pub fn aiperf_validate_record(line: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let meta = v["metadata"].as_object().ok_or("metadata: Field required")?;
    for key in ["session_num", "request_start_ns", "request_end_ns"] {
        if !meta.get(key).is_some_and(|x| x.is_i64() || x.is_u64()) {
            return Err(format!("metadata.{key}: Input should be a valid integer"));
        }
    }
    for key in ["worker_id", "record_processor_id"] {
        if !meta.get(key).is_some_and(Value::is_string) {
            return Err(format!("metadata.{key}: Input should be a valid string"));
        }
    }
    match meta.get("benchmark_phase").and_then(Value::as_str) {
        Some("warmup" | "profiling") => {}
        other => return Err(format!("metadata.benchmark_phase: not a CreditPhase: {other:?}")),
    }
    for key in ["x_request_id", "x_correlation_id", "conversation_id"] {
        if meta.get(key).is_some_and(|x| !x.is_null() && !x.is_string()) {
            return Err(format!("metadata.{key}: str | None"));
        }
    }
    let metrics = v["metrics"].as_object().ok_or("metrics: Field required (dict)")?;
    for (tag, m) in metrics {
        let ok_value = match &m["value"] {
            Value::Number(_) => true,
            Value::Array(xs) => xs.iter().all(Value::is_number),
            _ => false,
        };
        if !ok_value || !m["unit"].is_string() {
            return Err(format!("metrics.{tag}: not a MetricValue {{value, unit}}"));
        }
    }
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        if !e["message"].is_string() {
            return Err("error.message: Field required".into());
        }
        if !(e["code"].is_null() || e["code"].is_i64()) || !(e["type"].is_null() || e["type"].is_string()) {
            return Err("error: code int | None, type str | None".into());
        }
    }
    Ok(v)
}

/// aiperf's `JsonExportData` (`aiperf/common/models/export_models.py`, 0.13.0): every metric
/// field is a `JsonMetricResult` (unit required, stats numbers).
pub fn aiperf_validate_aggregate(doc: &Value) -> Result<(), String> {
    let obj = doc.as_object().ok_or("not an object")?;
    for (tag, m) in obj {
        if let Some(m) = m.as_object().filter(|m| m.contains_key("unit")) {
            if !m["unit"].is_string() {
                return Err(format!("{tag}.unit: str"));
            }
            for (k, x) in m {
                if k != "unit" && !x.is_number() && !x.is_null() {
                    return Err(format!("{tag}.{k}: float | None"));
                }
            }
        }
    }
    Ok(())
}
