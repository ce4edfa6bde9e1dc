//! Writes genai-perf's `profile_export.json` (perf_analyzer's export format) from what the live
//! harness recorded, so genai-perf's own metric definitions can be computed from a live run:
//!
//! ```json
//! {"experiments":[{"requests":[{"timestamp":ns,"request_inputs":{"payload":"<json body>"},
//!                "response_timestamps":[ns,...],"response_outputs":[{"response":"data: {...}\n\n"},...],
//!                "modelsguard":{"id":0,"model":"m","prompt_tokens":8,"output_tokens":4,"max_tokens":4}}],
//!   "experiment":{"mode":"request_rate","value":2.0}}],
//!  "version":"...","service_kind":"openai","endpoint":"v1/completions"}
//! ```
//!
//! Follows what genai-perf's parser reads (perf_analyzer `genai-perf/genai_perf/profile_data_parser/
//! llm_profile_data_parser.py`, `LLMProfileDataParser._parse_requests` and `_get_input_payload`;
//! the header as `src/profile_data_exporter.cc` writes it):
//! - `/v1/completions` runs send the prompt as token ids, but genai-perf computes the input length
//!   with `" ".join(payload["prompt"])`, which fails on integers. The exported payload therefore
//!   carries the prompt as genai-perf itself sends it, a list of one string: one word `a` per
//!   prompt token, which common BPE and SentencePiece tokenizers count as one token each, so
//!   genai-perf's input length is about the real one. Every other field is as sent.
//! - Replay runs have no target rate; their experiment is labelled `request_rate` with the mean
//!   rate the requests were sent at ((n - 1) / (last send - first send)). The experiment object
//!   is written after the requests (JSON key order does not matter to genai-perf), so that rate
//!   is known.
//! - Each request also carries a `modelsguard` object (ignored by genai-perf) with the exact
//!   lengths, so `modelsguard import` restores them without a tokenizer.
//!
//! Requests are streamed into the file as they finish, so the harness keeps chunk payloads only
//! for requests in flight. Only ok requests are written (genai-perf has no notion of a failed
//! one); `response_outputs` hold the text chunks and the final `[DONE]`, never the usage chunk
//! (genai-perf indexes `choices[0]` of every response). Timestamps are nanoseconds since the Unix
//! epoch: the run's wall-clock start plus monotonic offsets.

use super::{Experiment, SendSpan};
use crate::client::RequestRecord;
use crate::sse::ApiMode;
use serde_json::{Value, json};
use sim::trace::RequestRow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// File name inside a run dir.
pub const PROFILE_EXPORT_JSON: &str = "profile_export.json";

/// The key of the per-request object genai-perf ignores and `modelsguard import` reads.
pub const OWN_FIELDS_KEY: &str = "modelsguard";

/// Streams `profile_export.json`. Call [`GenaiPerfWriter::finish`] to close the JSON.
pub struct GenaiPerfWriter {
    path: PathBuf,
    out: BufWriter<File>,
    epoch_offset_ns: u64,
    mode: ApiMode,
    experiment: Experiment,
    requests: u64,
    sends: SendSpan,
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `body` (a request body as sent) with a token-id `prompt` replaced by what genai-perf parses:
/// a list of one string, one word `a` per token. Other bodies come back unchanged.
pub fn genai_perf_payload(body: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(body) else { return body.to_string() };
    let n = match v.get("prompt").and_then(Value::as_array) {
        Some(ids) if ids.iter().all(Value::is_u64) => ids.len(),
        _ => return body.to_string(),
    };
    v["prompt"] = json!([vec!["a"; n].join(" ")]);
    v.to_string()
}

impl GenaiPerfWriter {
    /// Creates `path` and writes the header. `epoch_offset_ns` is the run start in nanoseconds
    /// since the Unix epoch.
    pub fn create(
        path: &Path,
        experiment: Experiment,
        mode: ApiMode,
        epoch_offset_ns: u64,
    ) -> io::Result<Self> {
        let f = File::create(path).map_err(|e| annotate(path, e))?;
        let mut out = BufWriter::new(f);
        write!(out, "{{\"experiments\":[{{\"requests\":[").map_err(|e| annotate(path, e))?;
        Ok(GenaiPerfWriter {
            path: path.to_path_buf(),
            out,
            epoch_offset_ns,
            mode,
            experiment,
            requests: 0,
            sends: SendSpan::default(),
        })
    }

