//! SSE parser and OpenAI stream interpreter: every case of the wire reference as a known-answer
//! test, plus chunking invariance and bounded memory under arbitrary bytes.

use live::sse::{
    ApiMode, SseError, SseParser, StreamError, StreamEvent, StreamInterpreter, StreamSummary, Usage,
};
use proptest::prelude::*;

/// Feeds `bytes` split at `cuts` and returns the payloads and the first error.
fn parse_chunked(bytes: &[u8], cuts: &[usize], limit: usize) -> (Vec<String>, Option<SseError>, usize) {
    let mut p = SseParser::with_limit(limit);
    let mut out = Vec::new();
    let mut err = None;
    let mut peak = 0;
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    bounds.sort_unstable();
    bounds.push(bytes.len());
    for b in bounds {
        if b < at {
            continue;
        }
        if let Err(e) = p.push(&bytes[at..b], &mut out) {
            err.get_or_insert(e);
        }
        peak = peak.max(p.buffered_bytes());
        at = b;
    }
    (out, err, peak)
}

/// Runs a whole stream through parser and interpreter.
fn run(bytes: &[u8], mode: ApiMode) -> (Vec<StreamEvent>, Result<StreamSummary, StreamError>) {
    let (payloads, err, _) = parse_chunked(bytes, &[], 1 << 20);
    assert_eq!(err, None);
    let mut it = StreamInterpreter::new(mode);
    let mut events = Vec::new();
    for p in payloads {
        match it.on_data(&p) {
            Ok(e) => events.push(e),
            Err(_) => break,
        }
    }
    (events, it.finish())
}

const TEXT: StreamEvent = StreamEvent::Text { tokens: 1 };

