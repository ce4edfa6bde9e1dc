//! Sweeps end to end on a shrunken seed scenario: the tidy table, replications, determinism,
//! sharding and merging byte for byte, and one clear error per bad input.

use sim::scenario::Override;
use sim::sweep::schema::{self, files};
use sim::sweep::{
    Axis, Shard, SweepError, SweepOptions, SweepPlan, SweepSpec, merge_shards, plan, run_sweep,
};
use std::fs;
use std::path::{Path, PathBuf};

fn seed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/seed-6xh100.toml")
}

/// The seed scenario cut to ~100 requests a run (3 s phases), baseline only, 2 replications, over
/// 2 rates x 2 policies.
fn small_spec() -> SweepSpec {
    SweepSpec {
        scenario: seed_path(),
        axes: vec![
            "workload.phases.1.arrival.rate=4..8:4".parse().unwrap(),
            "router.policy=round_robin,queue_aware".parse().unwrap(),
        ],
        zip: false,
        reps: 2,
        variants: vec!["baseline".into()],
        overrides: vec!["workload.phases.*.duration_s=3".parse::<Override>().unwrap()],
    }
}

fn run(plan: &SweepPlan, out: &Path, shard: Option<&str>, jobs: usize) -> sim::sweep::SweepOutcome {
    let opts = SweepOptions {
        shard: shard.map(|s| s.parse().unwrap()),
        jobs: Some(jobs),
        ..SweepOptions::default()
    };
    run_sweep(plan, out, &opts).unwrap()
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap()
}

#[test]
fn a_sweep_writes_one_row_per_point_variant_model_and_metric_with_intervals() {
    let plan = plan(&small_spec()).unwrap();
    assert_eq!(plan.total_points(), 4);
    let dir = tempfile::tempdir().unwrap();
    let out = run(&plan, dir.path(), None, 2);
    assert_eq!(out.runs, 8);

    let (meta, rows) = schema::read_sweep_dir(dir.path()).unwrap();
    assert_eq!(meta.params, ["workload.phases.1.arrival.rate", "router.policy"]);
    assert_eq!(meta.x_param, "workload.phases.1.arrival.rate");
    assert_eq!(meta.variants, ["baseline"]);
    assert_eq!((meta.reps, meta.total_points, meta.shard), (2, 4, None));
    assert_eq!(meta.slo.ttft_p90_s, Some(1.0));
    assert_eq!(rows, out.rows);

    let csv = read(dir.path(), files::SWEEP_CSV);
    assert!(csv.starts_with(
        "point,variant,model,metric,value,ci_low,ci_high,n,param:workload.phases.1.arrival.rate,param:router.policy\n"
    ));
    for point in 0..4 {
        for model in ["all", "llama-3.1-8b", "qwen2.5-7b", "llama-3.3-70b-awq"] {
            for metric in
                ["ttft_p90", "tpot_p50", "e2e_mean", "request_throughput", "success_rate", "goodput"]
            {
                let r = rows
                    .iter()
                    .find(|r| r.point == point && r.model == model && r.metric == metric)
                    .unwrap_or_else(|| panic!("no row for point {point} {model} {metric}"));
                assert_eq!(r.n, 2);
                let (lo, hi) = (r.ci_low.unwrap(), r.ci_high.unwrap());
                assert!(lo <= r.value && r.value <= hi, "{r:?}");
            }
        }
    }
    let r = rows.iter().find(|r| r.point == 3 && r.metric == "ttft_p90").unwrap();
    assert_eq!(r.params["workload.phases.1.arrival.rate"].as_f64(), Some(8.0));
    assert_eq!(r.params["router.policy"].to_string(), "queue_aware");
    assert_eq!(rows.first().unwrap().model, "all");
}

