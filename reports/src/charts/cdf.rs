//! Latency CDFs: one PNG per latency (TTFT, TPOT, E2E), one subplot per model, one line per run
//! dir. The x axis stops at 1.25 x the largest p99 so the body of the distributions stays
//! readable; the axis label says so when the tail is cut. When live runs are among the inputs,
//! simulated lines are dashed and live ones solid.

use super::{render, xy_chart};
use crate::error::ReportError;
use crate::input::Run;
use crate::stats::{LatencyMetric, TimeUnit, cdf_points, samples};
use crate::style::{self, Header, LegendItem, Mark};
use plotters::prelude::*;
use sim::metrics::percentile;
use sim::trace::Source;
use std::path::Path;

/// Draws the CDF of `metric` for every model of `models` and every run of `runs`.
pub(crate) fn render_cdf(
    path: &Path,
    size: (u32, u32),
    runs: &[&Run],
    models: &[String],
    metric: LatencyMetric,
) -> Result<(), ReportError> {
    // With live runs present, simulated lines are dashed (as in the validation overlays).
    let mixed = runs.iter().any(|r| r.dir.meta.source == Source::Live);
    let mark = |r: &Run| if mixed && r.dir.meta.source == Source::Sim { Mark::Dashed } else { Mark::Line };
    let data: Vec<Vec<Vec<f64>>> =
        models.iter().map(|m| runs.iter().map(|r| samples(&r.dir.requests, m, metric)).collect()).collect();
    let header = Header {
        title: format!("{} CDF per model (successful requests)", metric.label()),
        subtitle: style::runs_subtitle(runs),
        legend: runs.iter().map(|r| LegendItem::new(&r.label, style::color(r.index), mark(r))).collect(),
    };
    render(path, size, |root| {
        let body = style::draw_header(root, &header)?;
        let cells = style::grid(&body, models.len(), 3);
        for ((model, series), cell) in models.iter().zip(&data).zip(&cells) {
            if series.iter().all(|s| s.is_empty()) {
                style::no_data(cell, &format!("{model}: no successful requests"))?;
                continue;
            }
            let max = series.iter().filter_map(|s| s.last().copied()).fold(0.0, f64::max);
            let p99 = series.iter().filter_map(|s| percentile(s, 99.0)).fold(0.0, f64::max);
            let cut = max > 1.25 * p99 && p99 > 0.0;
            let x_max = if cut { 1.25 * p99 } else { max.max(1e-9) * 1.02 };
            let unit = TimeUnit::for_max(x_max);
            let x_desc = if cut {
                format!("{} ({}), tail past 1.25 × p99 cut", metric.label(), unit.label)
            } else {
                format!("{} ({})", metric.label(), unit.label)
            };
            let mut chart = xy_chart(
                cell,
                model,
                (0.0, x_max * unit.scale),
                (0.0, 1.0),
                &x_desc,
                "fraction of requests",
            )?;
            for (run, s) in runs.iter().zip(series) {
                let (pts, c) = (clipped(s, x_max, unit.scale), style::color(run.index).stroke_width(2));
                if mark(run) == Mark::Dashed {
                    chart.draw_series(DashedLineSeries::new(pts, 9, 6, c))?;
                } else {
                    chart.draw_series(LineSeries::new(pts, c))?;
                }
            }
        }
        Ok(())
    })
}

/// CDF points of `sorted` up to `x_max` (scaled to the display unit), ending exactly at the cut.
fn clipped(sorted: &[f64], x_max: f64, scale: f64) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = cdf_points(sorted).into_iter().filter(|p| p.0 <= x_max).collect();
    if sorted.last().is_some_and(|&m| m > x_max) {
        let below = sorted.partition_point(|&x| x <= x_max) as f64 / sorted.len() as f64;
        pts.push((x_max, below));
    }
    pts.into_iter().map(|(x, y)| (x * scale, y)).collect()
}
