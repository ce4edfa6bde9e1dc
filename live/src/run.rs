//! `live_run`: reruns one resolved scenario variant against real endpoints and writes the same
//! run dir the simulator writes (`run.json` with source = live, `requests.csv` flushed as
//! requests finish, `instances.csv` from `/metrics` scrapes, optional `tokens.csv` of chunk
//! times, `summary.json`, `steps.csv` from the engines' `GET /steps` when they have one, and
//! optionally genai-perf's `profile_export.json` and aiperf's `profile_export.jsonl`,
//! `profile_export_aiperf.json` and `.csv`).
//!
//! It wires the pieces together and owns the files; sending is `loadgen`'s job, scraping
//! `scrape`'s. It launches no engines and no LB: they must already listen.

use crate::client::{PromptBuilder, RunClock};
use crate::export::Experiment;
use crate::export::aiperf::AiperfWriter;
use crate::export::genai_perf::{GenaiPerfWriter, PROFILE_EXPORT_JSON};
use crate::loadgen::{
    Finished, InstanceTarget, LoadConfig, LoadError, LoadReport, LoadSink, ModelTarget, RequestSource,
    Routing, StopSignal, chunk_gaps, run_load,
};
use crate::scrape::{ScrapeStats, ScrapeTarget, spawn_scraper};
use crate::sse::{ApiMode, DEFAULT_MAX_EVENT_BYTES};
use crate::step_log::{StepLogTarget, StepLogs, fetch_step_logs};
use sim::InstanceId;
use sim::metrics::{RunSummary, SummaryBuilder};
use sim::observe::Observer;
use sim::scenario::{ArrivalSpec, Scenario, SessionStart};
use sim::trace::{InstanceRow, RequestStatus, RunDirWriter, RunMeta, SCHEMA_VERSION, Source, TokenRow};
use sim::workload::WorkloadGenerator;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// Where the requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A load balancer's base URL (`http://host:port`); it routes.
    Lb(String),
    /// The instances themselves on this host, each at `http://{host}:{instance.port}`; the
    /// scenario's router policy routes.
    Direct(String),
}

/// When to print the progress line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// When stderr is a terminal.
    #[default]
    Auto,
    /// Always (one line per update when stderr is not a terminal).
    Always,
    /// Never.
    Never,
}

/// Options of one live run.
#[derive(Clone, Debug)]
pub struct LiveRunOptions {
    /// Where requests go.
    pub target: Target,
    /// The run dir to write.
    pub out_dir: PathBuf,
    /// Longest one request may take, send to `[DONE]`.
    pub per_request_timeout: Duration,
    /// Hard end of the run from its start (None: the workload and drain timeout decide).
    pub deadline: Option<Duration>,
    /// `/metrics` poll interval (None: no scraping, `instances.csv` stays empty).
    pub scrape_interval: Option<Duration>,
    /// Host whose instance ports are scraped (None: the target's host).
    pub scrape_host: Option<String>,
    /// `/v1/completions` (token-id prompts, exact lengths) or `/v1/chat/completions`.
    pub mode: ApiMode,
    /// Progress line on stderr.
    pub progress: ProgressMode,
    /// After Ctrl-C, how long in-flight requests may finish.
    pub grace: Duration,
    /// Write `tokens.csv` (None: as the scenario's `output.tokens_csv` says).
    pub tokens_csv: Option<bool>,
    /// Write genai-perf's `profile_export.json` too.
    pub genai_perf_export: bool,
    /// Write aiperf's `profile_export.jsonl`, `profile_export_aiperf.json` and `.csv` too.
    pub aiperf_export: bool,
    /// Stop signal (None: Ctrl-C).
    pub stop: Option<StopSignal>,
    /// At the end, fetch each instance's step log (`GET /steps`) into `steps.csv`.
    pub fetch_step_logs: bool,
}

