//! Plain-text tables of run summaries for the terminal: one table per variant (a row per model),
//! and a comparison of variants against the first one.

use super::{LatencyStats, ModelSummary, RunSummary};
use std::fmt::Write;

fn ms(s: Option<&LatencyStats>, pick: fn(&LatencyStats) -> f64) -> String {
    s.map_or_else(|| "-".to_string(), |s| format!("{:.1}", pick(s) * 1e3))
}

fn model_line(out: &mut String, m: &ModelSummary) {
    let _ = writeln!(
        out,
        "  {:<22} {:>6} {:>6.1}% {:>7.2} {:>8.0} | {:>8} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>8} {:>8} | {:>6} {:>8}",
        m.model,
        m.requests,
        m.success_rate * 100.0,
        m.request_throughput,
        m.output_token_throughput,
        ms(m.ttft.as_ref(), |s| s.p50),
        ms(m.ttft.as_ref(), |s| s.p90),
        ms(m.ttft.as_ref(), |s| s.p99),
        ms(m.ttft.as_ref(), |s| s.p99_9),
        ms(m.tpot.as_ref(), |s| s.p50),
        ms(m.tpot.as_ref(), |s| s.p90),
        ms(m.tpot.as_ref(), |s| s.p99),
        ms(m.itl.as_ref(), |s| s.p50),
        ms(m.itl.as_ref(), |s| s.p99),
        ms(m.e2e.as_ref(), |s| s.p50),
        ms(m.e2e.as_ref(), |s| s.p90),
        ms(m.e2e.as_ref(), |s| s.p99),
        m.preemptions,
        m.goodput.map_or_else(|| "-".to_string(), |g| format!("{g:.2}")),
    );
}

/// One variant's table: a row per model and one for all models. Latencies in ms.
pub fn variant_table(s: &RunSummary) -> String {
    let mut out = String::new();
    let cal = if s.calibrated { "calibrated" } else { "UNCALIBRATED: roofline prior step times" };
    let _ = writeln!(out, "== {} / {} ({cal})", s.scenario_name, s.variant);
    let _ = writeln!(
        out,
        "  {:<22} {:>6} {:>7} {:>7} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>8} {:>8} | {:>6} {:>8}",
        "model",
        "reqs",
        "ok",
        "req/s",
        "tok/s",
        "TTFT p50",
        "p90",
        "p99",
        "p99.9",
        "TPOT p50",
        "p90",
        "p99",
        "ITL p50",
        "p99",
        "E2E p50",
        "p90",
        "p99",
        "preempt",
        "goodput"
    );
    for m in &s.models {
        model_line(&mut out, m);
    }
    model_line(&mut out, &s.overall);
    out
}

fn rel(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:+.1}%", (b - a) / a * 100.0),
        _ => "-".to_string(),
    }
}

/// How each later variant differs from the first, per model: relative change of p50/p90 TTFT,
/// TPOT and E2E and of throughput (negative latency change = faster).
pub fn comparison_table(runs: &[RunSummary]) -> String {
    let mut out = String::new();
    let Some((base, rest)) = runs.split_first() else {
        return out;
    };
    for other in rest {
        let _ = writeln!(out, "== {} vs {} (relative change)", other.variant, base.variant);
        let _ = writeln!(
            out,
            "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "model", "TTFT p50", "TTFT p90", "TPOT p50", "TPOT p90", "E2E p50", "E2E p90", "req/s"
        );
        let models = base.models.iter().chain(std::iter::once(&base.overall));
        for bm in models {
            let om = if bm.model == "all" {
                Some(&other.overall)
            } else {
                other.models.iter().find(|m| m.model == bm.model)
            };
            let Some(om) = om else { continue };
            let g = |m: &ModelSummary,
                     f: fn(&ModelSummary) -> Option<&LatencyStats>,
                     p: fn(&LatencyStats) -> f64| { f(m).map(p) };
            let _ = writeln!(
                out,
                "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                bm.model,
                rel(g(bm, |m| m.ttft.as_ref(), |s| s.p50), g(om, |m| m.ttft.as_ref(), |s| s.p50)),
                rel(g(bm, |m| m.ttft.as_ref(), |s| s.p90), g(om, |m| m.ttft.as_ref(), |s| s.p90)),
                rel(g(bm, |m| m.tpot.as_ref(), |s| s.p50), g(om, |m| m.tpot.as_ref(), |s| s.p50)),
                rel(g(bm, |m| m.tpot.as_ref(), |s| s.p90), g(om, |m| m.tpot.as_ref(), |s| s.p90)),
                rel(g(bm, |m| m.e2e.as_ref(), |s| s.p50), g(om, |m| m.e2e.as_ref(), |s| s.p50)),
                rel(g(bm, |m| m.e2e.as_ref(), |s| s.p90), g(om, |m| m.e2e.as_ref(), |s| s.p90)),
                rel(Some(bm.request_throughput), Some(om.request_throughput)),
            );
        }
    }
    out
}