    /// Appends one finished ok request: the body sent, its `requests.csv` row and the raw
    /// payloads it kept.
    pub fn add(&mut self, payload: &str, row: &RequestRow, rec: &RequestRecord) -> io::Result<()> {
        let Some(send) = rec.send else { return Ok(()) };
        let ts = |t: sim::SimTime| self.epoch_offset_ns.saturating_add(t.0);
        let send_ns = ts(send);
        // `[DONE]` is stamped with the request's end (`requests.csv`'s end_s), taken right after
        // it was read, so an import restores the end exactly; genai-perf ignores `[DONE]`.
        let stamp = |(t, d): &(sim::SimTime, String)| match (d.as_str(), rec.end) {
            ("[DONE]", Some(end)) => ts(end),
            _ => ts(*t),
        };
        let obj = json!({
            "timestamp": send_ns,
            "request_inputs": {"payload": genai_perf_payload(payload)},
            "response_timestamps": rec.raw.iter().map(stamp).collect::<Vec<_>>(),
            "response_outputs": rec.raw.iter()
                .map(|(_, d)| json!({"response": format!("data: {d}\n\n")}))
                .collect::<Vec<_>>(),
            OWN_FIELDS_KEY: {
                "id": row.id,
                "model": row.model,
                "prompt_tokens": row.prompt_tokens,
                "output_tokens": row.output_tokens,
                "max_tokens": row.max_tokens,
            },
        });
        let sep = if self.requests > 0 { "," } else { "" };
        write!(self.out, "{sep}{obj}").map_err(|e| annotate(&self.path, e))?;
        self.requests += 1;
        self.sends.add(send_ns);
        Ok(())
    }

    /// Closes the JSON and flushes; returns the file's path.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        let endpoint = match self.mode {
            ApiMode::Completions => "v1/completions",
            ApiMode::Chat => "v1/chat/completions",
        };
        let tail =
            json!({"version": env!("CARGO_PKG_VERSION"), "service_kind": "openai", "endpoint": endpoint});
        // Splice the tail object's fields after the experiments array.
        let tail = tail.to_string();
        let experiment = self.experiment.to_json(&self.sends);
        write!(self.out, "],\"experiment\":{experiment}}}],{}", &tail[1..])
            .map_err(|e| annotate(&self.path, e))?;
        self.out.flush().map_err(|e| annotate(&self.path, e))?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Chunk;
    use sim::SimTime;
    use sim::trace::RequestStatus;

    fn row() -> RequestRow {
        RequestRow {
            id: 3,
            model: "m".into(),
            instance: String::new(),
            phase: 0,
            scheduled_s: 0.0,
            send_s: 0.0,
            first_token_s: None,
            end_s: None,
            prompt_tokens: 3,
            output_tokens: 1,
            max_tokens: 1,
            cached_tokens: None,
            preemptions: None,
            status: RequestStatus::Ok,
            error: String::new(),
            ttft_s: None,
            e2e_s: None,
            tpot_s: None,
            itl_mean_s: None,
            itl_max_s: None,
        }
    }

    fn record(send_ns: u64) -> RequestRecord {
        RequestRecord {
            send: Some(SimTime(send_ns)),
            chunks: vec![Chunk { time: SimTime(send_ns + 10), tokens: 1 }],
            raw: vec![
                (SimTime(send_ns + 10), r#"{"choices":[{"text":"a"}]}"#.into()),
                (SimTime(send_ns + 20), "[DONE]".into()),
            ],
            end: Some(SimTime(send_ns + 20)),
            output_tokens: 1,
            ..Default::default()
        }
    }

    #[test]
    fn the_export_is_valid_json_with_one_entry_per_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROFILE_EXPORT_JSON);
        let mut w = GenaiPerfWriter::create(&path, Experiment::RequestRate(2.5), ApiMode::Completions, 1_000)
            .unwrap();
        w.add(r#"{"model":"m","prompt":[5,6,7]}"#, &row(), &record(10)).unwrap();
        w.add(r#"{"model":"m","prompt":[5,6,7]}"#, &row(), &record(10)).unwrap();
        w.finish().unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let e = &v["experiments"][0];
        assert_eq!(e["experiment"], json!({"mode": "request_rate", "value": 2.5}));
        let reqs = e["requests"].as_array().unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0]["timestamp"], json!(1_010));
        assert_eq!(reqs[0]["response_timestamps"], json!([1_020, 1_030]));
        assert_eq!(reqs[0]["response_outputs"][1]["response"], json!("data: [DONE]\n\n"));
        assert_eq!(reqs[0]["request_inputs"]["payload"], json!(r#"{"model":"m","prompt":["a a a"]}"#));
        assert_eq!(reqs[0][OWN_FIELDS_KEY]["prompt_tokens"], json!(3));
        assert_eq!(v["service_kind"], json!("openai"));
    }

    #[test]
    fn a_replay_is_labelled_with_the_rate_it_was_sent_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROFILE_EXPORT_JSON);
        let mut w = GenaiPerfWriter::create(&path, Experiment::Replay, ApiMode::Chat, 0).unwrap();
        for k in 0..5 {
            w.add(r#"{"model":"m","messages":[]}"#, &row(), &record(k * 250_000_000)).unwrap();
        }
        w.finish().unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["experiments"][0]["experiment"], json!({"mode": "request_rate", "value": 4.0}));
        assert_eq!(v["endpoint"], json!("v1/chat/completions"));
    }

    #[test]
    fn only_token_id_prompts_are_rewritten() {
        assert_eq!(genai_perf_payload(r#"{"prompt":[1,2]}"#), r#"{"prompt":["a a"]}"#);
        let chat = r#"{"messages":[{"role":"user","content":"w1 w2"}]}"#;
        assert_eq!(genai_perf_payload(chat), chat);
        assert_eq!(genai_perf_payload(r#"{"prompt":["x"]}"#), r#"{"prompt":["x"]}"#);
        assert_eq!(genai_perf_payload("not json"), "not json");
    }
}
