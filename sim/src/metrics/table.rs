//! Plain-text tables of run summaries for the terminal: one table per variant (a row per model,
//! then a row per instance), and a comparison of variants against the first one.
//!
//! Latency percentiles cover the requests that finished ok only, so a variant that fails more can
//! look faster. The tables keep their width (the `ok` column stays a percentage) and say so below
//! the rows instead: a variant table lists the ok / rejected / timeout / error counts of every row
//! with a request that did not finish ok and warns, and the comparison warns where success rates
//! differ. A terminal reader then sees the split only when there is one, at no cost in width.

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

/// Whether any request of `m` did not finish ok.
fn has_failures(m: &ModelSummary) -> bool {
    m.ok < m.requests
}

/// Below the model rows: the ok / rejected / timeout / error counts of every row with a request
/// that did not finish ok, and a warning saying what the percentiles then cover. Nothing when every
/// request finished ok.
fn outcome_lines(out: &mut String, s: &RunSummary) {
    let rows: Vec<&ModelSummary> =
        s.models.iter().chain(std::iter::once(&s.overall)).filter(|m| has_failures(m)).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  {:<22} {:>6} {:>7} {:>8} {:>7} {:>7}",
        "not all ok", "reqs", "ok", "rejected", "timeout", "error"
    );
    for m in rows {
        let _ = writeln!(
            out,
            "  {:<22} {:>6} {:>7} {:>8} {:>7} {:>7}",
            m.model, m.requests, m.ok, m.rejected, m.timeout, m.error
        );
    }
    if let Some(w) = outcome_warning(s) {
        let _ = writeln!(out, "  WARNING: {w}");
    }
}

/// The warning when some request of the run did not finish ok: how many, why (timed out,
/// rejected, failed) and that latency percentiles cover the ok ones only. None when all finished
/// ok. The variant table prints it; a caller that prints no table (`simulate -q`) can print it alone.
pub fn outcome_warning(s: &RunSummary) -> Option<String> {
    let o = &s.overall;
    if !has_failures(o) {
        return None;
    }
    let mut why: Vec<String> = Vec::new();
    if o.timeout > 0 {
        why.push(format!("{} timed out, still queued or running at the deadline", o.timeout));
    }
    if o.rejected > 0 {
        why.push(format!("{} rejected", o.rejected));
    }
    if o.error > 0 {
        why.push(format!("{} failed", o.error));
    }
    Some(format!(
        "{} of {} requests did not finish ({}); latency percentiles cover the {} ok requests only",
        o.requests - o.ok,
        o.requests,
        why.join(", "),
        o.ok
    ))
}

/// One variant's table: a row per model and one for all models. Latencies in ms. Below it, when
/// any request did not finish ok, the outcome counts and a warning (see the module doc).
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
    outcome_lines(&mut out, s);
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

/// Success rates closer than this (a fraction: 1 percentage point) are not worth a warning.
const SUCCESS_RATE_WARN: f64 = 0.01;

/// A warning line when `other` succeeded noticeably less or more often than `base`: latency
/// percentiles cover ok requests only, so the one that fails more can look faster.
fn success_warning(out: &mut String, base: &ModelSummary, other: &ModelSummary) {
    if (other.success_rate - base.success_rate).abs() < SUCCESS_RATE_WARN {
        return;
    }
    let _ = writeln!(
        out,
        "  WARNING: {}: ok {:.1}% -> {:.1}%; latencies cover ok requests only, so the variant \
         that fails more can look faster",
        base.model,
        base.success_rate * 100.0,
        other.success_rate * 100.0
    );
}

/// How each later variant differs from the first, per model: relative change of p50/p90 TTFT,
/// TPOT and E2E and of throughput (negative latency change = faster). Below each comparison, a
/// warning per model whose success rate differs by a percentage point or more.
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
        let mut pairs: Vec<(&ModelSummary, &ModelSummary)> = Vec::new();
        for bm in models {
            let om = if bm.model == "all" {
                Some(&other.overall)
            } else {
                other.models.iter().find(|m| m.model == bm.model)
            };
            let Some(om) = om else { continue };
            pairs.push((bm, om));
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
        for (bm, om) in pairs {
            success_warning(&mut out, bm, om);
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

    fn failing(ok: u64, rejected: u64, timeout: u64, error: u64) -> RunSummary {
        let b =
            SummaryBuilder::new(Source::Sim, "s", "v", false, SloSpec::default(), vec!["m".into()], vec![]);
        let mut s = b.finish();
        for m in s.models.iter_mut().chain(std::iter::once(&mut s.overall)) {
            m.requests = ok + rejected + timeout + error;
            (m.ok, m.rejected, m.timeout, m.error) = (ok, rejected, timeout, error);
            m.success_rate = ok as f64 / m.requests as f64;
        }
        s
    }

    #[test]
    fn the_variant_table_counts_each_outcome_and_warns_when_requests_did_not_finish() {
        let t = variant_table(&failing(780, 150, 70, 0));
        let counts: Vec<&str> = t.lines().skip_while(|l| !l.contains("not all ok")).collect();
        assert!(
            counts.first().is_some_and(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["not", "all", "ok", "reqs", "ok", "rejected", "timeout", "error"]),
            "{t}"
        );
        for (line, name) in counts.iter().skip(1).zip(["m", "all"]) {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells, [name, "1000", "780", "150", "70", "0"], "{t}");
        }
        let warning = t.lines().find(|l| l.contains("WARNING")).unwrap_or_default();
        assert!(warning.contains("220 of 1000 requests did not finish"), "{t}");
        assert!(warning.contains("70 timed out, still queued") && warning.contains("150 rejected"), "{t}");
        assert!(warning.contains("cover the 780 ok requests only"), "{t}");
    }

    #[test]
    fn a_table_whose_requests_all_finished_ok_stays_as_wide_as_before_and_quiet() {
        let t = variant_table(&failing(1000, 0, 0, 0));
        assert!(!t.contains("not all ok") && !t.contains("WARNING"), "{t}");
        assert_eq!(outcome_warning(&failing(1000, 0, 0, 0)), None);
        assert_eq!(t.lines().count(), 4, "title, header, model, all: {t}");
    }

    #[test]
    fn the_comparison_warns_when_a_variant_fails_more_and_so_looks_faster() {
        let base = failing(900, 0, 100, 0);
        let mut other = failing(780, 0, 220, 0);
        other.variant = "w".into();
        let t = comparison_table(&[base.clone(), other]);
        let warnings: Vec<&str> = t.lines().filter(|l| l.contains("WARNING")).collect();
        assert_eq!(warnings.len(), 2, "model and all: {t}");
        assert!(warnings[0].contains("m: ok 90.0% -> 78.0%"), "{t}");
        let mut same = base.clone();
        same.variant = "w".into();
        assert!(!comparison_table(&[base, same]).contains("WARNING"));
    }
}
