//! Hostile live run dirs for `calibrate` (issue 12 item 10): a valid fake live run whose
//! `requests.csv` and `tokens.csv` cells become non-finite, huge, negative or malformed, or whose
//! files are cut short. Calibrating returns a profile or an error naming the file; it never
//! panics. The longer run: `PROPTEST_CASES=2000 cargo test --release -p calibration --test it
//! run_dir_fuzz` (about a minute and a half in release; a case that fits takes ~0.5 s there).

use crate::common::{fake_live, scenario_dir};
use calibration::{CalibrateOptions, calibrate};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner, contextualize_config};
use std::fs;
use std::path::Path;

const VALUES: &[&str] =
    &["NaN", "inf", "-inf", "1e308", "-1e308", "-1", "0", "1e-320", "4294967296", "", "x", "timeout"];
const FILES: [&str; 2] = ["requests.csv", "tokens.csv"];

/// Replaces cell (`row`, `col`), both taken modulo the file's size, of `FILES[file]` in `dir`.
fn set_cell(dir: &Path, file: usize, row: usize, col: usize, value: &str) {
    let path = dir.join(FILES[file]);
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

#[test]
fn hostile_live_run_dirs_never_panic_calibrate() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, _) = scenario_dir(tmp.path());
    let good = fake_live(&file, &tmp.path().join("live"), true);
    let edit = (0usize..5, any::<usize>(), any::<usize>(), 0..VALUES.len());
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(contextualize_config(Config { cases: 6, ..Config::default() }));
    runner
        .run(&prop::collection::vec(edit, 1..4), |edits| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let bad = tmp.path().join(format!("bad-{n}"));
            fs::create_dir_all(&bad).unwrap();
            for e in fs::read_dir(&good).unwrap() {
                let e = e.unwrap();
                fs::copy(e.path(), bad.join(e.file_name())).unwrap();
            }
            for &(file, row, col, value) in &edits {
                if file == 4 {
                    // Cut requests.csv short.
                    let p = bad.join(FILES[0]);
                    let b = fs::read(&p).unwrap();
                    fs::write(&p, &b[..row % b.len().max(1)]).unwrap();
                } else {
                    set_cell(&bad, file % 2, row, col, VALUES[value]);
                }
            }
            let mut o = CalibrateOptions::new(vec![bad.clone()]);
            o.out = Some(bad.join("profile.toml"));
            o.report_dir = Some(bad.join("fit"));
            let _ = calibrate(&o);
            let _ = fs::remove_dir_all(&bad);
            Ok(())
        })
        .unwrap();
}

/// Sets column `column` of the row of request `id` in `dir`'s requests.csv.
fn set_request_field(dir: &Path, id: u64, column: &str, value: &str) {
    let path = dir.join(FILES[0]);
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let c = lines[0].split(',').position(|h| h == column).unwrap();
    let row = lines.iter().position(|l| l.split(',').next() == Some(&id.to_string())).unwrap();
    let mut cells: Vec<&str> = lines[row].split(',').collect();
    cells[c] = value;
    lines[row] = cells.join(",");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// Found by a longer run: a lone request's ttft_s of 4294967296 made the lone-request delay
/// estimate ~3e9 s, and the output-delay fit then simulated delays up to twice that, polling every
/// second of it (an hour of CPU and more). Now the row is refused by name.
#[test]
fn a_lone_request_with_an_absurd_ttft_is_refused_by_row_not_simulated() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, _) = scenario_dir(tmp.path());
    let dir = fake_live(&file, &tmp.path().join("live"), true);
    // Request 3 runs in the first phase, a closed loop of one stream: it is alone on its instance.
    set_request_field(&dir, 3, "ttft_s", "4294967296");
    let mut o = CalibrateOptions::new(vec![dir.clone()]);
    o.out = Some(tmp.path().join("profile.toml"));
    o.report_dir = Some(tmp.path().join("fit"));
    let err = calibrate(&o).unwrap_err().to_string();
    assert!(err.contains("requests.csv") && err.contains("request 3") && err.contains("ttft_s"), "{err}");
    assert!(!o.out.as_ref().unwrap().exists(), "no profile is written");
}
