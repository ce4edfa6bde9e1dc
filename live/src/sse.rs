//! Server-sent events as vLLM's OpenAI server streams them: an incremental byte-level parser
//! ([`SseParser`]: bytes in arbitrary chunks -> `data` payloads) and an interpreter of OpenAI
//! completion / chat-completion chunks ([`StreamInterpreter`]: payloads -> text chunks, usage,
//! `[DONE]`, errors).
//!
//! The parser follows the WHATWG event-stream rules (lines end in LF, CRLF or CR; `:` starts a
//! comment, used for keep-alives; `data:` with or without one space; several `data` lines of one
//! event are joined with LF; an empty line dispatches) and keeps memory bounded: a line or an event
//! longer than its limit is an error, never unbounded growth. It does no I/O and knows nothing of
//! timestamps; the client stamps each payload as it comes out.

use serde_json::Value;

/// Default cap on one line and on one event's data, bytes (1 MiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Why a byte stream is not a usable event stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// One line grew past the limit without a line break.
    #[error("server-sent event line longer than {limit} bytes; the server is not streaming SSE")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// One event's data grew past the limit without an empty line.
    #[error("server-sent event data longer than {limit} bytes; the server is not streaming SSE")]
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Incremental SSE parser. Feed it bytes with [`SseParser::push`]; complete events' `data`
/// payloads come out in order. Chunk boundaries never change the result.
#[derive(Clone, Debug)]
pub struct SseParser {
    max: usize,
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The previous byte was a CR, so an LF right after it ends nothing new.
    after_cr: bool,
    /// No line has ended yet (a UTF-8 BOM opening the stream is skipped).
    first_line: bool,
    failed: Option<SseError>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default 1 MiB line and event limit.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that refuses lines and events longer than `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        SseParser {
            max: max_bytes,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            first_line: true,
            failed: None,
        }
    }

    /// Feeds `bytes`; appends the `data` of every event completed by them to `out`. After an
    /// error the parser stays failed and returns the same error for every later push; events
    /// completed before the error are still appended.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<String>) -> Result<(), SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.after_cr && rest[0] == b'\n' {
                rest = &rest[1..];
                self.after_cr = false;
                continue;
            }
            self.after_cr = false;
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.extend_line(&rest[..i])?;
                    self.after_cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    if let Err(e) = self.end_line(out) {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
                None => {
                    self.extend_line(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    fn extend_line(&mut self, part: &[u8]) -> Result<(), SseError> {
        if self.line.len() + part.len() > self.max {
            let e = SseError::LineTooLong { limit: self.max };
            self.failed = Some(e.clone());
            self.line = Vec::new();
            self.data = Vec::new();
            return Err(e);
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<String>) -> Result<(), SseError> {
        let mut line = std::mem::take(&mut self.line);
        // Decided when the first line ends, so the chunking never matters.
        if std::mem::take(&mut self.first_line) && line.starts_with(b"\xEF\xBB\xBF") {
            line.drain(..3);
        }
        if line.is_empty() {
            if self.has_data {
                out.push(String::from_utf8_lossy(&self.data).into_owned());
            }
            self.data.clear();
            self.has_data = false;
        } else if line[0] != b':' {
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (&line[..], &b""[..]),
            };
            // `event`, `id` and `retry` carry nothing the OpenAI stream uses.
            if field == b"data" {
                let extra = usize::from(self.has_data) + value.len();
                if self.data.len() + extra > self.max {
                    self.data = Vec::new();
                    return Err(SseError::EventTooLarge { limit: self.max });
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        }
        // Reuse the allocation, but never keep a huge one around.
        if line.capacity() <= 64 * 1024 {
            line.clear();
            self.line = line;
        }
        Ok(())
    }

    /// Bytes held for an unfinished line or event (for memory-bound checks).
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// True when the stream stopped in the middle of an event (data seen, no empty line yet).
    /// Such an event is discarded, as the SSE rules say.
    pub fn has_partial_event(&self) -> bool {
        self.has_data || !self.line.is_empty()
    }
}

/// Which OpenAI endpoint a stream comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiMode {
    /// `/v1/completions`: text in `choices[0].text`.
    #[default]
    Completions,
    /// `/v1/chat/completions`: text in `choices[0].delta.content`.
    Chat,
}

/// Why an OpenAI stream failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The server sent an error event mid-stream (`data: {"error": {...}}` or 0.6.4's flat
    /// `{"object": "error", ...}`).
    #[error("server error mid-stream: {0}")]
    Server(String),
    /// A payload was not the JSON of an OpenAI chunk.
    #[error("malformed stream chunk ({reason}): {excerpt}")]
    Malformed {
        /// What was wrong.
        reason: String,
        /// The first bytes of the payload.
        excerpt: String,
    },
    /// The stream ended before `data: [DONE]` (vLLM 0.6.4 cuts streams this way on failure).
    #[error("stream ended without [DONE] after {chunks} chunks")]
    EndedWithoutDone {
        /// Chunks with text received before the end.
        chunks: u32,
    },
    /// The SSE framing itself was broken.
    #[error(transparent)]
    Sse(#[from] SseError),
}

/// What one payload meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// A chunk carrying non-empty text: stamp it. `tokens` is what the chunk's continuous usage
    /// says it added, or 1 when the server sends no per-chunk usage.
    Text {
        /// Tokens in this chunk (best knowledge).
        tokens: u32,
    },
    /// A chunk without text (chat's role-only first chunk, an empty delta, a finish-only chunk).
    Empty,
    /// The usage-only chunk (`choices: []`).
    Usage,
    /// `[DONE]`: the stream is complete.
    Done,
}

/// Token usage the server reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `usage.prompt_tokens`.
    pub prompt_tokens: Option<u32>,
    /// `usage.completion_tokens`.
    pub completion_tokens: Option<u32>,
    /// `usage.prompt_tokens_details.cached_tokens`: prompt tokens served from the prefix cache
    /// (vLLM sends it when prefix caching is on and prompt token details are enabled).
    pub cached_tokens: Option<u32>,
}

/// What a finished stream delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// Output tokens: `usage.completion_tokens` when the server sent it, else the number of
    /// chunks with text.
    pub output_tokens: u32,
    /// Chunks that carried non-empty text.
    pub text_chunks: u32,
    /// The last usage the server reported.
    pub usage: Usage,
    /// `finish_reason` of the last choice that had one.
    pub finish_reason: Option<String>,
}

/// Interprets the payloads of one OpenAI stream in order. Mirrors what `vllm bench serve`'s
/// `async_request_openai_completions` reads, plus the error shapes of vLLM 0.6.4 and current.
#[derive(Clone, Debug)]
pub struct StreamInterpreter {
    mode: ApiMode,
    summary: StreamSummary,
    done: bool,
    failed: Option<StreamError>,
}

fn excerpt(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The message of an OpenAI / vLLM error object, in either shape: nested `{"error": {...}}`
/// (current vLLM, OpenAI) or flat `{"object": "error", "message": ...}` (vLLM 0.6.4).
/// `None` when `v` is not an error object.
pub fn error_message(v: &Value) -> Option<String> {
    let obj = match v.get("error") {
        Some(e) if !e.is_null() => e,
        _ if v.get("object").and_then(Value::as_str) == Some("error") => v,
        _ => return None,
    };
    let msg = match obj {
        Value::String(s) => s.clone(),
        _ => obj
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| excerpt(&obj.to_string())),
    };
    let kind = obj.get("type").and_then(Value::as_str).filter(|t| !t.is_empty());
    Some(match kind {
        Some(k) => format!("{k}: {msg}"),
        None => msg,
    })
}

fn as_u32(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_u64).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

impl StreamInterpreter {
    /// A fresh interpreter for a stream of `mode` chunks.
    pub fn new(mode: ApiMode) -> Self {
        StreamInterpreter { mode, summary: StreamSummary::default(), done: false, failed: None }
    }

    /// True once `[DONE]` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// What has arrived so far.
    pub fn summary(&self) -> &StreamSummary {
        &self.summary
    }

    /// Interprets one event's data. Payloads after `[DONE]` are ignored (`Empty`).
    pub fn on_data(&mut self, data: &str) -> Result<StreamEvent, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.interpret(data);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn interpret(&mut self, data: &str) -> Result<StreamEvent, StreamError> {
        if self.done {
            return Ok(StreamEvent::Empty);
        }
        let trimmed = data.trim();
        if trimmed == "[DONE]" {
            self.done = true;
            return Ok(StreamEvent::Done);
        }
        if trimmed.is_empty() {
            return Ok(StreamEvent::Empty);
        }
        let v: Value = serde_json::from_str(trimmed)
            .map_err(|e| StreamError::Malformed { reason: e.to_string(), excerpt: excerpt(trimmed) })?;
        if let Some(msg) = error_message(&v) {
            return Err(StreamError::Server(msg));
        }
        if !v.is_object() {
            return Err(StreamError::Malformed {
                reason: "not a JSON object".into(),
                excerpt: excerpt(trimmed),
            });
        }
        let before = self.summary.usage.completion_tokens;
        let mut has_usage = false;
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            has_usage = true;
            self.summary.usage = Usage {
                prompt_tokens: as_u32(u.get("prompt_tokens")).or(self.summary.usage.prompt_tokens),
                completion_tokens: as_u32(u.get("completion_tokens"))
                    .or(self.summary.usage.completion_tokens),
                cached_tokens: as_u32(u.get("prompt_tokens_details").and_then(|d| d.get("cached_tokens")))
                    .or(self.summary.usage.cached_tokens),
            };
        }
        let choice = v.get("choices").and_then(Value::as_array).and_then(|c| c.first());
        let Some(choice) = choice else {
            return Ok(if has_usage { StreamEvent::Usage } else { StreamEvent::Empty });
        };
        if let Some(fr) = choice.get("finish_reason").and_then(Value::as_str) {
            self.summary.finish_reason = Some(fr.to_string());
        }
        let text = match self.mode {
            ApiMode::Completions => choice.get("text"),
            ApiMode::Chat => choice.get("delta").and_then(|d| d.get("content")),
        };
        match text.and_then(Value::as_str) {
            Some(t) if !t.is_empty() => {
                self.summary.text_chunks = self.summary.text_chunks.saturating_add(1);
                // With `continuous_usage_stats` every chunk carries the running total.
                let tokens = match (before, self.summary.usage.completion_tokens) {
                    (b, Some(now)) if has_usage => now.saturating_sub(b.unwrap_or(0)).max(1),
                    _ => 1,
                };
                Ok(StreamEvent::Text { tokens })
            }
            _ => Ok(StreamEvent::Empty),
        }
    }

    /// Ends the stream: the summary when `[DONE]` arrived (output tokens from usage when
    /// present), else [`StreamError::EndedWithoutDone`] (or the earlier error).
    pub fn finish(&self) -> Result<StreamSummary, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.done {
            return Err(StreamError::EndedWithoutDone { chunks: self.summary.text_chunks });
        }
        let mut s = self.summary.clone();
        s.output_tokens = s.usage.completion_tokens.unwrap_or(s.text_chunks);
        Ok(s)
    }

    /// Output tokens received so far (for failed rows): usage when present, else text chunks.
    pub fn tokens_so_far(&self) -> u32 {
        self.summary.usage.completion_tokens.unwrap_or(self.summary.text_chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> (Vec<String>, Option<SseError>) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let e = p.push(bytes, &mut out).err();
        (out, e)
    }

    #[test]
    fn usage_with_prompt_token_details_reports_the_cached_tokens() {
        let mut i = StreamInterpreter::new(ApiMode::Completions);
        i.on_data(r#"{"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":32}}}"#)
            .unwrap();
        assert_eq!(i.summary().usage.cached_tokens, Some(32));
        let mut plain = StreamInterpreter::new(ApiMode::Completions);
        plain.on_data(r#"{"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":2}}"#).unwrap();
        assert_eq!(plain.summary().usage.cached_tokens, None);
    }

    #[test]
    fn crlf_cr_and_lf_line_endings_all_end_lines() {
        let (out, e) = parse_all(b"data: a\r\n\r\ndata:b\r\rdata: c\n\n");
        assert_eq!(out, vec!["a", "b", "c"]);
        assert_eq!(e, None);
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_end() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.push(b"data: x\r", &mut out).unwrap();
        p.push(b"\ndata: y\r\n\r", &mut out).unwrap();
        p.push(b"\n", &mut out).unwrap();
        assert_eq!(out, vec!["x\ny"]);
    }

    #[test]
    fn a_line_past_the_limit_fails_and_stays_failed() {
        let mut p = SseParser::with_limit(8);
        let mut out = Vec::new();
        p.push(b"data: 1\n\n", &mut out).unwrap();
        assert_eq!(p.push(b"data: 123456", &mut out), Err(SseError::LineTooLong { limit: 8 }));
        assert_eq!(p.push(b"\n\n", &mut out), Err(SseError::LineTooLong { limit: 8 }));
        assert_eq!(out, vec!["1"]);
        assert!(p.buffered_bytes() <= 8);
    }

    #[test]
    fn an_event_of_many_short_lines_past_the_limit_fails() {
        let mut p = SseParser::with_limit(10);
        let mut out = Vec::new();
        let r = p.push(b"data: 1234\ndata: 5678\ndata: 9012\n\n", &mut out);
        assert_eq!(r, Err(SseError::EventTooLarge { limit: 10 }));
    }

    #[test]
    fn the_error_message_reads_both_vllm_shapes() {
        let flat: Value = serde_json::from_str(
            r#"{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}"#,
        )
        .unwrap();
        assert_eq!(error_message(&flat).as_deref(), Some("BadRequestError: too long"));
        let nested: Value =
            serde_json::from_str(r#"{"error":{"message":"boom","type":"InternalServerError","code":500}}"#)
                .unwrap();
        assert_eq!(error_message(&nested).as_deref(), Some("InternalServerError: boom"));
        let chunk: Value = serde_json::from_str(r#"{"object":"text_completion","choices":[]}"#).unwrap();
        assert_eq!(error_message(&chunk), None);
    }
}
