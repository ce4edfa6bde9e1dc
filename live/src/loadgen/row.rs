//! Turns what one request recorded into its `requests.csv` row, with the latency definitions of
//! `vllm bench serve` (TTFT = first non-empty chunk - send; TPOT = (E2E - TTFT)/(n - 1); ITL =
//! every gap between chunks with text).

use crate::client::{RequestFailure, RequestRecord, secs_between};
use sim::SimTime;
use sim::trace::{RequestRow, RequestStatus};
use sim::workload::RequestSpec;

/// Gaps between consecutive text chunks, seconds.
pub fn chunk_gaps(rec: &RequestRecord) -> impl Iterator<Item = f64> + '_ {
    rec.chunks.windows(2).map(|w| secs_between(w[0].time, w[1].time))
}

/// The row of `spec`, served by `instance` (empty when unknown), recorded in `rec`, ended by
/// `result`. `fallback_send` stands for the send time when the request never reached the client.
pub fn request_row(
    spec: &RequestSpec,
    model_key: &str,
    instance: &str,
    rec: &RequestRecord,
    result: &Result<(), RequestFailure>,
    fallback_send: SimTime,
) -> RequestRow {
    let send = rec.send.unwrap_or(fallback_send);
    let first = rec.first_token();
    let ttft = first.map(|f| secs_between(send, f));
    let e2e = rec.end.map(|e| secs_between(send, e));
    let (status, error) = match result {
        Ok(()) => (RequestStatus::Ok, String::new()),
        Err(f) => (f.status, f.reason.clone()),
    };
    let n = rec.output_tokens;
    let tpot = match (status, ttft, e2e) {
        (RequestStatus::Ok, Some(t), Some(e)) if n >= 2 => Some((e - t).max(0.0) / f64::from(n - 1)),
        _ => None,
    };
    let (mut gaps, mut max) = (0u32, None::<f64>);
    let mut sum = 0.0;
    for g in chunk_gaps(rec) {
        gaps += 1;
        sum += g;
        max = Some(max.map_or(g, |m| m.max(g)));
    }
    RequestRow {
        id: spec.id.0,
        model: model_key.to_string(),
        instance: instance.to_string(),
        phase: spec.phase,
        scheduled_s: spec.arrival.as_secs_f64(),
        send_s: send.as_secs_f64(),
        first_token_s: first.map(SimTime::as_secs_f64),
        end_s: rec.end.map(SimTime::as_secs_f64),
        prompt_tokens: spec.num_prompt_tokens,
        output_tokens: n,
        max_tokens: spec.max_tokens,
        cached_tokens: None,
        preemptions: None,
        status,
        error,
        ttft_s: ttft,
        e2e_s: e2e,
        tpot_s: tpot,
        itl_mean_s: (gaps > 0).then(|| sum / f64::from(gaps)),
        itl_max_s: max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Chunk;
    use sim::{ModelId, RequestId};

    fn spec() -> RequestSpec {
        RequestSpec {
            id: RequestId(3),
            phase: 1,
            arrival: SimTime(1_000_000_000),
            model: ModelId(0),
            num_prompt_tokens: 10,
            max_tokens: 4,
            content: Default::default(),
        }
    }

    fn ms(x: u64) -> SimTime {
        SimTime(x * 1_000_000)
    }

    #[test]
    fn latencies_follow_vllm_bench_serve() {
        let rec = RequestRecord {
            send: Some(ms(1000)),
            chunks: [1100, 1150, 1250, 1300].map(|t| Chunk { time: ms(t), tokens: 1 }).to_vec(),
            end: Some(ms(1310)),
            output_tokens: 4,
            ..Default::default()
        };
        let r = request_row(&spec(), "m", "i0", &rec, &Ok(()), ms(0));
        assert_eq!(r.status, RequestStatus::Ok);
        assert!((r.ttft_s.unwrap() - 0.1).abs() < 1e-9);
        assert!((r.e2e_s.unwrap() - 0.31).abs() < 1e-9);
        assert!((r.tpot_s.unwrap() - 0.21 / 3.0).abs() < 1e-9);
        assert!((r.itl_mean_s.unwrap() - 0.2 / 3.0).abs() < 1e-9);
        assert!((r.itl_max_s.unwrap() - 0.1).abs() < 1e-9);
        assert_eq!((r.scheduled_s, r.error.as_str()), (1.0, ""));
    }

    #[test]
    fn a_request_that_never_reached_the_client_uses_the_fallback_send_time() {
        let fail = Err(RequestFailure::timeout("run deadline reached"));
        let r = request_row(&spec(), "m", "", &RequestRecord::default(), &fail, ms(5));
        assert_eq!((r.status, r.send_s, r.ttft_s, r.tpot_s), (RequestStatus::Timeout, 0.005, None, None));
        assert_eq!(r.error, "run deadline reached");
    }
}
