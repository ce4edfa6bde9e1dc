//! Engine steps reconstructed from client-side timestamps alone (stock vLLM: no step log).
//!
//! What the client sees: every streamed chunk's arrival time (`tokens.csv`), each request's send
//! time and prompt length (`requests.csv`). An engine step ends by handing one token to every
//! request it decoded or whose prompt it finished, so the chunks of one instance arrive in bursts,
//! one burst per step end. From that:
//!
//! 1. **Bursts.** An instance's chunk arrivals, sorted, are cut into bursts wherever two arrivals
//!    are more than a threshold apart, or where a request would get a second chunk in one burst
//!    (a step gives a request one token). Threshold: half the 5th percentile of the gaps between
//!    consecutive chunks of one request. Each such gap spans at least one whole step, so the
//!    threshold sits well below the shortest step and well above the spread of one burst (the
//!    report prints the 99th percentile of that spread next to it). A burst's time is its earliest
//!    arrival (delivery delays are never negative).
//! 2. **Steps.** The tokens of burst `k` are the tokens of step `k`: a request's first token there
//!    means its prompt finished in step `k`; token `i >= 1` means it decoded there. A chunk of `t`
//!    tokens (stream intervals > 1) is spread over the `t` bursts ending at it.
//! 3. **Replay** (`replay.rs`): the run's own engine instance from the simulator
//!    (`sim::instance::Instance`, built from the run's resolved scenario: the preset's scheduler and
//!    admission rule, its KV blocks, async scheduling's join rule) is stepped through the bursts:
//!    each request joins when the client sent it, each step begins when the previous one ended
//!    (or, after an idle engine, at the arrival that woke it) and ends at its burst. The instance
//!    decides the batch (prompt chunks the client cannot see included); the step is kept only when
//!    the tokens the instance samples in it are exactly those the client saw. A request sent within
//!    the arrival margin of a boundary where it matters (the step's start, or with async
//!    scheduling the previous step's start) is tried both ways; the observation picks one, and
//!    where both fit with different batches the step is left out. No scheduling rule is written
//!    in this crate.
//! 4. **Durations.** A step started when the previous one ended only if some request was still
//!    unfinished then; steps after an idle engine started at an arrival the client cannot time
//!    exactly, so they are left out. With a pipeline lag of `L` steps (tokens of step `k` reach the
//!    client when step `k + L` ends) the duration of step `k` is the time between bursts
//!    `k - L - 1` and `k - L`, kept when steps `k - L ..= k` all ran back to back; `calibrate`
//!    tries `L` = 0 and 1 and keeps the better fit.
//!
//! Assumed, not identifiable from client data: no prefix-cache hits (prompts are random token ids;
//! calibration scenarios turn prefix caching off), no CUDA-graph padding (its cost folds into the
//! decode and fixed terms), the run's engine preset, every step visible (true when
//! `max_num_batched_tokens` is at least the longest prompt: some request always finishes its
//! prompt or decodes).

use crate::step::StepFeatures;
use sim::metrics::percentile;

pub use crate::replay::replay;

/// One request as the client saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientRequest {
    /// Send time, seconds since the run started.
    pub send_s: f64,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Streamed chunks in order: (arrival time, tokens carried).
    pub chunks: Vec<(f64, u32)>,
}

impl ClientRequest {
    /// Output tokens the client received (a chunk carries at least one).
    pub fn output_tokens(&self) -> u32 {
        self.chunks.iter().map(|c| c.1.max(1)).sum()
    }
}

/// Settings of one reconstruction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReconOptions {
    /// A request sent within this long before a step started may or may not be in it, seconds.
    pub arrival_margin_s: f64,
    /// Pipeline lag, steps.
    pub lag: usize,
}

/// Bursts of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Bursts {
    /// Burst times (earliest arrival), ascending.
    pub times: Vec<f64>,
    /// Per request, the burst of each output token (empty for requests that could not be placed).
    pub token_burst: Vec<Vec<usize>>,
    /// The gap threshold used, seconds.
    pub threshold_s: f64,
    /// 99th percentile of the spread (last - first arrival) of a burst, seconds.
    pub spread_p99_s: f64,
    /// Requests whose multi-token chunks could not be placed on bursts.
    pub unplaced: usize,
}

