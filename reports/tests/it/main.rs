//! Integration tests of the reports crate: fixture run dirs and sweep dirs in a tempdir, every
//! chart kind rendered, each PNG decoded and checked for size and content, report.md read back.
//! Set `REPORTS_KEEP_DIR=/some/dir` to keep the rendered reports there for a look.

// Helpers outside #[test] fns (fixtures, PNG decoding) unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod fixtures;
mod run_dir_fuzz;

use fixtures::{Shape, write_run, write_sweep};
use reports::sweep_schema::read_sweep_dir;
use reports::{LatencyMetric, Percentile, ReportError, ReportOptions, compare_sim_live, write_report};
use sim::trace::{Source, TraceError, read_run_dir};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Decodes a PNG; returns (width, height, distinct colours, fraction of non-white pixels).
fn inspect_png(path: &Path) -> (u32, u32, usize, f64) {
    let decoder = png::Decoder::new(fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let bytes = &buf[..info.buffer_size()];
    let mut colours = BTreeSet::new();
    let mut inked = 0usize;
    for p in bytes.chunks(px) {
        colours.insert(p[..3.min(px)].to_vec());
        if p[..3.min(px)].iter().any(|&c| c < 250) {
            inked += 1;
        }
    }
    (info.width, info.height, colours.len(), inked as f64 / (bytes.len() / px) as f64)
}

fn assert_drawn(path: &Path, width: u32, height: u32) {
    let (w, h, colours, inked) = inspect_png(path);
    assert_eq!((w, h), (width, height), "{}", path.display());
    assert!(colours >= 8, "{} has only {colours} colours", path.display());
    assert!(inked > 0.01, "{} is nearly blank ({inked:.4} inked)", path.display());
}

fn options(out: &Path) -> ReportOptions {
    ReportOptions { out_dir: out.to_path_buf(), ..ReportOptions::default() }
}

fn keep(out: &Path, name: &str) {
    if let Ok(dir) = std::env::var("REPORTS_KEEP_DIR") {
        let dst = Path::new(&dir).join(name);
        fs::create_dir_all(&dst).unwrap();
        for e in fs::read_dir(out).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn names(charts: &[PathBuf]) -> Vec<String> {
    charts.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_baseline_and_a_managed_run_give_every_run_chart_and_a_key_table() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_run(&tmp.path().join("base"), "three-models", "baseline", Shape::default());
    let managed = write_run(
        &tmp.path().join("managed"),
        "three-models",
        "managed",
        Shape { elastic: true, slowdown: 0.77, seed: 2, ..Shape::default() },
    );
    let out = tmp.path().join("report");
    let res = write_report(&[base, managed], &options(&out)).unwrap();
    keep(&out, "runs");

    let files = names(&res.charts);
    for f in [
        "cdf_ttft.png",
        "cdf_tpot.png",
        "cdf_e2e.png",
        "percentiles_llama-3.1-8b.png",
        "percentiles_qwen2.5-7b.png",
        "percentiles_mistral-7b.png",
        "instances_baseline.png",
        "instances_managed.png",
        "mapped_pages_managed.png",
    ] {
        assert!(files.contains(&f.to_string()), "{f} missing from {files:?}");
    }
    assert!(!files.contains(&"mapped_pages_baseline.png".to_string()), "static KV has no mapped pages");
    for c in &res.charts {
        assert_drawn(c, 1200, 700);
    }
    let md = fs::read_to_string(&res.report_md).unwrap();
    assert!(md.starts_with("# ModelsGuard report: three-models"));
    assert!(md.contains("## Inputs") && md.contains("## Key metrics per model"));
    assert!(md.contains("### llama-3.1-8b") && md.contains("### All models"));
    assert!(md.contains("| TTFT p90 |"));
    // managed is 23% faster everywhere on the same draws' scale: its cells carry a negative difference.
    assert!(md.contains("(-"), "no relative difference in:\n{md}");
    for f in &files {
        assert!(md.contains(&format!("![]({f})")), "{f} not linked in report.md");
    }
    assert!(!md.contains("Validation"), "two sim runs have nothing to validate");
}

#[test]
fn a_sim_and_a_live_run_of_one_variant_are_overlaid_and_tabulated() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = write_run(
        &tmp.path().join("sim"),
        "three-models",
        "baseline",
        Shape { calibrated: false, ..Shape::default() },
    );
    let live = write_run(
        &tmp.path().join("live"),
        "three-models",
        "baseline",
        Shape { source: Source::Live, calibrated: false, slowdown: 1.15, ..Shape::default() },
    );
    let out = tmp.path().join("report");
    let opts = ReportOptions { width: 1000, height: 800, ..options(&out) };
    let res = write_report(&[sim, live], &opts).unwrap();
    keep(&out, "validation");

    let files = names(&res.charts);
    assert!(files.contains(&"validation_baseline.png".to_string()), "{files:?}");
    for c in &res.charts {
        assert_drawn(c, 1000, 800);
    }
    let csv = fs::read_to_string(out.join("validation.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("scenario,variant,model,metric,statistic,sim,live,rel_error_pct"));
    // 3 models + "all": 4 latencies x 3 percentiles, and 2 throughputs.
    assert_eq!(lines.count(), 4 * (4 * 3 + 2));
    assert!(csv.contains(",itl,p90,") && csv.contains(",request_throughput,value,"), "{csv}");
    let md = fs::read_to_string(&res.report_md).unwrap();
    assert!(md.contains("## Validation: simulated vs measured"));
    assert!(md.contains("UNCALIBRATED (roofline prior)"));
    assert!(md.contains("baseline (sim)") && md.contains("baseline (live)"), "labels tell sim from live");
}

#[test]
fn compare_sim_live_gives_the_relative_error_of_the_simulation() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = write_run(&tmp.path().join("sim"), "s", "v", Shape { slowdown: 1.1, ..Shape::default() });
    let live =
        write_run(&tmp.path().join("live"), "s", "v", Shape { source: Source::Live, ..Shape::default() });
    let rows = compare_sim_live(&read_run_dir(&sim).unwrap(), &read_run_dir(&live).unwrap());
    assert_eq!(rows.len(), 4 * 4 * 3, "4 models with all, 4 latencies (ITL included), 3 percentiles");
    assert_eq!(rows[0].model, "llama-3.1-8b");
    assert_eq!((rows[0].metric, rows[0].percentile), (LatencyMetric::Ttft, Percentile::P50));
    assert_eq!(rows.last().map(|r| r.model.as_str()), Some("all"));
    // Same draws, every latency 10% longer in the simulation (ITL percentiles come from a
    // log-bucketed histogram: within its resolution).
    for r in &rows {
        let e = r.rel_error.unwrap();
        let tol = if r.metric == LatencyMetric::Itl { 0.02 } else { 1e-9 };
        assert!((e - 0.1).abs() < tol, "{r:?}");
    }
}

#[test]
fn a_sweep_dir_renders_one_chart_per_metric_with_knees_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = write_sweep(&tmp.path().join("rate-sweep"));
    let out = tmp.path().join("report");
    let res = write_report(&[sweep], &options(&out)).unwrap();
    keep(&out, "sweep");

    assert_eq!(
        names(&res.charts),
        [
            "sweep_rate-sweep_ttft_p90.png",
            "sweep_rate-sweep_tpot_p50.png",
            "sweep_rate-sweep_request_throughput.png"
        ]
    );
    for c in &res.charts {
        assert_drawn(c, 1200, 700);
    }
    let md = fs::read_to_string(&res.report_md).unwrap();
    assert!(md.contains("## Sweep: three-models (rate-sweep)"));
    assert!(md.contains("| ttft_p90 | llama-3.1-8b | baseline, policy=round_robin |"), "{md}");
    assert!(md.contains("knee at x"));
}

#[test]
fn sweep_files_read_back_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_sweep(&tmp.path().join("sw"));
    let (meta, rows) = read_sweep_dir(&dir).unwrap();
    assert_eq!(meta.x_param, "workload.phases.0.arrival.rate");
    assert_eq!(rows.len(), 2 * 2 * 6 * 3 * 3);
    let header = fs::read_to_string(dir.join("sweep.csv")).unwrap();
    assert!(header.starts_with(
        "point,variant,model,metric,value,ci_low,ci_high,n,param:workload.phases.0.arrival.rate,param:router.policy\n"
    ));
    let again = tmp.path().join("again");
    reports::sweep_schema::write_sweep_dir(&again, &meta, &rows).unwrap();
    assert_eq!(read_sweep_dir(&again).unwrap(), (meta, rows));
}

#[test]
fn a_run_dir_from_an_older_schema_is_refused_naming_run_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_run(&tmp.path().join("old"), "s", "v", Shape::default());
    let run_json = dir.join("run.json");
    let text =
        fs::read_to_string(&run_json).unwrap().replace("\"schema_version\": 1", "\"schema_version\": 0");
    fs::write(&run_json, text).unwrap();
    let err = write_report(&[dir], &options(&tmp.path().join("out"))).unwrap_err();
    match &err {
        ReportError::Trace(TraceError::Schema { path, found: 0, .. }) => assert_eq!(path, &run_json),
        other => panic!("expected a schema error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("run.json") && msg.contains("schema version 0"), "{msg}");
}

#[test]
fn an_empty_input_list_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = write_report(&[], &options(tmp.path())).unwrap_err();
    assert!(matches!(err, ReportError::NoInputs), "{err:?}");
}

#[test]
fn a_directory_that_is_neither_a_run_nor_a_sweep_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let err = write_report(std::slice::from_ref(&empty), &options(&tmp.path().join("out"))).unwrap_err();
    assert!(matches!(&err, ReportError::NotAnInput { path } if *path == empty), "{err:?}");
    assert!(err.to_string().contains("run.json"));
}

