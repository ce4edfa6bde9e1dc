//! The simulator's own speed (`modelsguard bench`): runs one scenario variant, its first phase
//! stretched to a request count, `repeat` times over and returns each run's counters and wall
//! time, the median, fastest and slowest wall time, and the markdown table the CLI prints.
//!
//! It writes no files and does not read `/proc`: a run's peak memory comes from the reader the
//! caller passes in ([`BenchOptions::peak_rss_mib`]; the binary passes `live::procfs`'s, the one
//! `/proc` reader of the workspace), so the simulator stays free of OS specifics.

use crate::metrics::percentile;
use crate::runner::simulate_summary;
use crate::scenario::{Override, Scenario, ScenarioError, load_scenario};
use crate::simulation::{SimError, SimOptions};
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to bench.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// The variant to run; `None` runs the file's first.
    pub variant: Option<String>,
    /// Requests to simulate: the workload's first phase is stretched to this count (its rate
    /// kept, its duration lifted); later phases run as written.
    pub requests: u64,
    /// Edits of the scenario (`--set`), applied before the stretch.
    pub overrides: Vec<Override>,
    /// Runs of the same simulation (identical results; only the wall time varies). At least 1.
    pub repeat: u32,
    /// Fast-forward pure-decode stretches ([`SimOptions::fast_forward`]; same results either way).
    pub fast_forward: bool,
    /// This process's peak resident memory so far, MiB, read after each run; `None` where unknown.
    pub peak_rss_mib: fn() -> Option<f64>,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The scenario file (or an override) is invalid, or names no such variant.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The scenario file defines no variant to run.
    #[error("{}: defines no variant", .file.display())]
    NoVariant {
        /// The scenario file.
        file: PathBuf,
    },
    /// An option has an unusable value.
    #[error("{option}: {reason}")]
    Option {
        /// The command-line option, e.g. `--repeat`.
        option: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A run failed.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// One run: the simulation's counters and how long it took.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// Scenario name.
    pub scenario: String,
    /// Variant name.
    pub variant: String,
    /// Requests the workload issued.
    pub requests: u64,
    /// Engine steps executed across all instances.
    pub steps: u64,
    /// Simulated time of the last event, seconds.
    pub simulated_s: f64,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// Peak resident memory of the process after the run, MiB (`None` where unknown).
    pub peak_rss_mib: Option<f64>,
}

impl BenchRow {
    /// Simulated requests per wall second.
    pub fn requests_per_s(&self) -> f64 {
        self.requests as f64 / self.wall_s
    }

    /// Engine steps per wall second.
    pub fn steps_per_s(&self) -> f64 {
        self.steps as f64 / self.wall_s
    }

    /// The row's line of the table (no newline).
    pub fn table_line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.0} | {:.0} | {} |",
            self.scenario,
            self.variant,
            self.requests,
            self.steps,
            self.simulated_s,
            self.wall_s,
            self.requests_per_s(),
            self.steps_per_s(),
            self.peak_rss_mib.map_or("-".to_string(), |m| format!("{m:.0}")),
        )
    }
}

/// The table's header: column names and the markdown separator line (no trailing newline).
pub const TABLE_HEADER: &str = "| scenario | variant | requests | steps | simulated s | wall s | sim req/s | steps/s | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|";

/// Wall time over the runs, seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WallStats {
    /// Number of runs.
    pub runs: usize,
    /// The median: the middle run's time for an odd count, the mean of the two middle runs' for
    /// an even count (the 50th percentile as [`percentile`] interpolates it, numpy's default).
    pub median: f64,
    /// The fastest run's time.
    pub fastest: f64,
    /// The slowest run's time.
    pub slowest: f64,
}

impl WallStats {
    /// Stats of `walls` (any order); `None` when empty.
    pub fn of(walls: &[f64]) -> Option<WallStats> {
        let mut sorted = walls.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(WallStats {
            runs: sorted.len(),
            median: percentile(&sorted, 50.0)?,
            fastest: *sorted.first()?,
            slowest: *sorted.last()?,
        })
    }

