//! Reports: PNG charts and `report.md` drawn from run dirs and sweep dirs.
//!
//! [`write_report`] reads each input (a run dir holds `run.json`, a sweep dir `sweep.json`),
//! renders latency CDFs, percentile bars against the first run dir, per-instance time series,
//! sim-versus-live overlays (with `validation.csv`) and sweep curves, then writes `report.md`
//! linking them. Text renders from an embedded DejaVu Sans, so no system font is needed. This crate
//! only reads run dirs: it never runs a simulation or the live harness.

#![deny(missing_docs)]

mod canvas;
mod charts;
mod error;
mod input;
mod markdown;
mod stats;
mod style;
pub mod sweep_schema;
mod validate;

pub use charts::fit::{FitChart, FitPoint, render_fit_chart};
pub use charts::waterfall::{WaterfallChart, WaterfallStep, render_waterfall};
pub use error::ReportError;
pub use stats::{LatencyMetric, Percentile};
pub use validate::{ErrorRow, ThroughputMetric, ThroughputRow, compare_sim_live, compare_throughput};

use input::{Run, slug};
use markdown::{ChartDoc, Doc, Section};
use std::path::PathBuf;

/// Where and how big to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportOptions {
    /// Directory receiving `report.md`, the PNGs and `validation.csv` (created if needed).
    pub out_dir: PathBuf,
    /// Report title (default: "ModelsGuard report: " and the scenario names).
    pub title: Option<String>,
    /// Width of every chart, pixels (at least 200).
    pub width: u32,
    /// Height of every chart, pixels (at least 150).
    pub height: u32,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { out_dir: PathBuf::from("report"), title: None, width: 1200, height: 700 }
    }
}

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportOutput {
    /// The markdown report.
    pub report_md: PathBuf,
    /// Every PNG, in the order report.md shows them.
    pub charts: Vec<PathBuf>,
    /// Warnings about the inputs (a partial run dir), also written at the top of report.md.
    pub warnings: Vec<String>,
}

/// Hands out file names in the output dir, never the same twice.
struct Names {
    dir: PathBuf,
    used: Vec<String>,
    charts: Vec<PathBuf>,
}

impl Names {
    fn take(&mut self, stem: &str) -> (String, PathBuf) {
        let mut name = format!("{stem}.png");
        let mut k = 2;
        while self.used.contains(&name) {
            name = format!("{stem}_{k}.png");
            k += 1;
        }
        self.used.push(name.clone());
        let path = self.dir.join(&name);
        self.charts.push(path.clone());
        (name, path)
    }
}

/// Reads `inputs` (each a run dir or a sweep dir), draws the charts and writes `report.md` into
/// `opts.out_dir`. Run dirs are compared in the order given; the first is the reference.
pub fn write_report(inputs: &[PathBuf], opts: &ReportOptions) -> Result<ReportOutput, ReportError> {
    let loaded = input::load(inputs)?;
    std::fs::create_dir_all(&opts.out_dir).map_err(ReportError::io(&opts.out_dir))?;
    let size = (opts.width.max(200), opts.height.max(150));
    let mut names = Names { dir: opts.out_dir.clone(), used: Vec::new(), charts: Vec::new() };
    let runs: Vec<&Run> = loaded.runs.iter().collect();
    let models = input::models(&loaded.runs);
    let mut sections = Vec::new();
    if !runs.is_empty() {
        sections = run_charts(&mut names, size, &runs, &models)?;
    }

    let pairs = validate::pairs(&loaded.runs);
    let mut validation = Vec::new();
    for p in &pairs {
        let (s, l) = (&loaded.runs[p.sim], &loaded.runs[p.live]);
        let (file, path) = names.take(&format!("validation_{}", slug(&s.dir.meta.variant)));
        let itl = (validate::itl_samples(&s.dir)?, validate::itl_samples(&l.dir)?);
        charts::validation::render_validation(&path, size, s, l, &models, (&itl.0, &itl.1))?;
        let caption = format!(
            "Measured (solid) and simulated (dashed) CDFs of {} / {}: where the dashed line sits \
             left of the solid one, the simulator is optimistic.",
            s.dir.meta.scenario_name, s.dir.meta.variant
        );
        validation.push((*p, ChartDoc { file, caption }));
    }
    let validation_csv = if pairs.is_empty() {
        None
    } else {
        validate::write_csv(&opts.out_dir.join("validation.csv"), &loaded.runs, &pairs)?;
        Some("validation.csv".to_string())
    };

    let mut sweeps = Vec::new();
    for sw in &loaded.sweeps {
        let mut docs = Vec::new();
        for metric in charts::sweep::metrics(sw) {
            let (file, path) =
                names.take(&format!("sweep_{}_{}", slug(&input::dir_name(&sw.path)), slug(&metric)));
            charts::sweep::render_sweep_metric(&path, size, sw, &metric)?;
            let caption = format!(
                "`{metric}` against `{}`, one line per variant, band = confidence interval{}.",
                sw.meta.x_param,
                if charts::sweep::is_latency(&metric) { ", circle = knee" } else { "" }
            );
            docs.push(ChartDoc { file, caption });
        }
        sweeps.push((sw, docs));
    }

    let title = opts.title.clone().unwrap_or_else(|| default_title(&loaded));
    let doc =
        Doc { title, runs: &loaded.runs, models: &models, sections, validation, sweeps, validation_csv };
    let report_md = opts.out_dir.join("report.md");
    std::fs::write(&report_md, markdown::render(&doc)).map_err(ReportError::io(&report_md))?;
    let warnings = loaded.runs.iter().filter_map(|r| r.dir.partial_warning()).collect();
    Ok(ReportOutput { report_md, charts: names.charts, warnings })
}