impl LiveRunOptions {
    /// Defaults: 600 s per request, no deadline, scrape every 250 ms, completions mode, progress
    /// on a terminal, 10 s grace, tokens.csv as the scenario says, no genai-perf or aiperf export,
    /// Ctrl-C,
    /// step logs fetched.
    pub fn new(target: Target, out_dir: impl Into<PathBuf>) -> Self {
        LiveRunOptions {
            target,
            out_dir: out_dir.into(),
            per_request_timeout: Duration::from_secs(600),
            deadline: None,
            scrape_interval: Some(Duration::from_millis(250)),
            scrape_host: None,
            mode: ApiMode::Completions,
            progress: ProgressMode::Auto,
            grace: Duration::from_secs(10),
            tokens_csv: None,
            genai_perf_export: false,
            aiperf_export: false,
            stop: None,
            fetch_step_logs: true,
        }
    }
}

/// What a live run produced.
#[derive(Clone, Debug)]
pub struct LiveRunReport {
    /// The run dir written.
    pub run_dir: PathBuf,
    /// How the load ended.
    pub load: LoadReport,
    /// How scraping went (None when off).
    pub scrape: Option<ScrapeStats>,
    /// What was written to `summary.json`.
    pub summary: RunSummary,
    /// Why the request stream stopped early, if it did (the run dir is still complete for what
    /// was sent).
    pub workload_error: Option<String>,
    /// The engines' step logs written to `steps.csv` (empty when not fetched or none had one).
    pub step_logs: StepLogs,
    /// Why the run dir is partial (also in its `PARTIAL` marker); None when complete.
    pub partial: Option<String>,
}

