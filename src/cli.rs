//! Command-line definitions (clap derive). No logic here.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Predict and prove how multi-model LLM serving clusters behave.
#[derive(Debug, Parser)]
#[command(name = "modelsguard", version, about, long_about = None)]
pub struct Cli {
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
}

/// Selecting a scenario, its variants and overrides.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// Scenario file (TOML).
    pub scenario: PathBuf,
    /// Only these variants (repeatable; default: all variants in the file).
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Override any scenario field, e.g. `--set workload.phases.0.arrival.rate=20` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
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
    /// Override the scenario's seed.
    #[arg(long)]
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
    /// Override the scenario's seed (replication r uses seed + r).
    #[arg(long)]
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