    /// The summary line under the table (no newline).
    pub fn line(&self) -> String {
        format!(
            "wall s over {} runs: median {:.3}, fastest {:.3}, slowest {:.3}",
            self.runs, self.median, self.fastest, self.slowest
        )
    }
}

/// What the simulated cluster served (identical in every run).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchLoad {
    /// Requests served ok per simulated second.
    pub request_throughput: f64,
    /// Fraction of requests that ended ok, 0..=1.
    pub success_rate: f64,
    /// Median TTFT, seconds (`None` without a first token).
    pub ttft_p50_s: Option<f64>,
    /// Median TPOT, seconds (`None` without a second token).
    pub tpot_p50_s: Option<f64>,
}

impl BenchLoad {
    /// The load line under the table (no newline); a missing percentile prints as 0.
    pub fn line(&self) -> String {
        format!(
            "load: {:.1} req/s served, {:.1}% ok, TTFT p50 {:.1} ms, TPOT p50 {:.1} ms",
            self.request_throughput,
            self.success_rate * 100.0,
            self.ttft_p50_s.unwrap_or(0.0) * 1e3,
            self.tpot_p50_s.unwrap_or(0.0) * 1e3
        )
    }
}

/// Everything one bench measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// One row per run, in run order.
    pub rows: Vec<BenchRow>,
    /// What the cluster served.
    pub load: BenchLoad,
}

impl BenchReport {
    /// Wall-time stats over the runs; `None` without a run.
    pub fn wall(&self) -> Option<WallStats> {
        WallStats::of(&self.rows.iter().map(|r| r.wall_s).collect::<Vec<_>>())
    }

    /// The lines after the rows: the wall-time stats (only over more than one run) and the load
    /// line, each ending in a newline.
    pub fn footer(&self) -> String {
        let mut out = String::new();
        if let Some(w) = self.wall().filter(|w| w.runs > 1) {
            let _ = writeln!(out, "{}", w.line());
        }
        let _ = writeln!(out, "{}", self.load.line());
        out
    }

    /// The whole output of `modelsguard bench`: header, one line per run, footer.
    pub fn table(&self) -> String {
        let mut out = format!("{TABLE_HEADER}\n");
        for r in &self.rows {
            let _ = writeln!(out, "{}", r.table_line());
        }
        out + &self.footer()
    }
}

/// Loads the variant `opts` names, stretches its first phase to `opts.requests` and simulates it
/// `opts.repeat` times, calling `on_row` after each run (to print rows as they come). When
/// `on_row` breaks (its output closed), no more runs start and the report holds the runs so far.
pub fn run_bench(
    opts: &BenchOptions,
    on_row: &mut dyn FnMut(&BenchRow) -> ControlFlow<()>,
) -> Result<BenchReport, BenchError> {
    if opts.repeat == 0 {
        return Err(BenchError::Option { option: "--repeat", reason: "must be at least 1".into() });
    }
    let requests = i64::try_from(opts.requests).map_err(|_| BenchError::Option {
        option: "--requests",
        reason: format!("{} is too large; at most {}", opts.requests, i64::MAX),
    })?;
    let mut overrides = opts.overrides.clone();
    // Stretch the first phase to the requested count; keep its rate.
    overrides.push(Override::new("workload.phases.0.num_requests", toml::Value::Integer(requests)));
    overrides.push(Override::new("workload.phases.0.duration_s", toml::Value::Float(1e9)));
    let file = load_scenario(&opts.scenario, &overrides)?;
    let scenario = match &opts.variant {
        Some(v) => file.variant(v)?,
        None => file.variants.first().ok_or_else(|| BenchError::NoVariant { file: file.path.clone() })?,
    };
    // `repeat >= 1`: the first run gives the load (every run serves the same).
    let (first, load) = run_once(scenario, &file.base_dir, opts)?;
    let mut flow = on_row(&first);
    let mut rows = Vec::with_capacity(opts.repeat as usize);
    rows.push(first);
    for _ in 1..opts.repeat {
        if flow.is_break() {
            break;
        }
        let (row, _) = run_once(scenario, &file.base_dir, opts)?;
        flow = on_row(&row);
        rows.push(row);
    }
    Ok(BenchReport { rows, load })
}