#[test]
fn a_missing_input_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("gone");
    let err = write_report(std::slice::from_ref(&gone), &options(&tmp.path().join("out"))).unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
}

#[test]
fn the_same_inputs_give_byte_identical_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = write_run(&tmp.path().join("run"), "s", "v", Shape::default());
    let a = write_report(std::slice::from_ref(&run), &options(&tmp.path().join("a"))).unwrap();
    let b = write_report(&[run], &options(&tmp.path().join("b"))).unwrap();
    for (x, y) in a.charts.iter().zip(&b.charts) {
        assert_eq!(fs::read(x).unwrap(), fs::read(y).unwrap(), "{}", x.display());
    }
    assert_eq!(fs::read(&a.report_md).unwrap(), fs::read(&b.report_md).unwrap());
}

#[test]
fn a_run_whose_requests_all_failed_still_renders_and_shows_no_latencies() {
    let tmp = tempfile::tempdir().unwrap();
    let run =
        write_run(&tmp.path().join("down"), "s", "outage", Shape { fail_all: true, ..Shape::default() });
    let out = tmp.path().join("report");
    let opts = ReportOptions { title: Some("Outage drill".into()), ..options(&out) };
    let res = write_report(&[run], &opts).unwrap();
    keep(&out, "outage");
    for c in &res.charts {
        let (w, h, colours, _) = inspect_png(c);
        assert_eq!((w, h, colours >= 8), (1200, 700, true), "{}", c.display());
    }
    let md = fs::read_to_string(&res.report_md).unwrap();
    assert!(md.starts_with("# Outage drill\n"));
    assert!(md.contains("| TTFT p50 | — |"), "{md}");
    assert!(md.contains("| success rate | 0.0% |"), "{md}");
    assert!(md.contains("| requests ok | 0 |") && md.contains("| errors | 400 |"), "{md}");
    assert!(md.contains("| rejected | 0 |") && md.contains("| timed out | 0 |"), "{md}");
}

#[test]
fn a_waterfall_draws_from_start_through_every_step_to_end() {
    use reports::{WaterfallChart, WaterfallStep, render_waterfall};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waterfall.png");
    let step =
        |label: &str, delta: f64, ci: Option<(f64, f64)>| WaterfallStep { label: label.into(), delta, ci };
    let chart = WaterfallChart {
        title: "why p90 TTFT moves".into(),
        subtitle: "3 replications".into(),
        axis: "p90 TTFT (ms)".into(),
        start: ("baseline".into(), 900.0),
        steps: vec![
            step("prefix caching off", 880.0, Some((440.0, 1320.0))),
            step("queue-aware LB", 710.0, None),
            step("a setting that helps", -100.0, Some((-150.0, -50.0))),
        ],
        end: ("managed".into(), 2390.0),
        higher_is_better: false,
    };
    render_waterfall(&path, (900, 420), &chart).unwrap();
    assert_drawn(&path, 900, 420);
    // No steps at all still draws the two bars.
    let empty = WaterfallChart { steps: Vec::new(), end: ("managed".into(), 900.0), ..chart };
    render_waterfall(&path, (600, 300), &empty).unwrap();
    assert_drawn(&path, 600, 300);
}
