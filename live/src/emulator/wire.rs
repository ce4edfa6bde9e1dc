//! The OpenAI/vLLM wire format the emulator speaks: request parsing and the JSON of responses,
//! stream chunks and errors (vllm/entrypoints/openai/protocol.py, serving_completion.py,
//! serving_chat.py).
//!
//! Text is not modelled: every output token is the word `" tok"`, and a text prompt counts by the
//! declared pre-tokenizer rule of [`crate::text_tokens`] (words, punctuation and digit groups).
//! Clients that need exact lengths send token-id prompts (which count exactly) and read `usage`.
//! Sampling parameters are checked as vLLM checks them (vllm/sampling_params.py
//! `SamplingParams._verify_args`): `min_tokens` must be >= 0 and <= `max_tokens`. This file does
//! no I/O.

use crate::proxy::ErrorStyle;
use crate::text_tokens::count_text_tokens;
use serde_json::{Value, json};

/// The text of one emulated output token.
pub const TOKEN_TEXT: &str = " tok";

/// Which endpoint a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

/// What the emulator takes from a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    /// The `model` field, if any.
    pub model: Option<String>,
    /// Prompt tokens (ids counted, words counted for text).
    pub num_prompt_tokens: u32,
    /// Output tokens to generate at most (`None`: the endpoint's default).
    pub max_tokens: Option<u32>,
    /// Output tokens to generate at least (vLLM's `min_tokens`; 0 when absent).
    pub min_tokens: u32,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
    /// The prompt's token ids (`crate::prompt_ids`), which the engine hashes into prefix blocks.
    pub token_ids: Vec<u32>,
}

/// Reads a completions or chat body; `Err` is a 400 message.
pub fn parse_request(endpoint: Endpoint, body: &[u8]) -> Result<ParsedRequest, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the request body is not valid JSON: {e}"))?;
    let model = match v.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err("`model` must be a string".into()),
    };
    if let Some(n) = v.get("n").and_then(Value::as_u64)
        && n != 1
    {
        return Err(format!("n={n} is not supported by the emulator (only n=1)"));
    }
    let num_prompt_tokens = match endpoint {
        Endpoint::Completions => completion_prompt_size(v.get("prompt"))?,
        Endpoint::Chat => chat_prompt_size(v.get("messages"))?,
    };
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .filter_map(|k| v.get(*k))
        .find(|x| !x.is_null())
        .map(|x| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| "`max_tokens` must be a non-negative integer".to_string())
        })
        .transpose()?;
    let min_tokens = match v.get("min_tokens") {
        None | Some(Value::Null) => 0,
        Some(x) => match x.as_i64() {
            // vllm/sampling_params.py `_verify_args`: "min_tokens must be greater than or equal
            // to 0" and "min_tokens must be less than or equal to max_tokens".
            Some(n) if n < 0 => {
                return Err(format!("min_tokens must be greater than or equal to 0, got {n}."));
            }
            Some(n) => u32::try_from(n).map_err(|_| format!("`min_tokens` {n} is too large"))?,
            None => return Err("`min_tokens` must be an integer".into()),
        },
    };
    if let Some(max) = max_tokens
        && min_tokens > max
    {
        return Err(format!("min_tokens must be less than or equal to max_tokens={max}, got {min_tokens}."));
    }
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = v
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let token_ids = crate::prompt_ids::prompt_token_ids(&v);
    Ok(ParsedRequest { model, num_prompt_tokens, max_tokens, min_tokens, stream, include_usage, token_ids })
}

fn completion_prompt_size(prompt: Option<&Value>) -> Result<u32, String> {
    let n = match prompt {
        None => return Err("the request has no `prompt`".into()),
        Some(Value::String(s)) => count_text_tokens(s),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => items.len(),
        Some(Value::Array(items)) if items.len() == 1 => return completion_prompt_size(items.first()),
        Some(Value::Array(_)) => return Err("batched prompts are not supported by the emulator".into()),
        Some(_) => return Err("`prompt` must be a string or a list of token ids".into()),
    };
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn chat_prompt_size(messages: Option<&Value>) -> Result<u32, String> {
    let Some(Value::Array(messages)) = messages else {
        return Err("the request has no `messages` list".into());
    };
    let mut n = 0usize;
    for m in messages {
        n += match m.get("content") {
            Some(Value::String(s)) => count_text_tokens(s),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text")?.as_str()).map(count_text_tokens).sum()
            }
            _ => 0,
        };
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Identity of one response (`id`, `created`, `model`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseMeta {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// `cmpl-...` or `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: String,
    /// Prompt tokens served from the prefix cache, reported as vLLM reports them when prefix
    /// caching is on (`usage.prompt_tokens_details.cached_tokens`, vllm/entrypoints/openai/
    /// serving_completion.py); `None` leaves `prompt_tokens_details` out.
    pub cached_tokens: Option<u32>,
}

impl ResponseMeta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Chat, false) => "chat.completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": choices})
    }

    /// The chat stream's first chunk: the assistant role with empty content.
    pub fn role_chunk(&self) -> String {
        let choice = json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
        sse(&self.envelope(true, json!([choice])))
    }

    /// One token's chunk; the last one carries `finish_reason: "length"`.
    pub fn token_chunk(&self, last: bool) -> String {
        let finish = if last { json!("length") } else { Value::Null };
        let choice = match self.endpoint {
            Endpoint::Completions => {
                json!({"index": 0, "text": TOKEN_TEXT, "logprobs": null, "finish_reason": finish, "stop_reason": null})
            }
            Endpoint::Chat => {
                json!({"index": 0, "delta": {"content": TOKEN_TEXT}, "logprobs": null, "finish_reason": finish})
            }
        };
        sse(&self.envelope(true, json!([choice])))
    }

    /// The usage chunk (`choices: []`), sent when `stream_options.include_usage` is set.
    pub fn usage_chunk(&self, prompt_tokens: u32, completion_tokens: u32) -> String {
        let mut v = self.envelope(true, json!([]));
        v["usage"] = usage(prompt_tokens, completion_tokens, self.cached_tokens);
        sse(&v)
    }

    /// The whole (non-streaming) response.
    pub fn full_response(&self, prompt_tokens: u32, completion_tokens: u32) -> Value {
        let text = TOKEN_TEXT.repeat(completion_tokens as usize);
        let finish = if completion_tokens > 0 { "length" } else { "stop" };
        let choice = match self.endpoint {
            Endpoint::Completions => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish, "stop_reason": null})
            }
            Endpoint::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text},
                "logprobs": null, "finish_reason": finish}),
        };
        let mut v = self.envelope(false, json!([choice]));
        v["usage"] = usage(prompt_tokens, completion_tokens, self.cached_tokens);
        v
    }
}

