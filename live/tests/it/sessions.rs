//! A live multi-turn session run through `modelsguard lb` with the prefix-aware policy in front of
//! two emulated instances (issue 11, items 3-5): each session's turns stay on one replica, the
//! sessions spread over both, and the emulators' own prefix caches hit.

use crate::server_fixtures::scenario;
use live::emulator::{EmulatorHandle, EmulatorOptions};
use live::loadgen::{RequestSource, stop_pair};
use live::proxy::{LbOptions, LbServer};
use live::run::{LiveRunOptions, ProgressMode, Target, live_run_with_source};
use sim::ids::{InstanceId, ModelId, RequestId};
use sim::scenario::{ArrivalSpec, DelayDist, LengthDist, PhaseSpec, RouterPolicy, SessionSpec, SessionStart};
use sim::time::SimTime;
use sim::trace::{RequestStatus, read_run_dir};
use sim::workload::{RequestSpec, WorkloadGenerator};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// The workload generator, remembering which session (token stream) each request belongs to.
struct Recording {
    inner: WorkloadGenerator,
    session_of: HashMap<u64, u64>,
}

impl RequestSource for Recording {
    fn peek_time(&mut self) -> Option<SimTime> {
        self.inner.peek_time()
    }
    fn pop(&mut self) -> Option<RequestSpec> {
        let r = self.inner.pop()?;
        let stream = r.content.leading_segments().last().map_or(0, |s| s.id);
        self.session_of.insert(r.id.0, stream);
        Some(r)
    }
    fn on_request_finished(&mut self, id: RequestId, now: SimTime) {
        self.inner.on_request_finished(id, now);
    }
    fn is_exhausted(&self) -> bool {
        self.inner.is_exhausted()
    }
}

async fn counter(h: &EmulatorHandle, i: u32, name: &str) -> f64 {
    let url = format!("http://{}/metrics", h.addr(InstanceId(i)).unwrap());
    let text = reqwest::Client::builder().no_proxy().build().unwrap().get(url).send().await.unwrap();
    let text = text.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lb_keeps_each_sessions_turns_on_one_emulator_and_spreads_the_sessions() {
    let mut sc = scenario(RouterPolicy::PrefixAware, [0, 0, 0]);
    for i in &mut sc.instances {
        i.engine.enable_prefix_caching = true;
    }
    let emu =
        EmulatorHandle::start(&sc, Some(vec![InstanceId(0), InstanceId(1)]), EmulatorOptions::default())
            .await
            .unwrap();
    for i in 0..2 {
        sc.instances[i].port = emu.addr(InstanceId(i as u32)).unwrap().port();
    }
    sc.router.poll_interval_s = 0.2;
    sc.workload.phases = vec![PhaseSpec {
        name: "chat".into(),
        duration_s: None,
        num_requests: Some(32),
        arrival: ArrivalSpec::Sessions(SessionSpec {
            start: SessionStart::Concurrent(4),
            turns: LengthDist::Fixed { value: 4 },
            think_time_s: DelayDist::Fixed { value: 0.01 },
            user_tokens: LengthDist::Uniform { min: 8, max: 40 },
            num_sessions: None,
            max_context_tokens: Some(4096),
        }),
        mix: vec![(ModelId(0), 1.0)],
        input_tokens: LengthDist::Uniform { min: 200, max: 600 },
        output_tokens: LengthDist::Fixed { value: 4 },
        per_model_lengths: vec![],
    }];
    let lb = LbServer::bind(&sc, LbOptions { port: 0, ..LbOptions::default() }).await.unwrap();
    let lb_url = format!("http://{}", lb.local_addr().unwrap());
    let (stop_lb, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lb.run(async move {
        let _ = stopped.await;
    }));

    let dir = tempfile::tempdir().unwrap();
    let mut o = LiveRunOptions::new(Target::Lb(lb_url), dir.path());
    o.progress = ProgressMode::Never;
    o.scrape_interval = None;
    o.per_request_timeout = Duration::from_secs(120);
    let (handle, signal) = stop_pair();
    std::mem::forget(handle);
    o.stop = Some(signal);
    let keys: Vec<String> = sc.models.iter().map(|m| m.name.clone()).collect();
    let inner =
        WorkloadGenerator::with_model_keys(&sc.workload, &keys, sc.seed, std::path::Path::new(".")).unwrap();
    let mut source = Recording { inner, session_of: HashMap::new() };
    let report = live_run_with_source(&sc, &mut source, o).await.unwrap();
    assert_eq!((report.load.sent, report.load.ok), (32, 32), "every turn ok");

    let run = read_run_dir(dir.path()).unwrap();
    assert!(run.requests.iter().all(|r| r.status == RequestStatus::Ok));
    let mut replicas_of: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut per_replica: BTreeMap<String, usize> = BTreeMap::new();
    for r in &run.requests {
        replicas_of.entry(source.session_of[&r.id]).or_default().insert(r.instance.clone());
        *per_replica.entry(r.instance.clone()).or_default() += 1;
    }
    assert!(replicas_of.len() >= 8, "4 concurrent sessions of 4 turns, replaced: {}", replicas_of.len());
    for (session, replicas) in &replicas_of {
        assert_eq!(replicas.len(), 1, "session {session:x} was split over {replicas:?}");
    }
    assert_eq!(per_replica.len(), 2, "both replicas serve sessions: {per_replica:?}");
    assert!(per_replica.values().all(|&n| n >= 8), "balanced: {per_replica:?}");
    // The emulators hash the token ids they receive: later turns hit their session's blocks.
    for i in 0..2 {
        let hits = counter(&emu, i, "vllm:prefix_cache_hits_total").await;
        let queries = counter(&emu, i, "vllm:prefix_cache_queries_total").await;
        assert!(hits > 0.3 * queries, "instance {i}: {hits} of {queries} prompt tokens hit");
    }
    let _ = stop_lb.send(());
    let _ = server.await;
    emu.shutdown().await;
}
