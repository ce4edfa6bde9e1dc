//! The replay half of the reconstruction (see `reconstruct`'s module doc): the simulator's own
//! engine instance (`sim::instance::Instance`: the preset's scheduler, admission rule, async
//! scheduling's join rule and deferred frees) is stepped through the steps the client saw, with
//! the step boundaries taken from the bursts, and each step's batch is checked against the tokens
//! the client saw in it. No scheduling rule is written here: where the instance and the
//! observation disagree, the step is left out.

use crate::reconstruct::{Bursts, ClientRequest, ReconCounts, ReconOptions, ReconStep};
use crate::step::StepFeatures;
use sim::engine::{SchedulerOutput, StepEvents};
use sim::instance::Instance;
use sim::workload::RequestSpec;
use sim::{ModelId, RequestId, SimTime};
use std::collections::BTreeSet;

/// How a step began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Right as the previous step ended (some request was unfinished).
    Busy,
    /// After an idle engine (or the first step).
    Idle,
}

/// One way the step could have gone: the instance after it and what it did.
struct Outcome {
    inst: Instance,
    out: Option<SchedulerOutput>,
    sampled: Vec<(usize, u32)>,
    /// Requests still computing their prompt during the step.
    prefilling: Vec<usize>,
    /// Requests handed to the instance (by index), with the arrival time they were given.
    added: Vec<usize>,
}

/// Requests in send order, with when they reach the engine.
#[derive(Clone, Copy)]
struct Arrivals<'a> {
    reqs: &'a [ClientRequest],
    order: &'a [usize],
    /// Index into `order` of the next request not yet handed to the instance.
    next: usize,
    model: ModelId,
}

impl Arrivals<'_> {
    fn send(&self, j: usize) -> Option<f64> {
        self.order.get(j).map(|&r| self.reqs[r].send_s)
    }

    fn request(&self, r: usize, arrival_s: f64) -> sim::engine::Request {
        let q = &self.reqs[r];
        let spec = RequestSpec {
            id: RequestId(r as u64),
            phase: 0,
            arrival: SimTime::from_secs_f64(arrival_s),
            model: self.model,
            num_prompt_tokens: q.prompt_tokens,
            max_tokens: q.output_tokens().max(1),
            content: Default::default(),
        };
        sim::engine::Request::new(&spec, spec.arrival)
    }
}

/// Runs one step on a copy of `inst`. A request sent within the margin of a boundary `x` of
/// `windows` (either side: the client's and the engine's clocks differ by the delivery latency
/// and the engine's own lateness) arrived just after it when `late`, by it when not; every other
/// request sent by `now` arrived when it was sent. The step begins at `now` and ends at `end`.
/// When a step runs and which arrivals are in doubt.
#[derive(Clone, Copy)]
struct StepAt<'w> {
    now: f64,
    end: f64,
    windows: &'w [f64],
    idle: bool,
    margin: f64,
}

fn run_step(inst: &Instance, arr: &Arrivals<'_>, at_: &StepAt<'_>, late: bool, forced: usize) -> Outcome {
    let StepAt { now, end, windows, idle, margin } = *at_;
    let mut inst = inst.clone();
    let mut added = Vec::new();
    let mut j = arr.next;
    let earliest = windows.iter().copied().fold(now, f64::min);
    while let Some(s) = arr.send(j).filter(|&s| s <= now + margin || j < forced) {
        let r = arr.order[j];
        let at = match windows.iter().find(|&&x| s > x - margin && s <= x + margin) {
            // The client saw it in this step: it was there, whatever the clocks say.
            _ if j < forced => s.min(earliest),
            // After an idle engine the first request woke it: it is in the step either way.
            _ if idle && j == arr.next => s.min(now),
            Some(&x) if late => x.max(now) + 1e-9,
            Some(&x) => s.min(x),
            None => s,
        };
        if at > now {
            break; // it (and every later send) joins a later step
        }
        // Rejections cannot happen for a request the engine served; a rejected one is skipped.
        let _ = inst.add_request(arr.request(r, at));
        added.push(r);
        j += 1;
    }
    let t0 = SimTime::from_secs_f64(now);
    let mut events = StepEvents::default();
    let Some(_) = inst.begin_step(t0) else {
        return Outcome { inst, out: None, sampled: Vec::new(), prefilling: Vec::new(), added };
    };
    let out = inst.scheduler_mut().schedule().clone();
    let prefilling: Vec<usize> = inst
        .scheduler()
        .running_requests()
        .filter(|q| q.num_output_tokens == 0)
        .map(|q| q.request_id.0 as usize)
        .collect();
    inst.end_step(SimTime::from_secs_f64(end.max(now)), &mut events);
    let mut sampled: Vec<(usize, u32)> = events.tokens.iter().map(|&(id, i)| (id.0 as usize, i)).collect();
    sampled.sort_unstable();
    Outcome { inst, out: Some(out), sampled, prefilling, added }
}

