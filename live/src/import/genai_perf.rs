//! Reads genai-perf's `profile_export.json` (perf_analyzer's export: per request the send
//! `timestamp`, the `request_inputs.payload` sent, and every response with its timestamp).
//!
//! Mirrors how genai-perf reads it (perf_analyzer `genai-perf/genai_perf/profile_data_parser/
//! llm_profile_data_parser.py`, `LLMProfileDataParser._parse_requests`,
//! `_preprocess_response`, `_extract_openai_*_text_output`): a response counts as a chunk when it
//! carries text (`choices[0].text` or `choices[0].delta.content`); `[DONE]`, comments and empty
//! responses do not; several SSE events delivered in one response are one chunk. Where genai-perf
//! counts tokens with a tokenizer, this reader takes, in order: the `modelsguard` fields our own
//! writer adds, the `usage` of a usage chunk, the prompt's token ids, and else estimates (one
//! token per text event for outputs, characters / 4 for prompts, with a note). The end of a
//! request is its last response, `[DONE]` included.

use super::{ImportError, ImportedExport, ImportedLoad, ImportedRequest, count, load_of, req_u64};
use crate::export::genai_perf::OWN_FIELDS_KEY;
use serde_json::Value;
use sim::trace::RequestStatus;
use std::path::Path;

/// Text and usage found in one response (possibly several SSE events).
#[derive(Default)]
struct Response {
    text_events: u32,
    text_chars: usize,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    error: Option<String>,
}

/// Parses the SSE events of one `response` string.
fn parse_response(response: &str) -> Response {
    let mut out = Response::default();
    for event in response.split("\n\n") {
        for line in event.lines() {
            let Some(data) = line.strip_prefix("data:") else { continue };
            let data = data.trim();
            if data.is_empty() || data == "[DONE]" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
            if let Some(e) = v.get("error") {
                out.error =
                    Some(e.get("message").and_then(Value::as_str).unwrap_or("error event").to_string());
            }
            let choice = v.get("choices").and_then(|c| c.get(0));
            let text = choice
                .and_then(|c| c.get("text").or_else(|| c.get("delta").and_then(|d| d.get("content"))))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !text.is_empty() {
                out.text_events += 1;
                out.text_chars += text.chars().count();
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                out.prompt_tokens = count(u.get("prompt_tokens")).or(out.prompt_tokens);
                out.completion_tokens = count(u.get("completion_tokens")).or(out.completion_tokens);
            }
        }
    }
    out
}

/// The prompt of a request body: token count when it is token ids, else its text length.
enum Prompt {
    Tokens(u32),
    Chars(usize),
}

