//! Small run dirs and sweep dirs built in a tempdir, written with sim's own writer and summary
//! builder so the reader sees exactly what the simulator would write.

use reports::sweep_schema::{ParamValue, SweepMeta, SweepRow, SweepSlo, write_sweep_dir};
use sim::ids::{GpuId, ModelId};
use sim::metrics::SummaryBuilder;
use sim::observe::Observer;
use sim::scenario::*;
use sim::trace::{
    InstanceRow, RequestRow, RequestStatus, RunDirWriter, RunMeta, SCHEMA_VERSION, Source, TokenRow,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MODELS: [&str; 3] = ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b"];

/// A deterministic stream of numbers in [0, 1).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Exponential with mean `m`.
    pub fn exp(&mut self, m: f64) -> f64 {
        -m * (1.0 - self.next()).ln()
    }
}

fn model(name: &str) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        served_name: format!("org/{name}"),
        model_path: format!("org/{name}"),
        num_layers: 32,
        hidden_size: 4096,
        num_attention_heads: 32,
        num_kv_heads: 8,
        head_dim: 128,
        intermediate_size: 14336,
        vocab_size: 128256,
        tie_word_embeddings: false,
        weight_format: WeightFormat::Bf16,
        max_position_embeddings: 8192,
        kv_cache_dtype_bytes: 2,
    }
}

fn instance(name: String, model: u32, gpu: u32, kv: KvCacheMode) -> InstanceSpec {
    InstanceSpec {
        name,
        model: ModelId(model),
        gpu: GpuId(gpu),
        port: 8000 + gpu as u16,
        engine: EngineConfig {
            preset: EnginePreset::Vllm064,
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            block_size: 16,
            gpu_memory_utilization: 0.9,
            enable_prefix_caching: kv == KvCacheMode::Static,
            enable_chunked_prefill: true,
            max_model_len: 8192,
            kv_cache: kv,
            activation_reserve_bytes: 2 << 30,
            num_gpu_blocks_override: None,
            elastic: Default::default(),
            async_scheduling: false,
            scheduler_reserve_full_isl: false,
            quantization: None,
        },
        perf: PerfSpec::Roofline {
            mfu: 0.5,
            bandwidth_efficiency: 0.7,
            step_overhead_s: 0.004,
            overheads: Default::default(),
        },
        launch_command: None,
    }
}

pub fn scenario(name: &str, variant: &str, elastic: bool) -> Scenario {
    let kv = if elastic { KvCacheMode::Elastic } else { KvCacheMode::Static };
    let instances = (0..6)
        .map(|i| instance(format!("{}#{}", MODELS[i / 2], i % 2), (i / 2) as u32, i as u32, kv))
        .collect();
    Scenario {
        name: name.into(),
        variant: variant.into(),
        description: "test fixture".into(),
        seed: 7,
        gpus: vec![
            GpuSpec {
                name: "H100-80GB-SXM".into(),
                memory_bytes: 80 << 30,
                bf16_flops: 989e12,
                hbm_bytes_per_s: 3.35e12
            };
            6
        ],
        models: MODELS.iter().map(|m| model(m)).collect(),
        instances,
        router: RouterSpec {
            policy: RouterPolicy::RoundRobin,
            poll_interval_s: 1.0,
            poll_offset_s: 0.0,
            score: LoadScore::RunningPlusWaiting,
            prefix: Default::default(),
        },
        workload: WorkloadSpec {
            phases: vec![PhaseSpec {
                name: "steady".into(),
                duration_s: Some(60.0),
                num_requests: None,
                arrival: ArrivalSpec::Poisson { rate: 8.0 },
                mix: vec![(ModelId(0), 0.4), (ModelId(1), 0.3), (ModelId(2), 0.3)],
                input_tokens: LengthDist::Fixed { value: 512 },
                output_tokens: LengthDist::Fixed { value: 128 },
                per_model_lengths: vec![],
            }],
            prefix: PrefixSpec { tokens: 0, groups: 1, fraction: 0.0 },
            prompt_token_id_range: (1000, 30000),
        },
        slo: SloSpec {
            ttft_s: Some(2.0),
            tpot_s: Some(0.1),
            e2e_s: None,
            ttft_p90_s: Some(1.0),
            tpot_p90_s: Some(0.05),
        },
        output: OutputSpec {
            sample_interval_s: 0.5,
            tokens_csv: false,
            drain_timeout_s: 30.0,
            max_samples: sim::scenario::DEFAULT_MAX_SAMPLES,
        },
        contention: Default::default(),
    }
}

/// How a fixture run differs from the plain one.
#[derive(Clone, Copy)]
pub struct Shape {
    pub source: Source,
    pub calibrated: bool,
    pub elastic: bool,
    /// Multiplies every latency.
    pub slowdown: f64,
    pub seed: u64,
    /// Every request fails (no latencies at all).
    pub fail_all: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            source: Source::Sim,
            calibrated: true,
            elastic: false,
            slowdown: 1.0,
            seed: 1,
            fail_all: false,
        }
    }
}

