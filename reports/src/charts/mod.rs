//! One module per chart kind; each renders one PNG from data already loaded. This module holds
//! what they share: opening a bitmap, turning plotters errors into `ReportError`, and the axis
//! style of a plain x-y plot. Charts never read run dirs themselves.

pub(crate) mod cdf;
pub(crate) mod fit;
pub(crate) mod instances;
pub(crate) mod percentiles;
pub(crate) mod series;
pub(crate) mod sweep;
pub(crate) mod validation;
pub(crate) mod waterfall;

use crate::canvas::Canvas;
use crate::error::ReportError;
use crate::stats::fmt_tick;
use crate::style::{self, Area, DrawResult};
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// A chart with f64 axes.
pub(crate) type XyChart<'a, 'b> = ChartContext<'a, Canvas<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Creates a `width` x `height` PNG at `path`, fills it white, lets `draw` paint it and saves it.
pub(crate) fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult<()>,
) -> Result<(), ReportError> {
    let fail = |reason: String| ReportError::Chart { path: path.to_path_buf(), reason };
    style::ensure_fonts().map_err(fail)?;
    let result = (|| -> DrawResult<()> {
        let root = Canvas::new(path, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    result.map_err(|e| fail(e.to_string()))
}

/// A subplot with f64 axes over `x` and `y`, its caption, light grid and labelled axes.
pub(crate) fn xy_chart<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    x: (f64, f64),
    y: (f64, f64),
    x_desc: &str,
    y_desc: &str,
) -> DrawResult<XyChart<'a, 'b>> {
    // About one y label per 45 px keeps small subplots uncluttered.
    let y_labels = (area.dim_in_pixel().1 / 45).clamp(3, 8) as usize;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, style::caption())
        .margin(10)
        .margin_right(18)
        .x_label_area_size(46)
        .y_label_area_size(64)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    draw_xy_mesh(&mut chart, x_desc, y_desc, y_labels)?;
    Ok(chart)
}

/// Draws the house-style grid and labelled axes (7 x labels, `y_labels` y labels) of an f64 chart.
pub(crate) fn draw_xy_mesh(
    chart: &mut XyChart<'_, '_>,
    x_desc: &str,
    y_desc: &str,
    y_labels: usize,
) -> DrawResult<()> {
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(style::tick())
        .axis_desc_style(style::axis_desc())
        .axis_style(style::MUTED)
        .bold_line_style(style::GRID)
        .light_line_style(TRANSPARENT)
        .x_labels(7)
        .y_labels(y_labels)
        .x_label_formatter(&|v| fmt_tick(*v))
        .y_label_formatter(&|v| fmt_tick(*v))
        .draw()?;
    Ok(())
}