/// Why a reconstructed step is or is not used, counted over an instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconCounts {
    /// Steps reconstructed (bursts).
    pub steps: usize,
    /// Usable for the fit.
    pub used: usize,
    /// Left out: the engine may have been idle before the step (or it is the first).
    pub idle_start: usize,
    /// Left out: a request sent within the arrival margin of the step's start.
    pub ambiguous: usize,
    /// Left out: the replay contradicts what the client saw (budget, skipped bursts, unplaced
    /// chunks).
    pub inconsistent: usize,
    /// Used steps whose prompt tokens include a chunk the replay inferred (not observed).
    pub inferred_chunks: usize,
}

impl ReconCounts {
    /// Adds `o`'s counts.
    pub fn add(&mut self, o: &ReconCounts) {
        self.steps += o.steps;
        self.used += o.used;
        self.idle_start += o.idle_start;
        self.ambiguous += o.ambiguous;
        self.inconsistent += o.inconsistent;
        self.inferred_chunks += o.inferred_chunks;
    }
}

/// One reconstructed step.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconStep {
    /// Time of the burst its tokens arrived in, seconds since the run started.
    pub burst_s: f64,
    /// Its duration when usable.
    pub duration_s: Option<f64>,
    /// What it ran.
    pub features: StepFeatures,
}

