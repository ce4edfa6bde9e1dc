//! The step model end to end: output delay, async vs sync step periods, async scheduling's
//! arrival rule, closed-loop re-issue delays, profile format v2 (loading and errors).

use crate::simulation::Collect;
use sim::engine::{Request, StepEvents};
use sim::ids::{InstanceId, ModelId, RequestId};
use sim::instance::Instance;
use sim::scenario::{
    CpuCost, CudaGraphSpec, EnginePreset, Override, PerfSpec, Scenario, StepCoefficients, StepOverheads,
    parse_scenario,
};
use sim::simulation::{SimOptions, simulate};
use sim::time::{SimDuration, SimTime};
use sim::trace::RequestStatus;
use sim::workload::RequestSpec;
use std::path::Path;

/// One 8B instance on an H100 under vLLM V1 (async scheduling on by default), one request.
const ONE_INSTANCE: &str = r#"
name = "step-model"
seed = 3
[cluster]
gpu = "H100-80GB-SXM"
[defaults.engine]
preset = "vllm-v1"
max_model_len = 8192
enable_prefix_caching = false
[[instances]]
model = "llama-3.1-8b"
gpu = 0
[[workload.phases]]
num_requests = 1
arrival = { process = "constant", rate = 1.0 }
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 10 }
"#;

fn scenario(sets: &[&str]) -> Scenario {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    parse_scenario(ONE_INSTANCE, Path::new("step-model.toml"), &overrides).unwrap().variants.remove(0)
}

/// GPU: 5 ms + 0.1 ms per prefill token + 1 ms per decoding sequence; `overheads` on top.
fn with_profile(mut s: Scenario, overheads: StepOverheads) -> Scenario {
    for i in &mut s.instances {
        i.perf = PerfSpec::Profile {
            path: "test".into(),
            coefficients: StepCoefficients {
                fixed_s: 0.005,
                per_prefill_token_s: 1e-4,
                per_decode_seq_s: 1e-3,
                per_kv_token_s: 0.0,
                per_prefill_attn_pair_s: 0.0,
            },
            overheads: overheads.clone(),
            fit: None,
        };
    }
    s
}

fn run(s: &Scenario) -> Collect {
    let mut c = Collect::default();
    simulate(s, Path::new("."), &mut c, SimOptions::default()).unwrap();
    c.requests.sort_by_key(|r| r.id);
    c
}

#[track_caller]
fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn the_output_delay_shifts_ttft_and_e2e_by_exactly_the_delay_and_leaves_tpot() {
    let plain = run(&with_profile(scenario(&[]), StepOverheads::default()));
    let delayed =
        run(&with_profile(scenario(&[]), StepOverheads { output_delay_s: 0.05, ..Default::default() }));
    let (a, b) = (&plain.requests[0], &delayed.requests[0]);
    close(a.ttft_s.unwrap(), 0.015);
    close(b.ttft_s.unwrap(), a.ttft_s.unwrap() + 0.05);
    close(b.e2e_s.unwrap(), a.e2e_s.unwrap() + 0.05);
    close(b.end_s.unwrap(), a.end_s.unwrap() + 0.05);
    close(b.tpot_s.unwrap(), a.tpot_s.unwrap());
    close(b.itl_max_s.unwrap(), a.itl_max_s.unwrap());
}

#[test]
fn async_scheduling_overlaps_cpu_time_and_sync_pays_it_after_the_gpu() {
    let cpu = StepOverheads { cpu: CpuCost { fixed_s: 0.004, per_request_s: 0.0 }, ..Default::default() };
    let asynch = run(&with_profile(scenario(&[]), cpu.clone())).requests.remove(0);
    let sync =
        run(&with_profile(scenario(&["instances.*.engine.async_scheduling=false"]), cpu)).requests.remove(0);
    // Prefill: GPU 15 ms, CPU 4 ms; decode: GPU 6 ms, CPU 4 ms.
    close(asynch.ttft_s.unwrap(), 0.015);
    close(asynch.tpot_s.unwrap(), 0.006);
    close(sync.ttft_s.unwrap(), 0.019);
    close(sync.tpot_s.unwrap(), 0.010);
}

#[test]
fn async_scheduling_is_the_v1_default_and_a_knob() {
    assert!(scenario(&[]).instances[0].engine.async_scheduling);
    assert!(!scenario(&["instances.*.engine.async_scheduling=false"]).instances[0].engine.async_scheduling);
    assert!(!scenario(&["defaults.engine.preset=vllm-0.6.4"]).instances[0].engine.async_scheduling);
    let cb = scenario(&["defaults.engine.preset=transformers-cb"]);
    assert!(cb.instances[0].engine.async_scheduling);
    assert_eq!(cb.instances[0].engine.preset, EnginePreset::TransformersCb);
}