/// Why a live run could not run or finish writing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The target is not a usable `http://` address.
    #[error("live target {target:?}: {reason}")]
    InvalidTarget {
        /// What was given.
        target: String,
        /// What is wrong and what to give instead.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(String),
    /// The scenario's request stream could not be built.
    #[error("building the request stream of scenario {scenario:?}: {reason}")]
    Workload {
        /// Scenario name.
        scenario: String,
        /// Why.
        reason: String,
    },
    /// Writing the run dir failed (the message names the file).
    #[error("writing the run dir: {0}")]
    Io(#[from] io::Error),
    /// The load generator failed.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The scenario's request stream, exactly as the simulator generates it
/// (`sim::simulation::scenario_workload`).
pub fn workload_source(scenario: &Scenario, base_dir: &Path) -> Result<WorkloadGenerator, LiveError> {
    sim::simulation::scenario_workload(scenario, base_dir)
        .map_err(|e| LiveError::Workload { scenario: scenario.name.clone(), reason: e.to_string() })
}

/// Reruns `scenario` live: the request stream of its workload (files it names resolve against
/// `base_dir`), sent as `opts` says, recorded into `opts.out_dir`.
pub async fn live_run(
    scenario: &Scenario,
    base_dir: &Path,
    opts: LiveRunOptions,
) -> Result<LiveRunReport, LiveError> {
    let mut source = workload_source(scenario, base_dir)?;
    live_run_with_source(scenario, &mut source, opts).await
}

/// [`live_run`] with an explicit request stream (tests, replays).
pub async fn live_run_with_source(
    scenario: &Scenario,
    source: &mut dyn RequestSource,
    opts: LiveRunOptions,
) -> Result<LiveRunReport, LiveError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .map_err(|e| LiveError::Http(crate::client::error_chain(&e)))?;
    let (routing, target_desc, default_host) = routing_for(scenario, &opts.target)?;
    if let Some(h) = &opts.scrape_host {
        check_host(h).map_err(|reason| LiveError::InvalidTarget { target: h.clone(), reason })?;
    }
    let instance_host = opts.scrape_host.clone().unwrap_or_else(|| default_host.clone());
    let meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        source: Source::Live,
        scenario_name: scenario.name.clone(),
        variant: scenario.variant.clone(),
        seed: scenario.seed,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: rfc3339(SystemTime::now()),
        host: format!("live against {target_desc} from {}", hostname()),
        calibrated: false,
        scenario: scenario.clone(),
    };
    let tokens = opts.tokens_csv.unwrap_or(scenario.output.tokens_csv);
    let writer = RunDirWriter::create(&opts.out_dir, &meta, tokens)?;
    let clock = RunClock::start_now();
    let epoch_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let genai = if opts.genai_perf_export {
        let path = opts.out_dir.join(PROFILE_EXPORT_JSON);
        Some(GenaiPerfWriter::create(&path, experiment_of(scenario), opts.mode, epoch_ns)?)
    } else {
        None
    };
    let aiperf = if opts.aiperf_export {
        Some(AiperfWriter::create(&opts.out_dir, experiment_of(scenario), epoch_ns)?)
    } else {
        None
    };
    let mut sink = RunSink::new(writer, scenario, genai, aiperf);
    let progress = match opts.progress {
        ProgressMode::Auto => io::stderr().is_terminal(),
        ProgressMode::Always => true,
        ProgressMode::Never => false,
    };
    let cfg = LoadConfig {
        routing,
        models: scenario
            .models
            .iter()
            .map(|m| ModelTarget { key: m.name.clone(), served_name: m.served_name.clone() })
            .collect(),
        prompts: PromptBuilder { range: scenario.workload.prompt_token_id_range, seed: scenario.seed },
        mode: opts.mode,
        per_request_timeout: opts.per_request_timeout,
        deadline: opts.deadline,
        drain_timeout: Duration::from_secs_f64(scenario.output.drain_timeout_s.clamp(0.0, 1e9)),
        grace: opts.grace,
        progress,
        progress_in_place: progress && io::stderr().is_terminal(),
        keep_raw: opts.genai_perf_export,
        max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
    };
    let stop = opts.stop.clone().unwrap_or_else(StopSignal::on_signals);
    let (scrape_stop, scrape_stop_rx) = watch::channel(false);
    let (samples, scraper) = match opts.scrape_interval {
        Some(interval) => {
            let host = opts.scrape_host.clone().unwrap_or(default_host);
            let targets = scrape_targets(scenario, &host);
            let (tx, rx) = mpsc::channel(1024);
            let h = spawn_scraper(targets, interval, clock, tx, scrape_stop_rx)
                .map_err(|e| LiveError::Http(format!("cannot start the /metrics scraper thread: {e}")))?;
            (Some(rx), Some(h))
        }
        None => (None, None),
    };
    let mut samples = samples;
    let load = run_load(source, cfg, http.clone(), clock, &mut sink, samples.as_mut(), stop.clone()).await;
    scrape_stop.send_replace(true);
    // Keep taking samples until the scraper has finished its last round, so none is lost and
    // the scraper never blocks on a full channel.
    let scrape = match (scraper, samples.as_mut()) {
        (Some(mut h), Some(rx)) => loop {
            tokio::select! {
                Some(s) = rx.recv() => sink.on_instance_sample(&s.row)?,
                r = &mut h => {
                    while let Ok(s) = rx.try_recv() {
                        sink.on_instance_sample(&s.row)?;
                    }
                    break r.ok();
                }
            }
        },
        _ => None,
    };
    let load = load?;
    let step_logs = if opts.fetch_step_logs {
        let targets: Vec<StepLogTarget> = scenario
            .instances
            .iter()
            .map(|i| StepLogTarget {
                instance: i.name.clone(),
                url: format!("http://{instance_host}:{}/steps", i.port),
            })
            .collect();
        fetch_step_logs(&http, &targets, &opts.out_dir).await?
    } else {
        StepLogs::default()
    };
    let workload_error = source.error();
    let partial = partial_reason(&load, stop.cause(), workload_error.as_deref());
    let (run_dir, summary) = sink.finish(partial.as_deref())?;
    Ok(LiveRunReport { run_dir, load, scrape, summary, workload_error, step_logs, partial })
}

/// Why a live run is partial (None: it sent its whole workload and every request ended).
fn partial_reason(load: &LoadReport, cause: Option<&str>, workload_error: Option<&str>) -> Option<String> {
    let mut why = Vec::new();
    if load.interrupted {
        why.push(format!("interrupted by {}", cause.unwrap_or("a stop request")));
    }
    if load.deadline_reached {
        why.push("the --deadline was reached".to_string());
    }
    if let Some(e) = workload_error {
        why.push(format!("the request stream stopped early: {e}"));
    }
    if load.unsent_requests && why.is_empty() {
        why.push("the workload had requests left".to_string());
    }
    (!why.is_empty()).then(|| format!("{}; {} requests sent", why.join("; "), load.sent))
}