/// Cuts the chunk arrivals of `reqs` (one instance) into bursts. `Err` says why it cannot.
pub fn bursts(reqs: &[ClientRequest]) -> Result<Bursts, String> {
    let mut gaps: Vec<f64> = reqs
        .iter()
        .flat_map(|r| r.chunks.windows(2).map(|w| w[1].0 - w[0].0))
        .filter(|g| g.is_finite())
        .collect();
    if gaps.len() < 10 {
        return Err(format!(
            "only {} gaps between chunks of one request; streams of several tokens are needed \
             (output lengths >= 2)",
            gaps.len()
        ));
    }
    gaps.sort_by(f64::total_cmp);
    let threshold_s = 0.5 * percentile(&gaps, 5.0).unwrap_or(0.0);
    if threshold_s <= 0.0 {
        return Err("consecutive chunks of one request arrive at the same instant: the stream is \
                    buffered somewhere between the engine and the client, so steps cannot be told \
                    apart"
            .into());
    }
    let mut events: Vec<(f64, usize, usize)> = reqs
        .iter()
        .enumerate()
        .flat_map(|(r, q)| q.chunks.iter().enumerate().map(move |(c, &(t, _))| (t, r, c)))
        .filter(|e| e.0.is_finite())
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut times: Vec<f64> = Vec::new();
    let mut spreads: Vec<f64> = Vec::new();
    let mut last_burst_of: Vec<Option<usize>> = vec![None; reqs.len()];
    let mut chunk_burst: Vec<Vec<usize>> = reqs.iter().map(|q| vec![0; q.chunks.len()]).collect();
    let mut prev = f64::NEG_INFINITY;
    for &(t, r, c) in &events {
        let k = times.len();
        let new = k == 0 || t - prev > threshold_s || last_burst_of[r] == Some(k - 1);
        if new {
            times.push(t);
            spreads.push(0.0);
        }
        let k = times.len() - 1;
        spreads[k] = t - times[k];
        last_burst_of[r] = Some(k);
        chunk_burst[r][c] = k;
        prev = t;
    }
    spreads.sort_by(f64::total_cmp);
    let mut unplaced = 0;
    let token_burst = reqs
        .iter()
        .zip(&chunk_burst)
        .map(|(q, cb)| {
            let mut out = Vec::new();
            let mut floor: Option<usize> = None;
            for (&(_, tokens), &k) in q.chunks.iter().zip(cb) {
                let t = tokens.max(1) as usize;
                let first = k.checked_sub(t - 1).filter(|f| floor.is_none_or(|p| *f > p));
                let Some(first) = first else {
                    unplaced += 1;
                    return Vec::new();
                };
                out.extend(first..=k);
                floor = Some(k);
            }
            out
        })
        .collect();
    Ok(Bursts {
        spread_p99_s: percentile(&spreads, 99.0).unwrap_or(0.0),
        times,
        token_burst,
        threshold_s,
        unplaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays `client` with a synchronous vllm-v1 instance of `budget` batched tokens (prefix
    /// caching off, KV plentiful): the toy engine's rules.
    fn replay_v1(
        client: &[ClientRequest],
        b: &Bursts,
        budget: u32,
        margin: f64,
        lag: usize,
    ) -> (Vec<ReconStep>, ReconCounts) {
        let text = format!(
            "name = \"t\"\n[cluster]\ngpu = \"H200\"\n[defaults.engine]\npreset = \"vllm-v1\"\n\
             async_scheduling = false\nenable_prefix_caching = false\nmax_num_batched_tokens = {budget}\n\
             max_num_seqs = 64\n[[instances]]\nmodel = \"llama-3.1-8b\"\ngpu = 0\n[workload]\n\
             [[workload.phases]]\nnum_requests = 1\narrival = {{ process = \"closed_loop\", concurrency = 1 }}\n\
             input_tokens = {{ dist = \"fixed\", value = 10 }}\noutput_tokens = {{ dist = \"fixed\", value = 10 }}\n"
        );
        let file = sim::scenario::parse_scenario(&text, std::path::Path::new("t.toml"), &[]).unwrap();
        let s = &file.variants[0];
        let engine = sim::instance::Instance::new(s, sim::InstanceId(0));
        replay(&engine, s.instances[0].model, client, b, &ReconOptions { arrival_margin_s: margin, lag })
    }

    /// A toy engine: steps of `fixed + per_decode x D + per_prefill x P` seconds, prompts whole
    /// (budget permitting) first come first served, one token per step per running request,
    /// tokens delivered `jitter(k)` after each step end.
    fn engine(reqs: &[(f64, u32, u32)], budget: u32, jitter: impl Fn(usize) -> f64) -> Vec<ClientRequest> {
        engine_with_lag(reqs, budget, jitter, false)
    }

    /// [`engine`], with `lagged` tokens of a step reaching the client when the next step ends
    /// (or 10 ms after it, when the engine then idles): an async pipeline.
    fn engine_with_lag(
        reqs: &[(f64, u32, u32)],
        budget: u32,
        jitter: impl Fn(usize) -> f64,
        lagged: bool,
    ) -> Vec<ClientRequest> {
        let step = |d: usize, p: u64| 0.010 + 2e-4 * d as f64 + 1e-5 * p as f64;
        let mut out: Vec<ClientRequest> = reqs
            .iter()
            .map(|&(s, p, _)| ClientRequest { send_s: s, prompt_tokens: p, chunks: vec![] })
            .collect();
        let mut rem: Vec<u64> = reqs.iter().map(|r| u64::from(r.1)).collect();
        let mut now = 0.0;
        let mut k = 0;
        let mut held: Vec<(usize, u32)> = Vec::new();
        let mut shown = vec![0u32; reqs.len()];
        loop {
            let produced = |r: usize| if lagged { shown[r] } else { out[r].chunks.len() as u32 };
            let running: Vec<usize> =
                (0..reqs.len()).filter(|&r| rem[r] == 0 && produced(r) < reqs[r].2).collect();
            let waiting: Vec<usize> = (0..reqs.len()).filter(|&r| rem[r] > 0 && reqs[r].0 <= now).collect();
            if running.is_empty() && waiting.is_empty() {
                match reqs.iter().map(|r| r.0).filter(|&s| s > now).min_by(f64::total_cmp) {
                    Some(s) => {
                        now = s;
                        continue;
                    }
                    None => break,
                }
            }
            let mut b = u64::from(budget) - running.len() as u64;
            let mut p = 0;
            let mut finished = Vec::new();
            for &r in &waiting {
                let n = rem[r].min(b);
                p += n;
                b -= n;
                rem[r] -= n;
                if rem[r] == 0 {
                    finished.push(r);
                }
            }
            now += step(running.len(), p);
            if lagged {
                // Tokens of the previous step show now; this step's wait for the next.
                for (r, t) in held.drain(..) {
                    out[r].chunks.push((now + jitter(k), t));
                }
                held.extend(running.iter().chain(&finished).map(|&r| (r, 1)));
                for &r in running.iter().chain(&finished) {
                    shown[r] += 1;
                }
            } else {
                for &r in running.iter().chain(&finished) {
                    out[r].chunks.push((now + jitter(k), 1));
                }
            }
            k += 1;
        }
        for (r, t) in held.drain(..) {
            out[r].chunks.push((now + 0.010, t));
        }
        out
    }

    #[test]
    fn bursts_and_batches_of_a_known_engine_are_recovered() {
        // Two requests at once, a third joining mid-stream, a fourth after an idle gap.
        let reqs = [(0.0, 100, 5), (0.0, 200, 5), (0.025, 50, 4), (1.0, 80, 3)];
        let client = engine(&reqs, 8192, |k| if k % 2 == 0 { 0.0003 } else { 0.0 });
        let b = bursts(&client).unwrap();
        let (steps, counts) = replay_v1(&client, &b, 8192, 0.002, 0);
        assert_eq!(counts.steps, steps.len());
        // First step: both prompts (no duration: the engine was idle before it).
        assert_eq!(steps[0].features.num_prefill_tokens, 300);
        assert_eq!(steps[0].duration_s, None);
        let used: Vec<&ReconStep> = steps.iter().filter(|s| s.duration_s.is_some()).collect();
        assert!(!used.is_empty());
        for s in used {
            let f = &s.features;
            let want = 0.010 + 2e-4 * f.num_decode_seqs as f64 + 1e-5 * f.num_prefill_tokens as f64;
            assert!((s.duration_s.unwrap() - want).abs() < 0.0007, "{s:?}");
        }
        // The third request's prompt is computed in the step after it arrived (the fourth), next
        // to the other two decoding their token 3.
        let joined = steps.iter().find(|s| s.features.num_prefill_tokens == 50).unwrap();
        assert_eq!(joined.features.num_decode_seqs, 2);
        assert_eq!(joined.features.num_kv_tokens_read, 50 + (100 + 3) + (200 + 3));
        assert_eq!(counts.idle_start, 2, "the first step and the one after the idle gap");
    }

    #[test]
    fn a_prompt_longer_than_the_budget_left_is_chunked_first_come_first_served() {
        // A long decode-heavy request, then a 3000-token prompt with a 2048-token budget.
        let reqs = [(0.0, 10, 12), (0.015, 3000, 3)];
        let client = engine(&reqs, 2048, |_| 0.0);
        let b = bursts(&client).unwrap();
        let (steps, counts) = replay_v1(&client, &b, 2048, 0.001, 0);
        let prefill: Vec<u64> =
            steps.iter().map(|s| s.features.num_prefill_tokens).filter(|&p| p > 0).collect();
        assert_eq!(prefill, [10, 2047, 953], "the long prompt in a 2047-token chunk and its rest");
        assert_eq!(counts.inferred_chunks, 1);
    }

    #[test]
    fn with_a_one_step_pipeline_lag_only_lag_1_pairs_steps_with_their_durations() {
        let reqs = [(0.0, 300, 12), (0.0, 40, 9), (0.05, 900, 10), (0.09, 120, 6)];
        let client = engine_with_lag(&reqs, 8192, |_| 0.0, true);
        let b = bursts(&client).unwrap();
        let replayed = |lag| {
            let (steps, counts) = replay_v1(&client, &b, 8192, 0.001, lag);
            let err = steps
                .iter()
                .filter_map(|s| {
                    let f = &s.features;
                    let want = 0.010 + 2e-4 * f.num_decode_seqs as f64 + 1e-5 * f.num_prefill_tokens as f64;
                    s.duration_s.map(|d| (d - want).abs())
                })
                .fold(0.0, f64::max);
            (counts, err)
        };
        let (c1, err1) = replayed(1);
        assert!(err1 < 1e-9, "lag 1 explains every usable step: {err1}");
        assert_eq!(c1.used + c1.idle_start, c1.steps, "{c1:?}");
        // Lag 0 puts arrivals in the wrong steps: the batches it replays contradict the tokens
        // seen in most of them.
        let (c0, _) = replayed(0);
        assert!(c0.inconsistent * 2 > c0.steps && c0.used * 3 < c1.used, "{c0:?} vs {c1:?}");
    }

    #[test]
    fn chunks_of_one_request_in_the_same_instant_cannot_be_told_apart() {
        let buffered: Vec<ClientRequest> = (0..4)
            .map(|i| ClientRequest {
                send_s: 0.0,
                prompt_tokens: 10,
                chunks: vec![(1.0 + f64::from(i), 1); 5],
            })
            .collect();
        assert!(bursts(&buffered).unwrap_err().contains("buffered"));
    }
}
