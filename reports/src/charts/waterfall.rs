//! The waterfall of an explanation (`modelsguard explain`): one metric of one model, from the
//! *from* variant's value, one floating bar per factor's Shapley contribution (largest first,
//! with its 95% interval as a whisker), to the *to* variant's value. Bars are horizontal so the
//! factor names read in full. It draws data handed to it; the attribution is `sim::explain`'s.

use super::render;
use crate::error::ReportError;
use crate::stats::{fmt_tick, padded};
use crate::style::{self, BAD, GOOD, Header, INK, MUTED};
use plotters::prelude::*;
use std::path::Path;

/// One factor's bar.
#[derive(Clone, Debug, PartialEq)]
pub struct WaterfallStep {
    /// Factor label.
    pub label: String,
    /// Contribution, display units.
    pub delta: f64,
    /// Its 95% interval, display units.
    pub ci: Option<(f64, f64)>,
}

/// What a waterfall shows (values already in display units).
#[derive(Clone, Debug, PartialEq)]
pub struct WaterfallChart {
    /// Title line.
    pub title: String,
    /// Subtitle (command, replications, calibration).
    pub subtitle: String,
    /// Axis label with the unit, e.g. `p90 TTFT (ms)`.
    pub axis: String,
    /// The *from* bar: label and value.
    pub start: (String, f64),
    /// The factors, top to bottom.
    pub steps: Vec<WaterfallStep>,
    /// The *to* bar: label and value.
    pub end: (String, f64),
    /// Whether a larger value is better (goodput) or worse (latency): colours the steps.
    pub higher_is_better: bool,
}

/// Draws `chart` as a `width` x `height` PNG at `path`.
pub fn render_waterfall(
    path: &Path,
    (width, height): (u32, u32),
    chart: &WaterfallChart,
) -> Result<(), ReportError> {
    let n = chart.steps.len() + 2;
    // Bar i spans [lo, hi] on the value axis; row i counts from the top.
    let mut bars: Vec<(String, f64, f64, RGBColor)> =
        vec![(chart.start.0.clone(), 0.0, chart.start.1, MUTED)];
    let mut level = chart.start.1;
    for s in &chart.steps {
        let next = level + s.delta;
        let good = (s.delta > 0.0) == chart.higher_is_better;
        bars.push((s.label.clone(), level.min(next), level.max(next), if good { GOOD } else { BAD }));
        level = next;
    }
    bars.push((chart.end.0.clone(), 0.0, chart.end.1, INK));
    let mut lo = bars.iter().map(|b| b.1).fold(0.0f64, f64::min);
    let mut hi = bars.iter().map(|b| b.2).fold(0.0f64, f64::max);
    for (i, s) in chart.steps.iter().enumerate() {
        if let Some((a, b)) = s.ci {
            // The whisker starts where the step does: the level before it.
            let base = if s.delta >= 0.0 { bars[i + 1].1 } else { bars[i + 1].2 };
            lo = lo.min(base + a);
            hi = hi.max(base + b);
        }
    }
    let (x0, x1) = padded(lo, hi, 0.06);
    let header = Header {
        title: chart.title.clone(),
        subtitle: vec![(chart.subtitle.clone(), MUTED)],
        legend: Vec::new(),
    };
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let label_px = labels.iter().map(|l| l.len()).max().unwrap_or(10).clamp(10, 70) as u32 * 8 + 20;
    render(path, (width.max(200), height.max(150)), |root| {
        let body = style::draw_header(root, &header)?;
        let mut c = ChartBuilder::on(&body)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(46)
            .y_label_area_size(label_px.min(width / 2))
            .build_cartesian_2d(x0..x1, -0.5..(n as f64 - 0.5))?;
        c.configure_mesh()
            .x_desc(chart.axis.as_str())
            .label_style(style::tick())
            .axis_desc_style(style::axis_desc())
            .axis_style(MUTED)
            .bold_line_style(style::GRID)
            .light_line_style(TRANSPARENT)
            .x_labels(7)
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_labels(n)
            .y_label_formatter(&|v| {
                let row = (n as f64 - 1.0 - v).round();
                if (row - (n as f64 - 1.0 - v)).abs() > 1e-6 || row < 0.0 {
                    return String::new();
                }
                labels.get(row as usize).cloned().unwrap_or_default()
            })
            .disable_y_mesh()
            .draw()?;
        for (i, (_, a, b, color)) in bars.iter().enumerate() {
            let y = n as f64 - 1.0 - i as f64;
            c.draw_series(std::iter::once(Rectangle::new([(*a, y - 0.32), (*b, y + 0.32)], color.filled())))?;
        }
        for (i, s) in chart.steps.iter().enumerate() {
            let Some((ca, cb)) = s.ci else { continue };
            let y = n as f64 - 2.0 - i as f64;
            let (a, b) = (bars[i + 1].1, bars[i + 1].2);
            let base = if s.delta >= 0.0 { a } else { b };
            let pts = vec![(base + ca, y), (base + cb, y)];
            c.draw_series(std::iter::once(PathElement::new(pts, INK.stroke_width(2))))?;
        }
        // Connectors from each bar's end to the next bar.
        for i in 0..bars.len() - 1 {
            let y = n as f64 - 1.0 - i as f64;
            let x = if i == 0 {
                bars[0].2
            } else {
                chart.start.1 + chart.steps[..i].iter().map(|s| s.delta).sum::<f64>()
            };
            c.draw_series(DashedLineSeries::new(
                vec![(x, y - 0.32), (x, y - 0.68)],
                4,
                3,
                MUTED.stroke_width(1),
            ))?;
        }
        Ok(())
    })
}
