//! `summary.md`: per variant the validation table (simulated with the fitted profiles against
//! measured), then for every variant after the first its measured and predicted difference from
//! the first (e.g. managed against baseline), and whether the simulation gets its sign right.
//! Everything is read back from the run dirs, so a resumed campaign writes the same summary.

use calibration::{Validation, validation_table};
use reports::{ErrorRow, ThroughputRow, compare_sim_live, compare_throughput};
use sim::trace::{TraceError, read_run_dir};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Differences smaller than this (relative) count as no difference when comparing signs.
pub(crate) const SAME_TOLERANCE: f64 = 0.01;

/// One variant's measured and simulated run dirs.
pub(crate) struct VariantRuns {
    pub name: String,
    pub live: PathBuf,
    pub sim: PathBuf,
}

/// What the summary says about the campaign.
pub(crate) struct SummaryInput {
    pub title: String,
    /// Lines describing how the campaign ran (scenario, overrides, engines).
    pub about: Vec<String>,
    /// Fitted profiles: what for, and the file (relative to the campaign dir).
    pub profiles: Vec<(String, PathBuf)>,
    pub variants: Vec<VariantRuns>,
}

struct Rows {
    latencies: Vec<ErrorRow>,
    throughput: Vec<ThroughputRow>,
}

fn rel(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some((a - b) / b),
        _ => None,
    }
}

fn sign(x: f64) -> i8 {
    if x.abs() < SAME_TOLERANCE {
        0
    } else if x > 0.0 {
        1
    } else {
        -1
    }
}

/// Whether the predicted difference has the measured one's sign ("-" when either is unknown).
pub(crate) fn sign_agrees(measured: Option<f64>, predicted: Option<f64>) -> &'static str {
    match (measured, predicted) {
        (Some(m), Some(p)) if sign(m) == sign(p) => "yes",
        (Some(_), Some(_)) => "**no**",
        _ => "-",
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:+.1}%", x * 100.0))
}

/// Renders the summary, reading every variant's run dirs.
pub(crate) fn render(input: &SummaryInput) -> Result<String, TraceError> {
    let mut rows = Vec::new();
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", input.title);
    for line in &input.about {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "\n## Fitted profiles\n");
    for (what, path) in &input.profiles {
        let _ = writeln!(out, "- {what}: `{}`", path.display());
    }
    let _ = writeln!(
        out,
        "\n## Validation: simulated with the fitted profiles against measured\n\nerror = (sim - live) / live.\n"
    );
    for v in &input.variants {
        let (sim, live) = (read_run_dir(&v.sim)?, read_run_dir(&v.live)?);
        let r =
            Rows { latencies: compare_sim_live(&sim, &live), throughput: compare_throughput(&sim, &live) };
        let table = validation_table(&Validation {
            scenario: sim.meta.scenario_name.clone(),
            variant: v.name.clone(),
            sim_dir: v.sim.clone(),
            live_dir: v.live.clone(),
            step_times: Vec::new(),
            differences: Vec::new(),
            latencies: r.latencies.clone(),
            throughput: r.throughput.clone(),
            report_md: PathBuf::new(),
            json: PathBuf::new(),
        });
        let _ = writeln!(out, "### {}\n\n```text\n{}```\n", v.name, table);
        rows.push(r);
    }
    let Some((base, first)) = input.variants.first().zip(rows.first()) else { return Ok(out) };
    for (v, r) in input.variants.iter().zip(&rows).skip(1) {
        let _ = writeln!(
            out,
            "## {} against {}: measured and predicted difference\n\ndifference = ({} - {}) / {}; sign: does the \
             simulation predict the direction of the measured difference (under {:.0}% counts as none)?\n",
            v.name,
            base.name,
            v.name,
            base.name,
            base.name,
            SAME_TOLERANCE * 100.0
        );
        let _ = writeln!(
            out,
            "| model | metric | {} live | {} live | measured | predicted | sign |",
            base.name, v.name
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|");
        let ms = |x: Option<f64>| x.map_or("-".into(), |s| format!("{:.1} ms", s * 1e3));
        for row in &r.latencies {
            let Some(b) = first
                .latencies
                .iter()
                .find(|x| x.model == row.model && x.metric == row.metric && x.percentile == row.percentile)
            else {
                continue;
            };
            let (m, p) = (rel(row.live_s, b.live_s), rel(row.sim_s, b.sim_s));
            let _ = writeln!(
                out,
                "| {} | {} {} | {} | {} | {} | {} | {} |",
                row.model,
                row.metric.label(),
                row.percentile.label(),
                ms(b.live_s),
                ms(row.live_s),
                pct(m),
                pct(p),
                sign_agrees(m, p)
            );
        }
        for row in &r.throughput {
            let Some(b) = first.throughput.iter().find(|x| x.model == row.model && x.metric == row.metric)
            else {
                continue;
            };
            let (m, p) = (rel(row.live, b.live), rel(row.sim, b.sim));
            let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.model,
                row.metric.label(),
                f(b.live),
                f(row.live),
                pct(m),
                pct(p),
                sign_agrees(m, p)
            );
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_sign_check_agrees_exactly_when_both_move_the_same_way(m in -2.0f64..2.0, p in -2.0f64..2.0) {
            let agree = sign_agrees(Some(m), Some(p)) == "yes";
            let same = (m.abs() < SAME_TOLERANCE && p.abs() < SAME_TOLERANCE)
                || (m >= SAME_TOLERANCE && p >= SAME_TOLERANCE)
                || (m <= -SAME_TOLERANCE && p <= -SAME_TOLERANCE);
            prop_assert_eq!(agree, same);
        }
    }

    #[test]
    fn an_unknown_difference_has_no_verdict() {
        assert_eq!(sign_agrees(None, Some(0.3)), "-");
        assert_eq!(rel(Some(1.0), Some(0.0)), None);
        assert_eq!(rel(Some(3.0), Some(2.0)), Some(0.5));
    }
}
