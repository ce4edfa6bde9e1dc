//! One instance's engine on the wall clock: a single task owns the engine model (no lock around
//! it), takes requests from a channel, and runs steps back to back, each ending at an absolute
//! deadline `epoch + virtual_end x time_scale`, so late wake-ups never accumulate into drift.
//!
//! Per step: `begin_step` (the engine schedules a batch and says how long it occupies the engine),
//! sleep until the step's end, `end_step`, then each sampled token goes to its request's channel
//! the engine's output delay later (the pipeline delay between a step and the client seeing its
//! tokens; deliveries keep step order). Requests that arrive mid-step wait for the next step, as
//! in vLLM's engine loop (with async scheduling the engine model holds them back one step more);
//! a request reaching an idle engine starts a step at its arrival. The loop does not
//! parse HTTP or format tokens (`http` does), and cannot abort a request whose client went away
//! (the engine model has no abort): it runs to `max_tokens` like an unread vLLM request would
//! until vLLM noticed the disconnect.

use super::metrics::EngineStats;
use sim::ids::RequestId;
use sim::time::{SimDuration, SimTime};
use std::collections::{HashMap, VecDeque};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Duration, Instant, sleep_until};

/// A request handed to the engine model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRequest {
    /// Its id (unique per engine lifetime).
    pub id: RequestId,
    /// When it reached the engine (virtual time).
    pub arrival: SimTime,
    /// Prompt tokens.
    pub num_prompt_tokens: u32,
    /// Output tokens to generate.
    pub max_tokens: u32,
    /// The prompt's token ids, which the engine hashes into prefix blocks (empty: nothing shared).
    pub token_ids: Vec<u32>,
}

/// What one step produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepOutput {
    /// `(request, output token index from 0)` of every token sampled in the step.
    pub tokens: Vec<(RequestId, u32)>,
    /// Requests that produced their last token in the step, with their prompt tokens found in
    /// the prefix cache (vLLM's `num_cached_tokens`, reported as usage `cached_tokens`).
    pub finished: Vec<(RequestId, u32)>,
}

impl StepOutput {
    /// Empties both lists.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.finished.clear();
    }
}

/// The engine-side figures of `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineLoad {
    /// Requests in the running batch.
    pub running: u32,
    /// Requests queued.
    pub waiting: u32,
    /// KV usage, 0..1.
    pub kv_usage: f64,
    /// Preemptions since start.
    pub preemptions_total: u64,
    /// KV blocks.
    pub num_gpu_blocks: u32,
    /// Tokens per block.
    pub block_size: u32,
    /// Prompt tokens of finished requests looked up in the prefix cache, since start.
    pub prefix_cache_queries_total: u64,
    /// Of those, tokens found cached (vLLM's `num_cached_tokens`), since start.
    pub prefix_cache_hits_total: u64,
}

/// What the emulator needs from an engine model. The simulator's `sim::instance::Instance`
/// implements it; tests may plug in simpler models.
pub trait StepEngine: Send + 'static {
    /// Queues a request; `Err` carries the reason it is refused (a 400 for the client).
    fn add_request(&mut self, req: NewRequest) -> Result<(), String>;
    /// Starts a step at `now` (virtual time) if there is work and returns how long it occupies
    /// the engine.
    fn begin_step(&mut self, now: SimTime) -> Option<SimDuration>;
    /// Ends the step begun last at `now`, appending what it produced to `out`.
    fn end_step(&mut self, now: SimTime, out: &mut StepOutput);
    /// Current load figures.
    fn load(&self) -> EngineLoad;
    /// How long after a step ends its tokens reach the client (default: at once).
    fn output_delay(&self) -> SimDuration {
        SimDuration::ZERO
    }
}

/// The next timed thing the loop waits for.
#[derive(Clone, Copy, Debug)]
enum Timer {
    /// The step in flight ends.
    StepEnd(SimTime),
    /// The oldest pending step output reaches its clients.
    Deliver(SimTime),
}

/// A request as the HTTP side submits it.
pub(crate) struct Submit {
    pub num_prompt_tokens: u32,
    pub max_tokens: u32,
    pub token_ids: Vec<u32>,
    /// Where its tokens go.
    pub events: mpsc::UnboundedSender<TokenEvent>,
    /// Whether the engine took it.
    pub accepted: oneshot::Sender<Result<(), String>>,
}

/// What a request's channel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenEvent {
    /// Output token `index` (from 0) was sampled.
    Token { index: u32 },
    /// The last token was sampled; `cached_tokens` of the prompt came from the prefix cache.
    Finished { cached_tokens: u32 },
}

