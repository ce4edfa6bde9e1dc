//! Plain-text tables of run summaries for the terminal: one table per variant (a row per model,
//! then a row per instance), and a comparison of variants against the first one.

use super::{InstanceSummary, LatencyStats, ModelSummary, PrefixCacheStats, RunSummary};
use std::fmt::Write;

fn ms(s: Option<&LatencyStats>, pick: fn(&LatencyStats) -> f64) -> String {
    s.map_or_else(|| "-".to_string(), |s| format!("{:.1}", pick(s) * 1e3))
}

/// A prefix-cache hit rate in percent, `-` where nothing was queried.
fn hit_rate(p: &PrefixCacheStats) -> String {
    p.hit_rate.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

fn model_line(out: &mut String, m: &ModelSummary) {
    let _ = writeln!(
        out,
        "  {:<22} {:>6} {:>6.1}% {:>7.2} {:>8.0} | {:>8} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>8} {:>8} | {:>6} {:>8} {:>7}",
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
        hit_rate(&m.prefix_cache),
    );
}

fn instance_line(out: &mut String, i: &InstanceSummary) {
    let _ = writeln!(
        out,
        "  {:<22} {:<22} {:>4} {:>6} {:>7} {:>8} {:>8.1}% {:>8.1}% {:>8}",
        i.instance,
        i.model,
        i.gpu,
        i.requests,
        i.preemptions,
        i.peak_waiting,
        i.peak_kv_usage * 100.0,
        i.mean_kv_usage * 100.0,
        hit_rate(&i.prefix_cache),
    );
}

/// One variant's table: a row per model and one for all models. Latencies in ms.
pub fn variant_table(s: &RunSummary) -> String {
    let mut out = String::new();
    let cal = if s.calibrated { "calibrated" } else { "UNCALIBRATED: roofline prior step times" };
    let _ = writeln!(out, "== {} / {} ({cal})", s.scenario_name, s.variant);
    let _ = writeln!(
        out,
        "  {:<22} {:>6} {:>7} {:>7} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>8} {:>8} | {:>6} {:>8} {:>7}",
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
        "goodput",
        "prefix%"
    );
    for m in &s.models {
        model_line(&mut out, m);
    }
    model_line(&mut out, &s.overall);
    if !s.instances.is_empty() {
        let _ = writeln!(
            out,
            "  {:<22} {:<22} {:>4} {:>6} {:>7} {:>8} {:>9} {:>9} {:>8}",
            "instance", "model", "gpu", "reqs", "preempt", "peak wait", "peak KV", "mean KV", "prefix%"
        );
        for i in &s.instances {
            instance_line(&mut out, i);
        }
    }
    if let Some(lag) = &s.send_lag {
        let _ = writeln!(
            out,
            "  send lag (send - scheduled): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} requests",
            lag.p50_s * 1e3,
            lag.p99_s * 1e3,
            lag.max_s * 1e3,
            lag.requests
        );
        if let Some(w) = lag.warning() {
            let _ = writeln!(out, "  WARNING: {w}");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SummaryBuilder;
    use crate::scenario::SloSpec;
    use crate::trace::Source;

    #[test]
    fn the_variant_table_shows_the_prefix_cache_hit_rate_per_model_and_instance() {
        let b =
            SummaryBuilder::new(Source::Sim, "s", "v", false, SloSpec::default(), vec!["m".into()], vec![]);
        let mut s = b.finish();
        s.models[0].prefix_cache = PrefixCacheStats { queries: 1000, hits: 250, hit_rate: Some(0.25) };
        s.instances.push(InstanceSummary {
            instance: "m#0".into(),
            model: "m".into(),
            gpu: 0,
            requests: 3,
            peak_kv_usage: 0.5,
            mean_kv_usage: 0.25,
            peak_waiting: 2,
            preemptions: 1,
            peak_kv_memory_bytes: None,
            mean_kv_memory_bytes: None,
            prefix_cache: PrefixCacheStats { queries: 10, hits: 5, hit_rate: Some(0.5) },
        });
        let t = variant_table(&s);
        assert!(t.lines().nth(1).is_some_and(|l| l.ends_with("prefix%")), "{t}");
        assert!(t.lines().nth(2).is_some_and(|l| l.trim_end().ends_with("25.0%")), "{t}");
        let inst = t.lines().find(|l| l.trim_start().starts_with("m#0")).unwrap_or_default();
        assert!(inst.trim_end().ends_with("50.0%"), "{t}");
        assert!(
            t.lines().nth(3).is_some_and(|l| l.trim_end().ends_with('-')),
            "overall: nothing queried: {t}"
        );
    }
}
