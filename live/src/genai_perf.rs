//! Writes genai-perf's `profile_export.json` (perf_analyzer's export format) from what the live
//! harness recorded, so genai-perf's own metric definitions can be computed from a live run:
//!
//! ```json
//! {"experiments":[{"experiment":{"mode":"request_rate","value":2.0},
//!   "requests":[{"timestamp":ns,"request_inputs":{"payload":"<json body>"},
//!                "response_timestamps":[ns,...],"response_outputs":[{"response":"data: {...}\n\n"},...]}]}],
//!  "version":"...","service_kind":"openai","endpoint":"v1/completions"}
//! ```
//!
//! Requests are streamed into the file as they finish, so the harness keeps chunk payloads only
//! for requests in flight. Only ok requests are written (genai-perf has no notion of a failed
//! one); `response_outputs` hold the text chunks and the final `[DONE]`, never the usage chunk
//! (genai-perf indexes `choices[0]` of every response). Timestamps are nanoseconds since the Unix
//! epoch: the run's wall-clock start plus monotonic offsets.

use crate::client::RequestRecord;
use crate::sse::ApiMode;
use serde_json::{Value, json};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// File name inside a run dir.
pub const PROFILE_EXPORT_JSON: &str = "profile_export.json";

/// genai-perf's experiment kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Experiment {
    /// `--concurrency N` (closed loop).
    Concurrency(u32),
    /// `--request-rate R` (open loop).
    RequestRate(f64),
}

impl Experiment {
    fn to_json(self) -> Value {
        match self {
            Experiment::Concurrency(n) => json!({"mode": "concurrency", "value": n}),
            Experiment::RequestRate(r) => json!({"mode": "request_rate", "value": r}),
        }
    }
}

/// Streams `profile_export.json`. Call [`GenaiPerfWriter::finish`] to close the JSON.
pub struct GenaiPerfWriter {
    path: PathBuf,
    out: BufWriter<File>,
    epoch_offset_ns: u64,
    mode: ApiMode,
    requests: u64,
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
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
        write!(out, "{{\"experiments\":[{{\"experiment\":{},\"requests\":[", experiment.to_json())
            .map_err(|e| annotate(path, e))?;
        Ok(GenaiPerfWriter { path: path.to_path_buf(), out, epoch_offset_ns, mode, requests: 0 })
    }

    /// Appends one finished ok request: its body and the raw payloads it kept.
    pub fn add(&mut self, payload: &str, rec: &RequestRecord) -> io::Result<()> {
        let Some(send) = rec.send else { return Ok(()) };
        let ts = |t: sim::SimTime| self.epoch_offset_ns.saturating_add(t.0);
        let obj = json!({
            "timestamp": ts(send),
            "request_inputs": {"payload": payload},
            "response_timestamps": rec.raw.iter().map(|(t, _)| ts(*t)).collect::<Vec<_>>(),
            "response_outputs": rec.raw.iter()
                .map(|(_, d)| json!({"response": format!("data: {d}\n\n")}))
                .collect::<Vec<_>>(),
        });
        let sep = if self.requests > 0 { "," } else { "" };
        write!(self.out, "{sep}{obj}").map_err(|e| annotate(&self.path, e))?;
        self.requests += 1;
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
        write!(self.out, "]}}],{}", &tail[1..]).map_err(|e| annotate(&self.path, e))?;
        self.out.flush().map_err(|e| annotate(&self.path, e))?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Chunk;
    use sim::SimTime;

    #[test]
    fn the_export_is_valid_json_with_one_entry_per_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROFILE_EXPORT_JSON);
        let mut w = GenaiPerfWriter::create(&path, Experiment::RequestRate(2.5), ApiMode::Completions, 1_000)
            .unwrap();
        let rec = RequestRecord {
            send: Some(SimTime(10)),
            chunks: vec![Chunk { time: SimTime(20), tokens: 1 }],
            raw: vec![(SimTime(20), r#"{"choices":[{"text":"a"}]}"#.into()), (SimTime(30), "[DONE]".into())],
            end: Some(SimTime(30)),
            output_tokens: 1,
            ..Default::default()
        };
        w.add(r#"{"model":"m"}"#, &rec).unwrap();
        w.add(r#"{"model":"m"}"#, &rec).unwrap();
        w.finish().unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let e = &v["experiments"][0];
        assert_eq!(e["experiment"], json!({"mode": "request_rate", "value": 2.5}));
        let reqs = e["requests"].as_array().unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0]["timestamp"], json!(1_010));
        assert_eq!(reqs[0]["response_timestamps"], json!([1_020, 1_030]));
        assert_eq!(reqs[0]["response_outputs"][1]["response"], json!("data: [DONE]\n\n"));
        assert_eq!(reqs[0]["request_inputs"]["payload"], json!(r#"{"model":"m"}"#));
        assert_eq!(v["service_kind"], json!("openai"));
    }
}
