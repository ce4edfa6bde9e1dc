//! Command-line definitions (clap derive). No logic here.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Predict and prove how multi-model LLM serving clusters behave.
#[derive(Debug, Parser)]
#[command(name = "modelsguard", version, about, long_about = None)]
pub struct Cli {
    /// Log lines (on stderr) as text or JSON lines; default: `MODELSGUARD_LOG_FORMAT`, else text.
    /// Levels come from `RUST_LOG` (default info for lb, emulate, live up/run; warn otherwise).
    #[arg(long, global = true, value_enum, value_name = "text|json")]
    pub log_format: Option<crate::logging::LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate every variant of a scenario, print per-model tables and write a run dir per variant.
    Simulate(SimulateArgs),
    /// Find the cheapest layouts (replicas per model, GPU sharing, KV mode) meeting p90 SLOs.
    Plan(PlanArgs),
    /// Draw PNG charts and report.md from run dirs or sweep dirs.
    Report(ReportArgs),
    /// Measure simulator speed: simulated requests per second and peak memory, as a table.
    Bench(BenchArgs),
    /// Simulate a scenario over a grid of field values with replications; write a tidy sweep.csv.
    Sweep(SweepArgs),
    /// Attribute the difference between two variants to each setting that differs (Shapley values).
    Explain(ExplainArgs),
    /// Live harness: rerun a scenario against real (or emulated) engines, launch engines, bench.
    Live(LiveArgs),
    /// Run the load balancer (the simulator's router as an HTTP proxy) in front of a scenario's instances.
    Lb(LbArgs),
    /// Serve a scenario's instances as vLLM-compatible emulated engines paced by the simulator's model.
    Emulate(EmulateArgs),
    /// Fit the step-time profile of one (model, GPU, engine) from live run dirs.
    Calibrate(CalibrateArgs),
    /// Simulate a live run's request stream with the matching profile and tabulate the error.
    Validate(ValidateArgs),
    /// Turn a genai-perf profile_export.json or an aiperf profile_export.jsonl into a run dir.
    Import(ImportArgs),
}

/// A scenario file with overrides.
#[derive(Debug, Args)]
pub struct ScenarioFileArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Override any scenario field, e.g. `--set workload.phases.0.arrival.rate=20` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Override the scenario's seed (0 to 9223372036854775807: a TOML integer).
    #[arg(long, value_parser = seed_arg)]
    pub seed: Option<u64>,
}

/// Selecting a scenario, its variants and overrides.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// Scenario file and overrides.
    #[command(flatten)]
    pub file: ScenarioFileArgs,
    /// Only these variants (repeatable; default: all variants in the file).
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
}

/// `simulate` arguments.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Scenario, variants and overrides.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Output directory (default: results/<scenario name>/); one run dir per variant inside.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write tokens.csv (one row per generated token; large).
    #[arg(long)]
    pub tokens: bool,
    /// Print only the comparison, not the per-variant tables.
    #[arg(long, short)]
    pub quiet: bool,
    /// Skip the PNG report (written by default to <out>/report/).
    #[arg(long)]
    pub no_report: bool,
    /// With exactly two variants: also attribute their difference to the settings that differ
    /// (`modelsguard explain`, 3 replications) into <out>/explain/.
    #[arg(long)]
    pub explain: bool,
}

/// `report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run dirs and/or sweep dirs (a live and a sim run dir of the same scenario give overlays).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output directory for report.md and the PNGs.
    #[arg(long)]
    pub out: PathBuf,
    /// Report title.
    #[arg(long)]
    pub title: Option<String>,
}

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenario to run (default: the shipped seed scenario).
    #[arg(long, default_value = "scenarios/seed-6xh100.toml")]
    pub scenario: PathBuf,
    /// Variant to run (default: the first).
    #[arg(long)]
    pub variant: Option<String>,
    /// Requests to simulate (the workload's first phase is stretched to this count).
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Override any scenario field (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Run the simulation this many times (identical results, only the wall time varies) and
    /// print the median (of an even count: the mean of the two middle runs), fastest and slowest
    /// wall time: a shared machine's noise shows.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Step every engine step one by one (no fast-forward of decode stretches); same results.
    #[arg(long, hide = true)]
    pub no_fast_forward: bool,
}