fn run_charts(
    names: &mut Names,
    size: (u32, u32),
    runs: &[&Run],
    models: &[String],
) -> Result<Vec<Section>, ReportError> {
    let mut cdfs = Vec::new();
    for metric in LatencyMetric::PER_REQUEST {
        let (file, path) = names.take(&format!("cdf_{}", metric.key()));
        charts::cdf::render_cdf(&path, size, runs, models, metric)?;
        let caption = format!(
            "{} distribution per model, one line per run: a line further left is faster; the gap at \
             the top is the tail.",
            metric.label()
        );
        cdfs.push(ChartDoc { file, caption });
    }
    let mut bars = Vec::new();
    let reference = runs.first().map(|r| r.label.as_str()).unwrap_or("");
    for model in models {
        let (file, path) = names.take(&format!("percentiles_{}", slug(model)));
        charts::percentiles::render_percentiles(&path, size, runs, model)?;
        let caption = format!(
            "{model}: p50/p90/p99 of TTFT, TPOT and E2E per run, labelled with the difference \
             against {reference} (green = lower)."
        );
        bars.push(ChartDoc { file, caption });
    }
    let mut inst = Vec::new();
    for run in runs {
        let (file, path) = names.take(&format!("instances_{}", slug(&run.label)));
        charts::instances::render_instances(&path, size, run)?;
        let caption = format!(
            "{}: running and waiting requests and KV-cache usage of each instance over time; a \
             growing waiting queue with KV near 100% means the instance is memory-bound.",
            run.label
        );
        inst.push(ChartDoc { file, caption });
        if charts::instances::has_mapped_pages(run) {
            let (file, path) = names.take(&format!("mapped_pages_{}", slug(&run.label)));
            charts::instances::render_mapped_pages(&path, size, run)?;
            let caption = format!(
                "{}: elastic KV pages each instance holds mapped from its GPU's shared pool.",
                run.label
            );
            inst.push(ChartDoc { file, caption });
        }
    }
    Ok(vec![
        Section { title: "Latency distributions".into(), charts: cdfs },
        Section { title: "Percentiles against the reference".into(), charts: bars },
        Section { title: "Per-instance load and KV cache".into(), charts: inst },
    ])
}

fn default_title(loaded: &input::Inputs) -> String {
    let mut names: Vec<&str> = Vec::new();
    let all = loaded
        .runs
        .iter()
        .map(|r| r.dir.meta.scenario_name.as_str())
        .chain(loaded.sweeps.iter().map(|s| s.meta.scenario.as_str()));
    for n in all {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    format!("ModelsGuard report: {}", names.join(", "))
}
