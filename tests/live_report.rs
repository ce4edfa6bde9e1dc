//! A live run dir is a run dir like any other: `report` draws the same charts from it as from the
//! simulated run dir of the same scenario, and both together add the sim-versus-live overlay and
//! `validation.csv`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Rig, load, run_opts};
use live::proxy::LbOptions;
use live::run::{Target, live_run};
use reports::{ReportOptions, write_report};
use sim::runner::simulate_to_dir;
use sim::simulation::SimOptions;
use sim::trace::{Source, read_run_dir};
use std::path::{Path, PathBuf};

fn chart_names(inputs: &[PathBuf], out: &Path) -> Vec<String> {
    let opts = ReportOptions { out_dir: out.to_path_buf(), ..ReportOptions::default() };
    let written = write_report(inputs, &opts).unwrap();
    assert!(written.report_md.is_file());
    written.charts.iter().map(|c| c.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_dir_gives_the_same_charts_as_a_sim_run_dir_and_both_give_the_overlay() {
    let (file, scenario) = load("scenarios/live-loopback.toml", &["workload.phases.0.num_requests=24"]);
    let tmp = tempfile::tempdir().unwrap();
    let (sim_dir, live_dir) = (tmp.path().join("sim"), tmp.path().join("live"));
    simulate_to_dir(&scenario, &file.base_dir, &sim_dir, false, "test", SimOptions::default()).unwrap();

    let rig = Rig::start(&scenario, LbOptions::default()).await;
    let report = live_run(&rig.scenario, &file.base_dir, run_opts(Target::Lb(rig.lb_url.clone()), &live_dir))
        .await
        .unwrap();
    rig.stop().await;
    assert_eq!(report.load.ok, 24);

    let live = read_run_dir(&live_dir).unwrap();
    assert_eq!(live.meta.source, Source::Live);
    assert_eq!(live.requests.len(), 24);
    assert!(!live.instances.is_empty(), "/metrics scrapes fill instances.csv");
    assert!(
        live.requests.iter().all(|r| r.instance.ends_with("#0") || r.instance.ends_with("#1")),
        "the LB names the instance that served each request"
    );

    let from_sim = chart_names(std::slice::from_ref(&sim_dir), &tmp.path().join("r-sim"));
    let from_live = chart_names(std::slice::from_ref(&live_dir), &tmp.path().join("r-live"));
    assert!(!from_sim.is_empty());
    assert_eq!(from_live, from_sim, "the same charts from a live and a sim run dir");

    let both = chart_names(&[sim_dir, live_dir], &tmp.path().join("r-both"));
    assert!(both.iter().any(|c| c.starts_with("validation_")), "{both:?}");
    let csv = std::fs::read_to_string(tmp.path().join("r-both/validation.csv")).unwrap();
    assert!(csv.lines().count() > 1, "validation.csv has rows: {csv}");
    let md = std::fs::read_to_string(tmp.path().join("r-both/report.md")).unwrap();
    assert!(md.contains("validation_"), "report.md links the overlay");
}
