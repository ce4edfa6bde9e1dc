//! Fixtures: a one-instance scenario whose step times follow known coefficients (a v1 profile
//! file), the emulator serving it on a free port, and a live run of it into a run dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use calibration::step::Term;
use live::emulator::{EmulatorHandle, EmulatorOptions};
use live::loadgen::stop_pair;
use live::run::{LiveRunOptions, ProgressMode, Target, live_run};
use sim::InstanceId;
use sim::scenario::{Scenario, ScenarioFile, load_scenario};
use std::path::Path;

/// The coefficients the emulated engine runs with.
pub const TRUTH: [(Term, f64); 4] =
    [(Term::Fixed, 0.030), (Term::PrefillToken, 2.0e-5), (Term::DecodeSeq, 2.0e-3), (Term::KvToken, 2.0e-6)];

/// A scenario file and its profile in `dir`; a closed-loop ladder (1, 3, 10 streams) of prompts
/// from 32 to 3000 tokens and 8 to 24 output tokens: a few seconds of steps of 15-60 ms. The
/// engine is vllm-v1 with its default async scheduling.
pub fn scenario_dir(dir: &Path) -> (ScenarioFile, Scenario) {
    scenario_dir_with(dir, true)
}

/// [`scenario_dir`] with async scheduling on or off.
pub fn scenario_dir_with(dir: &Path, async_scheduling: bool) -> (ScenarioFile, Scenario) {
    let c = |t: Term| TRUTH.iter().find(|x| x.0 == t).map_or(0.0, |x| x.1);
    let profile = format!(
        "model = \"llama-3.1-8b\"\ngpu = \"H200\"\nengine = \"vllm-v1\"\n[coefficients]\nfixed_s = {}\n\
         per_prefill_token_s = {}\nper_decode_seq_s = {}\nper_kv_token_s = {}\n",
        c(Term::Fixed),
        c(Term::PrefillToken),
        c(Term::DecodeSeq),
        c(Term::KvToken)
    );
    std::fs::write(dir.join("truth.toml"), profile).unwrap();
    let phase = |name: &str, n: u32, conc: u32| {
        format!(
            "[[workload.phases]]\nname = \"{name}\"\nnum_requests = {n}\narrival = {{ process = \"closed_loop\", \
             concurrency = {conc} }}\ninput_tokens = {{ dist = \"uniform\", min = 32, max = 3000 }}\n\
             output_tokens = {{ dist = \"uniform\", min = 8, max = 24 }}\n"
        )
    };
    let text = format!(
        "name = \"calib-emu\"\nseed = 5\n[cluster]\ngpu = \"H200\"\n[defaults.engine]\npreset = \"vllm-v1\"\n\
         async_scheduling = {async_scheduling}\nenable_prefix_caching = false\nmax_num_batched_tokens = 4096\nmax_num_seqs = 64\n\
         [[instances]]\nmodel = \"llama-3.1-8b\"\ngpu = 0\nport = 18001\nprofile = \"truth.toml\"\n\
         [router]\npolicy = \"round_robin\"\n[workload]\nprompt_token_id_range = [1000, 30000]\n\
         [workload.prefix]\ntokens = 0\n{}{}{}[output]\ndrain_timeout_s = 60\n",
        phase("c1", 4, 1),
        phase("c3", 12, 3),
        phase("c10", 40, 10)
    );
    let path = dir.join("calib-emu.toml");
    std::fs::write(&path, text).unwrap();
    let file = load_scenario(&path, &[]).unwrap();
    let s = file.variants[0].clone();
    (file, s)
}

/// The emulator, on a runtime of its own (so the client's work never delays a step's end), and
/// the scenario with the ports it listens on.
pub struct Emulated {
    rt: tokio::runtime::Runtime,
    handle: EmulatorHandle,
    pub scenario: Scenario,
}

impl Emulated {
    /// Serves every instance of `scenario` on free loopback ports.
    pub fn start(scenario: &Scenario) -> Emulated {
        let mut s = scenario.clone();
        for i in &mut s.instances {
            i.port = 0;
        }
        std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            let handle = rt.block_on(EmulatorHandle::start(&s, None, EmulatorOptions::default())).unwrap();
            for (k, i) in s.instances.iter_mut().enumerate() {
                i.port = handle.addr(InstanceId(k as u32)).unwrap().port();
            }
            Emulated { rt, handle, scenario: s }
        })
        .join()
        .unwrap()
    }

    /// Stops the instances and the runtime.
    pub fn stop(self) {
        std::thread::spawn(move || {
            let Emulated { rt, handle, .. } = self;
            rt.block_on(handle.shutdown());
        })
        .join()
        .unwrap();
    }
}

/// Runs `scenario` live against its instances on loopback with per-chunk timestamps into `dir`.
pub async fn write_live_run(scenario: &Scenario, base_dir: &Path, dir: &Path) {
    let mut o = LiveRunOptions::new(Target::Direct("127.0.0.1".into()), dir);
    o.progress = ProgressMode::Never;
    o.tokens_csv = Some(true);
    o.scrape_interval = None;
    let (handle, signal) = stop_pair();
    std::mem::forget(handle);
    o.stop = Some(signal);
    let report = live_run(scenario, base_dir, o).await.unwrap();
    assert_eq!(report.load.ok, report.load.sent, "every request completes");
}

/// A simulated run of `file`'s first variant written to `dir` and relabelled as a live run: its
/// tokens.csv (when `tokens`) has every token at the exact end of its step, like a client with no
/// delivery jitter.
pub fn fake_live(file: &ScenarioFile, dir: &Path, tokens: bool) -> std::path::PathBuf {
    sim::runner::simulate_to_dir(
        &file.variants[0],
        &file.base_dir,
        dir,
        tokens,
        "test",
        sim::simulation::SimOptions::default(),
    )
    .unwrap();
    for f in ["run.json", "summary.json"] {
        let p = dir.join(f);
        let text =
            std::fs::read_to_string(&p).unwrap().replace("\"source\": \"sim\"", "\"source\": \"live\"");
        std::fs::write(&p, text).unwrap();
    }
    dir.to_path_buf()
}