#[test]
fn replications_use_consecutive_seeds_so_their_interval_has_width() {
    let mut spec = small_spec();
    spec.axes.truncate(1);
    let plan = plan(&spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = SweepOptions { run_dirs: true, jobs: Some(2), ..SweepOptions::default() };
    let out = run_sweep(&plan, dir.path(), &opts).unwrap();
    for rep in 0..2u64 {
        let run = sim::trace::read_run_dir(&dir.path().join(format!("runs/p1-baseline-r{rep}"))).unwrap();
        assert_eq!(run.meta.seed, 42 + rep);
    }
    let r = out.rows.iter().find(|r| r.model == "all" && r.metric == "e2e_mean").unwrap();
    assert!(r.ci_high.unwrap() > r.ci_low.unwrap(), "two seeds gave identical runs: {r:?}");
}

#[test]
fn the_table_does_not_depend_on_the_number_of_threads() {
    let plan = plan(&small_spec()).unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&plan, a.path(), None, 1);
    run(&plan, b.path(), None, 3);
    assert_eq!(read(a.path(), files::SWEEP_CSV), read(b.path(), files::SWEEP_CSV));
}

#[test]
fn merged_shards_give_exactly_the_files_of_the_unsharded_sweep() {
    let plan = plan(&small_spec()).unwrap();
    let whole = tempfile::tempdir().unwrap();
    run(&plan, whole.path(), None, 2);
    let root = tempfile::tempdir().unwrap();
    let shards: Vec<PathBuf> = (1..=3).map(|i| root.path().join(format!("s{i}"))).collect();
    // Given out of order: the merge sorts.
    for (i, dir) in shards.iter().enumerate().rev() {
        let out = run(&plan, dir, Some(&format!("{}/3", i + 1)), 2);
        assert_eq!(out.meta.shard, Some(Shard { index: i as u32 + 1, count: 3 }));
    }
    let merged = root.path().join("merged");
    let meta = merge_shards(&[shards[2].clone(), shards[0].clone(), shards[1].clone()], &merged).unwrap();
    assert_eq!(meta.shard, None);
    assert_eq!(read(&merged, files::SWEEP_CSV), read(whole.path(), files::SWEEP_CSV));
    assert_eq!(read(&merged, files::SWEEP_JSON), read(whole.path(), files::SWEEP_JSON));
}