fn features(out: &SchedulerOutput) -> StepFeatures {
    StepFeatures {
        num_steps: 1,
        num_eager_steps: 0,
        num_scheduled_requests: u64::from(out.num_scheduled_requests),
        num_prefill_tokens: u64::from(out.num_prefill_tokens),
        num_decode_seqs: u64::from(out.num_decode_seqs),
        num_padding_tokens: 0,
        num_kv_tokens_read: out.num_kv_tokens_read,
        num_prefill_attn_pairs: out.num_prefill_attn_pairs,
    }
}

/// Steps of look-ahead that settle a step both of whose readings fit what the client saw.
const LOOKAHEAD_STEPS: usize = 2;

/// What every step of one replay reads.
struct Ctx<'a> {
    times: &'a [f64],
    observed: &'a [Vec<(usize, u32)>],
    token_burst: &'a [Vec<usize>],
    lag: usize,
    margin: f64,
}

/// The replay between two steps.
#[derive(Clone)]
struct State<'a> {
    inst: Instance,
    arr: Arrivals<'a>,
    /// Start and end of the previous step, as given to the instance.
    prev: Option<(f64, f64)>,
}

/// One replayed step.
struct Stepped<'a> {
    kind: Start,
    chosen: Outcome,
    /// Some reading of the step gives the tokens the client saw.
    consistent: bool,
    /// Two readings fit with different batches, and looking ahead did not settle it.
    ambiguous: bool,
    next: State<'a>,
}

/// Replays step `k` from `state`: both readings of the arrivals near its boundaries, the one that
/// gives the client's tokens kept (looking `lookahead` steps further when both do), or, when
/// neither does, the requests the client saw finish their prompt here forced in. `None` when
/// nothing is left to arrive.
fn advance<'a>(ctx: &Ctx<'_>, state: &State<'a>, k: usize, lookahead: usize) -> Option<Stepped<'a>> {
    let (inst, arr, margin) = (&state.inst, &state.arr, ctx.margin);
    // The end of step k as the client timed it, when its tokens' burst is known.
    let end_seen = k.checked_sub(ctx.lag).map(|j| ctx.times[j]);
    let pending_by = |t: f64| arr.send(arr.next).is_some_and(|s| s <= t);
    let (kind, now, windows) = match state.prev {
        Some((p_start, p_end)) if inst.has_unfinished_requests() || pending_by(p_end - margin) => {
            (Start::Busy, p_end, vec![p_end, p_start])
        }
        prev => {
            // Idle: the step began at an arrival the client cannot time exactly.
            let wake = arr.send(arr.next)?;
            let wake = prev.map_or(wake, |(_, e)| wake.max(e));
            (Start::Idle, wake + margin, vec![wake])
        }
    };
    let end = match (kind, end_seen) {
        (Start::Busy, Some(e)) if e > now => e,
        // Not seen (the first `lag` steps, or after an idle engine with a lag): half-way to the
        // burst of this step's tokens.
        _ => now + 0.5 * (ctx.times[k] - now).max(0.0),
    };
    let idle = kind == Start::Idle;
    let at = StepAt { now, end, windows: &windows, idle, margin };
    let early = run_step(inst, arr, &at, false, 0);
    let late = run_step(inst, arr, &at, true, 0);
    let want = &ctx.observed[k];
    let (ok_e, ok_l) = (early.sampled == *want, late.sampled == *want);
    let differ = early.out != late.out || early.sampled != late.sampled;
    let next_of = |o: &Outcome| State {
        inst: o.inst.clone(),
        arr: Arrivals { next: arr.next + o.added.len(), ..*arr },
        prev: Some((now, end)),
    };
    let done = |chosen: Outcome, consistent: bool, ambiguous: bool| {
        let next = State {
            inst: chosen.inst.clone(),
            arr: Arrivals { next: arr.next + chosen.added.len(), ..*arr },
            prev: Some((now, end)),
        };
        Some(Stepped { kind, chosen, consistent, ambiguous, next })
    };
    match (ok_e, ok_l) {
        // Both fit; identical: late (a request not handed over yet is tried again at the next
        // boundary, where with async scheduling it may matter).
        (true, true) if !differ => done(late, true, false),
        (true, true) => {
            // Both fit with different batches: the one that keeps fitting the next steps.
            let ahead = |o: &Outcome| {
                let mut st = next_of(o);
                let mut fits = 0;
                for j in k + 1..(k + 1 + lookahead).min(ctx.times.len()) {
                    match advance(ctx, &st, j, 0) {
                        Some(x) if x.consistent => {
                            fits += 1;
                            st = x.next;
                        }
                        _ => break,
                    }
                }
                fits
            };
            if lookahead == 0 {
                return done(early, true, true);
            }
            let (fe, fl) = (ahead(&early), ahead(&late));
            match fe.cmp(&fl) {
                std::cmp::Ordering::Greater => done(early, true, fe < lookahead),
                std::cmp::Ordering::Less => done(late, true, fl < lookahead),
                std::cmp::Ordering::Equal => done(early, true, true),
            }
        }
        (true, false) => done(early, true, false),
        (false, true) => done(late, true, false),
        (false, false) => {
            // A request the client saw finish its prompt here arrived later than the clocks allow
            // (an engine running late), or the replay lost track earlier: every request up to
            // the last one seen finishing its prompt by now joins, to take up the thread again;
            // the step itself is left out.
            let first = |r: usize| ctx.token_burst[r].first().copied().unwrap_or(usize::MAX);
            let last = (arr.next..arr.order.len()).rev().find(|&j| first(arr.order[j]) <= k);
            let forced = last.map(|j| run_step(inst, arr, &at, false, j + 1));
            match forced {
                Some(f) if f.sampled == *want => done(f, false, false),
                _ => done(late, false, false),
            }
        }
    }
}

