//! `calibrate` end to end on run dirs whose truth is known exactly: a simulated run relabelled as
//! live (every token at its step's end: client timestamps without jitter), a synthetic server
//! step log with CUDA-graph padding, eager and capture steps, and the inputs it must refuse.

use crate::common::{TRUTH, fake_live, scenario_dir, scenario_dir_with};
use calibration::dataset::TargetFilter;
use calibration::step::Term;
use calibration::{CalibrateOptions, CalibrationError, DataSource, Method, calibrate};
use std::path::Path;

fn options(dirs: Vec<std::path::PathBuf>, tmp: &Path) -> CalibrateOptions {
    let mut o = CalibrateOptions::new(dirs);
    o.out = Some(tmp.join("profile.toml"));
    o.report_dir = Some(tmp.join("fit"));
    o
}

/// Calibrates from a jitter-free simulated run of the calibration scenario with async scheduling
/// on or off, and checks the coefficients, the lag and the lone requests' delay.
fn client_timestamps_give_back_the_coefficients(async_scheduling: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (file, _) = scenario_dir_with(tmp.path(), async_scheduling);
    let run = fake_live(&file, &tmp.path().join("live"), true);
    let cal = calibrate(&options(vec![run], tmp.path())).unwrap();
    if let Ok(keep) = std::env::var("MODELSGUARD_KEEP_TEST_OUTPUT") {
        let _ = std::process::Command::new("cp").arg("-r").arg(tmp.path()).arg(&keep).status();
    }
    for (term, want) in TRUTH {
        let got = cal.fit.model.get(term);
        assert!(((got - want) / want).abs() < 1e-3, "{term:?}: {got:e} vs {want:e}");
    }
    assert!(cal.fit.residual_p99 < 1e-3, "{:?}", cal.fit);
    let Method::Client { lag, counts, .. } = &cal.method else { panic!("{:?}", cal.method) };
    assert_eq!(*lag, 0, "the simulator shows tokens at the end of their step");
    // The replay runs the simulator's own instance: every step after a busy one agrees.
    assert_eq!(counts.inconsistent, 0, "{counts:?}");
    assert!(counts.used * 10 > counts.steps * 9, "most steps usable: {counts:?}");
    // The simulator adds no delay: the lone requests' TTFT is their prefill step.
    assert!(cal.output_delay.requests >= 3 && cal.output_delay.value_s < 1e-6, "{:?}", cal.output_delay);
}

#[test]
fn client_timestamps_without_jitter_give_back_the_simulators_coefficients() {
    client_timestamps_give_back_the_coefficients(true);
}

#[test]
fn client_timestamps_of_a_synchronous_engine_give_back_the_simulators_coefficients() {
    client_timestamps_give_back_the_coefficients(false);
}

/// A step log of instance `llama-3.1-8b#0`: graphs up to 512 padded tokens, eager above.
fn write_step_log(run: &Path) -> (f64, f64) {
    let sizes = [1u64, 2, 4, 8, 16, 32, 64, 128, 256, 512];
    let (fixed, prefill, decode, kv, eager) = (0.0105, 3.0e-5, 1.2e-4, 2.7e-7, 0.004);
    let mut text = String::from(
        "instance,step,start_unix_s,duration_s,num_scheduled_requests,num_prefill_tokens,num_decode_seqs,\
         num_kv_tokens_read,num_padded_tokens,cuda_graph,captured\n",
    );
    let mut t = 1.7e9;
    for step in 0..400u64 {
        let d = 1 + step % 47;
        let p = [0, 0, 0, 37, 300, 1900, 7000][(step % 7) as usize];
        let k = d * (400 + 13 * (step % 11)) + p;
        let tokens = p + d;
        let (padded, graph) = match sizes.iter().find(|&&s| s >= tokens) {
            Some(&s) => (s, 1),
            None => (tokens, 0),
        };
        let captured = u64::from(step % 50 == 3);
        let dur = if captured == 1 {
            0.25
        } else {
            fixed
                + prefill * p as f64
                + decode * (d + padded - tokens) as f64
                + kv * k as f64
                + if graph == 0 { eager } else { 0.0 }
        };
        let r = u64::from(p > 0) + d;
        text.push_str(&format!(
            "llama-3.1-8b#0,{step},{t:.6},{dur:.12},{r},{p},{d},{k},{padded},{graph},{captured}\n"
        ));
        t += dur;
    }
    std::fs::write(run.join("steps.csv"), text).unwrap();
    (decode, eager)
}

