//! report.md: the title, the inputs, a key-metrics table per model (one column per run, relative
//! differences against the first), the charts each with one line of explanation, the sim-vs-live
//! error tables and the sweep knees. Pure text building: the caller renders charts and writes the
//! file.

use crate::charts::sweep;
use crate::input::{Run, SweepDir, dir_name};
use crate::stats::{LatencyMetric, Percentile, fmt_pct, fmt_secs, fmt_tick, rel_diff};
use crate::validate::{
    ErrorRow, Pair, ThroughputMetric, ThroughputRow, compare_sim_live, compare_throughput,
};
use sim::metrics::ModelSummary;
use sim::trace::Source;
use std::fmt::Write;

/// A chart as report.md shows it.
#[derive(Clone, Debug)]
pub(crate) struct ChartDoc {
    /// File name inside the output dir.
    pub file: String,
    /// One line saying what it shows.
    pub caption: String,
}

/// A titled group of charts.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    /// Heading.
    pub title: String,
    /// Charts in order.
    pub charts: Vec<ChartDoc>,
}

/// Everything report.md needs.
pub(crate) struct Doc<'a> {
    /// Title line.
    pub title: String,
    /// Run dirs (first = reference).
    pub runs: &'a [Run],
    /// Models of the runs, in order.
    pub models: &'a [String],
    /// Chart sections about the runs.
    pub sections: Vec<Section>,
    /// Sim/live pairs, each with its overlay chart.
    pub validation: Vec<(Pair, ChartDoc)>,
    /// Sweep dirs, each with its charts.
    pub sweeps: Vec<(&'a SweepDir, Vec<ChartDoc>)>,
    /// Name of validation.csv when written.
    pub validation_csv: Option<String>,
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Sim => "sim",
        Source::Live => "live",
    }
}

fn calibration_word(r: &Run) -> &'static str {
    match (r.dir.meta.source, r.dir.meta.calibrated) {
        (Source::Live, _) => "n/a (measured)",
        (Source::Sim, true) => "calibrated",
        (Source::Sim, false) => "**UNCALIBRATED (roofline prior)**",
    }
}

/// Escapes `|` so a value cannot break a table row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The whole report.md.
pub(crate) fn render(doc: &Doc<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", doc.title);
    for run in doc.runs {
        if let Some(w) = run.dir.partial_warning() {
            let _ = writeln!(out, "> **WARNING:** {w}.\n");
        }
    }
    inputs(&mut out, doc);
    if !doc.runs.is_empty() {
        key_tables(&mut out, doc);
    }
    for s in &doc.sections {
        let _ = writeln!(out, "## {}\n", s.title);
        charts(&mut out, &s.charts);
    }
    if !doc.validation.is_empty() {
        validation(&mut out, doc);
    }
    for (sw, docs) in &doc.sweeps {
        sweep_section(&mut out, sw, docs);
    }
    out
}

fn charts(out: &mut String, docs: &[ChartDoc]) {
    for c in docs {
        let _ = writeln!(out, "![]({})\n\n{}\n", c.file, c.caption);
    }
}

fn inputs(out: &mut String, doc: &Doc<'_>) {
    let _ = writeln!(out, "## Inputs\n");
    if !doc.runs.is_empty() {
        let _ =
            writeln!(out, "| # | run | source | scenario | variant | step times | seed | requests | path |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for r in doc.runs {
            let m = &r.dir.meta;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | `{}` |",
                r.index + 1,
                cell(&r.label),
                source_name(m.source),
                cell(&m.scenario_name),
                cell(&m.variant),
                calibration_word(r),
                m.seed,
                r.dir.requests.len(),
                r.dir.path.display()
            );
        }
        if let Some(first) = doc.runs.first() {
            let _ = writeln!(out, "\nRelative differences are against run 1, **{}**.\n", first.label);
        }
    }
    if !doc.sweeps.is_empty() {
        let _ = writeln!(out, "| sweep | scenario | swept fields | x axis | points | step times | path |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (s, _) in &doc.sweeps {
            let points = {
                let mut p: Vec<u32> = s.rows.iter().map(|r| r.point).collect();
                p.sort_unstable();
                p.dedup();
                p.len()
            };
            let cal = if s.meta.calibrated { "calibrated" } else { "**UNCALIBRATED (roofline prior)**" };
            let _ = writeln!(
                out,
                "| {} | {} | {} | `{}` | {} | {} | `{}` |",
                cell(&dir_name(&s.path)),
                cell(&s.meta.scenario),
                cell(&s.meta.params.join(", ")),
                s.meta.x_param,
                points,
                cal,
                s.path.display()
            );
        }
        let _ = writeln!(out);
    }
}