/// Replays the steps of one instance with `engine` (a fresh copy of the run's instance: its
/// preset's rules, KV blocks and async scheduling); see `reconstruct`'s module doc.
pub fn replay(
    engine: &Instance,
    model: ModelId,
    reqs: &[ClientRequest],
    b: &Bursts,
    opts: &ReconOptions,
) -> (Vec<ReconStep>, ReconCounts) {
    let n = b.times.len();
    let lag = opts.lag;
    let margin = opts.arrival_margin_s.max(0.0);
    // What the client saw in each burst: (request, output token index).
    let mut observed: Vec<Vec<(usize, u32)>> = vec![Vec::new(); n];
    let mut broken = vec![false; n];
    for (r, tb) in b.token_burst.iter().enumerate() {
        for (i, &k) in tb.iter().enumerate() {
            observed[k].push((r, i as u32));
        }
        if tb.is_empty() {
            for &(t, _) in &reqs[r].chunks {
                let k = b.times.partition_point(|&x| x <= t).saturating_sub(1);
                if let Some(x) = broken.get_mut(k) {
                    *x = true;
                }
            }
        }
    }
    observed.iter_mut().for_each(|o| o.sort_unstable());
    // Send order, except that requests sent within the margin of each other reached the engine
    // in an order the client cannot see: there the order their prompts finished in is taken
    // (first come first served).
    let first_burst = |r: usize| b.token_burst[r].first().copied().unwrap_or(usize::MAX);
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    order.sort_by(|&x, &y| reqs[x].send_s.total_cmp(&reqs[y].send_s).then(x.cmp(&y)));
    let mut g = 0;
    while g < order.len() {
        let mut e = g + 1;
        while e < order.len() && reqs[order[e]].send_s - reqs[order[e - 1]].send_s <= margin {
            e += 1;
        }
        order[g..e].sort_by_key(|&r| first_burst(r));
        g = e;
    }
    let arr = Arrivals { reqs, order: &order, next: 0, model };
    let ctx = Ctx { times: &b.times, observed: &observed, token_burst: &b.token_burst, lag, margin };
    let mut state = State { inst: engine.clone(), arr, prev: None };
    state.inst.scheduler_mut().set_record_tokens(true);
    let mut counts = ReconCounts { steps: n, ..ReconCounts::default() };
    let mut steps = Vec::with_capacity(n);
    let mut lost: BTreeSet<usize> = BTreeSet::new();
    let mut starts: Vec<Start> = Vec::with_capacity(n);
    for k in 0..n {
        let Some(st) = advance(&ctx, &state, k, LOOKAHEAD_STEPS) else {
            // Nothing left to arrive, yet the client saw this step: the replay lost track.
            counts.inconsistent += 1;
            steps.push(ReconStep {
                burst_s: b.times[k],
                duration_s: None,
                features: StepFeatures::default(),
            });
            starts.push(Start::Idle);
            continue;
        };
        let want = &observed[k];
        let chosen = &st.chosen;
        let consistent = st.consistent && !broken[k];
        let prefill_lost = chosen.prefilling.iter().any(|r| lost.contains(r));
        if !consistent || st.ambiguous {
            lost.extend(chosen.prefilling.iter().copied());
        }
        let inferred = chosen.prefilling.iter().any(|r| !want.iter().any(|(q, i)| q == r && *i == 0));
        starts.push(st.kind);
        let features = chosen.out.as_ref().map(features).unwrap_or_default();
        // Duration of step k: between the ends of steps k - 1 and k, both timed by bursts only
        // while steps k - lag ..= k each began as the one before ended.
        let timed = k > lag && starts[k - lag..=k].iter().all(|s| *s == Start::Busy);
        let duration = timed
            .then(|| b.times[k - lag] - b.times[k - lag - 1])
            .filter(|d| *d > 0.0 && consistent && !st.ambiguous && !prefill_lost && chosen.out.is_some());
        match duration {
            Some(_) => {
                counts.used += 1;
                counts.inferred_chunks += usize::from(inferred);
            }
            None if st.kind == Start::Idle || !timed => counts.idle_start += 1,
            None if !consistent || prefill_lost => counts.inconsistent += 1,
            None => counts.ambiguous += 1,
        }
        for &(r, i) in &chosen.sampled {
            if i == 0 {
                lost.remove(&r);
            }
        }
        state = st.next;
        steps.push(ReconStep { burst_s: b.times[k], duration_s: duration, features });
    }
    (steps, counts)
}
