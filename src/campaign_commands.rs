//! Dispatch of `live campaign`: build the campaign options from the arguments, run the campaign
//! on a tokio runtime with Ctrl-C/SIGTERM as its interrupt, print the summary. The sequencing lives
//! in the `campaign` crate.

use crate::cli::LiveCampaignArgs;
use anyhow::{Context, Result};
use campaign::{CampaignOptions, Interrupt, run_campaign};
use std::path::PathBuf;

/// `modelsguard live campaign`.
pub fn campaign(a: LiveCampaignArgs) -> Result<()> {
    let file = crate::commands::load_file(&a.scenario.file)?;
    let mut overrides = crate::commands::parse_overrides(&a.scenario.file.overrides)?;
    if let Some(seed) = a.scenario.file.seed {
        overrides.push(format!("seed={seed}").parse()?);
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("results").join(&file.name).join("campaign"));
    let mut opts = CampaignOptions::new(&a.scenario.file.scenario, out);
    opts.overrides = overrides;
    opts.variants = a.scenario.variants.clone();
    opts.quick = a.quick;
    opts.fresh = a.fresh;
    opts.engine_host = a.engine_host.clone();
    opts.health_timeout = crate::live_commands::secs("--health-timeout", a.health_timeout)?;
    opts.grace = crate::live_commands::secs("--grace", a.grace)?;
    opts.tokens = a.tokens;
    if a.emulate {
        opts.emulate =
            Some(std::env::current_exe().context("--emulate: finding this modelsguard executable")?);
    }
    let rt = crate::live_commands::runtime()?;
    let result = rt.block_on(async {
        let interrupt = Interrupt::on_signals();
        run_campaign(&opts, interrupt).await
    });
    // After Ctrl-C a simulation may still be running on a blocking thread: the engines are
    // already stopped, so do not wait for it.
    rt.shutdown_background();
    let report = result?;
    let summary = std::fs::read_to_string(&report.summary_md)
        .with_context(|| format!("reading {}", report.summary_md.display()))?;
    outln!("{summary}");
    outln!(
        "campaign dir {}: {} steps run, {} skipped; report {}",
        report.out.display(),
        report.steps_run,
        report.steps_skipped,
        report.report_md.display()
    );
    Ok(())
}