/// Reads one value from a model summary.
type Getter = Box<dyn Fn(&ModelSummary) -> Option<f64>>;

/// One row of a key table: a name and how to read a value (and print it) from a model summary.
struct KeyRow {
    name: String,
    get: Getter,
    fmt: fn(f64) -> String,
}

fn key_rows() -> Vec<KeyRow> {
    let mut rows = Vec::new();
    for m in LatencyMetric::PER_REQUEST {
        for p in Percentile::ALL {
            rows.push(KeyRow {
                name: format!("{} {}", m.label(), p.label()),
                get: Box::new(move |s| m.of_summary(s).map(|x| p.of(x))),
                fmt: fmt_secs,
            });
        }
    }
    rows.push(KeyRow {
        name: "throughput (req/s)".into(),
        get: Box::new(|s| Some(s.request_throughput)),
        fmt: |v| format!("{v:.2}"),
    });
    rows.push(KeyRow {
        name: "output tokens/s".into(),
        get: Box::new(|s| Some(s.output_token_throughput)),
        fmt: |v| format!("{v:.0}"),
    });
    rows.push(KeyRow {
        name: "success rate".into(),
        get: Box::new(|s| Some(s.success_rate)),
        fmt: |v| format!("{:.1}%", v * 100.0),
    });
    // The split of what did not finish ok: the latencies above cover only the ok requests.
    type Count = fn(&ModelSummary) -> u64;
    let counts: [(&str, Count); 4] = [
        ("requests ok", |s| s.ok),
        ("rejected", |s| s.rejected),
        ("timed out", |s| s.timeout),
        ("errors", |s| s.error),
    ];
    for (name, count) in counts {
        rows.push(KeyRow {
            name: name.into(),
            get: Box::new(move |s| Some(count(s) as f64)),
            fmt: |v| format!("{v:.0}"),
        });
    }
    rows.push(KeyRow {
        name: "preemptions".into(),
        get: Box::new(|s| Some(s.preemptions as f64)),
        fmt: |v| format!("{v:.0}"),
    });
    rows
}