fn usage(prompt_tokens: u32, completion_tokens: u32, cached_tokens: Option<u32>) -> Value {
    let mut u = json!({"prompt_tokens": prompt_tokens, "total_tokens": u64::from(prompt_tokens) + u64::from(completion_tokens),
        "completion_tokens": completion_tokens});
    if let Some(cached) = cached_tokens {
        u["prompt_tokens_details"] = json!({ "cached_tokens": cached });
    }
    u
}

/// One SSE event carrying `v`.
pub fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// The end-of-stream marker.
pub const DONE: &str = "data: [DONE]\n\n";

/// vLLM's in-stream error event (`create_streaming_error_response`): `data: {"error": {...}}`.
pub fn stream_error_event(style: ErrorStyle, message: &str) -> String {
    let inner = match style {
        ErrorStyle::Flat => json!({"object": "error", "message": message, "type": "InternalServerError",
            "param": null, "code": 500}),
        ErrorStyle::Nested => {
            json!({"message": message, "type": "InternalServerError", "param": null, "code": 500})
        }
    };
    sse(&json!({ "error": inner }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_id_prompts_count_exactly_and_text_counts_words() {
        let p = parse_request(
            Endpoint::Completions,
            br#"{"model":"m","prompt":[5,6,7],"max_tokens":4,"stream":true,
            "stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            ParsedRequest {
                model: Some("m".into()),
                num_prompt_tokens: 3,
                max_tokens: Some(4),
                min_tokens: 0,
                stream: true,
                include_usage: true,
                token_ids: vec![5, 6, 7],
            }
        );
        let p = parse_request(Endpoint::Completions, br#"{"prompt":"one two three four"}"#).unwrap();
        assert_eq!((p.num_prompt_tokens, p.max_tokens, p.stream), (4, None, false));
        // Punctuation is a token of its own, as a BPE pre-tokenizer splits it (not 2 words).
        let p = parse_request(Endpoint::Completions, br#"{"prompt":"Hello, world!"}"#).unwrap();
        assert_eq!(p.num_prompt_tokens, 4);
    }

    #[test]
    fn min_tokens_above_max_tokens_or_negative_is_refused_as_vllm_refuses_it() {
        let err = parse_request(Endpoint::Completions, br#"{"prompt":[1],"max_tokens":2,"min_tokens":3}"#)
            .unwrap_err();
        assert_eq!(err, "min_tokens must be less than or equal to max_tokens=2, got 3.");
        assert!(parse_request(Endpoint::Completions, br#"{"prompt":[1],"min_tokens":-1}"#).is_err());
        assert!(parse_request(Endpoint::Completions, br#"{"prompt":[1],"min_tokens":"x"}"#).is_err());
        let p = parse_request(Endpoint::Chat, br#"{"messages":[],"max_tokens":3,"min_tokens":3}"#).unwrap();
        assert_eq!((p.max_tokens, p.min_tokens), (Some(3), 3));
    }

    #[test]
    fn chat_counts_the_tokens_of_every_message() {
        let p = parse_request(
            Endpoint::Chat,
            br#"{"messages":[{"role":"system","content":"a b"},
            {"role":"user","content":[{"type":"text","text":"c d e"}]}],"max_completion_tokens":2}"#,
        )
        .unwrap();
        assert_eq!((p.num_prompt_tokens, p.max_tokens), (5, Some(2)));
    }

    #[test]
    fn batches_n_above_one_and_missing_prompts_are_refused() {
        assert!(parse_request(Endpoint::Completions, br#"{"prompt":["a","b"]}"#).is_err());
        assert!(parse_request(Endpoint::Completions, br#"{"prompt":"a","n":2}"#).is_err());
        assert!(parse_request(Endpoint::Completions, br#"{"model":"m"}"#).is_err());
        assert!(parse_request(Endpoint::Chat, br#"{"model":"m"}"#).is_err());
    }

    #[test]
    fn the_last_token_chunk_says_length_and_usage_has_no_choices() {
        let meta = ResponseMeta {
            endpoint: Endpoint::Completions,
            id: "cmpl-1".into(),
            created: 0,
            model: "m".into(),
            cached_tokens: Some(0),
        };
        let last: Value =
            serde_json::from_str(meta.token_chunk(true).trim_start_matches("data: ").trim()).unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert_eq!(last["choices"][0]["text"], TOKEN_TEXT);
        let usage: Value =
            serde_json::from_str(meta.usage_chunk(3, 2).trim_start_matches("data: ").trim()).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 5);
        assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
        let no_caching = ResponseMeta { cached_tokens: None, ..meta };
        assert_eq!(no_caching.full_response(3, 2)["usage"].get("prompt_tokens_details"), None);
    }
}