/// Virtual time <-> wall clock: virtual `t` happens at `epoch + t x scale`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    epoch: Instant,
    scale: f64,
}

impl Clock {
    /// Saturates at a far future instead of panicking on an overflow (a huge virtual time).
    fn wall(&self, t: SimTime) -> Instant {
        const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);
        Duration::try_from_secs_f64(t.as_secs_f64() * self.scale)
            .ok()
            .and_then(|d| self.epoch.checked_add(d.min(FAR)))
            .unwrap_or(self.epoch + FAR)
    }

    fn now(&self) -> SimTime {
        SimTime::from_secs_f64(self.epoch.elapsed().as_secs_f64() / self.scale)
    }
}

#[derive(Default)]
struct Counters {
    prompt_tokens: u64,
    generation_tokens: u64,
    finished: u64,
}

/// Runs `engine` until every `Submit` sender is gone. `time_scale` > 1 slows everything down.
pub(crate) async fn run(
    mut engine: Box<dyn StepEngine>,
    mut rx: mpsc::Receiver<Submit>,
    stats: watch::Sender<EngineStats>,
    time_scale: f64,
) {
    let clock = Clock { epoch: Instant::now(), scale: time_scale };
    let mut clients: HashMap<RequestId, mpsc::UnboundedSender<TokenEvent>> = HashMap::new();
    let mut counters = Counters::default();
    let mut next_id = 0u64;
    let mut now = SimTime::ZERO;
    let mut step_end: Option<SimTime> = None;
    let delay = engine.output_delay();
    // Step outputs waiting for their delivery time, in step order; spare buffers for reuse.
    let mut pending: VecDeque<(SimTime, StepOutput)> = VecDeque::new();
    let mut spare: Vec<StepOutput> = Vec::new();
    publish(&stats, engine.as_ref(), &counters);
    loop {
        if step_end.is_none() {
            step_end = engine.begin_step(now).map(|d| now + d);
            publish(&stats, engine.as_ref(), &counters);
        }
        // A delivery due no later than the step end goes first (its step ended earlier).
        let timer = match (pending.front().map(|p| p.0), step_end) {
            (Some(d), Some(e)) if d <= e => Some(Timer::Deliver(d)),
            (_, Some(e)) => Some(Timer::StepEnd(e)),
            (Some(d), None) => Some(Timer::Deliver(d)),
            (None, None) => None,
        };
        let msg = match timer {
            Some(timer) => {
                let at = match timer {
                    Timer::StepEnd(t) | Timer::Deliver(t) => t,
                };
                let due = clock.wall(at);
                // A timer already due (zero length, or the loop runs late) fires without a round
                // trip through tokio's timer, which would add up to its 1 ms granularity.
                let arrived = if due <= Instant::now() {
                    tokio::task::consume_budget().await;
                    None
                } else {
                    tokio::select! {
                        biased;
                        () = sleep_until(due) => None,
                        msg = rx.recv() => Some(msg),
                    }
                };
                match arrived {
                    Some(msg) => msg,
                    None => {
                        match timer {
                            Timer::Deliver(_) => {
                                if let Some((_, out)) = pending.pop_front() {
                                    dispatch(&out, &mut clients, &mut counters);
                                    spare.push(out);
                                }
                            }
                            Timer::StepEnd(end) => {
                                let mut out = spare.pop().unwrap_or_default();
                                out.clear();
                                engine.end_step(end, &mut out);
                                now = end;
                                step_end = None;
                                if delay == SimDuration::ZERO {
                                    dispatch(&out, &mut clients, &mut counters);
                                    spare.push(out);
                                } else {
                                    pending.push_back((end + delay, out));
                                }
                            }
                        }
                        publish(&stats, engine.as_ref(), &counters);
                        continue;
                    }
                }
            }
            None => rx.recv().await,
        };
        let Some(sub) = msg else { return };
        // One clock reading per arrival. Mid-step it joins a later step (the engine model decides
        // which). At an idle engine it starts the next step, so the step start and the arrival
        // must be the same instant: with async scheduling the engine model releases an arrival
        // only to a step beginning at or after it (`sim::instance::Instance::begin_step`), and a
        // step asked for even a nanosecond before the arrival would leave it held back for a step
        // nothing will ever start (a lone request never got a step).
        let t = clock.now();
        let arrival = match step_end {
            Some(end) => t.max(now).min(end),
            None => {
                // Idle until now: the next step starts at this arrival, not in the past.
                now = now.max(t);
                now
            }
        };
        let id = RequestId(next_id);
        next_id += 1;
        let req = NewRequest {
            id,
            arrival,
            num_prompt_tokens: sub.num_prompt_tokens,
            max_tokens: sub.max_tokens,
            token_ids: sub.token_ids,
        };
        match engine.add_request(req) {
            Ok(()) => {
                counters.prompt_tokens += u64::from(sub.num_prompt_tokens);
                clients.insert(id, sub.events);
                let _ = sub.accepted.send(Ok(()));
            }
            Err(reason) => {
                let _ = sub.accepted.send(Err(reason));
            }
        }
        publish(&stats, engine.as_ref(), &counters);
    }
}

