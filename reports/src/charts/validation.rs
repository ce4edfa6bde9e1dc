//! Sim-versus-live overlay of one pair of runs: a row per model, a column per latency (TTFT, TPOT,
//! ITL, E2E; the model names the y axis); the live CDF solid, the simulated one dashed, and the
//! p90 relative error in each caption. ITL needs each run's `tokens.csv` (every gap between chunks); without it the cell says
//! so. The numbers themselves are in `validate` (and `validation.csv`).

use super::{render, xy_chart};
use crate::error::ReportError;
use crate::input::Run;
use crate::stats::{LatencyMetric, TimeUnit, cdf_points, fmt_pct, rel_diff, samples};
use crate::style::{self, Header, LegendItem, Mark};
use plotters::prelude::*;
use sim::metrics::percentile;
use std::collections::HashMap;
use std::path::Path;

/// ITL samples of each model of a run (sorted), or None when the run has no `tokens.csv`.
pub(crate) type ItlSamples = Option<HashMap<String, Vec<f64>>>;

/// Draws the overlay of `sim` and `live` for every model of `models`.
pub(crate) fn render_validation(
    path: &Path,
    size: (u32, u32),
    sim: &Run,
    live: &Run,
    models: &[String],
    itl: (&ItlSamples, &ItlSamples),
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
                let title = format!("{model} · {}", metric.label());
                let (s, l) = if metric == LatencyMetric::Itl {
                    let Some((si, li)) = itl.0.as_ref().zip(itl.1.as_ref()) else {
                        style::no_data(cell, &format!("{title}: needs tokens.csv in both runs"))?;
                        continue;
                    };
                    (si.get(model).cloned().unwrap_or_default(), li.get(model).cloned().unwrap_or_default())
                } else {
                    (samples(&sim.dir.requests, model, metric), samples(&live.dir.requests, model, metric))
                };
                if s.is_empty() && l.is_empty() {
                    style::no_data(cell, &format!("{title}: no successful requests"))?;
                    continue;
                }
                let p = |v: &[f64], q| percentile(v, q).unwrap_or(0.0);
                let x_max = (1.25 * p(&s, 99.0).max(p(&l, 99.0))).max(1e-9);
                let err = rel_diff(p(&s, 90.0), p(&l, 90.0)).map(|e| format!(" · p90 error {}", fmt_pct(e)));
                let unit = TimeUnit::for_max(x_max);
                let mut chart = xy_chart(
                    cell,
                    &format!("{}{}", metric.label(), err.unwrap_or_default()),
                    (0.0, x_max * unit.scale),
                    (0.0, 1.0),
                    &format!("{} ({})", metric.label(), unit.label),
                    &format!("{model}: fraction"),
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