#[test]
fn merging_refuses_a_missing_or_repeated_shard_and_shards_of_another_sweep() {
    let plan_a = plan(&small_spec()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (s1, s2) = (root.path().join("s1"), root.path().join("s2"));
    run(&plan_a, &s1, Some("1/2"), 2);
    let out = root.path().join("m");

    let e = merge_shards(std::slice::from_ref(&s1), &out).unwrap_err().to_string();
    assert!(e.contains("shard 2/2 is missing") && e.contains("points 1, 3"), "{e}");
    let e = merge_shards(&[s1.clone(), s1.clone()], &out).unwrap_err().to_string();
    assert!(e.contains("both shard 1/2"), "{e}");

    let mut other = small_spec();
    other.reps = 1;
    run(&plan(&other).unwrap(), &s2, Some("2/2"), 2);
    let e = merge_shards(&[s1.clone(), s2.clone()], &out).unwrap_err().to_string();
    assert!(e.contains("shards of different sweeps"), "{e}");
    assert!(!out.join(files::SWEEP_CSV).exists());
}

#[test]
fn merging_refuses_an_older_sweep_schema_and_a_run_dir() {
    let plan = plan(&small_spec()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (s1, s2) = (root.path().join("s1"), root.path().join("s2"));
    run(&plan, &s1, Some("1/2"), 2);
    run(&plan, &s2, Some("2/2"), 2);
    let json = s2.join(files::SWEEP_JSON);
    fs::write(&json, read(&s2, files::SWEEP_JSON).replace("\"schema_version\": 1", "\"schema_version\": 0"))
        .unwrap();
    let err = merge_shards(&[s1.clone(), s2.clone()], &root.path().join("m")).unwrap_err();
    assert!(matches!(err, SweepError::SchemaVersion { found: 0, expected: 1, .. }), "{err}");
    assert!(err.to_string().contains("re-run the sweep"), "{err}");

    let run_dir = root.path().join("run");
    fs::create_dir_all(&run_dir).unwrap();
    fs::write(run_dir.join("run.json"), "{}").unwrap();
    let e = merge_shards(&[s1, run_dir], &root.path().join("m")).unwrap_err().to_string();
    assert!(e.contains("is a run dir"), "{e}");
}

#[test]
fn a_field_that_does_not_exist_is_one_error_before_any_run() {
    let mut spec = small_spec();
    spec.axes.push("router.polcy=a,b".parse().unwrap());
    let e = plan(&spec).unwrap_err();
    assert!(matches!(e, SweepError::Scenario { point: 0, .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("unknown field `polcy`") && msg.contains("seed-6xh100.toml"), "{msg}");
    assert!(msg.contains("(from --vary router.polcy=\"a\")"), "{msg}");
    assert_eq!(msg.matches("unknown field").count(), 1, "{msg}");
}

#[test]
fn a_bad_value_at_one_point_names_that_point() {
    let mut spec = small_spec();
    spec.axes[1] = "router.policy=round_robin,fastest".parse().unwrap();
    let e = plan(&spec).unwrap_err();
    assert!(matches!(e, SweepError::Scenario { point: 1, .. }), "{e}");
    assert!(e.to_string().contains("router.policy=\"fastest\""), "{e}");
}

#[test]
fn bad_sweep_inputs_are_each_one_clear_error() {
    let e = "workload.phases.1.arrival.rate=2..1".parse::<Axis>().unwrap_err().to_string();
    assert!(e.contains("--vary 'workload.phases.1.arrival.rate=2..1'") && e.contains("empty"), "{e}");

    let mut zipped = small_spec();
    zipped.zip = true;
    zipped.axes[0] = "workload.phases.1.arrival.rate=4..12:4".parse().unwrap();
    let e = plan(&zipped).unwrap_err().to_string();
    assert!(e.contains("--zip") && e.contains("has 3") && e.contains("has 2"), "{e}");

    let mut no_variant = small_spec();
    no_variant.variants = vec!["fastest".into()];
    let e = plan(&no_variant).unwrap_err().to_string();
    assert!(e.contains("no variant \"fastest\"") && e.contains("\"baseline\", \"managed\""), "{e}");

    let mut no_reps = small_spec();
    no_reps.reps = 0;
    assert!(plan(&no_reps).unwrap_err().to_string().contains("--reps"));

    for bad in ["0/2", "3/2"] {
        let e = bad.parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains(&format!("--shard '{bad}'")), "{e}");
    }
}

#[test]
fn a_stopped_sweep_skips_the_runs_not_started_and_marks_its_dir_partial() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let plan = plan(&small_spec()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Stopped before any run starts (a signal during planning): nothing runs, the dir says why.
    let stop = Arc::new(AtomicBool::new(true));
    let opts = SweepOptions { jobs: Some(2), stop: Some(stop), ..SweepOptions::default() };
    let out = run_sweep(&plan, dir.path(), &opts).unwrap();
    assert_eq!((out.runs, out.requests), (0, 0));
    assert!(out.rows.is_empty(), "no group finished every replication");
    let why = out.partial.expect("a stopped sweep is partial");
    assert!(why.contains("0 of 8 runs"), "{why}");
    assert_eq!(read(dir.path(), sim::sweep::PARTIAL_FILE).trim(), why);
    let (_, rows) = schema::read_sweep_dir(dir.path()).unwrap();
    assert!(rows.is_empty(), "sweep.csv is still a valid, empty table");
    // Rerun into the same dir without a stop: complete, and the marker is gone.
    let whole = run(&plan, dir.path(), None, 2);
    assert_eq!((whole.runs, whole.partial), (8, None));
    assert!(!dir.path().join(sim::sweep::PARTIAL_FILE).exists());
}