#[test]
fn a_completions_stream_counts_tokens_from_the_usage_chunk() {
    let s = concat!(
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\" Hello\",\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\" world, again\",\"finish_reason\":\"length\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":10,\"completion_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    );
    let (events, summary) = run(s.as_bytes(), ApiMode::Completions);
    assert_eq!(events, vec![TEXT, TEXT, StreamEvent::Usage, StreamEvent::Done]);
    let summary = summary.unwrap();
    // Two chunks carried five tokens (stream interval / stop-string holdback): usage wins.
    assert_eq!((summary.output_tokens, summary.text_chunks), (5, 2));
    assert_eq!(
        summary.usage,
        Usage { prompt_tokens: Some(5), completion_tokens: Some(5), cached_tokens: None }
    );
    assert_eq!(summary.finish_reason.as_deref(), Some("length"));
}

#[test]
fn without_usage_tokens_are_counted_as_text_chunks() {
    let s = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\ndata: [DONE]\n\n";
    let (_, summary) = run(s.as_bytes(), ApiMode::Completions);
    assert_eq!(summary.unwrap().output_tokens, 2);
}

#[test]
fn the_chat_role_only_first_chunk_is_not_the_first_token() {
    let s = concat!(
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
        "data: [DONE]\n\n",
    );
    let (events, summary) = run(s.as_bytes(), ApiMode::Chat);
    assert_eq!(
        events,
        vec![StreamEvent::Empty, TEXT, StreamEvent::Empty, StreamEvent::Usage, StreamEvent::Done]
    );
    assert_eq!(summary.unwrap().output_tokens, 1);
}

#[test]
fn keep_alive_comments_crlf_and_data_without_a_space_are_all_understood() {
    let s = concat!(
        ": ping\r\n\r\n",
        "data:{\"choices\":[{\"text\":\"x\"}]}\r\n\r\n",
        ":\n",
        "data: {\"choices\":[{\"text\":\"y\"}]}\r\r",
        "data:[DONE]\r\n\r\n",
    );
    let (events, summary) = run(s.as_bytes(), ApiMode::Completions);
    assert_eq!(events, vec![TEXT, TEXT, StreamEvent::Done]);
    assert_eq!(summary.unwrap().output_tokens, 2);
}

#[test]
fn a_mid_stream_error_event_fails_the_stream_with_its_message() {
    let nested = concat!(
        "data: {\"choices\":[{\"text\":\"a\"}]}\n\n",
        "data: {\"error\":{\"object\":\"error\",\"message\":\"CUDA out of memory\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\n",
        "data: [DONE]\n\n",
    );
    let (_, r) = run(nested.as_bytes(), ApiMode::Completions);
    assert_eq!(r, Err(StreamError::Server("InternalServerError: CUDA out of memory".into())));
    let flat = "data: {\"object\":\"error\",\"message\":\"boom\",\"type\":\"BadRequestError\",\"code\":400}\n\ndata: [DONE]\n\n";
    let (_, r) = run(flat.as_bytes(), ApiMode::Chat);
    assert_eq!(r, Err(StreamError::Server("BadRequestError: boom".into())));
}

#[test]
fn a_stream_that_ends_without_done_is_a_failure() {
    let s =
        "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\ndata: {\"choi";
    let (events, r) = run(s.as_bytes(), ApiMode::Completions);
    assert_eq!(events, vec![TEXT, TEXT]);
    assert_eq!(r, Err(StreamError::EndedWithoutDone { chunks: 2 }));
}

#[test]
fn a_payload_that_is_not_json_is_malformed() {
    let (_, r) = run(b"data: hello\n\ndata: [DONE]\n\n", ApiMode::Completions);
    assert!(matches!(r, Err(StreamError::Malformed { .. })), "{r:?}");
}

#[test]
fn continuous_usage_gives_each_chunk_its_token_count() {
    let s = concat!(
        "data: {\"choices\":[{\"text\":\"ab\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
        "data: {\"choices\":[{\"text\":\"c\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
    );
    let (events, _) = run(s.as_bytes(), ApiMode::Completions);
    assert_eq!(events[..2], [StreamEvent::Text { tokens: 2 }, StreamEvent::Text { tokens: 1 }]);
}

#[test]
fn multi_line_data_is_joined_with_newlines_and_other_fields_are_ignored() {
    let (out, err, _) =
        parse_chunked(b"event: x\nid: 3\nretry: 10\ndata: a\ndata\ndata: b\nbogus\n\n", &[], 64);
    assert_eq!((out, err), (vec!["a\n\nb".to_string()], None));
}

#[test]
fn an_event_without_a_blank_line_at_the_end_is_discarded() {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    p.push(b"data: a\n\ndata: b\n", &mut out).unwrap();
    assert_eq!(out, vec!["a"]);
    assert!(p.has_partial_event());
}

/// A valid OpenAI stream with random content and random framing choices.
fn stream_strategy() -> impl Strategy<Value = (Vec<u8>, usize)> {
    let item = prop_oneof![
        "[a-z ]{0,8}".prop_map(|t| format!("{{\"choices\":[{{\"text\":\"{t}\"}}]}}")),
        Just(": keep-alive".to_string()),
        Just("{\"choices\":[],\"usage\":{\"completion_tokens\":9}}".to_string()),
    ];
    (prop::collection::vec((item, 0..3usize, any::<bool>()), 0..12)).prop_map(|items| {
        let mut s = String::new();
        let mut texts = 0;
        for (it, eol, space) in items {
            let eol = ["\n", "\r\n", "\r"][eol];
            if it.starts_with(':') {
                s.push_str(&it);
                s.push_str(eol);
                continue;
            }
            if it.contains("\"text\":\"") && !it.contains("\"text\":\"\"") {
                texts += 1;
            }
            s.push_str(if space { "data: " } else { "data:" });
            s.push_str(&it);
            s.push_str(eol);
            s.push_str(eol);
        }
        s.push_str("data: [DONE]\n\n");
        (s.into_bytes(), texts)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_within_the_limit(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(0usize..2048, 0..16),
        limit in 1usize..128,
    ) {
        let (out, err, peak) = parse_chunked(&bytes, &cuts, limit);
        prop_assert!(peak <= 2 * limit, "buffered {peak} bytes with a limit of {limit}");
        for e in &out {
            prop_assert!(e.len() <= limit * 4, "event of {} bytes", e.len());
        }
        let whole = parse_chunked(&bytes, &[], limit);
        prop_assert_eq!((out, err), (whole.0, whole.1));
        let mut it = StreamInterpreter::new(ApiMode::Completions);
        for p in parse_chunked(&bytes, &[], limit).0 {
            let _ = it.on_data(&p);
        }
        let _ = it.finish();
    }

    #[test]
    fn sse_framing_bytes_in_any_chunking_give_the_same_events(
        body in prop::collection::vec(prop::sample::select(b"data: {}\r\n:x[DONE]".to_vec()), 0..256),
        cuts in prop::collection::vec(0usize..256, 0..32),
    ) {
        let a = parse_chunked(&body, &cuts, 1 << 20);
        let b = parse_chunked(&body, &[], 1 << 20);
        prop_assert_eq!((a.0, a.1), (b.0, b.1));
    }

    #[test]
    fn a_valid_stream_in_any_chunking_reads_the_same(
        (bytes, texts) in stream_strategy(),
        cuts in prop::collection::vec(0usize..2048, 0..32),
    ) {
        let (payloads, err, _) = parse_chunked(&bytes, &cuts, 1 << 20);
        prop_assert_eq!(err, None);
        let mut it = StreamInterpreter::new(ApiMode::Completions);
        let mut text_events = 0;
        for p in &payloads {
            if let StreamEvent::Text { .. } = it.on_data(p).unwrap() {
                text_events += 1;
            }
        }
        prop_assert_eq!(text_events, texts);
        let summary = it.finish().unwrap();
        prop_assert_eq!(summary.text_chunks as usize, texts);
        prop_assert_eq!(payloads, parse_chunked(&bytes, &[], 1 << 20).0);
    }
}

/// OpenAI-shaped chunks with hostile values: huge, negative, fractional and non-numeric counts,
/// wrong types, error shapes and JSON nested past serde's recursion limit.
fn hostile_chunk() -> impl Strategy<Value = String> {
    let num = prop::sample::select(vec![
        "0",
        "-1",
        "4294967296",
        "18446744073709551615",
        "1e400",
        "1.5",
        "null",
        "\"7\"",
        "[]",
        "{}",
    ]);
    let text =
        prop::sample::select(vec!["\"\"", "\"a\"", "null", "7", "[\"a\"]", "{\"x\":1}", "\"\\ud800\""]);
    prop_oneof![
        (text.clone(), num.clone()).prop_map(|(t, n)| format!(
            "{{\"choices\":[{{\"text\":{t},\"finish_reason\":{t}}}],\"usage\":{{\"completion_tokens\":{n}}}}}"
        )),
        (text, num.clone()).prop_map(|(t, n)| format!(
            "{{\"choices\":[{{\"delta\":{{\"content\":{t}}}}}],\"usage\":{{\"prompt_tokens\":{n},\"prompt_tokens_details\":{{\"cached_tokens\":{n}}}}}}}"
        )),
        num.clone().prop_map(|n| format!("{{\"choices\":{n},\"usage\":{n}}}")),
        num.prop_map(|n| format!("{{\"error\":{n},\"object\":\"error\",\"message\":{n},\"type\":{n}}}")),
        (1usize..400).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
        (1usize..400).prop_map(|d| "{\"a\":".repeat(d)),
        Just("[DONE]".to_string()),
        ".{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Issue 12 item 10: whatever a server streams, the interpreter returns events or an error.
    #[test]
    fn hostile_chunks_never_panic_and_count_sanely(
        chunks in prop::collection::vec(hostile_chunk(), 0..16),
        chat in any::<bool>(),
    ) {
        let mut it = StreamInterpreter::new(if chat { ApiMode::Chat } else { ApiMode::Completions });
        let mut texts = 0u32;
        for c in &chunks {
            match it.on_data(c) {
                Ok(StreamEvent::Text { tokens }) => {
                    prop_assert!(tokens >= 1);
                    texts += 1;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        prop_assert_eq!(it.summary().text_chunks, texts);
        if let Ok(s) = it.finish() {
            prop_assert_eq!(s.text_chunks, texts);
        }
    }
}