/// Checks a bare host name or address (`127.0.0.1`, `node-3.local`, `::1`, `[::1]`): DNS labels
/// of letters, digits and `-` separated by dots, or an IP address. Err says what to give instead.
pub fn check_host(host: &str) -> Result<(), String> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "{host:?} is not a host name or IP address; give a bare host such as 127.0.0.1, ::1 or \
             node-3.example (no scheme, port or path)"
        ));
    }
    Ok(())
}

fn http_base(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        "give an http:// URL, e.g. http://127.0.0.1:8000 (https is not supported)".to_string()
    })?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        format!("[{}]", v6.split(']').next().unwrap_or(""))
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    if host.is_empty() || host == "[]" {
        return Err("the URL has no host; e.g. http://127.0.0.1:8000".to_string());
    }
    check_host(&host)?;
    Ok((url.trim_end_matches('/').to_string(), host))
}

fn routing_for(scenario: &Scenario, target: &Target) -> Result<(Routing, String, String), LiveError> {
    match target {
        Target::Lb(url) => {
            let (base, host) =
                http_base(url).map_err(|reason| LiveError::InvalidTarget { target: url.clone(), reason })?;
            Ok((Routing::Lb { base_url: base.clone() }, format!("LB {base}"), host))
        }
        Target::Direct(host) => {
            check_host(host).map_err(|reason| LiveError::InvalidTarget { target: host.clone(), reason })?;
            let instances = scenario
                .instances
                .iter()
                .map(|i| InstanceTarget {
                    name: i.name.clone(),
                    model: i.model,
                    base_url: format!("http://{host}:{}", i.port),
                })
                .collect();
            let router = sim::router::build_router(&scenario.router, scenario.models.len(), scenario.seed);
            let spec = scenario.router.clone();
            Ok((Routing::Direct { instances, router, spec }, format!("instances on {host}"), host.clone()))
        }
    }
}

fn scrape_targets(scenario: &Scenario, host: &str) -> Vec<ScrapeTarget> {
    scenario
        .instances
        .iter()
        .enumerate()
        .map(|(k, i)| ScrapeTarget {
            instance: InstanceId(k as u32),
            name: i.name.clone(),
            model: scenario.models.get(i.model.index()).map(|m| m.name.clone()).unwrap_or_default(),
            gpu: i.gpu.0,
            metrics_url: format!("http://{host}:{}/metrics", i.port),
        })
        .collect()
}

fn experiment_of(scenario: &Scenario) -> Experiment {
    let first = scenario.workload.phases.first();
    match first.map(|p| &p.arrival) {
        // Concurrency is per model of the mix; genai-perf's is the total.
        Some(ArrivalSpec::ClosedLoop { concurrency, .. }) => {
            let models = first.map_or(1, |p| p.mix.len().max(1)) as u32;
            Experiment::Concurrency(concurrency.saturating_mul(models))
        }
        Some(
            ArrivalSpec::Poisson { rate } | ArrivalSpec::Constant { rate } | ArrivalSpec::Gamma { rate, .. },
        ) => Experiment::RequestRate(*rate),
        Some(ArrivalSpec::Ramp { end_rate, .. }) => Experiment::RequestRate(*end_rate),
        // Closed-loop sessions keep that many sessions (not requests) in flight per model.
        Some(ArrivalSpec::Sessions(s)) => match s.start {
            SessionStart::Concurrent(n) => {
                let models = first.map_or(1, |p| p.mix.len().max(1)) as u32;
                Experiment::Concurrency(n.saturating_mul(models))
            }
            // Open-loop sessions: labelled with the request rate actually sent, as a replay.
            SessionStart::Rate(_) => Experiment::Replay,
        },
        Some(ArrivalSpec::Replay { .. }) | None => Experiment::Replay,
    }
}

