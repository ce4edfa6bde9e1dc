//! Hostile run dirs (issue 12 item 10): a valid run dir whose `requests.csv`, `instances.csv`,
//! `summary.json` and `run.json` cells are replaced with extreme, negative, non-finite and
//! malformed values, or truncated. Reading it and rendering a report beside a good run returns a
//! report or an error naming the file; it never panics. Rendering is the slow part, so CI runs a
//! few cases; the longer run is `PROPTEST_CASES=500 cargo test -p reports --test it run_dir_fuzz`.

use crate::fixtures::{Shape, write_run};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner, contextualize_config};
use reports::{ReportOptions, write_report};
use sim::trace::files;
use std::fs;
use std::path::Path;

const CELLS: &[&str] = &[
    "",
    "0",
    "-1",
    "-0.5",
    "NaN",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "4294967296",
    "18446744073709551616",
    "1e-320",
    "ok",
    "timeout",
    "rejected",
    "bogus",
    "llama-3.1-8b",
    "\"",
];

const FLOATS: &[&str] = &["NaN", "inf", "-inf", "1e308", "-1e308", "-1", "1e-320", "0", "1e12"];

/// The float columns of requests.csv (scheduled_s..end_s, ttft_s..itl_max_s), instances.csv
/// (time_s, kv_cache_usage) and tokens.csv (time_s).
const FLOAT_COLS: [&[usize]; 3] = [&[4, 5, 6, 7, 15, 16, 17, 18, 19], &[0, 6], &[2]];

const JSON_VALUES: &[&str] =
    &["0", "-1", "1e308", "-1e308", "18446744073709551615", "null", "\"x\"", "[]", "{}", "0.5"];

/// An edit of a copied run dir.
#[derive(Clone, Debug)]
enum Edit {
    /// Replace cell (`row`, `col`) of a CSV file (0: requests, 1: instances, 2: tokens).
    Cell { file: u8, row: usize, col: usize, value: usize },
    /// Replace the `n`-th number in a JSON file (0: summary, 1: run) with a hostile value.
    JsonNumber { file: u8, n: usize, value: usize },
    /// Replace a float cell with a non-finite, huge or negative one (keeps the row readable, so the
    /// value reaches the charts).
    Float { file: u8, row: usize, col: usize, value: usize },
    /// Cut a file (0..5) at a fraction of its length.
    Truncate { file: u8, at: f64 },
    /// Drop every data row but `keep` of requests.csv.
    KeepRows { keep: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0u8..3, any::<usize>(), any::<usize>(), 0..CELLS.len())
            .prop_map(|(file, row, col, value)| Edit::Cell { file, row, col, value }),
        4 => (0u8..3, any::<usize>(), any::<usize>(), 0..FLOATS.len())
            .prop_map(|(file, row, col, value)| Edit::Float { file, row, col, value }),
        2 => (0u8..2, any::<usize>(), 0..JSON_VALUES.len())
            .prop_map(|(file, n, value)| Edit::JsonNumber { file, n, value }),
        1 => (0u8..5, 0.0f64..1.0).prop_map(|(file, at)| Edit::Truncate { file, at }),
        1 => (0usize..3).prop_map(|keep| Edit::KeepRows { keep }),
    ]
}

const FILES: [&str; 5] =
    [files::REQUESTS_CSV, files::INSTANCES_CSV, files::TOKENS_CSV, files::SUMMARY_JSON, files::RUN_JSON];

