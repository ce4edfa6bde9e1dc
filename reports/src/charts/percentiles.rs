//! Percentile bars of one model: a subplot per latency (TTFT, TPOT, E2E), groups p50/p90/p99, one
//! bar per run dir, and above every bar but the reference's its difference to the reference
//! (first run dir). Between runs of one source the difference is green when lower (faster), red
//! when higher; between a simulated and a live run it says how the simulator errs: purple where it
//! predicts lower latency than measured ("simulator optimistic"), teal where higher ("simulator
//! pessimistic"). The subtitle names the colours in the colours themselves. Values come from each run's `summary.json` and
//! cover successful requests only: the title says so and a run's legend entry gives its ok share
//! when some requests did not finish ok.

use super::render;
use crate::error::ReportError;
use crate::input::Run;
use crate::stats::{LatencyMetric, Percentile, TimeUnit, fmt_pct, fmt_tick, rel_diff};
use crate::style::{self, Header, LegendItem, Mark};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use sim::metrics::ModelSummary;
use sim::trace::Source;
use std::path::Path;

/// What a difference of a run to the reference means, which picks its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiffMeaning {
    /// Same source, lower latency.
    Faster,
    /// Same source, higher latency.
    Slower,
    /// Sim against live: the simulator predicts lower latency than measured.
    SimOptimistic,
    /// Sim against live: the simulator predicts higher latency than measured.
    SimPessimistic,
    /// No difference.
    Equal,
}

impl DiffMeaning {
    /// The colour of a difference label.
    pub(crate) fn color(self) -> RGBColor {
        match self {
            DiffMeaning::Faster => style::GOOD,
            DiffMeaning::Slower => style::BAD,
            DiffMeaning::SimOptimistic => style::OPTIMISTIC,
            DiffMeaning::SimPessimistic => style::PESSIMISTIC,
            DiffMeaning::Equal => style::MUTED,
        }
    }

    /// The legend text of the colour.
    pub(crate) fn label(self) -> &'static str {
        match self {
            DiffMeaning::Faster => "lower = faster",
            DiffMeaning::Slower => "higher = slower",
            DiffMeaning::SimOptimistic => "simulator optimistic",
            DiffMeaning::SimPessimistic => "simulator pessimistic",
            DiffMeaning::Equal => "equal",
        }
    }
}

/// The meaning of relative difference `d` (run minus reference, over the reference) of a run of
/// source `run` against a reference of source `reference`. A live reference makes a lower
/// simulated value optimistic; a simulated reference makes a lower live value pessimistic (the
/// simulator predicted more than was measured).
pub(crate) fn diff_meaning(reference: Source, run: Source, d: f64) -> DiffMeaning {
    if d == 0.0 || d.is_nan() {
        return DiffMeaning::Equal;
    }
    let lower = d < 0.0;
    match (reference, run) {
        (Source::Live, Source::Sim) if lower => DiffMeaning::SimOptimistic,
        (Source::Live, Source::Sim) => DiffMeaning::SimPessimistic,
        (Source::Sim, Source::Live) if lower => DiffMeaning::SimPessimistic,
        (Source::Sim, Source::Live) => DiffMeaning::SimOptimistic,
        _ if lower => DiffMeaning::Faster,
        _ => DiffMeaning::Slower,
    }
}

