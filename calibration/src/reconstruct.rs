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
//! 2. **Batches.** In the step ending at burst `k`: the decodes are the requests whose token `i >=
//!    1` came in it (context after the step: prompt + `i`); the requests whose first token came in
//!    it finished their prompt there. A chunk of `t` tokens (stream intervals > 1) is spread over
//!    the `t` bursts ending at it. A request skipping bursts between two tokens (preempted, or
//!    starved of budget) makes the burst where it reappears unusable.
//! 3. **Prompt chunks**, replayed as vLLM V1 schedules (`Scheduler.schedule`, vllm 0.11): decodes
//!    first, then prompts first come first served within `max_num_batched_tokens` (from the run's
//!    scenario), a prompt too long for what is left chunked. A prompt finished in step `k` computed
//!    all its remaining tokens there. A request that had surely arrived by the step's start (sent
//!    more than the arrival margin before it) and is still waiting takes what budget is left as a
//!    chunk; if its whole remainder would have fit, the replay contradicts the observation and the
//!    step is unusable; a request sent within the margin of the start makes it unusable too (it may
//!    or may not have made the step).
//! 4. **Durations.** A step started when the previous one ended only if some request was still
//!    unfinished then; steps after an idle engine started at an arrival the client cannot time
//!    exactly, so they are left out. With a pipeline lag of `L` steps (tokens of step `k` reach the
//!    client when step `k + L` ends) the duration of step `k` is the time between bursts
//!    `k - L - 1` and `k - L`; `calibrate` tries `L` = 0 and 1 and keeps the better fit.
//!
//! Assumed, not identifiable from client data: no prefix-cache hits (prompts are random token ids;
//! calibration scenarios turn prefix caching off), no CUDA-graph padding (its cost folds into the
//! decode and fixed terms), vLLM V1's first-come-first-served chunking, every step visible (true
//! when `max_num_batched_tokens` is at least the longest prompt: some request always finishes its
//! prompt or decodes).

use crate::step::StepFeatures;
use sim::metrics::percentile;

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

/// Settings of one reconstruction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReconOptions {
    /// The engine's `max_num_batched_tokens`.
    pub budget: u32,
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

/// How a step began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Right as the previous step ended (some request was unfinished).
    Busy,
    /// A request arrived about when the previous step ended.
    Ambiguous,
    /// After an idle engine (or the first step).
    Idle,
}