fn key_tables(out: &mut String, doc: &Doc<'_>) {
    let _ = writeln!(
        out,
        "## Key metrics per model\n\nLatencies are over successful requests only (as `vllm bench serve`): \
         a run that fails more can look faster, so read them with the outcome counts below them; \
         percentages in brackets are differences against **{}**.\n",
        doc.runs.first().map(|r| r.label.as_str()).unwrap_or("")
    );
    let rows = key_rows();
    let mut models: Vec<&str> = doc.models.iter().map(String::as_str).collect();
    models.push("all");
    for model in models {
        let summaries: Vec<Option<&ModelSummary>> = doc
            .runs
            .iter()
            .map(|r| {
                if model == "all" {
                    Some(&r.dir.summary.overall)
                } else {
                    r.dir.summary.models.iter().find(|m| m.model == model)
                }
            })
            .collect();
        let _ = writeln!(out, "### {}\n", if model == "all" { "All models" } else { model });
        let _ = write!(out, "| metric |");
        for r in doc.runs {
            let _ = write!(out, " {} |", cell(&r.label));
        }
        let _ = writeln!(out, "\n|---|{}", "---:|".repeat(doc.runs.len()));
        for row in &rows {
            let vals: Vec<Option<f64>> = summaries.iter().map(|s| s.and_then(|s| (row.get)(s))).collect();
            let base = vals.first().copied().flatten();
            let _ = write!(out, "| {} |", row.name);
            for (i, v) in vals.iter().enumerate() {
                let text = match (v, base) {
                    (None, _) => "—".to_string(),
                    (Some(v), Some(b)) if i > 0 => match rel_diff(*v, b) {
                        Some(d) => format!("{} ({})", (row.fmt)(*v), fmt_pct(d)),
                        None => (row.fmt)(*v),
                    },
                    (Some(v), _) => (row.fmt)(*v),
                };
                let _ = write!(out, " {text} |");
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
    }
}

fn sim_live_cell(r: Option<&ErrorRow>) -> String {
    let Some(r) = r else { return "—".into() };
    let f = |v: Option<f64>| v.map_or("—".to_string(), fmt_secs);
    let e = r.rel_error.map(|e| format!(" ({})", fmt_pct(e))).unwrap_or_default();
    format!("{} / {}{e}", f(r.sim_s), f(r.live_s))
}

fn validation(out: &mut String, doc: &Doc<'_>) {
    let _ = writeln!(
        out,
        "## Validation: simulated vs measured\n\nEach cell is sim / live (relative error of the \
         simulation, (sim - live) / live).\n"
    );
    for (pair, chart) in &doc.validation {
        let (s, l) = (&doc.runs[pair.sim], &doc.runs[pair.live]);
        let _ = writeln!(
            out,
            "### {} / {}: {} vs {}\n",
            s.dir.meta.scenario_name, s.dir.meta.variant, s.label, l.label
        );
        let _ = writeln!(out, "| model | metric | p50 | p90 | p99 |\n|---|---|---:|---:|---:|");
        let rows = compare_sim_live(&s.dir, &l.dir);
        let mut seen: Vec<(&str, LatencyMetric)> = Vec::new();
        for r in &rows {
            if seen.contains(&(r.model.as_str(), r.metric)) {
                continue;
            }
            seen.push((&r.model, r.metric));
            let at = |p: Percentile| {
                rows.iter().find(|x| x.model == r.model && x.metric == r.metric && x.percentile == p)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&r.model),
                r.metric.label(),
                sim_live_cell(at(Percentile::P50)),
                sim_live_cell(at(Percentile::P90)),
                sim_live_cell(at(Percentile::P99))
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "| model | throughput (req/s) | output tokens/s |\n|---|---:|---:|");
        let tp = compare_throughput(&s.dir, &l.dir);
        for pair in tp.chunks(ThroughputMetric::ALL.len()) {
            let cellv = |r: &ThroughputRow, prec: usize| {
                let f = |v: Option<f64>| v.map_or("—".to_string(), |x| format!("{x:.prec$}"));
                let e = r.rel_error.map(|e| format!(" ({})", fmt_pct(e))).unwrap_or_default();
                format!("{} / {}{e}", f(r.sim), f(r.live))
            };
            if let [req, tok] = pair {
                let _ = writeln!(out, "| {} | {} | {} |", cell(&req.model), cellv(req, 2), cellv(tok, 0));
            }
        }
        let _ = writeln!(out);
        charts(out, std::slice::from_ref(chart));
    }
    if let Some(csv) = &doc.validation_csv {
        let _ =
            writeln!(out, "The same numbers, one row per model x metric x statistic: [`{csv}`]({csv}).\n");
    }
}

fn sweep_section(out: &mut String, sw: &SweepDir, docs: &[ChartDoc]) {
    let _ = writeln!(out, "## Sweep: {} ({})\n", sw.meta.scenario, dir_name(&sw.path));
    let _ = writeln!(
        out,
        "Knee rule, for latency metrics: along each line sorted by `{}`, the first point after the \
         lowest load whose value exceeds twice the lowest-load value, or exceeds the SLO where one \
         is set.\n",
        sw.meta.x_param
    );
    charts(out, docs);
    let keys = sweep::series_keys(sw);
    let mut rows = Vec::new();
    for metric in sweep::metrics(sw).into_iter().filter(|m| sweep::is_latency(m)) {
        let slo = sw.meta.slo.for_metric(&metric);
        for model in sweep::models(sw, &metric) {
            for line in sweep::lines(sw, &keys, &metric, &model) {
                let knee = sweep::knee(&line.points, slo).map(|k| line.points[k]);
                let label = keys.get(line.key).map(|k| k.1.as_str()).unwrap_or("");
                let text = knee.map_or("none in range".to_string(), |p| {
                    format!("{} ({})", fmt_tick(p.x), fmt_secs(p.value))
                });
                rows.push(format!("| {metric} | {} | {} | {text} |", cell(&model), cell(label)));
            }
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(out, "| metric | model | line | knee at x (value) |\n|---|---|---|---|");
        for r in rows {
            let _ = writeln!(out, "{r}");
        }
        let _ = writeln!(out);
    }
}