/// Subtitle pieces naming, each in its own colour, the difference colours used against a reference
/// of source `reference` by runs of sources `others` (nothing without other runs).
pub(crate) fn diff_key(reference: Source, others: &[Source]) -> Vec<(String, RGBColor)> {
    let mut kinds: Vec<[DiffMeaning; 2]> = Vec::new();
    for &o in others {
        let (lo, hi) = (diff_meaning(reference, o, -1.0), diff_meaning(reference, o, 1.0));
        // The optimistic side first, whichever side of the reference the simulator is on.
        let kind = if hi == DiffMeaning::SimOptimistic { [hi, lo] } else { [lo, hi] };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let mut out: Vec<(String, RGBColor)> = Vec::new();
    for (i, m) in kinds.into_iter().flatten().enumerate() {
        let sep = if i == 0 { "   ·   " } else { ", " };
        out.push((sep.into(), style::MUTED));
        out.push((m.label().into(), m.color()));
    }
    out
}

/// A run's legend label: its label, with its ok share when some of `model`'s requests did not
/// finish ok (the percentiles cover the ok ones only).
pub(crate) fn run_legend_label(label: &str, model: Option<&ModelSummary>) -> String {
    match model {
        Some(m) if m.ok < m.requests => {
            format!("{label} (ok {:.1}%: {} of {})", m.success_rate * 100.0, m.ok, m.requests)
        }
        _ => label.to_string(),
    }
}

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
    let ref_source = runs.first().map_or(Source::Sim, |r| r.dir.meta.source);
    let legend: Vec<LegendItem> = runs
        .iter()
        .map(|r| {
            let m = r.dir.summary.models.iter().find(|m| m.model == model);
            LegendItem::new(run_legend_label(&r.label, m), style::color(r.index), Mark::Box)
        })
        .collect();
    let others: Vec<Source> = runs.iter().skip(1).map(|r| r.dir.meta.source).collect();
    let mut subtitle = style::runs_subtitle(runs);
    subtitle.extend(diff_key(ref_source, &others));
    let header = Header {
        title: if runs.len() > 1 {
            format!("{model}: latency percentiles of successful requests, difference vs {reference}")
        } else {
            format!("{model}: latency percentiles of successful requests")
        },
        subtitle,
        legend,
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
                    let color = diff_meaning(ref_source, run.dir.meta.source, d).color();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn against_a_live_reference_a_lower_simulated_value_is_optimistic_not_good() {
        assert_eq!(diff_meaning(Source::Live, Source::Sim, -0.3), DiffMeaning::SimOptimistic);
        assert_eq!(diff_meaning(Source::Live, Source::Sim, 0.3), DiffMeaning::SimPessimistic);
        assert_ne!(DiffMeaning::SimOptimistic.color(), style::GOOD);
        assert_ne!(DiffMeaning::SimPessimistic.color(), style::BAD);
    }

    #[test]
    fn against_a_simulated_reference_a_lower_live_value_makes_the_simulator_pessimistic() {
        assert_eq!(diff_meaning(Source::Sim, Source::Live, -0.3), DiffMeaning::SimPessimistic);
        assert_eq!(diff_meaning(Source::Sim, Source::Live, 0.3), DiffMeaning::SimOptimistic);
    }

    #[test]
    fn between_runs_of_one_source_lower_is_faster_and_green() {
        for s in [Source::Sim, Source::Live] {
            assert_eq!(diff_meaning(s, s, -0.1).color(), style::GOOD);
            assert_eq!(diff_meaning(s, s, 0.1).color(), style::BAD);
            assert_eq!(diff_meaning(s, s, 0.0), DiffMeaning::Equal);
        }
    }

    #[test]
    fn the_subtitle_names_the_difference_colours_once_per_kind_of_pair() {
        let labels = |r, o: &[Source]| -> Vec<(String, RGBColor)> {
            diff_key(r, o).into_iter().skip(1).step_by(2).collect()
        };
        let sim_vs_live = [
            (DiffMeaning::SimOptimistic.label().to_string(), style::OPTIMISTIC),
            (DiffMeaning::SimPessimistic.label().to_string(), style::PESSIMISTIC),
        ];
        assert_eq!(labels(Source::Live, &[Source::Sim, Source::Sim]), sim_vs_live);
        assert_eq!(labels(Source::Sim, &[Source::Live]), sim_vs_live);
        assert_eq!(
            labels(Source::Sim, &[Source::Sim]),
            [("lower = faster".to_string(), style::GOOD), ("higher = slower".to_string(), style::BAD)]
        );
        assert_eq!(labels(Source::Sim, &[Source::Sim, Source::Live]).len(), 4);
        assert!(diff_key(Source::Sim, &[]).is_empty());
    }

    #[test]
    fn a_run_whose_requests_did_not_all_finish_shows_its_ok_share_in_the_legend() {
        let mut m = sim::metrics::SummaryBuilder::new(
            Source::Sim,
            "s",
            "v",
            false,
            sim::scenario::SloSpec::default(),
            vec!["m".into()],
            vec![],
        )
        .finish()
        .overall;
        (m.requests, m.ok, m.success_rate) = (1000, 780, 0.78);
        assert_eq!(run_legend_label("trace", Some(&m)), "trace (ok 78.0%: 780 of 1000)");
        m.ok = 1000;
        assert_eq!(run_legend_label("trace", Some(&m)), "trace");
        assert_eq!(run_legend_label("trace", None), "trace");
    }
}