/// `plan` arguments.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Scenario file (TOML): its models, workload and [slo] ttft_p90_s / tpot_p90_s.
    pub scenario: PathBuf,
    /// Variant to plan (default: the file's first).
    #[arg(long)]
    pub variant: Option<String>,
    /// Override any scenario field (repeatable); `instances.*.FIELD` applies to every instance.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Override the scenario's seed (0 to 9223372036854775807: a TOML integer).
    #[arg(long, value_parser = seed_arg)]
    pub seed: Option<u64>,
    /// Most GPUs a layout may use (default: the scenario's count).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// GPU kind (default: the scenario's).
    #[arg(long, value_name = "NAME")]
    pub gpu: Option<String>,
    /// Most replicas of one model (default: --gpus).
    #[arg(long, value_name = "K")]
    pub max_replicas: Option<u32>,
    /// Let up to K models share a GPU when their weights fit (bare flag: 2).
    #[arg(long, value_name = "K", num_args = 0..=1, default_missing_value = "2")]
    pub colocate: Option<u32>,
    /// KV modes to try on shared GPUs (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "static,elastic")]
    pub kv: Vec<String>,
    /// Passing layouts to report.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Requests per evaluation (the workload is shortened in proportion beyond this).
    #[arg(long, default_value_t = 4000)]
    pub requests: u64,
    /// Check the SLOs at this multiple of the scenario's load.
    #[arg(long, default_value_t = 1.0)]
    pub at_load: f64,
    /// Upper bound of the max-load search (bisection on every phase's rate).
    #[arg(long, alias = "load-scale", default_value_t = 4.0)]
    pub max_load: f64,
    /// Skip the max-load search.
    #[arg(long)]
    pub no_headroom: bool,
    /// p90 TTFT target in seconds, for every model or `MODEL=SECONDS` for one (repeatable).
    #[arg(long = "ttft-p90", value_name = "[MODEL=]SECONDS")]
    pub ttft_p90: Vec<String>,
    /// p90 TPOT target in seconds, for every model or `MODEL=SECONDS` for one (repeatable).
    #[arg(long = "tpot-p90", value_name = "[MODEL=]SECONDS")]
    pub tpot_p90: Vec<String>,
    /// Least fraction of each model's requests that must succeed.
    #[arg(long, default_value_t = 0.99)]
    pub min_success: f64,
    /// Judge each layout on this many request streams (seed, seed+1, ...); it must pass on all.
    #[arg(long, default_value_t = 1)]
    pub seeds: u32,
    /// Worker threads (default: all cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `sweep` arguments: run a sweep, or `sweep merge` its shards.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    /// `merge`: combine the dirs of `--shard` runs into one sweep dir.
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    /// Scenario file (TOML); may come from --spec instead.
    #[arg(required_unless_present = "spec")]
    pub scenario: Option<PathBuf>,
    /// A sweep spec file with a `[sweep]` table (scenario, vary, zip, reps, variants, set); the
    /// command line's arguments add to it.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// A field and its values: a range `PATH=START..END:STEP` or a list `PATH=A,B,C` (repeatable),
    /// e.g. `--vary workload.phases.1.arrival.rate=2..40:2 --vary router.policy=round_robin,queue_aware`.
    #[arg(long = "vary", value_name = "PATH=VALUES")]
    pub vary: Vec<String>,
    /// Pair the --vary lists value by value instead of running every combination.
    #[arg(long)]
    pub zip: bool,
    /// Replications per point (seeds: the scenario's seed + 0, 1, ...); 95% Student-t intervals
    /// [default: 3].
    #[arg(long)]
    pub reps: Option<u32>,
    /// Only these variants (repeatable; default: all variants in the file).
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Override any scenario field at every point (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Override the scenario's seed (replication r uses seed + r; at most 9223372036854775807).
    #[arg(long, value_parser = seed_arg)]
    pub seed: Option<u64>,
    /// Output directory (default: results/<scenario name>-sweep/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only shard I of N (points p with p % N == I - 1), e.g. `--shard 1/4`; merge with `sweep merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Also write a run dir per simulation under <out>/runs/p<point>-<variant>-r<rep>/.
    #[arg(long)]
    pub run_dirs: bool,
}

