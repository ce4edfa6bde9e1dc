//! The step-time fit of `calibrate`: predicted against measured step times (the diagonal is a
//! perfect fit), and the relative error of each step against its measured time. Decode-only steps
//! and steps that computed prompt tokens get their own colour: a profile that fits decodes but
//! not prefills shows at once. It draws data handed to it; the fit itself is `calibration`'s.

use super::{render, xy_chart};
use crate::error::ReportError;
use crate::stats::{TimeUnit, padded};
use crate::style::{self, Header, LegendItem, MUTED, Mark};
use plotters::prelude::*;
use std::path::Path;

/// At most this many points are drawn (evenly strided); the statistics use every one.
const MAX_POINTS: usize = 20_000;

/// One fitted step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitPoint {
    /// Measured duration, seconds.
    pub measured_s: f64,
    /// The profile's prediction, seconds.
    pub predicted_s: f64,
    /// Whether the step computed prompt tokens.
    pub has_prefill: bool,
}

/// What the fit chart shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitChart {
    /// Title line.
    pub title: String,
    /// Subtitle (data, fit quality).
    pub subtitle: String,
    /// The steps.
    pub points: Vec<FitPoint>,
}

/// Draws `chart` as a `width` x `height` PNG at `path`.
pub fn render_fit_chart(
    path: &Path,
    (width, height): (u32, u32),
    chart: &FitChart,
) -> Result<(), ReportError> {
    let stride = chart.points.len().div_ceil(MAX_POINTS).max(1);
    let shown: Vec<FitPoint> = chart.points.iter().step_by(stride).copied().collect();
    let (c_decode, c_prefill) = (style::color(0), style::color(1));
    let header = Header {
        title: chart.title.clone(),
        subtitle: vec![(chart.subtitle.clone(), MUTED)],
        legend: vec![
            LegendItem::new("decode-only steps", c_decode, Mark::Ring),
            LegendItem::new("steps with prompt tokens", c_prefill, Mark::Ring),
            LegendItem::new("perfect fit", MUTED, Mark::Dashed),
        ],
    };
    let max = chart.points.iter().map(|p| p.measured_s.max(p.predicted_s)).fold(0.0f64, f64::max);
    let unit = TimeUnit::for_max(max);
    let rel = |p: &FitPoint| (p.predicted_s - p.measured_s) / p.measured_s;
    let mut errs: Vec<f64> = chart.points.iter().map(rel).filter(|e| e.is_finite()).collect();
    errs.sort_by(f64::total_cmp);
    // The error axis spans the 0.5th to 99.5th percentile, so a few outliers do not flatten it.
    let lo = sim::metrics::percentile(&errs, 0.5).unwrap_or(-0.1).min(-0.01);
    let hi = sim::metrics::percentile(&errs, 99.5).unwrap_or(0.1).max(0.01);
    render(path, (width.max(200), height.max(150)), |root| {
        let body = style::draw_header(root, &header)?;
        let cells = style::grid(&body, 2, 2);
        let (Some(left), Some(right)) = (cells.first(), cells.get(1)) else { return Ok(()) };
        if chart.points.is_empty() {
            style::no_data(left, "no steps")?;
            return Ok(());
        }
        let top = max * unit.scale * 1.05;
        let mut c = xy_chart(
            left,
            "predicted vs measured step time",
            (0.0, top),
            (0.0, top),
            &format!("measured ({})", unit.label),
            &format!("predicted ({})", unit.label),
        )?;
        c.draw_series(DashedLineSeries::new(vec![(0.0, 0.0), (top, top)], 8, 6, MUTED.stroke_width(1)))?;
        for (color, prefill) in [(c_decode, false), (c_prefill, true)] {
            c.draw_series(shown.iter().filter(|p| p.has_prefill == prefill).map(|p| {
                Circle::new((p.measured_s * unit.scale, p.predicted_s * unit.scale), 2, color.filled())
            }))?;
        }
        let (y0, y1) = padded(lo * 100.0, hi * 100.0, 0.05);
        let caption = format!(
            "relative error (median |error| {:.1}%)",
            sim::metrics::percentile(&abs_sorted(&errs), 50.0).unwrap_or(0.0) * 100.0
        );
        let mut c = xy_chart(
            right,
            &caption,
            (0.0, top),
            (y0.min(-1.0), y1.max(1.0)),
            &format!("measured ({})", unit.label),
            "(predicted - measured) / measured (%)",
        )?;
        c.draw_series(DashedLineSeries::new(vec![(0.0, 0.0), (top, 0.0)], 8, 6, MUTED.stroke_width(1)))?;
        for (color, prefill) in [(c_decode, false), (c_prefill, true)] {
            c.draw_series(
                shown
                    .iter()
                    .filter(|p| p.has_prefill == prefill)
                    .map(|p| (p.measured_s * unit.scale, rel(p) * 100.0))
                    .filter(|(_, e)| e.is_finite())
                    .map(|(x, e)| Circle::new((x, e.clamp(y0, y1)), 2, color.filled())),
            )?;
        }
        Ok(())
    })
}

fn abs_sorted(v: &[f64]) -> Vec<f64> {
    let mut a: Vec<f64> = v.iter().map(|x| x.abs()).collect();
    a.sort_by(f64::total_cmp);
    a
}
