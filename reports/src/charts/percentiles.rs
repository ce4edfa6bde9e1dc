//! Percentile bars of one model: a subplot per latency (TTFT, TPOT, E2E), groups p50/p90/p99, one
//! bar per run dir, and above every bar but the reference's its difference to the reference
//! (first run dir), green when lower, red when higher. Values come from each run's
//! `summary.json`.

use super::render;
use crate::error::ReportError;
use crate::input::Run;
use crate::stats::{LatencyMetric, Percentile, TimeUnit, fmt_pct, fmt_tick, rel_diff};
use crate::style::{self, Header, LegendItem, Mark};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Value of `p` of `metric` for `model` in `run`, seconds; `None` when absent or not a latency
/// (negative or not finite, as only an edited `summary.json` holds: plotters' integer pixel
/// mapping overflows on a bar that far outside the axis).
fn value(run: &Run, model: &str, metric: LatencyMetric, p: Percentile) -> Option<f64> {
    let m = run.dir.summary.models.iter().find(|m| m.model == model)?;
    metric.of_summary(m).map(|s| p.of(s)).filter(|v| v.is_finite() && *v >= 0.0)
}

/// Draws the percentile bars of `model` for `runs` (the first is the reference).
pub(crate) fn render_percentiles(
    path: &Path,
    size: (u32, u32),
    runs: &[&Run],
    model: &str,
) -> Result<(), ReportError> {
    let reference = runs.first().map(|r| r.label.clone()).unwrap_or_default();
    let header = Header {
        title: if runs.len() > 1 {
            format!("{model}: latency percentiles, difference vs {reference}")
        } else {
            format!("{model}: latency percentiles")
        },
        subtitle: style::runs_subtitle(runs),
        legend: runs.iter().map(|r| LegendItem::new(&r.label, style::color(r.index), Mark::Box)).collect(),
    };
    render(path, size, |root| {
        let body = style::draw_header(root, &header)?;
        let cells = style::grid(&body, LatencyMetric::PER_REQUEST.len(), 3);
        for (metric, cell) in LatencyMetric::PER_REQUEST.into_iter().zip(&cells) {
            let vals: Vec<Vec<Option<f64>>> = Percentile::ALL
                .iter()
                .map(|&p| runs.iter().map(|r| value(r, model, metric, p)).collect())
                .collect();
            let max = vals.iter().flatten().flatten().copied().fold(0.0, f64::max);
            if max <= 0.0 {
                style::no_data(cell, &format!("{}: no successful requests", metric.label()))?;
                continue;
            }
            let unit = TimeUnit::for_max(max);
            let y_max = max * unit.scale * 1.22;
            let mut chart = ChartBuilder::on(cell)
                .caption(metric.label(), style::caption())
                .margin(10)
                .margin_right(18)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..3.0, 0.0..y_max)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc(format!("{} ({})", metric.label(), unit.label))
                .label_style(style::tick())
                .axis_desc_style(style::axis_desc())
                .axis_style(style::MUTED)
                .bold_line_style(style::GRID)
                .light_line_style(TRANSPARENT)
                .y_labels(6)
                .x_labels(7)
                .x_label_formatter(&group_label)
                .y_label_formatter(&|v| fmt_tick(*v))
                .draw()?;
            let n = runs.len().max(1) as f64;
            let bw = 0.8 / n;
            let px = chart.plotting_area().get_pixel_range().0;
            let bar_px = f64::from(px.end - px.start) / 3.0 * bw;
            for (g, group) in vals.iter().enumerate() {
                let base = group.first().copied().flatten();
                for (i, (run, v)) in runs.iter().zip(group).enumerate() {
                    let Some(v) = *v else { continue };
                    let x0 = g as f64 + 0.1 + i as f64 * bw;
                    let y = v * unit.scale;
                    let c = style::color(run.index);
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(x0 + bw * 0.06, 0.0), (x0 + bw * 0.94, y)],
                        c.filled(),
                    )))?;
                    let Some(d) = base.filter(|_| i > 0).and_then(|b| rel_diff(v, b)) else { continue };
                    let color = if d < 0.0 {
                        style::GOOD
                    } else if d > 0.0 {
                        style::BAD
                    } else {
                        style::MUTED
                    };
                    let label = fmt_pct(d);
                    let at = (x0 + bw / 2.0, y + y_max * 0.012);
                    let flat = style::bold(13.0, color);
                    let fits =
                        cell.estimate_text_size(&label, &flat).is_ok_and(|(w, _)| f64::from(w) <= bar_px);
                    // Horizontal when the label fits the bar's slot, else written upwards.
                    let text = if fits {
                        flat.pos(Pos::new(HPos::Center, VPos::Bottom))
                    } else {
                        style::bold(12.0, color)
                            .transform(FontTransform::Rotate270)
                            .pos(Pos::new(HPos::Left, VPos::Center))
                    };
                    chart.draw_series(std::iter::once(Text::new(label, at, text)))?;
                }
            }
        }
        Ok(())
    })
}

/// Tick label of the x axis (ticks fall every 0.5): the percentile name at group centres, nothing
/// at group edges.
fn group_label(v: &f64) -> String {
    let centre = (v - 0.5).round();
    if (v - 0.5 - centre).abs() < 1e-6 && centre >= 0.0 {
        Percentile::ALL.get(centre as usize).map_or(String::new(), |p| p.label().to_string())
    } else {
        String::new()
    }
}
