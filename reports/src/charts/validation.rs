//! Sim-versus-live overlay of one pair of runs: a row per model, a column per latency (TTFT, TPOT,
//! E2E); the live CDF solid, the simulated one dashed, and the p90 relative error in each caption.
//! The numbers themselves are in `validate` (and `validation.csv`).

use super::{render, xy_chart};
use crate::error::ReportError;
use crate::input::Run;
use crate::stats::{LatencyMetric, TimeUnit, cdf_points, fmt_pct, rel_diff, samples};
use crate::style::{self, Header, LegendItem, Mark};
use plotters::prelude::*;
use sim::metrics::percentile;
use std::path::Path;

/// Draws the overlay of `sim` and `live` for every model of `models`.
pub(crate) fn render_validation(
    path: &Path,
    size: (u32, u32),
    sim: &Run,
    live: &Run,
    models: &[String],
) -> Result<(), ReportError> {
    let (c_live, c_sim) = (style::color(0), style::color(1));
    let header = Header {
        title: format!(
            "Validation: {} / {}, simulated vs measured",
            sim.dir.meta.scenario_name, sim.dir.meta.variant
        ),
        subtitle: style::runs_subtitle(&[sim, live]),
        legend: vec![
            LegendItem::new(format!("live: {}", live.label), c_live, Mark::Line),
            LegendItem::new(format!("sim: {}", sim.label), c_sim, Mark::Dashed),
        ],
    };
    render(path, size, |root| {
        let body = style::draw_header(root, &header)?;
        let cells = style::grid(&body, models.len() * LatencyMetric::ALL.len(), LatencyMetric::ALL.len());
        let mut cells = cells.iter();
        for model in models {
            for metric in LatencyMetric::ALL {
                let Some(cell) = cells.next() else { return Ok(()) };
                let s = samples(&sim.dir.requests, model, metric);
                let l = samples(&live.dir.requests, model, metric);
                let title = format!("{model} · {}", metric.label());
                if s.is_empty() && l.is_empty() {
                    style::no_data(cell, &format!("{title}: no successful requests"))?;
                    continue;
                }
                let p = |v: &[f64], q| percentile(v, q).unwrap_or(0.0);
                let x_max = (1.25 * p(&s, 99.0).max(p(&l, 99.0))).max(1e-9);
                let err = rel_diff(p(&s, 90.0), p(&l, 90.0)).map(|e| format!("  (p90 error {})", fmt_pct(e)));
                let unit = TimeUnit::for_max(x_max);
                let mut chart = xy_chart(
                    cell,
                    &format!("{title}{}", err.unwrap_or_default()),
                    (0.0, x_max * unit.scale),
                    (0.0, 1.0),
                    &format!("{} ({})", metric.label(), unit.label),
                    "fraction",
                )?;
                let scaled = |v: &[f64]| -> Vec<(f64, f64)> {
                    cdf_points(v)
                        .into_iter()
                        .filter(|q| q.0 <= x_max)
                        .map(|(x, y)| (x * unit.scale, y))
                        .collect()
                };
                chart.draw_series(LineSeries::new(scaled(&l), c_live.stroke_width(2)))?;
                chart.draw_series(DashedLineSeries::new(scaled(&s), 9, 6, c_sim.stroke_width(2)))?;
            }
        }
        Ok(())
    })
}