fn dispatch(
    out: &StepOutput,
    clients: &mut HashMap<RequestId, mpsc::UnboundedSender<TokenEvent>>,
    counters: &mut Counters,
) {
    for &(id, index) in &out.tokens {
        if let Some(tx) = clients.get(&id) {
            // A client that went away just stops reading; the request still runs to the end.
            let _ = tx.send(TokenEvent::Token { index });
        }
    }
    for &(id, cached_tokens) in &out.finished {
        if let Some(tx) = clients.remove(&id) {
            let _ = tx.send(TokenEvent::Finished { cached_tokens });
        }
    }
    counters.generation_tokens += out.tokens.len() as u64;
    counters.finished += out.finished.len() as u64;
}

fn publish(stats: &watch::Sender<EngineStats>, engine: &dyn StepEngine, c: &Counters) {
    let l = engine.load();
    stats.send_replace(EngineStats {
        running: l.running,
        waiting: l.waiting,
        kv_usage: l.kv_usage,
        preemptions_total: l.preemptions_total,
        prompt_tokens_total: c.prompt_tokens,
        generation_tokens_total: c.generation_tokens,
        requests_finished_total: c.finished,
        num_gpu_blocks: l.num_gpu_blocks,
        block_size: l.block_size,
        prefix_cache_queries_total: l.prefix_cache_queries_total,
        prefix_cache_hits_total: l.prefix_cache_hits_total,
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A toy engine: up to `max_running` requests, each step samples one token for each and
    /// lasts `step`.
    pub(crate) struct ToyEngine {
        pub step: SimDuration,
        pub delay: SimDuration,
        pub max_running: usize,
        pub running: Vec<(RequestId, u32, u32)>,
        pub waiting: std::collections::VecDeque<(RequestId, u32, u32)>,
    }

    impl ToyEngine {
        pub(crate) fn new(step_ms: u64, max_running: usize) -> ToyEngine {
            ToyEngine {
                step: SimDuration::from_millis(step_ms),
                delay: SimDuration::ZERO,
                max_running,
                running: Vec::new(),
                waiting: Default::default(),
            }
        }
    }

    impl StepEngine for ToyEngine {
        fn add_request(&mut self, req: NewRequest) -> Result<(), String> {
            if req.num_prompt_tokens == 0 {
                return Err("empty prompt".into());
            }
            self.waiting.push_back((req.id, 0, req.max_tokens));
            Ok(())
        }

        fn begin_step(&mut self, _now: SimTime) -> Option<SimDuration> {
            while self.running.len() < self.max_running {
                let Some(r) = self.waiting.pop_front() else { break };
                self.running.push(r);
            }
            (!self.running.is_empty()).then_some(self.step)
        }

        fn end_step(&mut self, _now: SimTime, out: &mut StepOutput) {
            for r in &mut self.running {
                out.tokens.push((r.0, r.1));
                r.1 += 1;
                if r.1 == r.2 {
                    out.finished.push((r.0, 0));
                }
            }
            self.running.retain(|r| r.1 < r.2);
        }

        fn output_delay(&self) -> SimDuration {
            self.delay
        }

        fn load(&self) -> EngineLoad {
            EngineLoad {
                running: self.running.len() as u32,
                waiting: self.waiting.len() as u32,
                num_gpu_blocks: 10,
                block_size: 16,
                ..EngineLoad::default()
            }
        }
    }

    async fn submit(tx: &mpsc::Sender<Submit>, max_tokens: u32) -> mpsc::UnboundedReceiver<TokenEvent> {
        let (events, rx) = mpsc::unbounded_channel();
        let (accepted, ok) = oneshot::channel();
        tx.send(Submit { num_prompt_tokens: 3, max_tokens, token_ids: Vec::new(), events, accepted })
            .await
            .unwrap();
        ok.await.unwrap().unwrap();
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn back_to_back_steps_end_on_absolute_deadlines_without_drift() {
        let (tx, rx) = mpsc::channel(8);
        let (stats, _stats_rx) = watch::channel(EngineStats::default());
        let t0 = Instant::now();
        tokio::spawn(run(Box::new(ToyEngine::new(10, 4)), rx, stats, 2.0));
        let mut events = submit(&tx, 50).await;
        let mut at = Vec::new();
        while let Some(TokenEvent::Token { index }) = events.recv().await {
            at.push((index, Instant::now() - t0));
        }
        assert_eq!(at.len(), 50);
        // Step k ends at exactly k x 10 ms x time_scale 2 on the (paused) clock.
        for (k, (index, t)) in at.iter().enumerate() {
            assert_eq!(*index, k as u32);
            assert_eq!(*t, Duration::from_millis(20 * (k as u64 + 1)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_reach_the_client_the_output_delay_after_their_step_ends() {
        let (tx, rx) = mpsc::channel(8);
        let (stats, _stats_rx) = watch::channel(EngineStats::default());
        let t0 = Instant::now();
        let mut toy = ToyEngine::new(10, 4);
        toy.delay = SimDuration::from_millis(25);
        tokio::spawn(run(Box::new(toy), rx, stats, 1.0));
        let mut events = submit(&tx, 5).await;
        let mut at = Vec::new();
        while let Some(ev) = events.recv().await {
            at.push((ev, Instant::now() - t0));
        }
        // Step k ends at k x 10 ms; its token arrives 25 ms later, steps keep running meanwhile.
        let expected: Vec<_> = (0..5u32)
            .map(|k| (TokenEvent::Token { index: k }, Duration::from_millis(10 * u64::from(k + 1) + 25)))
            .chain([(TokenEvent::Finished { cached_tokens: 0 }, Duration::from_millis(75))])
            .collect();
        assert_eq!(at, expected);
    }

    /// A one-token-per-request engine that records each arrival and each step start it is asked
    /// for, to check the loop's timestamps.
    struct Stamps {
        log: std::sync::Arc<std::sync::Mutex<Vec<(&'static str, SimTime)>>>,
        toy: ToyEngine,
    }

    impl StepEngine for Stamps {
        fn add_request(&mut self, req: NewRequest) -> Result<(), String> {
            self.log.lock().map_err(|e| e.to_string())?.push(("arrival", req.arrival));
            self.toy.add_request(req)
        }

        fn begin_step(&mut self, now: SimTime) -> Option<SimDuration> {
            let d = self.toy.begin_step(now);
            if d.is_some() {
                if let Ok(mut log) = self.log.lock() {
                    log.push(("step", now));
                }
            }
            d
        }

        fn end_step(&mut self, now: SimTime, out: &mut StepOutput) {
            self.toy.end_step(now, out);
        }

        fn load(&self) -> EngineLoad {
            self.toy.load()
        }
    }

    // On the real clock (a paused one reads the same instant twice and hides the difference): a
    // request reaching an idle engine starts a step at exactly its arrival, which async
    // scheduling's join rule needs (see `run`).
    #[tokio::test]
    async fn a_request_reaching_an_idle_engine_starts_a_step_at_its_arrival() {
        let (tx, rx) = mpsc::channel(8);
        let (stats, _stats_rx) = watch::channel(EngineStats::default());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let engine = Stamps { log: log.clone(), toy: ToyEngine::new(1, 4) };
        tokio::spawn(run(Box::new(engine), rx, stats, 1.0));
        for _ in 0..3 {
            let mut events = submit(&tx, 1).await;
            while events.recv().await.is_some() {}
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 6, "{log:?}");
        for pair in log.chunks(2) {
            assert_eq!((pair[0].0, pair[1].0), ("arrival", "step"), "{log:?}");
            assert_eq!(pair[0].1, pair[1].1, "the step starts at the arrival: {log:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stats_show_running_and_waiting_and_count_tokens() {
        let (tx, rx) = mpsc::channel(8);
        let (stats, stats_rx) = watch::channel(EngineStats::default());
        tokio::spawn(run(Box::new(ToyEngine::new(10, 1)), rx, stats, 1.0));
        let mut a = submit(&tx, 3).await;
        let _b = submit(&tx, 3).await;
        let s = *stats_rx.borrow();
        assert_eq!((s.running, s.waiting), (1, 1));
        while !matches!(a.recv().await, Some(TokenEvent::Finished { .. }) | None) {}
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = *stats_rx.borrow();
        assert_eq!(
            (s.running, s.waiting, s.generation_tokens_total, s.requests_finished_total),
            (0, 0, 6, 2)
        );
        assert_eq!(s.prompt_tokens_total, 6);
    }
}
