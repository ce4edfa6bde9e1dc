//! One OpenAI-compatible streaming request: its body (fixed prompt and output lengths, as
//! `vllm bench serve` sends them), the HTTP exchange, and what it recorded (per-chunk timestamps
//! from a monotonic clock relative to the run start).
//!
//! It does not schedule, time out or retry: the load generator decides when to send and how long
//! to wait, and wraps [`execute`] accordingly. Whatever goes wrong ends as a [`RequestFailure`]
//! with a reason, never a panic.

use crate::sse::{ApiMode, SseParser, StreamEvent, StreamInterpreter, error_message};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde_json::{Value, json};
use sim::trace::RequestStatus;
use sim::workload::RequestSpec;
use sim::{SimDuration, SimTime};
use std::time::Instant;

/// Response header an LB may set to name the instance that served a request.
pub const INSTANCE_HEADER: &str = "x-modelsguard-instance";

/// Longest wait for the body's end after `[DONE]`.
const DRAIN_AFTER_DONE: std::time::Duration = std::time::Duration::from_millis(50);

/// Most bytes of an error body read and quoted.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The run's monotonic clock: every timestamp is the time since `start`.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    /// A clock starting now.
    pub fn start_now() -> Self {
        RunClock { start: Instant::now() }
    }

    /// A clock that started at `start`.
    pub fn starting_at(start: Instant) -> Self {
        RunClock { start }
    }

    /// The instant the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Time since the run started.
    pub fn now(&self) -> SimTime {
        SimTime(u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The instant `t` after the start.
    pub fn instant_at(&self, t: SimTime) -> Instant {
        self.start + std::time::Duration::from_nanos(t.0)
    }
}

/// Deterministic prompt token ids drawn from `[lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromptBuilder {
    /// The scenario's `prompt_token_id_range`.
    pub range: (u32, u32),
    /// The scenario seed (same for every variant, so variants send identical prompts).
    pub seed: u64,
}

/// SplitMix64 finaliser: decorrelates seeds built from small integers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl PromptBuilder {
    /// The prompt of `spec`: exactly `num_prompt_tokens` ids. Each described content segment
    /// (`RequestSpec::content`: a prefix group, a trace's block ids, a session's context) sends
    /// the first `num_tokens` ids of a stream that depends only on the segment's id, so requests
    /// sharing content share token ids and a real prefix cache hits; the rest depend only on the
    /// request id.
    pub fn token_ids(&self, spec: &RequestSpec) -> Vec<u32> {
        let n = spec.num_prompt_tokens as usize;
        let mut ids = Vec::with_capacity(n);
        for seg in spec.content.leading_segments() {
            let mut rng = Pcg64Mcg::seed_from_u64(mix(self.seed ^ mix(seg.id ^ 0x5052_4546_4958)));
            let k = (seg.num_tokens as usize).min(n - ids.len());
            ids.extend((0..k).map(|_| self.draw(&mut rng)));
        }
        let mut rng = Pcg64Mcg::seed_from_u64(mix(self.seed ^ mix(spec.id.0)));
        while ids.len() < n {
            ids.push(self.draw(&mut rng));
        }
        ids
    }

    fn draw(&self, rng: &mut Pcg64Mcg) -> u32 {
        let (lo, hi) = self.range;
        if hi > lo { rng.random_range(lo..hi) } else { lo }
    }
}

/// The JSON body of a streaming request for `spec`: `/v1/completions` with the prompt as token
/// ids, or `/v1/chat/completions` with the ids spelled as words (`"w123 w456"`; the server's
/// tokenizer then decides the true prompt length, so chat mode only approximates it).
/// `max_tokens` = `min_tokens` = the output length and `ignore_eos`, so every request generates
/// exactly its planned tokens (vLLM's extra sampling params).
pub fn request_body(spec: &RequestSpec, served_name: &str, prompt_ids: &[u32], mode: ApiMode) -> Value {
    let mut body = json!({
        "model": served_name,
        "max_tokens": spec.max_tokens,
        "min_tokens": spec.max_tokens,
        "ignore_eos": true,
        "stream": true,
        "stream_options": { "include_usage": true },
        "temperature": 0.0,
    });
    match mode {
        ApiMode::Completions => body["prompt"] = json!(prompt_ids),
        ApiMode::Chat => {
            let words: Vec<String> = prompt_ids.iter().map(|id| format!("w{id}")).collect();
            body["messages"] = json!([{ "role": "user", "content": words.join(" ") }]);
        }
    }
    body
}

/// The endpoint path of `mode`.
pub fn endpoint_path(mode: ApiMode) -> &'static str {
    match mode {
        ApiMode::Completions => "/v1/completions",
        ApiMode::Chat => "/v1/chat/completions",
    }
}

