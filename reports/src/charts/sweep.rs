//! Sweep charts: one PNG per metric of a sweep dir, a subplot per model, the metric against the
//! sweep's x parameter with a line per variant (and per value of any other swept parameter, e.g. a
//! router policy), its confidence interval as a band, the SLO as a red dashed line when
//! `sweep.json` gives one for that metric, and the knee circled.
//!
//! Knee rule (latency metrics only: names starting `ttft_`, `tpot_`, `e2e_`, `itl_`): along a line
//! sorted by x, the knee is the first point after the lowest x that has risen (its interval lies
//! wholly above the lowest-x point's interval; values stand for intervals without one) and whose
//! value exceeds twice the value at the lowest x, or crosses the metric's SLO (the point before it
//! was at or under the SLO). A line that does not rise has no knee, even when it sits above the
//! SLO. Throughput-like metrics (higher is better) get no knee.
//!
//! Bands are clamped to the metric's range (`sim::sweep::metrics::metric_range`: a fraction stays
//! in `[0, 1]`), also for `sweep.csv` files written before the sweep clamped them.

use super::render;
use crate::error::ReportError;
use crate::input::SweepDir;
use crate::stats::{TimeUnit, fmt_secs, fmt_tick};
use crate::style::{self, Header, LegendItem, Mark};
use crate::sweep_schema::{ParamValue, SweepRow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use sim::sweep::metrics::clamp_interval;
use std::path::Path;

/// One point of a line: x, value and its interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    /// The x parameter's value.
    pub x: f64,
    /// The metric.
    pub value: f64,
    /// Interval low (the value when absent).
    pub lo: f64,
    /// Interval high (the value when absent).
    pub hi: f64,
}

/// One line of a sweep subplot.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    /// Position in [`series_keys`], for the colour.
    pub key: usize,
    /// Points sorted by x.
    pub points: Vec<Point>,
}

/// What distinguishes lines: the variant and the values of every swept parameter but x.
type SeriesKey = (String, Vec<(String, String)>);

fn key_of(row: &SweepRow, x_param: &str) -> SeriesKey {
    let others =
        row.params.iter().filter(|(k, _)| *k != x_param).map(|(k, v)| (k.clone(), v.to_string())).collect();
    (row.variant.clone(), others)
}