/// `explain` arguments: explain a difference, or `explain merge` its shards.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExplainArgs {
    /// `merge`: combine the dirs of `--shard` runs into one explanation.
    #[command(subcommand)]
    pub action: Option<ExplainAction>,
    /// Scenario file (TOML).
    #[arg(required = true)]
    pub scenario: Option<PathBuf>,
    /// The variant the difference starts from.
    #[arg(long, required = true)]
    pub from: Option<String>,
    /// The variant it goes to (or use --to-set).
    #[arg(long, conflicts_with = "to_set", required_unless_present = "to_set")]
    pub to: Option<String>,
    /// Go to the --from variant with these fields changed instead of to a variant (repeatable).
    #[arg(long = "to-set", value_name = "PATH=VALUE")]
    pub to_set: Vec<String>,
    /// Switch these differing settings together as one factor, e.g.
    /// `--group router.policy,router.poll_interval_s` (repeatable).
    #[arg(long = "group", value_name = "PATH,PATH")]
    pub groups: Vec<String>,
    /// Override any scenario field in every run (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Override the scenario's seed (replication r uses seed + r; at most 9223372036854775807).
    #[arg(long, value_parser = seed_arg)]
    pub seed: Option<u64>,
    /// Estimate from this many sampled orders of the settings instead of all 2^k subsets
    /// (default: exact up to 10 differing settings, 64 orders beyond).
    #[arg(long, default_value_t = 0)]
    pub permutations: u32,
    /// Replications (request streams) per subset of settings; 95% Student-t intervals.
    #[arg(long, default_value_t = 3)]
    pub replications: u32,
    /// Metrics to tabulate and draw (repeatable; default: ttft_p90, tpot_p90, e2e_p90, goodput).
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Output directory (default: results/<scenario name>-explain-<from>-<to>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bisect each model's SLO-breaking load multiple on the --from variant up to this multiple.
    #[arg(long, default_value_t = 8.0)]
    pub max_load: f64,
    /// Skip the operating point (the per-model load bisection on the --from variant).
    #[arg(long)]
    pub no_operating_point: bool,
    /// Run only shard I of N of the runs, e.g. `--shard 1/4`; combine with `explain merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// Subcommands of `explain`.
#[derive(Debug, Subcommand)]
pub enum ExplainAction {
    /// Merge the dirs written by `explain --shard i/n` into the explanation an unsharded run writes.
    Merge(SweepMergeArgs),
}

/// Subcommands of `sweep`.
#[derive(Debug, Subcommand)]
pub enum SweepAction {
    /// Merge the dirs written by `sweep --shard i/n` into the sweep dir an unsharded run writes.
    Merge(SweepMergeArgs),
}

/// `sweep merge` arguments.
#[derive(Debug, Args)]
pub struct SweepMergeArgs {
    /// The shard dirs (every shard once, any order).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Output directory for the merged sweep.json and sweep.csv.
    #[arg(long)]
    pub out: PathBuf,
}

/// One scenario variant and overrides (the live commands run exactly one variant).
#[derive(Debug, Args)]
pub struct OneVariantArgs {
    /// Scenario file and overrides.
    #[command(flatten)]
    pub file: ScenarioFileArgs,
    /// The variant to run (may be left out when the scenario has exactly one).
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
}

/// `live` arguments.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LiveCommand,
}

