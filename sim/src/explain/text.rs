//! An explanation as text: one table per model and metric (factors by size, contribution in the
//! metric's unit and as a share of the change, its interval, the factor's effect alone), the
//! interaction left over, and one sentence per model and metric naming the largest factor.

use super::analysis::{Estimate, Explanation, MetricExplanation};
use std::fmt::Write;

/// The metrics shown by default (tables, sentences, waterfalls).
pub const HEADLINE_METRICS: [&str; 4] = ["ttft_p90", "tpot_p90", "e2e_p90", "goodput"];

/// A readable name: `ttft_p90` -> `p90 TTFT`.
pub fn metric_label(metric: &str) -> String {
    let upper = |s: &str| match s {
        "ttft" | "tpot" | "itl" | "e2e" => s.to_uppercase(),
        other => other.to_string(),
    };
    match metric.split_once('_') {
        Some((head @ ("ttft" | "tpot" | "itl" | "e2e"), stat)) => format!("{stat} {}", upper(head)),
        _ => metric.replace('_', " "),
    }
}

/// The unit a metric is shown in and the factor from its stored value.
fn unit(metric: &str) -> (&'static str, f64) {
    if ["ttft", "tpot", "itl", "e2e"].iter().any(|p| metric.starts_with(p)) {
        (" ms", 1e3)
    } else if metric == "output_token_throughput" {
        (" tok/s", 1.0)
    } else if metric == "request_throughput" || metric == "goodput" {
        (" req/s", 1.0)
    } else if metric == "success_rate" || metric == "slo_attainment" {
        (" pp", 100.0)
    } else {
        ("", 1.0)
    }
}

/// `value` of `metric` in its display unit; `signed` prints a `+` on positive values.
pub fn format_value(metric: &str, value: f64, signed: bool) -> String {
    let (u, scale) = unit(metric);
    let v = value * scale;
    let digits = if v.abs() >= 100.0 || v == 0.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    let u = if u == " pp" && !signed { "%" } else { u };
    if signed { format!("{v:+.digits$}{u}") } else { format!("{v:.digits$}{u}") }
}

fn ci(metric: &str, e: &Estimate) -> String {
    match (e.ci_low, e.ci_high) {
        (Some(lo), Some(hi)) => {
            format!("[{}, {}]", format_value(metric, lo, true), format_value(metric, hi, true))
        }
        _ => "-".to_string(),
    }
}

fn share(part: f64, total: f64) -> String {
    if total.abs() < 1e-12 { "-".into() } else { format!("{:.0}%", part / total * 100.0) }
}

/// One model's table for one metric.
fn metric_table(e: &Explanation, model: &str, m: &MetricExplanation, out: &mut String) {
    let name = |i: usize| e.factors.get(i).map(|f| f.describe()).unwrap_or_default();
    let width = e.factors.iter().map(|f| f.describe().len()).max().unwrap_or(0).max(44);
    let _ = writeln!(
        out,
        "{model} - {}: {} -> {}, change {} {}",
        metric_label(&m.metric),
        format_value(&m.metric, m.from.mean, false),
        format_value(&m.metric, m.to.mean, false),
        format_value(&m.metric, m.total.mean, true),
        ci(&m.metric, &m.total)
    );
    let _ = writeln!(
        out,
        "  {:width$}  {:>12} {:>6}  {:>26}  {:>12}",
        "factor", "contribution", "share", "95% CI", "alone"
    );
    for c in &m.contributions {
        let _ = writeln!(
            out,
            "  {:width$}  {:>12} {:>6}  {:>26}  {:>12}",
            name(c.factor),
            format_value(&m.metric, c.shapley.mean, true),
            share(c.shapley.mean, m.total.mean),
            ci(&m.metric, &c.shapley),
            format_value(&m.metric, c.alone.mean, true)
        );
    }
    let _ = writeln!(
        out,
        "  {:width$}  {:>12} {:>6}  {:>26}",
        "interaction (change - sum of effects alone)",
        format_value(&m.metric, m.interaction.mean, true),
        share(m.interaction.mean, m.total.mean),
        ci(&m.metric, &m.interaction)
    );
    if let Some(p) = m.pairs.first().filter(|p| p.index.mean.abs() > 0.05 * m.total.mean.abs()) {
        let _ = writeln!(
            out,
            "  strongest pair: {} x {}: {} {}",
            e.factors.get(p.factors.0).map_or("", |f| f.path.as_str()),
            e.factors.get(p.factors.1).map_or("", |f| f.path.as_str()),
            format_value(&m.metric, p.index.mean, true),
            ci(&m.metric, &p.index)
        );
    }
}

/// The tables of `metrics` for every model (`all` last, models first).
pub fn tables(e: &Explanation, metrics: &[&str]) -> String {
    let mut out = String::new();
    let mut models: Vec<_> = e.models.iter().filter(|m| m.model != "all").collect();
    models.extend(e.models.iter().filter(|m| m.model == "all"));
    for model in models {
        for metric in metrics {
            if let Some(m) = model.metric(metric) {
                metric_table(e, &model.model, m, &mut out);
                out.push('\n');
            }
        }
    }
    out
}

/// One sentence per model and metric: the largest factor's share of the change, and the
/// interaction when it is a fifth of the change or more.
pub fn sentences(e: &Explanation, metrics: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for model in e.models.iter().filter(|m| m.model != "all") {
        for metric in metrics {
            let Some(m) = model.metric(metric) else { continue };
            let Some(top) = m.contributions.first() else { continue };
            let Some(f) = e.factors.get(top.factor) else { continue };
            if m.total.mean.abs() < 1e-12 {
                continue;
            }
            let direction = if m.total.mean > 0.0 { "increase" } else { "decrease" };
            let mut s = format!(
                "{} ({} -> {}) accounts for {} of the {} {direction} of {}'s {} ({}; alone it moves it by {})",
                f.path,
                f.from,
                f.to,
                // In the direction of the change: "accounts for 40 of the 100 ms decrease".
                format_value(metric, top.shapley.mean * m.total.mean.signum(), false),
                format_value(metric, m.total.mean.abs(), false),
                model.model,
                metric_label(metric),
                share(top.shapley.mean, m.total.mean),
                format_value(metric, top.alone.mean, true),
            );
            if m.interaction.mean.abs() >= 0.2 * m.total.mean.abs() {
                let _ = write!(
                    s,
                    "; {} of the change comes only from settings acting together",
                    format_value(metric, m.interaction.mean, true)
                );
            }
            s.push('.');
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_in_their_units() {
        assert_eq!(metric_label("ttft_p90"), "p90 TTFT");
        assert_eq!(metric_label("request_throughput"), "request throughput");
        assert_eq!(format_value("ttft_p90", 1.7784, true), "+1778 ms");
        assert_eq!(format_value("tpot_p50", 0.0455, false), "45.5 ms");
        assert_eq!(format_value("goodput", -0.45, true), "-0.45 req/s");
        assert_eq!(format_value("success_rate", 0.99, false), "99.0%");
    }
}