fn request(id: u64, arrival: SimTime) -> Request {
    let spec = RequestSpec {
        id: RequestId(id),
        phase: 0,
        arrival,
        model: ModelId(0),
        num_prompt_tokens: 100,
        max_tokens: 10,
        content: Default::default(),
    };
    Request::new(&spec, arrival)
}

/// Durations of steps 1..=3 when request 0 arrives at 0 and request 1 during step 1.
fn three_steps(sets: &[&str]) -> [SimDuration; 3] {
    three_steps_with(sets, StepOverheads::default())
}

/// [`three_steps`] with the profile's `overheads` (CPU, CUDA graphs, delay).
fn three_steps_with(sets: &[&str], overheads: StepOverheads) -> [SimDuration; 3] {
    let s = with_profile(scenario(sets), overheads);
    let mut inst = Instance::new(&s, InstanceId(0));
    let mut ev = StepEvents::default();
    inst.add_request(request(0, SimTime::ZERO)).unwrap();
    let d1 = inst.begin_step(SimTime::ZERO).unwrap();
    let mid = SimTime::ZERO + SimDuration(d1.0 / 2);
    inst.add_request(request(1, mid)).unwrap();
    assert_eq!(inst.num_waiting(), 1, "a held-back arrival counts as waiting");
    let t1 = SimTime::ZERO + d1;
    inst.end_step(t1, &mut ev);
    let d2 = inst.begin_step(t1).unwrap();
    let t2 = t1 + d2;
    inst.end_step(t2, &mut ev);
    let d3 = inst.begin_step(t2).unwrap();
    [d1, d2, d3]
}

#[test]
fn with_async_scheduling_a_request_arriving_during_step_n_joins_step_n_plus_2() {
    // vllm 0.33.0 v1/engine/core.py step_with_batch_queue: step n+1 is scheduled while step n runs.
    let ms = |x: u64| SimDuration(x * 1_000_000);
    // Step 2 is request 0's decode alone (6 ms); request 1's 100-token prefill joins step 3.
    assert_eq!(three_steps(&[]), [ms(15), ms(6), ms(16)]);
    // Without async scheduling it joins step 2.
    let sync = three_steps(&["instances.*.engine.async_scheduling=false"]);
    assert_eq!(sync[..2], [ms(15), ms(16)]);
}

#[test]
fn the_reference_engine_overlaps_output_but_an_arrival_joins_the_next_step() {
    // live/reference-engine/engine.py `_generation_loop_body` (transformers 5.17): the batch is
    // prepared at the top of each iteration, once the previous (eager, CPU-bound) launch returned.
    let ms = |x: u64| SimDuration(x * 1_000_000);
    let cb = three_steps(&["defaults.engine.preset=transformers-cb"]);
    assert_eq!(cb[1], ms(16), "request 1's prefill joins step 2: {cb:?}");
    let s = with_profile(scenario(&["defaults.engine.preset=transformers-cb"]), StepOverheads::default());
    assert!(s.instances[0].engine.async_scheduling, "its async batching stays on (step period, late frees)");
}

#[test]
fn the_reference_engine_replaying_cuda_graphs_chooses_the_next_batch_while_a_step_runs() {
    // A graph replay is one launch that returns at once, so the loop prepares batch n+1 while
    // step n runs on the GPU: an arrival during step n joins step n+2, as in vLLM V1. Graphs of
    // 1-8 tokens only, so the 100-token prefill steps run eagerly (no padding) and the durations
    // are those of the eager profile.
    let ms = |x: u64| SimDuration(x * 1_000_000);
    let graphs = StepOverheads {
        cuda_graphs: CudaGraphSpec { capture_sizes: vec![1, 2, 4, 8], ..Default::default() },
        ..Default::default()
    };
    let cb = three_steps_with(&["defaults.engine.preset=transformers-cb"], graphs);
    assert_eq!(cb, [ms(15), ms(6), ms(16)], "request 1's prefill joins step 3");
}

