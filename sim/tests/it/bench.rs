//! `sim::bench`: the library behind `modelsguard bench` runs the shipped seed scenario, shrunk to a
//! few hundred requests, and reports one row per run with identical counters in every run.

use sim::bench::{BenchError, BenchOptions, BenchRow, TABLE_HEADER, run_bench};
use sim::scenario::Override;
use std::ops::ControlFlow;
use std::path::Path;

fn seed_options(repeat: u32) -> BenchOptions {
    // The later phases shortened so the test stays quick; phase 0 is the stretched one.
    let overrides = ["workload.phases.1.duration_s=5", "workload.phases.2.duration_s=5"]
        .iter()
        .map(|s| s.parse::<Override>().unwrap())
        .collect();
    BenchOptions {
        scenario: Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/seed-6xh100.toml"),
        variant: Some("managed".into()),
        requests: 150,
        overrides,
        repeat,
        fast_forward: true,
        peak_rss_mib: || Some(42.0),
    }
}

#[test]
fn every_repeat_gives_a_row_with_the_same_steps_and_the_table_shows_them_all() {
    let mut seen: Vec<BenchRow> = Vec::new();
    let report = run_bench(&seed_options(3), &mut |row| {
        seen.push(row.clone());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(report.rows.len(), 3);
    assert_eq!(seen, report.rows, "on_row sees every row, in order");
    let first = &report.rows[0];
    assert_eq!((first.scenario.as_str(), first.variant.as_str()), ("seed-6xh100", "managed"));
    assert!(first.steps > 0, "{first:?}");
    // Phase 0 stretched to 150 requests, plus the two shortened later phases.
    assert!(first.requests > 150, "{first:?}");
    for r in &report.rows {
        assert_eq!((r.requests, r.steps, r.simulated_s), (first.requests, first.steps, first.simulated_s));
        assert!(r.wall_s > 0.0);
        assert_eq!(r.peak_rss_mib, Some(42.0), "the reader passed in is used");
    }
    assert!(report.load.success_rate > 0.0 && report.load.request_throughput > 0.0, "{:?}", report.load);
    let wall = report.wall().unwrap();
    assert_eq!(wall.runs, 3);
    assert!(wall.fastest <= wall.median && wall.median <= wall.slowest, "{wall:?}");
    let table = report.table();
    assert!(table.starts_with(TABLE_HEADER), "{table}");
    assert_eq!(table.lines().filter(|l| l.starts_with("| seed-6xh100 | managed |")).count(), 3, "{table}");
    assert!(table.contains("wall s over 3 runs: median "), "{table}");
}

#[test]
fn a_break_from_on_row_stops_the_runs() {
    let report = run_bench(&seed_options(5), &mut |_| ControlFlow::Break(())).unwrap();
    assert_eq!(report.rows.len(), 1);
}

#[test]
fn zero_repeats_and_an_unknown_variant_are_errors_naming_what_to_fix() {
    let err = run_bench(&BenchOptions { repeat: 0, ..seed_options(1) }, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(matches!(err, BenchError::Option { option: "--repeat", .. }), "{err}");
    let opts = BenchOptions { variant: Some("nope".into()), ..seed_options(1) };
    let err = run_bench(&opts, &mut |_| ControlFlow::Continue(())).unwrap_err();
    assert!(matches!(err, BenchError::Scenario(_)), "{err}");
    assert!(err.to_string().contains("no variant \"nope\""), "{err}");
}