/// Replaces cell (`row` mod data rows, `col` mod columns) of CSV file `file` with `value`.
fn set_cell(dir: &Path, file: u8, row: usize, col: usize, value: &str) {
    let path = dir.join(FILES[file as usize]);
    let text = fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.len() < 2 {
        return;
    }
    let r = 1 + row % (lines.len() - 1);
    let mut cells: Vec<&str> = lines[r].split(',').collect();
    let c = col % cells.len();
    cells[c] = value;
    lines[r] = cells.join(",");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn apply(dir: &Path, e: &Edit) {
    match *e {
        Edit::Float { file, row, col, value } => {
            let cols = FLOAT_COLS[file as usize];
            let col = cols[col % cols.len()];
            set_cell(dir, file, row, col, FLOATS[value]);
        }
        Edit::Cell { file, row, col, value } => set_cell(dir, file, row, col, CELLS[value]),
        Edit::JsonNumber { file, n, value } => {
            let path = dir.join(FILES[3 + file as usize]);
            let text = fs::read_to_string(&path).unwrap_or_default();
            // Byte ranges of the number literals after a ':' (values, not keys).
            let b = text.as_bytes();
            let mut spans = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b':' {
                    let mut j = i + 1;
                    while j < b.len() && b[j] == b' ' {
                        j += 1;
                    }
                    let start = j;
                    while j < b.len() && (b[j].is_ascii_digit() || b"-+.eE".contains(&b[j])) {
                        j += 1;
                    }
                    if j > start {
                        spans.push((start, j));
                    }
                    i = j.max(i + 1);
                } else {
                    i += 1;
                }
            }
            if let Some(&(s, t)) = spans.get(n % spans.len().max(1)) {
                let out = format!("{}{}{}", &text[..s], JSON_VALUES[value], &text[t..]);
                fs::write(&path, out).unwrap();
            }
        }
        Edit::Truncate { file, at } => {
            let path = dir.join(FILES[file as usize]);
            let bytes = fs::read(&path).unwrap_or_default();
            let cut = (bytes.len() as f64 * at) as usize;
            fs::write(&path, &bytes[..cut.min(bytes.len())]).unwrap();
        }
        Edit::KeepRows { keep } => {
            let path = dir.join(files::REQUESTS_CSV);
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().take(1 + keep).collect();
            fs::write(&path, lines.join("\n") + "\n").unwrap();
        }
    }
}

#[test]
fn hostile_run_dirs_never_panic_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write_run(&tmp.path().join("good"), "fuzz", "baseline", Shape::default());
    let mut runner = TestRunner::new(contextualize_config(Config { cases: 24, ..Config::default() }));
    let case = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&prop::collection::vec(edit(), 1..5), |edits| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let bad = tmp.path().join(format!("bad-{case}"));
            fs::create_dir_all(&bad).unwrap();
            for f in FILES {
                fs::copy(good.join(f), bad.join(f)).unwrap();
            }
            for e in &edits {
                apply(&bad, e);
            }
            let out = tmp.path().join(format!("report-{case}"));
            let opts =
                ReportOptions { out_dir: out.clone(), width: 200, height: 150, ..ReportOptions::default() };
            let _ = write_report(&[good.clone(), bad.clone()], &opts);
            let _ = fs::remove_dir_all(&bad);
            let _ = fs::remove_dir_all(&out);
            Ok(())
        })
        .unwrap();
}

/// Regression (found by the suite): a negative percentile in an edited `summary.json` panicked
/// the percentile chart with an integer overflow in plotters' pixel mapping; it is now skipped.
#[test]
fn a_negative_percentile_in_summary_json_renders_without_that_bar() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write_run(&tmp.path().join("good"), "fuzz", "baseline", Shape::default());
    let bad = write_run(&tmp.path().join("bad"), "fuzz", "edited", Shape::default());
    let path = bad.join(files::SUMMARY_JSON);
    let mut summary: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    summary["models"][0]["e2e"]["p50"] = serde_json::json!(-1e308);
    fs::write(&path, summary.to_string()).unwrap();
    let opts = ReportOptions { out_dir: tmp.path().join("report"), ..ReportOptions::default() };
    let res = write_report(&[good, bad], &opts).unwrap();
    assert!(res.charts.iter().any(|c| c.to_string_lossy().contains("percentiles_")));
}

/// Regression (found by the suite): a negative `e2e_s` in an edited `requests.csv` panicked the
/// CDF chart the same way; such values are left out of the samples.
#[test]
fn a_negative_latency_in_requests_csv_renders_without_that_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write_run(&tmp.path().join("good"), "fuzz", "baseline", Shape::default());
    let bad = write_run(&tmp.path().join("bad"), "fuzz", "baseline", Shape::default());
    // Row 1 (id 0) is ok; column 16 is e2e_s.
    set_cell(&bad, 0, 0, 16, "-1e308");
    let opts = ReportOptions {
        out_dir: tmp.path().join("report"),
        width: 200,
        height: 150,
        ..ReportOptions::default()
    };
    let res = write_report(&[good, bad], &opts).unwrap();
    assert!(res.charts.iter().any(|c| c.to_string_lossy().contains("cdf_e2e")));
}