/// The `live` subcommands.
#[derive(Debug, Subcommand)]
pub enum LiveCommand {
    /// Send a scenario variant's request stream to an LB or the instances and record a run dir.
    Run(LiveRunArgs),
    /// Start one engine per instance, wait for /health, run the LB; stop all on Ctrl-C.
    Up(LiveUpArgs),
    /// Stop what `live up` started with a run dir.
    Down(LiveDownArgs),
    /// Measure the harness on loopback: streams held at once with timestamp lag, and LB overhead.
    Bench(LiveBenchArgs),
    /// Whole node validation: per variant up, calibration ladder per model, run, down; then
    /// calibrate, validate and one report. Resumable (finished steps are skipped).
    Campaign(LiveCampaignArgs),
}

/// `live run` arguments.
#[derive(Debug, Args)]
pub struct LiveRunArgs {
    /// Scenario, variant and overrides.
    #[command(flatten)]
    pub scenario: OneVariantArgs,
    /// Send to this load balancer: `lb=http://HOST:PORT` (default `lb=http://127.0.0.1:8080`).
    #[arg(long, value_name = "lb=URL", conflicts_with = "direct")]
    pub target: Option<String>,
    /// Send straight to the instances on HOST (each at its scenario port), routing with the
    /// scenario's router policy.
    #[arg(long, value_name = "HOST")]
    pub direct: Option<String>,
    /// Run dir to write (default: results/<scenario name>/<variant>-live).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Longest one request may take, send to [DONE], seconds.
    #[arg(long, default_value_t = 600.0, value_name = "S")]
    pub timeout: f64,
    /// End the run this many seconds after its start, whatever is left (unfinished = timeout).
    #[arg(long, value_name = "S")]
    pub deadline: Option<f64>,
    /// After Ctrl-C, how long in-flight requests may finish, seconds (a second Ctrl-C stops at once).
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub grace: f64,
    /// Use /v1/chat/completions (prompt lengths then approximate) instead of /v1/completions.
    #[arg(long)]
    pub chat: bool,
    /// Also write tokens.csv (one row per streamed chunk).
    #[arg(long)]
    pub tokens: bool,
    /// Poll every instance's /metrics this often into instances.csv (0: off).
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub scrape_interval_ms: u64,
    /// Host whose instance ports are scraped (default: the target's host).
    #[arg(long, value_name = "HOST")]
    pub scrape_host: Option<String>,
    /// Also write genai-perf's profile_export.json.
    #[arg(long)]
    pub genai_perf: bool,
    /// Also write aiperf's profile_export.jsonl, profile_export_aiperf.json and .csv.
    #[arg(long)]
    pub aiperf: bool,
    /// Simulated run dirs to compare with in the report (sim-versus-live overlays; repeatable).
    #[arg(long, value_name = "DIR")]
    pub compare: Vec<PathBuf>,
    /// Skip the PNG report (written by default to <out>/report/).
    #[arg(long)]
    pub no_report: bool,
}

/// `live up` arguments.
#[derive(Debug, Args)]
pub struct LiveUpArgs {
    /// Scenario, variant and overrides.
    #[command(flatten)]
    pub scenario: OneVariantArgs,
    /// Directory for the state file and engine logs.
    #[arg(long, default_value = "runs/live")]
    pub run_dir: PathBuf,
    /// Print the engine commands and exit without starting anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Host the engines listen on and the LB reaches them at.
    #[arg(long, default_value = "127.0.0.1")]
    pub engine_host: String,
    /// Port of the LB started in front of the engines.
    #[arg(long, default_value_t = 8080)]
    pub lb_port: u16,
    /// Address the LB listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub lb_bind: std::net::IpAddr,
    /// Start the engines only, no LB.
    #[arg(long)]
    pub no_lb: bool,
    /// Longest wait for every engine's /health, seconds.
    #[arg(long, default_value_t = 1200.0, value_name = "S")]
    pub health_timeout: f64,
    /// Time between SIGTERM and SIGKILL at teardown, seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub grace: f64,
}