#[test]
fn a_server_step_log_is_fitted_with_graph_padding_and_eager_steps_and_capture_steps_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, _) = scenario_dir(tmp.path());
    let run = fake_live(&file, &tmp.path().join("live"), false);
    let (decode, eager) = write_step_log(&run);
    let cal = calibrate(&options(vec![run], tmp.path())).unwrap();
    let m = &cal.fit.model;
    for (term, want) in [
        (Term::Fixed, 0.0105),
        (Term::PrefillToken, 3.0e-5),
        (Term::DecodeSeq, decode),
        (Term::KvToken, 2.7e-7),
        (Term::EagerFixed, eager),
    ] {
        let got = m.get(term);
        assert!(((got - want) / want).abs() < 1e-6, "{term:?}: {got:e} vs {want:e}");
    }
    assert_eq!(m.get(Term::PrefillAttnPair), 0.0, "the log cannot count attention pairs");
    let Method::StepLog { captured, eager_steps, .. } = cal.method else { panic!("{:?}", cal.method) };
    assert_eq!(captured, 8, "steps 3, 53, ..., 353 captured a graph");
    assert!(eager_steps > 0);
    let g = cal.profile.cuda_graphs.as_ref().unwrap();
    assert_eq!(g.capture_sizes.last(), Some(&512));
    assert!((g.eager_fixed_s - eager).abs() < 1e-9);
    let text = std::fs::read_to_string(tmp.path().join("profile.toml")).unwrap();
    assert!(text.contains("[cuda_graphs]") && text.contains("eager_fixed_s"), "{text}");
}

#[test]
fn no_run_dirs_is_an_error_that_says_what_to_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let e = calibrate(&options(vec![], tmp.path())).unwrap_err();
    assert!(matches!(e, CalibrationError::NoRunDirs), "{e}");
    assert!(e.to_string().contains("live run dir"));
}

#[test]
fn a_run_without_client_timestamps_or_step_log_is_refused_naming_its_tokens_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, _) = scenario_dir(tmp.path());
    let run = fake_live(&file, &tmp.path().join("no-tokens"), false);
    let e = calibrate(&options(vec![run.clone()], tmp.path())).unwrap_err().to_string();
    assert!(e.contains(&run.join("tokens.csv").display().to_string()) && e.contains("--tokens"), "{e}");
}

#[test]
fn a_simulated_run_dir_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, _) = scenario_dir(tmp.path());
    let dir = tmp.path().join("sim");
    let s = &file.variants[0];
    sim::runner::simulate_to_dir(s, &file.base_dir, &dir, true, "t", sim::simulation::SimOptions::default())
        .unwrap();
    let e = calibrate(&options(vec![dir.clone()], tmp.path())).unwrap_err().to_string();
    assert!(e.contains(&dir.display().to_string()) && e.contains("simulated"), "{e}");
}

#[test]
fn run_dirs_of_different_models_are_refused_naming_each_unless_one_is_picked() {
    let tmp = tempfile::tempdir().unwrap();
    let loopback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/live-loopback.toml");
    let ovs = vec!["workload.phases.0.num_requests=40".parse().unwrap()];
    let file = sim::scenario::load_scenario(&loopback, &ovs).unwrap();
    let both = fake_live(&file, &tmp.path().join("both"), true);
    let e = calibrate(&options(vec![both.clone()], tmp.path())).unwrap_err();
    assert!(matches!(e, CalibrationError::Mismatch(_)), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&both.display().to_string()) && msg.contains("--model"), "{msg}");
    assert!(msg.contains("llama-3.1-8b") && msg.contains("qwen2.5-7b"), "{msg}");

    // Picking one model works (a run dir of another scenario serving only it would be fine too);
    // a run dir without that model is named.
    let mut o = options(vec![both.clone()], tmp.path());
    o.filter = TargetFilter { model: Some("qwen2.5-7b".into()), ..TargetFilter::default() };
    o.source = DataSource::Client;
    let cal = calibrate(&o).unwrap();
    assert_eq!(cal.target.model, "qwen2.5-7b");
    let (file2, _) = scenario_dir(tmp.path());
    let llama_only = fake_live(&file2, &tmp.path().join("llama"), true);
    let mut o = options(vec![both, llama_only.clone()], tmp.path());
    o.filter = TargetFilter { model: Some("qwen2.5-7b".into()), ..TargetFilter::default() };
    let msg = calibrate(&o).unwrap_err().to_string();
    assert!(
        msg.contains(&llama_only.display().to_string()) && msg.contains("no instance of model qwen2.5-7b"),
        "{msg}"
    );
}