/// The reason of a non-200 response: the message of either vLLM error shape, else the start of
/// the body.
pub fn http_error_reason(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let msg =
        serde_json::from_str::<Value>(&text).ok().and_then(|v| error_message(&v)).unwrap_or_else(|| {
            let t: String = text.trim().chars().take(200).collect();
            if t.is_empty() { "(empty body)".to_string() } else { t }
        });
    format!("HTTP {status}: {msg}")
}

/// One streamed chunk that carried text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Arrival, since the run start.
    pub time: SimTime,
    /// Tokens it carried (best knowledge; see [`StreamEvent::Text`]).
    pub tokens: u32,
}

/// What one request recorded, complete or not. Filled in place by [`execute`], so a timeout that
/// drops the exchange keeps everything seen so far.
#[derive(Clone, Debug, Default)]
pub struct RequestRecord {
    /// When the request was handed to the HTTP client.
    pub send: Option<SimTime>,
    /// HTTP status, once headers arrived.
    pub http_status: Option<u16>,
    /// Instance named by the LB's [`INSTANCE_HEADER`], if any.
    pub instance_header: Option<String>,
    /// Chunks with text, in order.
    pub chunks: Vec<Chunk>,
    /// Raw payloads of text chunks and `[DONE]` with their arrival times (kept only when asked,
    /// for the genai-perf export).
    pub raw: Vec<(SimTime, String)>,
    /// When the stream completed (`[DONE]`) or failed.
    pub end: Option<SimTime>,
    /// Output tokens: usage when the server reported it, else text chunks.
    pub output_tokens: u32,
}

impl RequestRecord {
    /// First chunk with non-empty text.
    pub fn first_token(&self) -> Option<SimTime> {
        self.chunks.first().map(|c| c.time)
    }
}

/// Why a request did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFailure {
    /// `Error`, `Timeout` or `Rejected`.
    pub status: RequestStatus,
    /// Human-readable reason for `requests.csv`.
    pub reason: String,
}

impl RequestFailure {
    /// An `Error` failure.
    pub fn error(reason: impl Into<String>) -> Self {
        RequestFailure { status: RequestStatus::Error, reason: reason.into() }
    }

    /// A `Timeout` failure.
    pub fn timeout(reason: impl Into<String>) -> Self {
        RequestFailure { status: RequestStatus::Timeout, reason: reason.into() }
    }
}

/// `e` and its sources, joined: reqwest's top-level message alone rarely says what happened.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Options of one exchange.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeOptions {
    /// Completions or chat.
    pub mode: ApiMode,
    /// Keep raw payloads in [`RequestRecord::raw`].
    pub keep_raw: bool,
    /// Cap on one SSE line / event.
    pub max_event_bytes: usize,
}

/// Sends `body` to `url` and reads the stream to its end, filling `rec` as chunks arrive.
/// `Ok` only when `[DONE]` arrived after a 200.
pub async fn execute(
    http: &reqwest::Client,
    url: &str,
    body: String,
    clock: RunClock,
    opts: ExchangeOptions,
    rec: &mut RequestRecord,
) -> Result<(), RequestFailure> {
    rec.send = Some(clock.now());
    let resp = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .body(body)
        .send()
        .await;
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => {
            rec.end = Some(clock.now());
            return Err(RequestFailure::error(format!("POST {url}: {}", error_chain(&e))));
        }
    };
    let status = resp.status().as_u16();
    rec.http_status = Some(status);
    rec.instance_header =
        resp.headers().get(INSTANCE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    if status != 200 {
        let mut buf = Vec::new();
        while let Ok(Some(c)) = resp.chunk().await {
            buf.extend_from_slice(&c[..c.len().min(MAX_ERROR_BODY - buf.len())]);
            if buf.len() >= MAX_ERROR_BODY {
                break;
            }
        }
        rec.end = Some(clock.now());
        return Err(RequestFailure::error(http_error_reason(status, &buf)));
    }
    let mut parser = SseParser::with_limit(opts.max_event_bytes);
    let mut interp = StreamInterpreter::new(opts.mode);
    let mut events = Vec::new();
    let result = loop {
        let bytes = match resp.chunk().await {
            Ok(Some(b)) => b,
            Ok(None) => break interp.finish().map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => {
                break Err(format!(
                    "stream read failed after {} chunks: {}",
                    rec.chunks.len(),
                    error_chain(&e)
                ));
            }
        };
        let now = clock.now();
        events.clear();
        let pushed = parser.push(&bytes, &mut events);
        let mut outcome = None;
        for data in events.drain(..) {
            match interp.on_data(&data) {
                Ok(StreamEvent::Text { tokens }) => {
                    rec.chunks.push(Chunk { time: now, tokens });
                    if opts.keep_raw {
                        rec.raw.push((now, data));
                    }
                }
                // genai-perf reads every kept payload as a token response: keep text only.
                Ok(StreamEvent::Empty | StreamEvent::Usage) => {}
                Ok(StreamEvent::Done) => {
                    if opts.keep_raw {
                        rec.raw.push((now, data));
                    }
                    outcome = Some(Ok(()));
                    break;
                }
                Err(e) => {
                    outcome = Some(Err(e.to_string()));
                    break;
                }
            }
        }
        rec.output_tokens = interp.tokens_so_far();
        if let Some(o) = outcome {
            break o;
        }
        if let Err(e) = pushed {
            break Err(e.to_string());
        }
    };
    rec.end = Some(clock.now());
    rec.output_tokens = interp.tokens_so_far();
    if result.is_ok() {
        // Read the body's end (chunked terminator) so the connection goes back to the pool;
        // bounded, and after `end` was stamped, so it never shows in the latencies.
        let _ =
            tokio::time::timeout(DRAIN_AFTER_DONE, async { while let Ok(Some(_)) = resp.chunk().await {} })
                .await;
    }
    result.map_err(RequestFailure::error)
}