/// `live down` arguments.
#[derive(Debug, Args)]
pub struct LiveDownArgs {
    /// The run dir given to `live up`.
    #[arg(long, default_value = "runs/live")]
    pub run_dir: PathBuf,
    /// Time between SIGTERM and SIGKILL, seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub grace: f64,
}

/// `live campaign` arguments.
#[derive(Debug, Args)]
pub struct LiveCampaignArgs {
    /// Scenario, variants (default: all, in file order) and overrides.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Campaign dir (default: results/<scenario name>/campaign); rerun with the same one to resume.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Dry run: every phase and the calibration ladder last FACTOR times as long (bare flag: 0.1).
    #[arg(long, value_name = "FACTOR", num_args = 0..=1, default_missing_value = "0.1")]
    pub quick: Option<f64>,
    /// Serve every instance with `modelsguard emulate` instead of its launch command (no GPU needed).
    #[arg(long)]
    pub emulate: bool,
    /// Forget the finished steps of this campaign dir and start over.
    #[arg(long)]
    pub fresh: bool,
    /// Host the engines listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub engine_host: String,
    /// Longest wait for every engine's /health, seconds.
    #[arg(long, default_value_t = 1200.0, value_name = "S")]
    pub health_timeout: f64,
    /// Time between SIGTERM and SIGKILL when engines are stopped, seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub grace: f64,
    /// Also write tokens.csv for the scenario runs (the calibration runs always do).
    #[arg(long)]
    pub tokens: bool,
}

/// `live bench` arguments.
#[derive(Debug, Args)]
pub struct LiveBenchArgs {
    /// Streams held open at once by the stream benchmark.
    #[arg(long, default_value_t = 2000)]
    pub streams: u32,
    /// Tokens per stream.
    #[arg(long, default_value_t = 100)]
    pub tokens: u32,
    /// Time between two tokens of one stream, milliseconds (streams are spread in phase).
    #[arg(long, default_value_t = 100)]
    pub step_ms: u64,
    /// Request rate of the LB-overhead benchmark, requests per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Duration of each LB-overhead run (direct, then through the LB), seconds.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub duration: f64,
    /// Run only the stream benchmark.
    #[arg(long, conflicts_with = "lb_only")]
    pub streams_only: bool,
    /// Run only the LB-overhead benchmark.
    #[arg(long)]
    pub lb_only: bool,
    /// Connections held open on the LB during the LB-overhead benchmark (idle; one in ten more
    /// half-sent), to measure its overhead under slow clients.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub idle_connections: u32,
}

/// `lb` arguments.
#[derive(Debug, Args)]
pub struct LbArgs {
    /// Scenario, variant and overrides (the instances and router policy come from it).
    #[command(flatten)]
    pub scenario: OneVariantArgs,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Host of every instance (each at its scenario port).
    #[arg(long, default_value = "127.0.0.1")]
    pub upstream_host: String,
    /// Client connections served at once; one more is answered 503 at once.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a client connection may take to send a request head, or stay idle between requests.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub client_header_timeout: f64,
    /// Seconds a client may take to send a request body (then 408).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub client_body_timeout: f64,
    /// Largest request body accepted, bytes (larger: 413 in vLLM's error shape).
    #[arg(long, default_value_t = 32 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,
}

/// `emulate` arguments.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Scenario, variant and overrides (instances, engines and step times come from it).
    #[command(flatten)]
    pub scenario: OneVariantArgs,
    /// Wall seconds per simulated second (2 runs everything twice as slow).
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub time_scale: f64,
    /// /metrics names: v0 (vLLM 0.6.4) or v1 (default: each instance's engine preset).
    #[arg(long, value_name = "v0|v1")]
    pub metrics_naming: Option<MetricsNamingArg>,
    /// Only these instances, by name or index (comma-separated or repeated; default: all).
    #[arg(long, value_name = "NAME|INDEX", value_delimiter = ',')]
    pub instances: Vec<String>,
    /// Address every instance listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
}

