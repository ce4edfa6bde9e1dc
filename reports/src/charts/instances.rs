//! Per-instance time series of one run dir (`instances.csv`): a subplot per instance with running
//! and waiting requests (left axis) and KV-cache usage in percent (right axis); and, for elastic KV
//! runs, a second chart of the pages each instance has mapped. Every line is clipped to its panel
//! and reduced to its minimum and maximum per pixel column (`series::fit_to_panel`), so hour-long
//! runs keep their spikes and dips without over-plotting.

use super::series::fit_to_panel;
use super::{draw_xy_mesh, render, xy_chart};
use crate::error::ReportError;
use crate::input::Run;
use crate::stats::{fmt_tick, padded};
use crate::style::{self, Header, LegendItem, Mark};
use plotters::prelude::*;
use sim::trace::InstanceRow;
use std::path::Path;

/// Instance names of `rows` in first-seen order, with their GPU.
fn instances(rows: &[InstanceRow]) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for r in rows {
        if !out.iter().any(|(n, _)| *n == r.instance) {
            out.push((r.instance.clone(), r.gpu));
        }
    }
    out
}

/// `(time, value)` of one instance, in row order (time order).
fn series(rows: &[InstanceRow], instance: &str, f: impl Fn(&InstanceRow) -> Option<f64>) -> Vec<(f64, f64)> {
    rows.iter().filter(|r| r.instance == instance).filter_map(|r| f(r).map(|v| (r.time_s, v))).collect()
}

/// Width in pixels of a chart's plotting area.
fn columns<DB: DrawingBackend, CT: CoordTranslate>(area: &DrawingArea<DB, CT>) -> usize {
    let px = area.get_pixel_range().0;
    usize::try_from(px.end - px.start).unwrap_or(1).max(1)
}

/// Whether the run recorded elastic-KV mapped pages.
pub(crate) fn has_mapped_pages(run: &Run) -> bool {
    run.dir.instances.iter().any(|r| r.mapped_pages.is_some())
}

fn time_range(rows: &[InstanceRow]) -> (f64, f64) {
    let t = rows.iter().map(|r| r.time_s).fold(0.0, f64::max);
    padded(0.0, t, 0.0)
}

/// Draws the running / waiting / KV usage chart of `run`.
pub(crate) fn render_instances(path: &Path, size: (u32, u32), run: &Run) -> Result<(), ReportError> {
    let rows = &run.dir.instances;
    let names = instances(rows);
    let (c_run, c_wait, c_kv) = (style::color(0), style::color(1), style::color(2));
    let header = Header {
        title: format!("{}: load and KV cache per instance", run.label),
        subtitle: style::run_subtitle(run),
        legend: vec![
            LegendItem::new("running requests (left axis)", c_run, Mark::Line),
            LegendItem::new("waiting requests (left axis)", c_wait, Mark::Line),
            LegendItem::new("KV cache usage, % (right axis)", c_kv, Mark::Band),
        ],
    };
    let x = time_range(rows);
    render(path, size, |root| {
        let body = style::draw_header(root, &header)?;
        if names.is_empty() {
            return style::no_data(&body, "instances.csv has no samples");
        }
        let cells = style::grid(&body, names.len(), if names.len() > 8 { 3 } else { 2 });
        for ((name, gpu), cell) in names.iter().zip(&cells) {
            let running = series(rows, name, |r| Some(f64::from(r.num_requests_running)));
            let waiting = series(rows, name, |r| Some(f64::from(r.num_requests_waiting)));
            let kv = series(rows, name, |r| Some(r.kv_cache_usage * 100.0));
            let y_max = running.iter().chain(&waiting).map(|p| p.1).fold(1.0, f64::max) * 1.1;
            let mut chart = ChartBuilder::on(cell)
                .caption(format!("{name}  (GPU {gpu})"), style::caption())
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .right_y_label_area_size(56)
                .build_cartesian_2d(x.0..x.1, 0.0..y_max)?
                .set_secondary_coord(x.0..x.1, 0.0..100.0);
            draw_xy_mesh(&mut chart, "time (s)", "requests", 5)?;
            chart
                .configure_secondary_axes()
                .y_desc("KV usage (%)")
                .label_style(style::tick())
                .axis_desc_style(style::axis_desc())
                .axis_style(style::MUTED)
                .y_labels(5)
                .y_label_formatter(&|v| fmt_tick(*v))
                .draw()?;
            let cols = columns(chart.plotting_area());
            let kv = fit_to_panel(&kv, x, (0.0, 100.0), cols);
            let waiting = fit_to_panel(&waiting, x, (0.0, y_max), cols);
            let running = fit_to_panel(&running, x, (0.0, y_max), cols);
            chart.draw_secondary_series(AreaSeries::new(kv.iter().copied(), 0.0, c_kv.mix(0.15)))?;
            chart.draw_secondary_series(LineSeries::new(kv, c_kv.stroke_width(2)))?;
            chart.draw_series(LineSeries::new(waiting, c_wait.stroke_width(2)))?;
            chart.draw_series(LineSeries::new(running, c_run.stroke_width(2)))?;
        }
        Ok(())
    })
}

/// Draws the elastic-KV pages mapped by each instance of `run` over time.
pub(crate) fn render_mapped_pages(path: &Path, size: (u32, u32), run: &Run) -> Result<(), ReportError> {
    let rows = &run.dir.instances;
    let names = instances(rows);
    let header = Header {
        title: format!("{}: elastic KV pages mapped per instance", run.label),
        subtitle: style::run_subtitle(run),
        legend: names
            .iter()
            .enumerate()
            .map(|(i, (n, gpu))| LegendItem::new(format!("{n} (GPU {gpu})"), style::color(i), Mark::Line))
            .collect(),
    };
    let x = time_range(rows);
    let lines: Vec<Vec<(f64, f64)>> =
        names.iter().map(|(n, _)| series(rows, n, |r| r.mapped_pages.map(f64::from))).collect();
    let y_max = lines.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    render(path, size, |root| {
        let body = style::draw_header(root, &header)?;
        let mut chart = xy_chart(&body, "", x, (0.0, y_max), "time (s)", "mapped pages")?;
        let cols = columns(chart.plotting_area());
        for (i, line) in lines.into_iter().enumerate() {
            let line = fit_to_panel(&line, x, (0.0, y_max), cols);
            chart.draw_series(LineSeries::new(line, style::color(i).stroke_width(2)))?;
        }
        Ok(())
    })
}