#[test]
fn an_idle_engine_with_async_scheduling_schedules_an_arrival_at_once() {
    let s = with_profile(scenario(&[]), StepOverheads::default());
    let mut inst = Instance::new(&s, InstanceId(0));
    let t = SimTime::from_secs_f64(3.0);
    inst.add_request(request(0, t)).unwrap();
    assert_eq!(inst.begin_step(t), Some(SimDuration(15_000_000)));
}

// A lone request at an idle async engine: vLLM V1's batch queue (vllm 0.33.0 v1/engine/core.py
// `EngineCore.step_with_batch_queue`) schedules at once when nothing is in flight, so there is no
// step n for it to wait behind: TTFT is one prefill step plus the output delay, not two steps.
#[test]
fn a_lone_request_at_an_idle_async_engine_waits_one_prefill_step_not_two() {
    for sets in [&[][..], &["instances.*.engine.async_scheduling=false"][..]] {
        let s = with_profile(
            scenario(&[&["workload.phases.0.num_requests=3"], sets].concat()),
            StepOverheads { output_delay_s: 0.01, ..Default::default() },
        );
        let c = run(&s);
        assert_eq!(c.requests.len(), 3);
        for r in &c.requests {
            // 1 s apart, each done in ~0.1 s: every one reaches an idle engine (the second and
            // third after it has run and finished another request).
            assert_eq!(r.status, RequestStatus::Ok);
            close(r.ttft_s.unwrap(), 0.015 + 0.01);
            // Then 9 decode steps of 6 ms.
            close(r.e2e_s.unwrap(), 0.015 + 9.0 * 0.006 + 0.01);
        }
    }
}

#[test]
fn an_arrival_at_an_idle_async_engine_starts_a_prefill_step_at_once_after_earlier_work() {
    let s = with_profile(scenario(&[]), StepOverheads::default());
    let ms = |x: u64| SimDuration(x * 1_000_000);
    // Request 0 runs to the end; then request 1 arrives at the instant the engine idled (the last
    // step's end), and request 2 later; each gets its 15 ms prefill step alone, at once.
    let mut inst = Instance::new(&s, InstanceId(0));
    let mut ev = StepEvents::default();
    let mut now = SimTime::ZERO;
    for (id, gap) in [(0, ms(0)), (1, ms(0)), (2, ms(500))] {
        now += gap;
        inst.add_request(request(id, now)).unwrap();
        let mut steps = Vec::new();
        while let Some(d) = inst.begin_step(now) {
            steps.push(d);
            now += d;
            inst.end_step(now, &mut ev);
        }
        assert_eq!(steps.len(), 10, "request {id}: {steps:?}");
        assert_eq!(steps[0], ms(15), "request {id}: its prefill step comes first");
        assert!(steps[1..].iter().all(|&d| d == ms(6)), "request {id}: {steps:?}");
        assert!(!inst.has_unfinished_requests());
    }
}

#[test]
fn a_closed_loop_client_sends_again_its_reissue_delay_after_it_saw_the_end() {
    let s = with_profile(
        scenario(&[
            "workload.phases.0.num_requests=4",
            "workload.phases.0.arrival={process=\"closed_loop\", concurrency=1, reissue_delay_s=0.25}",
        ]),
        StepOverheads { output_delay_s: 0.01, ..Default::default() },
    );
    let c = run(&s);
    assert_eq!(c.requests.len(), 4);
    assert_eq!(c.requests[0].scheduled_s, 0.0);
    for w in c.requests.windows(2) {
        assert_eq!(w[1].status, RequestStatus::Ok);
        close(w[1].scheduled_s, w[0].end_s.unwrap() + 0.25);
        // Each runs alone: one prefill step, then the output delay.
        close(w[1].ttft_s.unwrap(), 0.015 + 0.01);
    }
}

const PROFILE_V2: &str = r#"
model = "llama-3.1-8b"
gpu = "H100-80GB-SXM"
engine = "vllm-v1"
source = "test"
[coefficients]
fixed_s = 0.004
per_prefill_token_s = 2e-5
per_decode_seq_s = 1e-4
per_kv_token_s = 1e-8
[cpu]
fixed_s = 0.001
per_request_s = 2e-6
[pipeline]
async_scheduling = false
output_delay_s = 0.012
[cuda_graphs]
capture_sizes = [1, 2, 4, 8]
eager_fixed_s = 0.0005
[fit]
num_steps = 4812
r2 = 0.97
residual_p50 = 0.02
residual_p90 = 0.06
residual_p99 = 0.15
data = ["runs/calib-1"]
"#;