/// `--metrics-naming` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsNamingArg {
    /// vLLM 0.6.4 names (`vllm:gpu_cache_usage_perc`, `{model_name}` labels).
    V0,
    /// vLLM V1 names (`vllm:kv_cache_usage_perc`, `{model_name, engine}` labels).
    V1,
}

/// `calibrate` arguments.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Live run dirs of one (model, GPU, engine), written by `live run --tokens` (e.g. of
    /// scenarios/calibration-h200-llama8b.toml); a run dir's steps.csv is used when every one has it.
    pub run_dirs: Vec<PathBuf>,
    /// The model to fit, when the run dirs served several.
    #[arg(long)]
    pub model: Option<String>,
    /// The GPU to fit, when the run dirs ran on several.
    #[arg(long)]
    pub gpu: Option<String>,
    /// The engine preset to fit, when the run dirs ran several.
    #[arg(long)]
    pub engine: Option<String>,
    /// Profile file to write (default: <profiles-dir>/<gpu>-<model>-<engine>.toml).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where profiles are written by default.
    #[arg(long, default_value = "profiles")]
    pub profiles_dir: PathBuf,
    /// Fit report directory (default: results/calibrate/<profile file stem>).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Where the steps come from: the engines' step logs when every run dir has one (auto),
    /// client chunk timestamps (client), or step logs only (step-log).
    #[arg(long, value_enum, default_value = "auto")]
    pub source: SourceArg,
    /// Client timestamps: a request sent within this long before a step began may or may not be
    /// in it; such steps are left out.
    #[arg(long, default_value_t = 2.0, value_name = "MS")]
    pub arrival_margin_ms: f64,
}

/// `--source` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceArg {
    /// Step logs when every run dir has one, else client timestamps.
    Auto,
    /// Client chunk timestamps (tokens.csv) only.
    Client,
    /// The engines' step logs (steps.csv) only.
    StepLog,
}

/// `validate` arguments.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario file and overrides (its seed is replaced by the live run's).
    #[command(flatten)]
    pub file: ScenarioFileArgs,
    /// The variant (default: the live run's).
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// The live run dir to validate against.
    #[arg(long, value_name = "DIR")]
    pub live: PathBuf,
    /// Output directory (default: <live>/validation).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Profile for the instances it matches (default: <profiles-dir>/<gpu>-<model>-<engine>.toml
    /// where one exists, else the scenario's own).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Where matching profiles are looked up.
    #[arg(long, default_value = "profiles")]
    pub profiles_dir: PathBuf,
    /// Simulate even when the scenario differs from the live run's in its load or cluster.
    #[arg(long)]
    pub allow_mismatch: bool,
}

/// `--seed`: a scenario seed is a TOML integer, so at most `i64::MAX`.
fn seed_arg(text: &str) -> Result<u64, String> {
    let seed: u64 = text.trim().parse().map_err(|e| format!("{text:?} is not a whole number >= 0: {e}"))?;
    if seed > i64::MAX as u64 {
        return Err(format!(
            "{seed} is above {}, the largest seed a scenario file can hold (a TOML integer); give a \
             smaller one",
            i64::MAX
        ));
    }
    Ok(seed)
}

/// `import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export: genai-perf's profile_export.json or aiperf's profile_export.jsonl.
    pub export: PathBuf,
    /// Scenario file describing the deployment that was measured (models, GPUs, instances);
    /// recorded in run.json so report, simulate and calibrate know it.
    #[arg(long)]
    pub scenario: PathBuf,
    /// The scenario's variant (may be left out when it has exactly one).
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    /// Override any scenario field (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// The run dir to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The export's format (default: detected from the content).
    #[arg(long, value_enum)]
    pub format: Option<ImportFormatArg>,
    /// Attribute every request to this scenario model (default: the model the export names, or
    /// the scenario's only model).
    #[arg(long, value_name = "KEY")]
    pub model: Option<String>,
}

/// `--format` values of `import`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormatArg {
    /// genai-perf / perf_analyzer profile_export.json.
    GenaiPerf,
    /// aiperf profile_export.jsonl.
    Aiperf,
}
