//! The fit report of `calibrate`: `fit.png` (predicted vs measured step times, drawn by the
//! reports crate), `fit.md` (coefficients with standard errors, fit quality, what the data
//! identified and what was assumed, what was left out and why) and `fit_steps.csv` (every row
//! of the fit with its prediction).

use crate::calibrate::{Calibration, Method};
use crate::error::CalibrationError;
use crate::step::Term;
use reports::{FitChart, FitPoint, render_fit_chart};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The files of a fit report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitReport {
    /// The report's directory.
    pub dir: PathBuf,
    /// `fit.md`.
    pub markdown: PathBuf,
    /// `fit.png`.
    pub chart: PathBuf,
    /// `fit_steps.csv`.
    pub steps_csv: PathBuf,
}

fn secs(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e-3 {
        format!("{:.4} ms", v * 1e3)
    } else if v.abs() >= 1e-6 {
        format!("{:.4} µs", v * 1e6)
    } else {
        format!("{:.4} ns", v * 1e9)
    }
}

fn markdown(cal: &Calibration, chart: &str) -> String {
    let mut out = String::new();
    let t = &cal.target;
    let f = &cal.fit;
    let _ = writeln!(out, "# Step-time fit: {} on {} with {}\n", t.model, t.gpu, t.engine);
    let _ = writeln!(out, "Profile: `{}`\n", cal.profile_path.display());
    let _ =
        writeln!(out, "Data: {}\n", cal.profile.fit.as_ref().map(|x| x.data.join(", ")).unwrap_or_default());
    let _ = writeln!(out, "| coefficient | value | bootstrap std. error | status |\n|---|---:|---:|---|");
    for term in Term::ALL {
        let fitted = f.fitted.iter().find(|(x, _)| *x == term);
        let status = match (fitted, f.unidentified.iter().find(|u| u.term == term)) {
            (Some(_), _) => "fitted".to_string(),
            (None, Some(u)) => format!("not identified: {}", u.reason),
            (None, None) => "not part of this fit".to_string(),
        };
        let se = fitted.and_then(|(_, se)| *se).map_or("—".to_string(), secs);
        let _ = writeln!(out, "| `{}` | {} | {se} | {status} |", term.key(), secs(f.model.get(term)));
    }
    let d = &cal.output_delay;
    let how = match &d.simulated {
        Some(f) => format!(
            "simulated calibration runs' TTFT p50/p90 against measured (mean abs log error {:.3}); \
             lone requests: median {} of {}",
            f.objective,
            secs(d.lone_s),
            d.requests
        ),
        None => {
            format!("median of {} lone requests (p10 {}, p90 {})", d.requests, secs(d.p10_s), secs(d.p90_s))
        }
    };
    let _ = writeln!(out, "| `output_delay_s` | {} | — | {how} |\n", secs(d.value_s));
    if let Some(f) = &d.simulated {
        let _ = writeln!(out, "| run (output delay fit) | TTFT p50 live | sim | TTFT p90 live | sim |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for (run, l50, s50, l90, s90) in &f.runs {
            let _ = writeln!(
                out,
                "| {run} | {} | {} | {} | {} |",
                secs(*l50),
                secs(*s50),
                secs(*l90),
                secs(*s90)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Fit: {} steps, R² {:.4}, relative residual |predicted - measured| / measured p50 {:.2}%, p90 \
         {:.2}%, p99 {:.2}%.\n",
        f.num_rows,
        f.r2,
        f.residual_p50 * 100.0,
        f.residual_p90 * 100.0,
        f.residual_p99 * 100.0
    );
    let _ = writeln!(out, "![predicted vs measured step times]({chart})\n");
    let _ = writeln!(out, "## How the rows were obtained\n");
    match &cal.method {
        Method::StepLog { captured, empty, graph_steps, eager_steps } => {
            let _ = writeln!(
                out,
                "From the engines' step logs (`steps.csv`): {graph_steps} CUDA-graph steps and \
                 {eager_steps} eager steps kept; {captured} steps that captured a graph and {empty} \
                 empty steps dropped.\n"
            );
        }
        Method::Client { lag, r2_by_lag, counts, bursts } => {
            let _ = writeln!(
                out,
                "Reconstructed from client chunk timestamps (`tokens.csv`) and `requests.csv`: {} steps, \
                 {} used; left out: {} after an idle engine or first, {} with a request sent about when \
                 the step began, {} where the replay contradicts what the client saw. {} used steps \
                 hold a prompt chunk the replay inferred.\n",
                counts.steps,
                counts.used,
                counts.idle_start,
                counts.ambiguous,
                counts.inconsistent,
                counts.inferred_chunks
            );
            let lags: Vec<String> = r2_by_lag.iter().map(|(l, r)| format!("lag {l}: R² {r:.4}")).collect();
            let _ = writeln!(out, "Pipeline lag chosen: {lag} step(s) ({}).\n", lags.join(", "));
            let _ = writeln!(out, "| instance | burst gap threshold | burst spread p99 |\n|---|---:|---:|");
            for b in bursts {
                let _ =
                    writeln!(out, "| {} | {} | {} |", b.instance, secs(b.threshold_s), secs(b.spread_p99_s));
            }
            let _ = writeln!(
                out,
                "\nA burst spread close to its threshold means chunk delivery jitter rivals the \
                 shortest steps: steps may be merged or split, and the fit is not to be trusted.\n"
            );
        }
    }
    let _ = writeln!(out, "## Identified and assumed\n");
    for n in &cal.notes {
        let _ = writeln!(out, "- {n}");
    }
    out
}

fn write_steps_csv(path: &Path, cal: &Calibration) -> Result<(), CalibrationError> {
    let err = |e: csv::Error| CalibrationError::Io { path: path.into(), source: std::io::Error::other(e) };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record([
        "run",
        "instance",
        "measured_s",
        "predicted_s",
        "num_steps",
        "num_eager_steps",
        "num_scheduled_requests",
        "num_prefill_tokens",
        "num_decode_seqs",
        "num_padding_tokens",
        "num_kv_tokens_read",
        "num_prefill_attn_pairs",
    ])
    .map_err(err)?;
    for (s, p) in cal.samples.iter().zip(&cal.fit.predicted) {
        let f = &s.features;
        w.write_record([
            s.run.to_string(),
            s.instance.clone(),
            format!("{:.9}", s.duration_s),
            format!("{p:.9}"),
            f.num_steps.to_string(),
            f.num_eager_steps.to_string(),
            f.num_scheduled_requests.to_string(),
            f.num_prefill_tokens.to_string(),
            f.num_decode_seqs.to_string(),
            f.num_padding_tokens.to_string(),
            f.num_kv_tokens_read.to_string(),
            f.num_prefill_attn_pairs.to_string(),
        ])
        .map_err(err)?;
    }
    w.flush().map_err(CalibrationError::io(path))
}

/// Writes the fit report of `cal` into `dir` (created if needed).
pub fn write_fit_report(dir: &Path, cal: &Calibration) -> Result<FitReport, CalibrationError> {
    std::fs::create_dir_all(dir).map_err(CalibrationError::io(dir))?;
    let chart = dir.join("fit.png");
    let f = &cal.fit;
    let data = FitChart {
        title: format!(
            "Step-time fit: {} on {} with {}",
            cal.target.model, cal.target.gpu, cal.target.engine
        ),
        subtitle: format!(
            "{} steps · R² {:.3} · |error| p50 {:.1}%, p90 {:.1}%, p99 {:.1}%",
            f.num_rows,
            f.r2,
            f.residual_p50 * 100.0,
            f.residual_p90 * 100.0,
            f.residual_p99 * 100.0
        ),
        points: cal
            .samples
            .iter()
            .zip(&f.predicted)
            .map(|(s, p)| FitPoint {
                measured_s: s.duration_s,
                predicted_s: *p,
                has_prefill: s.features.has_prefill(),
            })
            .collect(),
    };
    render_fit_chart(&chart, (1400, 700), &data)?;
    let steps_csv = dir.join("fit_steps.csv");
    write_steps_csv(&steps_csv, cal)?;
    let md = dir.join("fit.md");
    std::fs::write(&md, markdown(cal, "fit.png")).map_err(CalibrationError::io(&md))?;
    Ok(FitReport { dir: dir.to_path_buf(), markdown: md, chart, steps_csv })
}