/// `end - start` in seconds.
pub fn secs_between(start: SimTime, end: SimTime) -> f64 {
    SimDuration(end.0.saturating_sub(start.0)).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::ModelId;
    use sim::RequestId;
    use sim::workload::PrefixRef;

    fn spec(id: u64, n: u32, prefix: Option<PrefixRef>) -> RequestSpec {
        RequestSpec {
            id: RequestId(id),
            phase: 0,
            arrival: SimTime::ZERO,
            model: ModelId(0),
            num_prompt_tokens: n,
            max_tokens: 7,
            content: prefix.into(),
        }
    }

    #[test]
    fn prompts_have_the_exact_length_and_stay_in_range() {
        let b = PromptBuilder { range: (100, 200), seed: 3 };
        for n in [0, 1, 17, 500] {
            let ids = b.token_ids(&spec(n.into(), n, Some(PrefixRef { group: 1, num_tokens: 10 })));
            assert_eq!(ids.len(), n as usize);
            assert!(ids.iter().all(|&t| (100..200).contains(&t)));
        }
    }

    #[test]
    fn requests_of_one_prefix_group_share_exactly_the_prefix() {
        let b = PromptBuilder { range: (0, 32000), seed: 9 };
        let p = Some(PrefixRef { group: 4, num_tokens: 64 });
        let a = b.token_ids(&spec(1, 200, p));
        let c = b.token_ids(&spec(2, 100, p));
        assert_eq!(a[..64], c[..64]);
        assert_ne!(a[64..100], c[64..100]);
        let other = b.token_ids(&spec(3, 100, Some(PrefixRef { group: 5, num_tokens: 64 })));
        assert_ne!(a[..64], other[..64]);
        assert_eq!(a, b.token_ids(&spec(1, 200, p)), "deterministic");
    }

    #[test]
    fn the_body_fixes_the_output_length_and_asks_for_usage() {
        let s = spec(0, 3, None);
        let v = request_body(&s, "m", &[5, 6, 7], ApiMode::Completions);
        assert_eq!(v["prompt"], json!([5, 6, 7]));
        assert_eq!((v["max_tokens"].as_u64(), v["min_tokens"].as_u64()), (Some(7), Some(7)));
        assert_eq!(v["ignore_eos"], json!(true));
        assert_eq!(v["stream_options"]["include_usage"], json!(true));
        let c = request_body(&s, "m", &[5, 6, 7], ApiMode::Chat);
        assert_eq!(c["messages"][0]["content"], json!("w5 w6 w7"));
    }

    #[test]
    fn http_errors_quote_either_vllm_shape_or_the_body() {
        let flat = br#"{"object":"error","message":"This model's maximum context length is 4096 tokens","type":"BadRequestError","param":null,"code":400}"#;
        assert_eq!(
            http_error_reason(400, flat),
            "HTTP 400: BadRequestError: This model's maximum context length is 4096 tokens"
        );
        let nested =
            br#"{"error":{"message":"engine dead","type":"InternalServerError","param":null,"code":500}}"#;
        assert_eq!(http_error_reason(500, nested), "HTTP 500: InternalServerError: engine dead");
        assert_eq!(http_error_reason(502, b"Bad Gateway"), "HTTP 502: Bad Gateway");
        assert_eq!(http_error_reason(503, b""), "HTTP 503: (empty body)");
    }
}
