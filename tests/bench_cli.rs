//! `modelsguard bench` through the binary: the thin caller prints the library's table (README
//! "Performance" quotes it) row by row, and a closed stdout stops it quietly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

/// `bench` of the shipped seed scenario, shrunk to a few hundred requests.
fn bench(repeat: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modelsguard"));
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["bench", "--requests", "100", "--repeat", repeat])
        .args(["--set", "workload.phases.1.duration_s=5", "--set", "workload.phases.2.duration_s=5"])
        .stdin(Stdio::null());
    c
}

#[test]
fn bench_prints_the_header_a_row_per_run_the_wall_stats_and_the_load() {
    let o = bench("2").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(
        lines[0],
        "| scenario | variant | requests | steps | simulated s | wall s | sim req/s | steps/s | peak RSS MiB |"
    );
    assert_eq!(lines[1], "|---|---|---|---|---|---|---|---|---|");
    for row in &lines[2..4] {
        assert!(row.starts_with("| seed-6xh100 | baseline | "), "{row}");
        assert_eq!(row.matches('|').count(), 10, "{row}");
    }
    // Same counters in both runs: the columns before the wall time.
    let counters = |l: &str| l.split('|').take(6).collect::<Vec<_>>().join("|");
    assert_eq!(counters(lines[2]), counters(lines[3]));
    assert!(lines[4].starts_with("wall s over 2 runs: median "), "{out}");
    assert!(lines[5].starts_with("load: ") && lines[5].contains("% ok, TTFT p50 "), "{out}");
}

#[test]
fn bench_with_a_closed_stdout_ends_quietly_with_exit_0() {
    let mut child = bench("3").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{:?}: {err}", o.status);
    assert!(err.is_empty(), "quiet: {err}");
}
