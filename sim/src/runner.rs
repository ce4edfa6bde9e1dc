//! Runs scenario variants into run dirs: the glue between `simulation`, `trace` and `metrics` that
//! the CLI, sweeps and tests share.

use crate::metrics::{RunSummary, SummaryBuilder};
use crate::observe::Tee;
use crate::scenario::{PerfSpec, Scenario};
use crate::simulation::{SimError, SimOptions, SimStats, simulate};
use crate::trace::{RunDirWriter, RunMeta, SCHEMA_VERSION, Source};
use std::path::Path;

/// What one simulated variant produced.
#[derive(Clone, Debug)]
pub struct VariantRun {
    /// The summary written to `summary.json`.
    pub summary: RunSummary,
    /// Counters of the simulation.
    pub stats: SimStats,
}

/// True when every instance's step times come from a calibrated profile.
pub fn is_calibrated(scenario: &Scenario) -> bool {
    scenario.instances.iter().all(|i| matches!(i.perf, PerfSpec::Profile { .. }))
}

/// The `run.json` of a simulated run of `scenario`.
pub fn sim_run_meta(scenario: &Scenario, started_at: &str) -> RunMeta {
    RunMeta {
        schema_version: SCHEMA_VERSION,
        source: Source::Sim,
        scenario_name: scenario.name.clone(),
        variant: scenario.variant.clone(),
        seed: scenario.seed,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started_at.to_string(),
        host: "simulated".to_string(),
        calibrated: is_calibrated(scenario),
        scenario: scenario.clone(),
    }
}

/// Simulates `scenario` and writes its run dir at `out_dir`. `tokens` adds `tokens.csv`.
pub fn simulate_to_dir(
    scenario: &Scenario,
    base_dir: &Path,
    out_dir: &Path,
    tokens: bool,
    started_at: &str,
    opts: SimOptions<'_>,
) -> Result<VariantRun, SimError> {
    let meta = sim_run_meta(scenario, started_at);
    let mut writer = RunDirWriter::create(out_dir, &meta, tokens)?;
    let mut summary = SummaryBuilder::for_scenario(Source::Sim, scenario, meta.calibrated);
    let stats = {
        let mut tee = Tee::new(vec![&mut writer, &mut summary]);
        simulate(scenario, base_dir, &mut tee, opts)?
    };
    let summary = summary.finish();
    writer.finish(&summary)?;
    Ok(VariantRun { summary, stats })
}

/// Simulates `scenario` keeping only the summary (sweeps, `plan`, benchmarks): no files.
pub fn simulate_summary(
    scenario: &Scenario,
    base_dir: &Path,
    opts: SimOptions<'_>,
) -> Result<VariantRun, SimError> {
    let mut summary = SummaryBuilder::for_scenario(Source::Sim, scenario, is_calibrated(scenario));
    let stats = simulate(scenario, base_dir, &mut summary, opts)?;
    Ok(VariantRun { summary: summary.finish(), stats })
}