/// Replays the steps of one instance (see the module doc).
pub fn replay(reqs: &[ClientRequest], b: &Bursts, opts: &ReconOptions) -> (Vec<ReconStep>, ReconCounts) {
    let n = b.times.len();
    let mut decodes: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut completions: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut broken = vec![false; n];
    // The burst of the first and last token of each placed request.
    let mut first = vec![usize::MAX; reqs.len()];
    let mut last = vec![0usize; reqs.len()];
    for (r, tb) in b.token_burst.iter().enumerate() {
        if tb.is_empty() {
            continue;
        }
        first[r] = tb[0];
        last[r] = tb[tb.len() - 1];
        completions[tb[0]].push(r);
        for (i, w) in tb.windows(2).enumerate() {
            decodes[w[1]].push((r, i + 1));
            if w[1] > w[0] + 1 {
                broken[w[1]] = true;
            }
        }
    }
    // Chunks of requests that could not be placed: the steps they arrived in are unknown batches.
    for (r, q) in reqs.iter().enumerate() {
        if b.token_burst[r].is_empty() {
            for &(t, _) in &q.chunks {
                let k = b.times.partition_point(|&x| x <= t).saturating_sub(1);
                if let Some(x) = broken.get_mut(k) {
                    *x = true;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..reqs.len()).filter(|&r| first[r] != usize::MAX).collect();
    order.sort_by(|&x, &y| reqs[x].send_s.total_cmp(&reqs[y].send_s).then(x.cmp(&y)));
    let sends: Vec<f64> = order.iter().map(|&r| reqs[r].send_s).collect();
    let mut prefix_last = Vec::with_capacity(order.len());
    let mut m = 0usize;
    for &r in &order {
        m = m.max(last[r]);
        prefix_last.push(m);
    }
    // Any request sent before `t` still unfinished at step `k`?
    let unfinished_sent_before = |t: f64, k: usize| -> bool {
        let cnt = sends.partition_point(|&s| s < t);
        cnt > 0 && prefix_last[cnt - 1] >= k
    };
    let mut rem: Vec<u64> = reqs.iter().map(|q| u64::from(q.prompt_tokens)).collect();
    // Requests whose prompt progress the replay lost track of (it could not tell whether they
    // took a chunk): the step that finishes their prompt is unusable too.
    let mut lost = vec![false; reqs.len()];
    let mut pending: Vec<usize> = order.clone();
    let margin = opts.arrival_margin_s.max(0.0);
    let mut steps = Vec::with_capacity(n);
    let mut counts = ReconCounts { steps: n, ..ReconCounts::default() };
    for k in 0..n {
        // The previous step's end, as the client timed it.
        let prev_end = k.checked_sub(opts.lag + 1).map(|j| b.times[j]);
        let start_kind = match prev_end {
            None => Start::Idle,
            Some(e) if unfinished_sent_before(e - margin, k) => Start::Busy,
            Some(e) if unfinished_sent_before(e, k) => Start::Ambiguous,
            Some(_) => Start::Idle,
        };
        let mut f = StepFeatures { num_steps: 1, ..StepFeatures::default() };
        let mut bad = broken[k];
        let mut ambiguous = start_kind == Start::Ambiguous;
        let mut inferred = false;
        for &(r, i) in &decodes[k] {
            f.add_decode(u64::from(reqs[r].prompt_tokens) + i as u64);
        }
        let mut budget = u64::from(opts.budget).checked_sub(decodes[k].len() as u64).unwrap_or_else(|| {
            bad = true;
            0
        });
        let mut done: Vec<usize> = completions[k].clone();
        done.sort_by(|&x, &y| reqs[x].send_s.total_cmp(&reqs[y].send_s));
        // After an idle engine the step began when its first request arrived.
        let woke = done
            .iter()
            .chain(pending.iter().filter(|&&r| rem[r] > 0))
            .map(|&r| reqs[r].send_s)
            .fold(f64::INFINITY, f64::min);
        for &r in &done {
            let p = u64::from(reqs[r].prompt_tokens);
            let n_new = rem[r];
            bad |= lost[r];
            f.add_prefill_chunk(p - n_new, n_new);
            if n_new > budget {
                bad = true;
            }
            budget = budget.saturating_sub(n_new);
            rem[r] = 0;
        }
        pending.retain(|&r| rem[r] > 0);
        // Who had surely arrived by the step's start, and who might have.
        let (sure, maybe) = match (start_kind, prev_end) {
            (Start::Idle, _) => (woke, woke + margin),
            (_, Some(e)) => (e - margin, e),
            (_, None) => (f64::NEG_INFINITY, f64::NEG_INFINITY),
        };
        for &r in &pending {
            let s = reqs[r].send_s;
            if budget == 0 || s > maybe {
                break;
            }
            let arrived = if start_kind == Start::Idle { s <= sure } else { s < sure };
            if !arrived {
                ambiguous = true;
                lost[r] = true;
                break;
            }
            if rem[r] <= budget {
                bad = true;
                lost[r] = true;
                break;
            }
            let p = u64::from(reqs[r].prompt_tokens);
            f.add_prefill_chunk(p - rem[r], budget);
            rem[r] -= budget;
            budget = 0;
            inferred = true;
        }
        if bad || ambiguous {
            // What this step computed is uncertain, so is the progress of every prompt that may
            // have shared it.
            for &r in pending.iter().take_while(|&&r| reqs[r].send_s <= maybe) {
                lost[r] = true;
            }
        }
        let duration = k
            .checked_sub(opts.lag + 1)
            .map(|j| b.times[j + 1] - b.times[j])
            .filter(|d| *d > 0.0 && start_kind == Start::Busy && !bad && !ambiguous);
        match (duration, start_kind) {
            (Some(_), _) => {
                counts.used += 1;
                counts.inferred_chunks += usize::from(inferred);
            }
            (None, Start::Idle) => counts.idle_start += 1,
            (None, _) if bad => counts.inconsistent += 1,
            (None, _) => counts.ambiguous += 1,
        }
        steps.push(ReconStep { burst_s: b.times[k], duration_s: duration, features: f });
    }
    (steps, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (steps, counts) =
            replay(&client, &b, &ReconOptions { budget: 8192, arrival_margin_s: 0.002, lag: 0 });
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
        let (steps, counts) =
            replay(&client, &b, &ReconOptions { budget: 2048, arrival_margin_s: 0.001, lag: 0 });
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
        let err = |lag| {
            let (steps, _) =
                replay(&client, &b, &ReconOptions { budget: 8192, arrival_margin_s: 0.001, lag });
            let used: Vec<f64> = steps
                .iter()
                .filter_map(|s| {
                    let f = &s.features;
                    let want = 0.010 + 2e-4 * f.num_decode_seqs as f64 + 1e-5 * f.num_prefill_tokens as f64;
                    s.duration_s.map(|d| (d - want).abs())
                })
                .collect();
            assert!(!used.is_empty());
            used.iter().copied().fold(0.0, f64::max)
        };
        assert!(err(1) < 1e-9, "lag 1 explains every usable step: {}", err(1));
        assert!(err(0) > 1e-4, "lag 0 pairs steps with their neighbours' durations: {}", err(0));
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