fn load_with_profile(text: &str, sets: &[&str]) -> Result<Scenario, sim::scenario::ScenarioError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), text).unwrap();
    let mut overrides: Vec<Override> = vec!["instances.0.profile=p.toml".parse().unwrap()];
    overrides.extend(sets.iter().map(|s| s.parse::<Override>().unwrap()));
    parse_scenario(ONE_INSTANCE, &dir.path().join("s.toml"), &overrides).map(|mut f| f.variants.remove(0))
}

#[test]
fn a_v2_profile_loads_every_section_and_its_pipeline_sets_the_engine_unless_the_scenario_does() {
    let s = load_with_profile(PROFILE_V2, &[]).unwrap();
    let PerfSpec::Profile { overheads, fit, .. } = &s.instances[0].perf else {
        panic!("{:?}", s.instances[0].perf)
    };
    assert_eq!(overheads.cpu, CpuCost { fixed_s: 0.001, per_request_s: 2e-6 });
    assert_eq!(overheads.output_delay_s, 0.012);
    assert_eq!(overheads.cuda_graphs.capture_sizes, vec![1, 2, 4, 8]);
    assert_eq!(overheads.cuda_graphs.eager_fixed_s, 0.0005);
    assert!(!overheads.cuda_graphs.decode_only, "V1's graph rule");
    let fit = fit.as_ref().unwrap();
    assert_eq!((fit.num_steps, fit.r2, fit.data.as_slice()), (4812, 0.97, &["runs/calib-1".to_string()][..]));
    assert!(!s.instances[0].engine.async_scheduling, "measured without async scheduling");
    let s = load_with_profile(PROFILE_V2, &["instances.0.engine.async_scheduling=true"]).unwrap();
    assert!(s.instances[0].engine.async_scheduling, "the scenario's knob wins");
}

#[test]
fn a_v1_profile_with_coefficients_only_still_loads_with_no_cpu_graphs_or_delay() {
    let v1: String = PROFILE_V2.split("[cpu]").next().unwrap().to_string();
    let s = load_with_profile(&v1, &[]).unwrap();
    let PerfSpec::Profile { coefficients, overheads, fit, .. } = &s.instances[0].perf else { panic!() };
    assert_eq!(coefficients.fixed_s, 0.004);
    assert_eq!(overheads, &StepOverheads::default());
    assert_eq!(fit, &None);
    assert!(s.instances[0].engine.async_scheduling, "the preset's default");
}

#[test]
fn bad_v2_fields_are_reported_against_the_profile_file_and_field() {
    for (from, to, field) in [
        ("per_request_s = 2e-6", "per_request_s = -2e-6", "cpu.per_request_s"),
        ("[cpu]\nfixed_s = 0.001", "[cpu]\nfixed_s = inf", "cpu.fixed_s"),
        ("output_delay_s = 0.012", "output_delay_s = -0.1", "pipeline.output_delay_s"),
        ("output_delay_s = 0.012", "output_delay_s = 12.0e3", "pipeline.output_delay_s"),
        ("async_scheduling = false", "async_scheduling = 1", "pipeline.async_scheduling"),
        ("capture_sizes = [1, 2, 4, 8]", "capture_sizes = [1, 4, 2, 8]", "cuda_graphs.capture_sizes[2]"),
        ("capture_sizes = [1, 2, 4, 8]", "capture_sizes = [0, 4]", "cuda_graphs.capture_sizes[0]"),
        ("capture_sizes = [1, 2, 4, 8]", "capture_sizes = [1, -4]", "cuda_graphs.capture_sizes[1]"),
        ("capture_sizes = [1, 2, 4, 8]", "capture_sizes = [1, 100000]", "cuda_graphs.capture_sizes[1]"),
        ("eager_fixed_s = 0.0005", "eager_fixed_s = -0.0005", "cuda_graphs.eager_fixed_s"),
        ("eager_fixed_s = 0.0005", "eager_s = 0.0005", "cuda_graphs"),
        ("r2 = 0.97", "r2 = nan", "fit.r2"),
        ("residual_p90 = 0.06", "residual_p90 = -0.06", "fit.residual_p90"),
        ("[pipeline]", "[pipelines]", "pipelines"),
    ] {
        let text = PROFILE_V2.replace(from, to);
        assert_ne!(text, PROFILE_V2, "{from}");
        let e = load_with_profile(&text, &[]).unwrap_err();
        assert!(e.file.ends_with("p.toml"), "{to}: {e}");
        assert!(e.field.starts_with(field), "{to}: field {:?}, want {field}: {e}", e.field);
    }
}