/// How long rows may sit in the writer's buffers: even SIGKILL loses at most this much.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Writes rows to the run dir, the summary and the exports as the load generator (or an
/// import) reports them; every request row is flushed at once, scrape samples at least every
/// [`FLUSH_EVERY`].
pub(crate) struct RunSink {
    writer: RunDirWriter,
    summary: SummaryBuilder,
    genai: Option<GenaiPerfWriter>,
    aiperf: Option<AiperfWriter>,
    model_keys: Vec<String>,
    last_flush: std::time::Instant,
}

impl RunSink {
    /// A sink writing to `writer` (and the exports given) for a live run of `scenario`.
    pub(crate) fn new(
        writer: RunDirWriter,
        scenario: &Scenario,
        genai: Option<GenaiPerfWriter>,
        aiperf: Option<AiperfWriter>,
    ) -> Self {
        RunSink {
            writer,
            summary: SummaryBuilder::for_scenario(Source::Live, scenario, false),
            genai,
            aiperf,
            model_keys: scenario.models.iter().map(|m| m.name.clone()).collect(),
            last_flush: std::time::Instant::now(),
        }
    }

    /// Closes the exports, writes `summary.json` (and the `PARTIAL` marker with `partial`, the
    /// reason the run is partial); returns the run dir and the summary.
    pub(crate) fn finish(self, partial: Option<&str>) -> io::Result<(PathBuf, RunSummary)> {
        if let Some(g) = self.genai {
            g.finish()?;
        }
        if let Some(a) = self.aiperf {
            a.finish()?;
        }
        let summary = self.summary.finish();
        let run_dir = match partial {
            Some(why) => self.writer.finish_partial(&summary, why)?,
            None => self.writer.finish(&summary)?,
        };
        Ok((run_dir, summary))
    }
}

impl LoadSink for RunSink {
    fn on_finished(&mut self, done: Finished) -> io::Result<()> {
        let Finished { row, model, record, payload } = done;
        self.writer.on_request(&row)?;
        self.summary.on_request(&row)?;
        if row.status == RequestStatus::Ok {
            let key = self.model_keys.get(model.index()).map_or(row.model.as_str(), String::as_str);
            for gap in chunk_gaps(&record) {
                self.summary.on_itl(key, gap, 1)?;
            }
            if let (Some(g), Some(p)) = (self.genai.as_mut(), payload.as_deref()) {
                g.add(p, &row, &record)?;
            }
        }
        if let Some(a) = self.aiperf.as_mut() {
            a.add(&row, &record)?;
        }
        if self.writer.wants_tokens() {
            for (k, c) in record.chunks.iter().enumerate() {
                let t =
                    TokenRow { id: row.id, index: k as u32, time_s: c.time.as_secs_f64(), tokens: c.tokens };
                self.writer.on_token(&t)?;
            }
        }
        self.last_flush = std::time::Instant::now();
        self.writer.flush()
    }

    fn on_instance_sample(&mut self, row: &InstanceRow) -> io::Result<()> {
        self.writer.on_instance_sample(row)?;
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.last_flush = std::time::Instant::now();
            self.writer.flush()?;
        }
        self.summary.on_instance_sample(row)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".to_string())
}

/// `t` as RFC 3339 UTC with second precision (civil-from-days, Howard Hinnant's algorithm).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn lb_urls_must_be_http_with_a_host() {
        assert_eq!(
            http_base("http://127.0.0.1:8000/").unwrap(),
            ("http://127.0.0.1:8000".into(), "127.0.0.1".into())
        );
        assert_eq!(http_base("http://[::1]:8000").unwrap().1, "[::1]");
        assert!(http_base("https://x:1").is_err());
        assert!(http_base("http://:80").is_err());
        assert!(http_base("http://bad host:80").is_err());
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        for ok in ["127.0.0.1", "localhost", "node-3.example", "::1", "[::1]", "fe80::1"] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "not a host!!", "bad host", "http://x", "x:80", "a/b", "-x", "a..b", "[::1"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }
}