/// Every line identity of the sweep in first-seen order, with its legend label.
pub(crate) fn series_keys(sweep: &SweepDir) -> Vec<(SeriesKey, String)> {
    let mut keys: Vec<SeriesKey> = Vec::new();
    for r in &sweep.rows {
        let k = key_of(r, &sweep.meta.x_param);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    // Show a parameter in labels only where it takes more than one value.
    let varying = |name: &str| {
        let mut seen: Vec<&str> = Vec::new();
        for (_, others) in &keys {
            for (k, v) in others {
                if k == name && !seen.contains(&v.as_str()) {
                    seen.push(v);
                }
            }
        }
        seen.len() > 1
    };
    let labels: Vec<String> = keys
        .iter()
        .map(|(variant, others)| {
            let mut l = variant.clone();
            for (k, v) in others.iter().filter(|(k, _)| varying(k)) {
                let short = k.rsplit('.').next().unwrap_or(k);
                l.push_str(&format!(", {short}={v}"));
            }
            l
        })
        .collect();
    keys.into_iter().zip(labels).collect()
}

fn first_seen<'a>(it: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in it {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// Metric names of the sweep, in first-seen order.
pub(crate) fn metrics(sweep: &SweepDir) -> Vec<String> {
    first_seen(sweep.rows.iter().map(|r| r.metric.as_str()))
}

/// Models that have `metric`, in first-seen order.
pub(crate) fn models(sweep: &SweepDir, metric: &str) -> Vec<String> {
    first_seen(sweep.rows.iter().filter(|r| r.metric == metric).map(|r| r.model.as_str()))
}

/// The lines of `metric` for `model` (rows whose x parameter is not numeric are skipped).
pub(crate) fn lines(sweep: &SweepDir, keys: &[(SeriesKey, String)], metric: &str, model: &str) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    for r in sweep.rows.iter().filter(|r| r.metric == metric && r.model == model) {
        let Some(x) = r.params.get(&sweep.meta.x_param).and_then(ParamValue::as_f64) else { continue };
        let k = key_of(r, &sweep.meta.x_param);
        let Some(key) = keys.iter().position(|(kk, _)| *kk == k) else { continue };
        let (lo, hi) = clamp_interval(metric, (r.ci_low.unwrap_or(r.value), r.ci_high.unwrap_or(r.value)));
        let p = Point { x, value: r.value, lo, hi };
        match out.iter_mut().find(|l| l.key == key) {
            Some(l) => l.points.push(p),
            None => out.push(Line { key, points: vec![p] }),
        }
    }
    for l in &mut out {
        l.points.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    out
}

/// Whether higher values of `metric` are worse (latencies), so a knee applies.
pub(crate) fn is_latency(metric: &str) -> bool {
    ["ttft_", "tpot_", "e2e_", "itl_"].iter().any(|p| metric.starts_with(p))
}

/// Index of the knee of `points` (sorted by x) by the module's rule, if any.
pub(crate) fn knee(points: &[Point], slo: Option<f64>) -> Option<usize> {
    let first = points.first()?;
    let base = first.value;
    (1..points.len()).find(|&i| {
        let (prev, p) = (points[i - 1], points[i]);
        let risen = p.lo > first.hi && p.value > base;
        let doubled = base > 0.0 && p.value > 2.0 * base;
        let crossed = slo.is_some_and(|s| prev.value <= s && p.value > s);
        risen && (doubled || crossed)
    })
}

/// Scale and axis label of a metric's values.
pub(crate) fn value_axis(metric: &str, max: f64) -> (f64, String) {
    if is_latency(metric) {
        let u = TimeUnit::for_max(max);
        return (u.scale, format!("{metric} ({})", u.label));
    }
    let unit = match metric {
        "request_throughput" | "goodput" => "req/s",
        "output_token_throughput" | "total_token_throughput" => "tokens/s",
        "success_rate" | "slo_attainment" => "fraction",
        _ => return (1.0, metric.to_string()),
    };
    (1.0, format!("{metric} ({unit})"))
}

/// The x axis label: the field path, with a unit guessed from its last segment (`rate` -> req/s,
/// `*_s` -> s).
pub(crate) fn x_axis_label(x_param: &str) -> String {
    let last = x_param.rsplit('.').next().unwrap_or(x_param);
    if last.ends_with("rate") {
        format!("{x_param} (req/s)")
    } else if last.ends_with("_s") {
        format!("{x_param} (s)")
    } else {
        x_param.to_string()
    }
}

/// Draws `metric` of `sweep`, a subplot per model.
pub(crate) fn render_sweep_metric(
    path: &Path,
    size: (u32, u32),
    sweep: &SweepDir,
    metric: &str,
) -> Result<(), ReportError> {
    let keys = series_keys(sweep);
    let models = models(sweep, metric);
    let slo = sweep.meta.slo.for_metric(metric);
    let mut legend: Vec<LegendItem> =
        keys.iter().enumerate().map(|(i, (_, l))| LegendItem::new(l, style::color(i), Mark::Band)).collect();
    if let Some(s) = slo {
        legend.push(LegendItem::new(format!("SLO {metric} ≤ {}", fmt_secs(s)), style::BAD, Mark::Dashed));
    }
    if is_latency(metric) {
        legend.push(LegendItem::new(
            "knee: first point risen past 2 × the lowest-load value or across the SLO",
            style::INK,
            Mark::Ring,
        ));
    }
    let (cal, cal_color) = style::calibration(sweep.meta.calibrated);
    let header = Header {
        title: format!("Sweep: {metric} vs {}", sweep.meta.x_param.rsplit('.').next().unwrap_or("x")),
        subtitle: vec![
            (format!("scenario: {}   ·   sim: ", sweep.meta.scenario), style::MUTED),
            (cal, cal_color),
            ("   ·   bands: confidence interval over seeds".into(), style::MUTED),
        ],
        legend,
    };
    let x_desc = x_axis_label(&sweep.meta.x_param);
    render(path, size, |root| {
        let body = style::draw_header(root, &header)?;
        let cells = style::grid(&body, models.len(), 3);
        for (model, cell) in models.iter().zip(&cells) {
            let lines = lines(sweep, &keys, metric, model);
            let pts = || lines.iter().flat_map(|l| l.points.iter());
            if pts().next().is_none() {
                style::no_data(cell, &format!("{model}: no rows with a numeric x value"))?;
                continue;
            }
            let x_lo = pts().map(|p| p.x).fold(f64::INFINITY, f64::min);
            let x_hi = pts().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max);
            let y_top = pts().map(|p| p.hi.max(p.value)).fold(slo.unwrap_or(0.0), f64::max);
            let (scale, y_desc) = value_axis(metric, y_top);
            let (x_lo, x_hi) = crate::stats::padded(x_lo, x_hi, 0.0);
            let pad = (x_hi - x_lo) * 0.03;
            let y_max = (y_top * scale * 1.12).max(1e-9);
            let mut chart =
                super::xy_chart(cell, model, (x_lo - pad, x_hi + pad), (0.0, y_max), &x_desc, &y_desc)?;
            let mut knee_xs: Vec<f64> = Vec::new();
            // Bands first, so no band tints another line.
            for line in &lines {
                let c = style::color(line.key);
                let mut band: Vec<(f64, f64)> = line.points.iter().map(|p| (p.x, p.hi * scale)).collect();
                band.extend(line.points.iter().rev().map(|p| (p.x, p.lo * scale)));
                chart.draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled())))?;
            }
            for line in &lines {
                let c = style::color(line.key);
                let mid: Vec<(f64, f64)> = line.points.iter().map(|p| (p.x, p.value * scale)).collect();
                chart.draw_series(LineSeries::new(mid.clone(), c.stroke_width(2)))?;
                chart.draw_series(mid.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
                if let Some(k) = knee(&line.points, slo).filter(|_| is_latency(metric)) {
                    chart.draw_series(std::iter::once(Circle::new(mid[k], 9, c.stroke_width(2))))?;
                    if !knee_xs.contains(&mid[k].0) {
                        knee_xs.push(mid[k].0);
                    }
                }
            }
            for (i, &x) in knee_xs.iter().enumerate() {
                let guide = vec![(x, 0.0), (x, y_max)];
                chart.draw_series(DashedLineSeries::new(guide, 4, 4, style::MUTED.stroke_width(1)))?;
                let t = style::bold(12.0, style::INK).pos(Pos::new(HPos::Left, VPos::Top));
                let y = y_max * (0.98 - 0.06 * i as f64);
                chart.draw_series(std::iter::once(Text::new(
                    format!(" knee @ {}", fmt_tick(x)),
                    (x, y),
                    t,
                )))?;
            }
            if let Some(s) = slo {
                let y = s * scale;
                chart.draw_series(DashedLineSeries::new(
                    vec![(x_lo - pad, y), (x_hi + pad, y)],
                    10,
                    6,
                    style::BAD.stroke_width(2),
                ))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep_schema::SweepMeta;

    fn pts(v: &[f64]) -> Vec<Point> {
        v.iter().enumerate().map(|(i, &value)| Point { x: i as f64, value, lo: value, hi: value }).collect()
    }

    #[test]
    fn the_knee_is_the_first_point_past_twice_the_lowest_load_value() {
        assert_eq!(knee(&pts(&[1.0, 1.5, 2.0, 2.1, 5.0]), None), Some(3));
    }

    #[test]
    fn crossing_the_slo_makes_an_earlier_knee() {
        assert_eq!(knee(&pts(&[1.0, 1.5, 2.0, 2.1]), Some(1.4)), Some(1));
    }

    #[test]
    fn a_flat_line_has_no_knee() {
        assert_eq!(knee(&pts(&[1.0, 1.1, 1.2]), None), None);
    }

    fn banded(v: &[(f64, f64)]) -> Vec<Point> {
        v.iter()
            .enumerate()
            .map(|(i, &(value, half))| Point { x: i as f64, value, lo: value - half, hi: value + half })
            .collect()
    }

    #[test]
    fn a_flat_line_above_the_slo_has_no_knee() {
        assert_eq!(knee(&pts(&[2.0, 2.0, 2.05, 2.0]), Some(1.0)), None);
    }

    #[test]
    fn a_line_that_only_wobbles_across_the_slo_within_its_interval_has_no_knee() {
        assert_eq!(knee(&banded(&[(0.98, 0.05), (1.02, 0.05), (0.99, 0.05)]), Some(1.0)), None);
        assert_eq!(knee(&banded(&[(0.5, 0.05), (0.8, 0.05), (1.2, 0.05)]), Some(1.0)), Some(2));
    }

    #[test]
    fn a_falling_line_has_no_knee_even_when_it_crosses_the_slo_later() {
        assert_eq!(knee(&pts(&[3.0, 0.5, 1.5]), Some(1.0)), None);
    }

    #[test]
    fn bands_are_clamped_to_the_range_of_their_metric() {
        let meta = SweepMeta {
            schema_version: crate::sweep_schema::SWEEP_SCHEMA_VERSION,
            scenario: "s".into(),
            params: vec!["workload.rate".into()],
            x_param: "workload.rate".into(),
            slo: crate::sweep_schema::SweepSlo::default(),
            calibrated: false,
            variants: vec!["a".into()],
            reps: 3,
            zip: false,
            total_points: 1,
            shard: None,
            spec_hash: "0".into(),
        };
        let row = |metric: &str, value: f64, ci: (f64, f64)| SweepRow {
            point: 0,
            variant: "a".into(),
            model: "all".into(),
            metric: metric.into(),
            value,
            ci_low: Some(ci.0),
            ci_high: Some(ci.1),
            n: 3,
            params: [("workload.rate".to_string(), ParamValue::Num(1.0))].into(),
        };
        let sweep = SweepDir {
            path: "x".into(),
            meta,
            rows: vec![row("success_rate", 0.9, (-0.39, 2.19)), row("ttft_p90", 0.2, (-0.1, 0.5))],
        };
        let keys = series_keys(&sweep);
        let ok = lines(&sweep, &keys, "success_rate", "all");
        assert_eq!((ok[0].points[0].lo, ok[0].points[0].hi), (0.0, 1.0));
        let ttft = lines(&sweep, &keys, "ttft_p90", "all");
        assert_eq!((ttft[0].points[0].lo, ttft[0].points[0].hi), (0.0, 0.5));
    }
}