fn prompt_of(payload: &Value) -> Prompt {
    if let Some(p) = payload.get("prompt") {
        match p {
            Value::Array(items) if items.iter().all(Value::is_u64) => {
                return Prompt::Tokens(items.len() as u32);
            }
            Value::Array(items) if items.iter().all(Value::is_array) => {
                return Prompt::Tokens(
                    items.iter().filter_map(Value::as_array).map(|a| a.len() as u32).sum(),
                );
            }
            Value::Array(items) => {
                let texts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                return Prompt::Chars(texts.join(" ").chars().count());
            }
            Value::String(s) => return Prompt::Chars(s.chars().count()),
            _ => {}
        }
    }
    let chars = payload
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| match m.get("content") {
                    Some(Value::String(s)) => s.chars().count(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .map(|s| s.chars().count())
                        .sum(),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0);
    Prompt::Chars(chars)
}

/// Reads the export's requests (every experiment's) and its first experiment's load.
pub(super) fn read(path: &Path, text: &str) -> Result<ImportedExport, ImportError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| ImportError::Field {
        path: path.to_path_buf(),
        location: format!("line {} column {}", e.line(), e.column()),
        field: "(JSON)".into(),
        reason: format!("{e}; is this a genai-perf profile_export.json?"),
    })?;
    let field_err = |location: String, field: &str, reason: &str| ImportError::Field {
        path: path.to_path_buf(),
        location,
        field: field.into(),
        reason: reason.into(),
    };
    let experiments = doc
        .get("experiments")
        .and_then(Value::as_array)
        .ok_or_else(|| field_err("top level".into(), "experiments", "missing or not an array"))?;
    let mut load = ImportedLoad::Unknown;
    let mut requests = Vec::new();
    let (mut estimated_prompts, mut estimated_outputs) = (0usize, 0usize);
    for (e, exp) in experiments.iter().enumerate() {
        if e == 0 {
            load = load_of(path, &format!("experiments[{e}].experiment"), &exp["experiment"])?;
        }
        let reqs = exp
            .get("requests")
            .and_then(Value::as_array)
            .ok_or_else(|| field_err(format!("experiments[{e}]"), "requests", "missing or not an array"))?;
        for (i, r) in reqs.iter().enumerate() {
            let loc = format!("experiments[{e}].requests[{i}]");
            let send_ns = req_u64(path, &loc, r, "timestamp")?;
            let stamps = r
                .get("response_timestamps")
                .and_then(Value::as_array)
                .ok_or_else(|| field_err(loc.clone(), "response_timestamps", "missing or not an array"))?;
            let outputs = r
                .get("response_outputs")
                .and_then(Value::as_array)
                .ok_or_else(|| field_err(loc.clone(), "response_outputs", "missing or not an array"))?;
            if stamps.len() != outputs.len() {
                return Err(field_err(
                    loc,
                    "response_outputs",
                    &format!(
                        "{} outputs for {} response_timestamps; they must pair up",
                        outputs.len(),
                        stamps.len()
                    ),
                ));
            }
            let mut chunks = Vec::new();
            let (mut events, mut usage_prompt, mut usage_output, mut error) = (0u32, None, None, None);
            let mut end_ns = None;
            for (k, (t, o)) in stamps.iter().zip(outputs).enumerate() {
                let t = t.as_u64().ok_or_else(|| {
                    field_err(
                        format!("{loc}.response_timestamps[{k}]"),
                        "response_timestamps",
                        "not a non-negative integer",
                    )
                })?;
                end_ns = Some(end_ns.map_or(t, |e: u64| e.max(t)));
                let text = o.get("response").and_then(Value::as_str).unwrap_or("");
                let resp = parse_response(text);
                if resp.text_events > 0 {
                    chunks.push((t, resp.text_events));
                    events += resp.text_events;
                }
                usage_prompt = resp.prompt_tokens.or(usage_prompt);
                usage_output = resp.completion_tokens.or(usage_output);
                error = resp.error.or(error);
            }
            let payload: Value = r
                .get("request_inputs")
                .and_then(|ri| ri.get("payload"))
                .and_then(Value::as_str)
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(Value::Null);
            let own = r.get(OWN_FIELDS_KEY);
            let prompt_tokens =
                match (count(own.and_then(|o| o.get("prompt_tokens"))), usage_prompt, prompt_of(&payload)) {
                    (Some(n), _, _) | (None, Some(n), _) | (None, None, Prompt::Tokens(n)) => n,
                    (None, None, Prompt::Chars(c)) => {
                        estimated_prompts += 1;
                        c.div_ceil(4) as u32
                    }
                };
            let output_tokens = match (count(own.and_then(|o| o.get("output_tokens"))), usage_output) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    estimated_outputs += 1;
                    events
                }
            };
            let max_tokens = count(own.and_then(|o| o.get("max_tokens")))
                .or_else(|| count(payload.get("max_tokens")))
                .or_else(|| count(payload.get("max_completion_tokens")))
                .unwrap_or(output_tokens);
            let model = own
                .and_then(|o| o.get("model"))
                .or_else(|| payload.get("model"))
                .and_then(Value::as_str)
                .map(str::to_string);
            requests.push(ImportedRequest {
                id: own.and_then(|o| o.get("id")).and_then(Value::as_u64),
                model,
                send_ns,
                chunks,
                end_ns,
                prompt_tokens,
                output_tokens,
                max_tokens,
                failure: error.map(|m| (RequestStatus::Error, format!("error event in the stream: {m}"))),
                http_status: None,
            });
        }
    }
    let mut notes = Vec::new();
    if estimated_prompts > 0 {
        notes.push(format!(
            "{estimated_prompts} prompt lengths estimated as characters / 4 (the export has no token ids, usage or \
             modelsguard fields for them)"
        ));
    }
    if estimated_outputs > 0 {
        notes.push(format!(
            "{estimated_outputs} output lengths counted as one token per streamed text event (no usage chunk in the \
             export)"
        ));
    }
    Ok(ImportedExport { requests, load, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_events_are_one_chunk_and_done_is_not_text() {
        let r = parse_response(
            "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\n",
        );
        assert_eq!((r.text_events, r.text_chars), (2, 2));
        assert_eq!(parse_response("data: [DONE]\n\n").text_events, 0);
        let chat = parse_response("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n");
        assert_eq!(chat.text_events, 1);
        let usage = parse_response(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
        );
        assert_eq!((usage.text_events, usage.prompt_tokens, usage.completion_tokens), (0, Some(7), Some(3)));
    }

    #[test]
    fn a_missing_timestamp_names_the_request_and_field() {
        let text = r#"{"experiments":[{"experiment":{"mode":"concurrency","value":2},"requests":[
            {"timestamp":1,"response_timestamps":[],"response_outputs":[]},
            {"response_timestamps":[],"response_outputs":[]}]}]}"#;
        let e = read(Path::new("x.json"), text).unwrap_err().to_string();
        assert!(
            e.contains("x.json") && e.contains("experiments[0].requests[1]") && e.contains("`timestamp`"),
            "{e}"
        );
    }

    #[test]
    fn a_concurrency_past_u32_max_is_refused_by_experiment_and_field() {
        let export = |value: &str| {
            format!(
                r#"{{"experiments":[{{"experiment":{{"mode":"concurrency","value":{value}}},"requests":[]}}]}}"#
            )
        };
        assert_eq!(
            read(Path::new("x.json"), &export("4294967295")).unwrap().load,
            ImportedLoad::Concurrency(u32::MAX)
        );
        for value in ["4294967296", "1e300"] {
            let e = read(Path::new("x.json"), &export(value)).unwrap_err().to_string();
            assert!(
                e.contains("x.json") && e.contains("experiments[0].experiment") && e.contains("`value`"),
                "{e}"
            );
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = read(Path::new("x.json"), "{\n\"experiments\": [\n}").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn text_prompts_without_counts_are_estimated_with_a_note() {
        let text = r#"{"experiments":[{"experiment":{"mode":"request_rate","value":2.0},"requests":[
            {"timestamp":1,"request_inputs":{"payload":"{\"model\":\"m\",\"prompt\":[\"abcdefgh\"]}"},
             "response_timestamps":[5,9],"response_outputs":[{"response":"data: {\"choices\":[{\"text\":\"x\"}]}\n\n"},{"response":"data: [DONE]\n\n"}]}]}]}"#;
        let x = read(Path::new("x.json"), text).unwrap();
        assert_eq!(x.load, ImportedLoad::RequestRate(2.0));
        let r = &x.requests[0];
        assert_eq!(
            (r.prompt_tokens, r.output_tokens, r.chunks.clone(), r.end_ns),
            (2, 1, vec![(5, 1)], Some(9))
        );
        assert_eq!(x.notes.len(), 2);
    }
}