/// Writes a run dir of 400 requests over 60 s and instance samples every 0.5 s.
pub fn write_run(dir: &Path, scenario_name: &str, variant: &str, shape: Shape) -> PathBuf {
    let s = scenario(scenario_name, variant, shape.elastic);
    let meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        source: shape.source,
        scenario_name: scenario_name.into(),
        variant: variant.into(),
        seed: 7,
        version: "test".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        host: "simulated".into(),
        calibrated: shape.calibrated,
        scenario: s.clone(),
    };
    let mut w = RunDirWriter::create(dir, &meta, true).unwrap();
    let mut sb = SummaryBuilder::for_scenario(shape.source, &s, shape.calibrated);
    let mut rng = Lcg::new(shape.seed);
    for id in 0..400u64 {
        let m = (id % 3) as usize;
        let send = id as f64 * 0.15;
        let k = shape.slowdown * (1.0 + m as f64 * 0.4);
        let ttft = k * (0.08 + rng.exp(0.12));
        let tpot = k * (0.018 + rng.exp(0.006));
        let out = 128u32;
        let e2e = ttft + tpot * f64::from(out - 1);
        let failed = shape.fail_all || id % 97 == 5;
        let row = RequestRow {
            id,
            model: MODELS[m].into(),
            instance: format!("{}#{}", MODELS[m], (id / 3) % 2),
            phase: 0,
            scheduled_s: send,
            send_s: send,
            first_token_s: (!failed).then_some(send + ttft),
            end_s: Some(send + if failed { 0.5 } else { e2e }),
            prompt_tokens: 512,
            output_tokens: if failed { 0 } else { out },
            max_tokens: out,
            cached_tokens: Some(0),
            preemptions: Some(u32::from(id % 50 == 3)),
            status: if failed { RequestStatus::Error } else { RequestStatus::Ok },
            error: if failed { "connection reset".into() } else { String::new() },
            ttft_s: (!failed).then_some(ttft),
            e2e_s: (!failed).then_some(e2e),
            tpot_s: (!failed).then_some(tpot),
            itl_mean_s: (!failed).then_some(tpot),
            itl_max_s: (!failed).then_some(tpot * 3.0),
        };
        w.on_request(&row).unwrap();
        sb.on_request(&row).unwrap();
        if !failed {
            // One token every TPOT after the first: tokens.csv and the ITL of the summary.
            for j in 0..out {
                let t = TokenRow { id, index: j, time_s: send + ttft + tpot * f64::from(j), tokens: 1 };
                w.on_token(&t).unwrap();
            }
            sb.on_itl(MODELS[m], tpot, u64::from(out - 1)).unwrap();
        }
    }
    for step in 0..=140u32 {
        let t = f64::from(step) * 0.5;
        for (i, inst) in s.instances.iter().enumerate() {
            let wave = (t / 9.0 + i as f64).sin().abs();
            let row = InstanceRow {
                time_s: t,
                instance: inst.name.clone(),
                model: MODELS[i / 2].into(),
                gpu: i as u32,
                num_requests_running: (20.0 * wave * shape.slowdown) as u32 + 2,
                num_requests_waiting: if wave > 0.8 { (30.0 * (wave - 0.8) * 5.0) as u32 } else { 0 },
                kv_cache_usage: (0.3 + 0.65 * wave).min(1.0),
                num_preemptions_total: u64::from(step / 40),
                mapped_pages: shape.elastic.then_some((200.0 + 900.0 * wave) as u32),
                gpu_pool_free_bytes: shape.elastic.then_some((10u64 << 30) - (wave * 5e9) as u64),
            };
            w.on_instance_sample(&row).unwrap();
            sb.on_instance_sample(&row).unwrap();
        }
    }
    w.finish(&sb.finish()).unwrap()
}

/// Writes a sweep dir: two variants x two router policies x 6 arrival rates, latencies and
/// throughput per model with intervals.
pub fn write_sweep(dir: &Path) -> PathBuf {
    let rate = "workload.phases.0.arrival.rate".to_string();
    let policy = "router.policy".to_string();
    let meta = SweepMeta {
        schema_version: reports::sweep_schema::SWEEP_SCHEMA_VERSION,
        scenario: "three-models".into(),
        params: vec![rate.clone(), policy.clone()],
        x_param: rate.clone(),
        slo: SweepSlo { ttft_p90_s: Some(1.5), ..SweepSlo::default() },
        calibrated: false,
        ..SweepMeta::default()
    };
    let mut rows = Vec::new();
    let mut point = 0;
    for (vi, variant) in ["baseline", "managed"].iter().enumerate() {
        for (pi, pol) in ["round_robin", "queue_aware"].iter().enumerate() {
            for r in 1..=6 {
                let x = f64::from(r) * 2.0;
                let params = BTreeMap::from([
                    (rate.clone(), ParamValue::Num(x)),
                    (policy.clone(), ParamValue::Text(pol.to_string())),
                ]);
                for (mi, m) in MODELS.iter().enumerate() {
                    let slow = 1.0 + 0.3 * mi as f64 + 0.15 * vi as f64 - 0.1 * pi as f64;
                    let ttft = slow * 0.2 * (1.0 + (x / 7.0).powi(4));
                    let tput = x / 2.0 * (1.0 - 0.02 * x * slow).max(0.3);
                    for (metric, v) in [
                        ("ttft_p90", ttft),
                        ("tpot_p50", 0.02 * slow * (1.0 + x / 20.0)),
                        ("request_throughput", tput),
                    ] {
                        rows.push(SweepRow {
                            point,
                            variant: variant.to_string(),
                            model: m.to_string(),
                            metric: metric.into(),
                            value: v,
                            ci_low: Some(v * 0.9),
                            ci_high: Some(v * 1.1),
                            n: 3,
                            params: params.clone(),
                        });
                    }
                }
                point += 1;
            }
        }
    }
    write_sweep_dir(dir, &meta, &rows).unwrap();
    dir.to_path_buf()
}
