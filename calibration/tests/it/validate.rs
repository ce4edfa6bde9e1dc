//! `validate`: a live run dir that is really a simulation of the same scenario is matched by the
//! simulation exactly (0% everywhere); a scenario whose load differs is refused by name.

use calibration::{CalibrationError, ValidateOptions, validate};
use reports::LatencyMetric;
use sim::runner::simulate_to_dir;
use sim::scenario::{Override, load_scenario};
use sim::simulation::SimOptions;
use std::path::{Path, PathBuf};

fn loopback() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/live-loopback.toml")
}

/// A simulated run of the loopback scenario (fewer requests), relabelled as live.
fn fake_live(dir: &Path) -> PathBuf {
    let ovs: Vec<Override> = vec!["workload.phases.0.num_requests=60".parse().unwrap()];
    let file = load_scenario(&loopback(), &ovs).unwrap();
    let live = dir.join("live");
    simulate_to_dir(&file.variants[0], &file.base_dir, &live, true, "test", SimOptions::default()).unwrap();
    for f in ["run.json", "summary.json"] {
        let p = live.join(f);
        let text =
            std::fs::read_to_string(&p).unwrap().replace("\"source\": \"sim\"", "\"source\": \"live\"");
        std::fs::write(&p, text).unwrap();
    }
    live
}

#[test]
fn a_run_validated_against_its_own_simulation_has_zero_error_including_itl_and_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let live = fake_live(tmp.path());
    let mut opts = ValidateOptions::new(loopback(), &live);
    opts.overrides = vec!["workload.phases.0.num_requests=60".parse().unwrap()];
    opts.out = Some(tmp.path().join("validation"));
    opts.profiles_dir = tmp.path().join("no-profiles");
    let v = validate(&opts).unwrap();
    assert!(v.differences.is_empty(), "{:?}", v.differences);
    assert_eq!(v.latencies.len(), 3 * 4 * 3, "2 models and all, 4 latencies, 3 percentiles");
    assert!(v.latencies.iter().any(|r| r.metric == LatencyMetric::Itl && r.model == "all"));
    for r in &v.latencies {
        assert_eq!(r.rel_error, Some(0.0), "{r:?}");
    }
    assert_eq!(v.throughput.len(), 3 * 2);
    for r in &v.throughput {
        assert_eq!(r.rel_error, Some(0.0), "{r:?}");
    }
    let out = tmp.path().join("validation");
    for f in ["validation.csv", "validation.json", "report.md", "validation_default.png"] {
        assert!(out.join(f).is_file(), "{f} not written");
    }
    let table = calibration::validation_table(&v);
    assert!(table.contains("ITL") && table.contains("+0.0%"), "{table}");
}

#[test]
fn a_partial_live_run_is_validated_with_a_warning_that_says_why_it_is_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let live = fake_live(tmp.path());
    std::fs::write(live.join("PARTIAL"), "interrupted by SIGTERM; 60 requests sent\n").unwrap();
    let mut opts = ValidateOptions::new(loopback(), &live);
    opts.overrides = vec!["workload.phases.0.num_requests=60".parse().unwrap()];
    opts.out = Some(tmp.path().join("validation"));
    opts.profiles_dir = tmp.path().join("no-profiles");
    let v = validate(&opts).unwrap();
    assert!(
        v.differences.iter().any(|d| d.contains("PARTIAL run (interrupted by SIGTERM")),
        "{:?}",
        v.differences
    );
    let md = std::fs::read_to_string(&v.report_md).unwrap();
    assert!(md.contains("**WARNING:**") && md.contains("interrupted by SIGTERM"), "{md}");
}

#[test]
fn a_scenario_whose_load_differs_from_the_live_runs_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let live = fake_live(tmp.path());
    let mut opts = ValidateOptions::new(loopback(), &live);
    opts.overrides = vec!["workload.phases.0.num_requests=61".parse().unwrap()];
    opts.out = Some(tmp.path().join("validation"));
    let e = validate(&opts).unwrap_err();
    assert!(matches!(e, CalibrationError::Mismatch(_)), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("workload.phases.0.num_requests") && msg.contains("--allow-mismatch"), "{msg}");
}

#[test]
fn a_different_contention_model_is_noted_but_does_not_block() {
    // The contention model is part of what a validation checks, not the load: a live run recorded
    // under another default is still validated, and the difference is listed.
    let tmp = tempfile::tempdir().unwrap();
    let live = fake_live(tmp.path());
    let mut opts = ValidateOptions::new(loopback(), &live);
    opts.overrides = vec![
        "workload.phases.0.num_requests=60".parse().unwrap(),
        "cluster.contention={ model = \"gpu_share\" }".parse().unwrap(),
    ];
    opts.out = Some(tmp.path().join("validation"));
    opts.profiles_dir = tmp.path().join("no-profiles");
    let v = validate(&opts).unwrap();
    assert!(v.differences.iter().any(|d| d.starts_with("contention.model")), "{:?}", v.differences);
}
