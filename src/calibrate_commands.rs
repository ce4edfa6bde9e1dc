//! Dispatch of `calibrate` and `validate`: build the library options from the arguments, run
//! them and print what they return. No fitting or comparing happens here.

use crate::cli::{CalibrateArgs, SourceArg, ValidateArgs};
use anyhow::{Context, Result};
use calibration::dataset::TargetFilter;
use calibration::step::Term;
use calibration::{CalibrateOptions, DataSource, ValidateOptions, validation_table};
use sim::scenario::Override;

/// `modelsguard calibrate`.
pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    let mut opts = CalibrateOptions::new(a.run_dirs);
    opts.filter = TargetFilter { model: a.model, gpu: a.gpu, engine: a.engine };
    opts.source = match a.source {
        SourceArg::Auto => DataSource::Auto,
        SourceArg::Client => DataSource::Client,
        SourceArg::StepLog => DataSource::StepLog,
    };
    if !(a.arrival_margin_ms.is_finite() && a.arrival_margin_ms >= 0.0) {
        anyhow::bail!(
            "--arrival-margin-ms: {} is not a duration in milliseconds (>= 0)",
            a.arrival_margin_ms
        );
    }
    opts.arrival_margin_s = a.arrival_margin_ms / 1e3;
    opts.out = a.out;
    opts.profiles_dir = a.profiles_dir;
    opts.report_dir = a.report;
    let cal = calibration::calibrate(&opts).context("calibrate")?;
    outln!("profile of {}: {}", cal.target, cal.profile_path.display());
    outln!("{:<26} {:>14} {:>14}", "coefficient", "value (s)", "std. error");
    for term in Term::ALL {
        let se = cal.fit.fitted.iter().find(|(t, _)| *t == term).map(|(_, se)| *se);
        let se = match se {
            Some(Some(v)) => format!("{v:.3e}"),
            Some(None) => "-".into(),
            None => "not fitted".into(),
        };
        outln!("{:<26} {:>14.4e} {:>14}", term.key(), cal.fit.model.get(term), se);
    }
    outln!("{:<26} {:>14.4e} {:>14}", "output_delay_s", cal.output_delay.value_s, "-");
    let f = &cal.fit;
    outln!(
        "fit: {} steps, R^2 {:.4}, |relative residual| p50 {:.2}%, p90 {:.2}%, p99 {:.2}%",
        f.num_rows,
        f.r2,
        f.residual_p50 * 100.0,
        f.residual_p90 * 100.0,
        f.residual_p99 * 100.0
    );
    for n in &cal.notes {
        outln!("  - {n}");
    }
    outln!("fit report: {} (chart {})", cal.report.markdown.display(), cal.report.chart.display());
    Ok(())
}

/// `modelsguard validate`.
pub fn validate(a: ValidateArgs) -> Result<()> {
    let mut overrides = crate::commands::parse_overrides(&a.file.overrides)?;
    if let Some(seed) = a.file.seed {
        eprintln!("note: --seed {seed} is ignored: validate replays the live run's seed");
    }
    overrides.retain(|o: &Override| o.path != "seed");
    let mut opts = ValidateOptions::new(&a.file.scenario, &a.live);
    opts.overrides = overrides;
    opts.variant = a.variant;
    opts.out = a.out;
    opts.profile = a.profile;
    opts.profiles_dir = a.profiles_dir;
    opts.allow_mismatch = a.allow_mismatch;
    let v = calibration::validate(&opts).context("validate")?;
    outln!("validation of {} / {} against {}", v.scenario, v.variant, v.live_dir.display());
    for (inst, src) in &v.step_times {
        outln!("  {inst}: {src}");
    }
    for d in &v.differences {
        outln!("  differs: {d}");
    }
    out!("{}", validation_table(&v));
    outln!("error = (sim - live) / live; sim run dir {}", v.sim_dir.display());
    outln!("report: {} · {}", v.report_md.display(), v.json.display());
    Ok(())
}