/// One timed run of `scenario`, and what it served.
fn run_once(
    scenario: &Scenario,
    base_dir: &Path,
    opts: &BenchOptions,
) -> Result<(BenchRow, BenchLoad), SimError> {
    let t0 = Instant::now();
    let sim_opts = SimOptions { fast_forward: opts.fast_forward, ..SimOptions::default() };
    let run = simulate_summary(scenario, base_dir, sim_opts)?;
    let wall_s = t0.elapsed().as_secs_f64();
    let row = BenchRow {
        scenario: scenario.name.clone(),
        variant: scenario.variant.clone(),
        requests: run.stats.requests,
        steps: run.stats.steps,
        simulated_s: run.stats.end_time.as_secs_f64(),
        wall_s,
        peak_rss_mib: (opts.peak_rss_mib)(),
    };
    let o = &run.summary.overall;
    let load = BenchLoad {
        request_throughput: o.request_throughput,
        success_rate: o.success_rate,
        ttft_p50_s: o.ttft.as_ref().map(|s| s.p50),
        tpot_p50_s: o.tpot.as_ref().map(|s| s.p50),
    };
    Ok((row, load))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(wall_s: f64, peak_rss_mib: Option<f64>) -> BenchRow {
        BenchRow {
            scenario: "seed".into(),
            variant: "baseline".into(),
            requests: 1000,
            steps: 40_000,
            simulated_s: 83.4,
            wall_s,
            peak_rss_mib,
        }
    }

    fn load() -> BenchLoad {
        BenchLoad {
            request_throughput: 11.96,
            success_rate: 0.995,
            ttft_p50_s: Some(0.0412),
            tpot_p50_s: None,
        }
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_run() {
        let w = WallStats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(w, WallStats { runs: 3, median: 2.0, fastest: 1.0, slowest: 3.0 });
        let w = WallStats::of(&[9.0, 1.0, 5.0, 2.0, 3.0]).unwrap();
        assert_eq!((w.median, w.fastest, w.slowest), (3.0, 1.0, 9.0));
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_two_middle_runs() {
        let w = WallStats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(w, WallStats { runs: 4, median: 2.5, fastest: 1.0, slowest: 4.0 });
        assert_eq!(WallStats::of(&[2.0, 1.0]).unwrap().median, 1.5);
    }

    #[test]
    fn one_run_is_its_own_median_fastest_and_slowest_and_no_run_has_no_stats() {
        assert_eq!(
            WallStats::of(&[1.25]),
            Some(WallStats { runs: 1, median: 1.25, fastest: 1.25, slowest: 1.25 })
        );
        assert_eq!(WallStats::of(&[]), None);
    }

    #[test]
    fn the_table_has_the_header_one_line_per_run_the_wall_stats_and_the_load() {
        let report = BenchReport { rows: vec![row(2.0, Some(40.6)), row(2.5, None)], load: load() };
        let expected = "\
| scenario | variant | requests | steps | simulated s | wall s | sim req/s | steps/s | peak RSS MiB |
|---|---|---|---|---|---|---|---|---|
| seed | baseline | 1000 | 40000 | 83 | 2.000 | 500 | 20000 | 41 |
| seed | baseline | 1000 | 40000 | 83 | 2.500 | 400 | 16000 | - |
wall s over 2 runs: median 2.250, fastest 2.000, slowest 2.500
load: 12.0 req/s served, 99.5% ok, TTFT p50 41.2 ms, TPOT p50 0.0 ms
";
        assert_eq!(report.table(), expected);
    }

    #[test]
    fn a_single_run_prints_no_wall_stats_line() {
        let report = BenchReport { rows: vec![row(0.5, Some(12.0))], load: load() };
        let table = report.table();
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(!table.contains("wall s over"), "{table}");
        assert_eq!(report.wall().map(|w| w.median), Some(0.5));
    }
}
