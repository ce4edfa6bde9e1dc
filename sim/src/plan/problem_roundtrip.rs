//! The typed layouts of `Problem::scenario_for` against the TOML round-trip `plan` used before
//! (each layout's `cluster` and `instances` written as TOML overrides and the whole file loaded
//! again), kept here as the reference: same scenario or the same refusal, layout by layout.

use super::*;
use crate::plan::layout::{Limits, enumerate_level};

/// The former `plan` path, as it was: TOML instance tables and one full load per layout.
struct RoundTrip {
    text: String,
    path: PathBuf,
    variant: String,
    pre: Vec<Override>,
    post: Vec<Override>,
    templates: Vec<toml::Table>,
}

impl RoundTrip {
    fn new(text: &str, path: &Path, opts: &PlanOptions, problem: &Problem) -> RoundTrip {
        let UserOverrides { pre, post, instances } = split_overrides(&opts.overrides).unwrap();
        let text = single_variant(text, &problem.variant, path).unwrap();
        let names: Vec<String> = problem.models.iter().map(|m| m.name.clone()).collect();
        let templates = templates(&text, instances.as_ref(), &names, path).unwrap();
        RoundTrip { text, path: path.to_path_buf(), variant: problem.variant.clone(), pre, post, templates }
    }

    fn load(&self, gpu: &str, num_gpus: u32, instances: Vec<toml::Value>) -> Result<Scenario, ScenarioError> {
        let mut cluster = toml::Table::new();
        cluster.insert("gpu".into(), toml::Value::String(gpu.to_string()));
        cluster.insert("num_gpus".into(), toml::Value::Integer(i64::from(num_gpus)));
        let mut ovs = self.pre.clone();
        ovs.push(Override::new("cluster", toml::Value::Table(cluster)));
        ovs.push(Override::new("instances", toml::Value::Array(instances)));
        ovs.extend(self.post.iter().cloned());
        let file = parse_scenario(&self.text, &self.path, &ovs)?;
        Ok(file.variant(&self.variant)?.clone())
    }

    fn scenario_for(&self, p: &Problem, layout: &Layout) -> Result<Scenario, ScenarioError> {
        let mut gpu_of: Vec<(usize, u32)> = Vec::new();
        let mut next = 0;
        for (gi, &(_, copies)) in layout.groups.iter().enumerate() {
            gpu_of.push((gi, next));
            next += copies;
        }
        let mut entries = Vec::new();
        for m in 0..p.models.len() {
            for (gi, &(t, copies)) in layout.groups.iter().enumerate() {
                let ty = &p.types[t];
                let Some(pos) = ty.models.iter().position(|x| x.index() == m) else { continue };
                let first = gpu_of[gi].1;
                let shared = ty.is_shared().then(|| {
                    let kv = layout.kv.unwrap_or(KvCacheMode::Static);
                    let util = match kv {
                        KvCacheMode::Static => ty.static_utils.as_ref().map(|u| u[pos]),
                        KvCacheMode::Elastic => None,
                    };
                    (kv, util)
                });
                for c in 0..copies {
                    entries.push(toml::Value::Table(placed(&self.templates[m], first + c, shared)));
                }
            }
        }
        let mut s = self.load(&p.gpu.name, layout.gpus(), entries)?;
        s.workload = p.workload.clone();
        Ok(s)
    }
}

fn placed(template: &toml::Table, gpu: u32, shared: Option<(KvCacheMode, Option<f64>)>) -> toml::Table {
    let mut t = template.clone();
    t.insert("gpu".into(), toml::Value::Integer(i64::from(gpu)));
    if let Some((kv, util)) = shared {
        let engine = t.entry("engine").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(e) = engine {
            let mode = match kv {
                KvCacheMode::Static => "static",
                KvCacheMode::Elastic => "elastic",
            };
            e.insert("kv_cache".into(), toml::Value::String(mode.into()));
            if let Some(u) = util {
                e.insert("gpu_memory_utilization".into(), toml::Value::Float(u));
            }
        }
    }
    t
}

/// What the two paths agreed on, for checking that the cases cover what they claim to.
#[derive(Debug, Default)]
struct Seen {
    started: usize,
    refused: usize,
    colocated: usize,
    dedicated: usize,
    elastic: usize,
    static_shared: usize,
}

/// Compares the two paths on up to `cap` layouts of every level from 1 to `gpus` GPUs.
fn compare(file: &str, opts: &PlanOptions, cap: usize) -> Seen {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let problem = Problem::new(&text, &path, opts).unwrap();
    let reference = RoundTrip::new(&text, &path, opts, &problem);
    let kv = [KvCacheMode::Static, KvCacheMode::Elastic];
    let limits = Limits { max_replicas: problem.max_gpus, max_layouts: 100_000 };
    let mut seen = Seen::default();
    for g in 1..=problem.max_gpus {
        let layouts = enumerate_level(&problem.types, problem.models.len(), g, &kv, limits).unwrap();
        for layout in layouts.iter().take(cap) {
            let what = format!("{file} layout {layout:?}");
            match (problem.scenario_for(layout), reference.scenario_for(&problem, layout)) {
                (Ok(typed), Ok(toml)) => {
                    assert_eq!(typed, toml, "{what}");
                    seen.started += 1;
                }
                (Err(typed), Err(toml)) => {
                    // The round trip named its own `instances` override in the reason.
                    let reason = toml.reason.split(" (from --set instances=").next().unwrap_or_default();
                    assert_eq!(
                        (typed.field.as_str(), typed.reason.as_str()),
                        (toml.field.as_str(), reason),
                        "{what}"
                    );
                    seen.refused += 1;
                }
                (typed, toml) => panic!("{what}: typed {typed:?} but round trip {toml:?}"),
            }
            match layout.kv {
                None => seen.dedicated += 1,
                Some(k) => {
                    seen.colocated += 1;
                    match k {
                        KvCacheMode::Static => seen.static_shared += 1,
                        KvCacheMode::Elastic => seen.elastic += 1,
                    }
                }
            }
        }
    }
    seen
}

fn opts(colocate: u32, gpus: u32, variant: Option<&str>, sets: &[&str]) -> PlanOptions {
    PlanOptions {
        variant: variant.map(String::from),
        overrides: sets.iter().map(|s| s.parse().unwrap()).collect(),
        gpus: Some(gpus),
        colocate,
        ttft_p90: vec!["1".parse().unwrap()],
        tpot_p90: vec!["0.05".parse().unwrap()],
        ..PlanOptions::default()
    }
}

#[test]
fn typed_layouts_of_the_seed_baseline_equal_the_round_trip_and_elastic_is_refused_alike() {
    // vllm-0.6.4: elastic layouts do not start (kvcached needs V1), for the same reason either way.
    let seen = compare("seed-6xh100.toml", &opts(3, 4, Some("baseline"), &[]), 40);
    assert!(seen.started > 0 && seen.dedicated > 0 && seen.static_shared > 0, "{seen:?}");
    assert!(seen.refused > 0 && seen.elastic > 0, "{seen:?}");
}

#[test]
fn typed_layouts_of_the_seed_managed_variant_equal_the_round_trip() {
    // Elastic on dedicated GPUs (the variant's mode), static and elastic on shared ones.
    let seen = compare("seed-6xh100.toml", &opts(2, 4, Some("managed"), &[]), 40);
    assert!(seen.started > 0 && seen.dedicated > 0 && seen.static_shared > 0 && seen.elastic > 0, "{seen:?}");
}

#[test]
fn typed_layouts_with_overrides_before_and_after_the_instances_equal_the_round_trip() {
    // `--set` before the layout's `cluster` and `instances` and after them (every copy).
    let sets = ["router.policy=round_robin", "seed=7", "instances.*.engine.max_num_seqs=64"];
    let seen = compare("whatif-three-8b-one-gpu.toml", &opts(3, 3, Some("elastic-together"), &sets), 40);
    assert!(seen.started > 0 && seen.static_shared > 0 && seen.elastic > 0, "{seen:?}");
}

#[test]
fn typed_layouts_of_an_elastic_v1_variant_equal_the_round_trip() {
    // Prefix caching follows the KV mode when not set: off for elastic, on for static co-tenants.
    let seen = compare("whatif-three-8b-one-gpu.toml", &opts(3, 3, Some("elastic"), &[]), 40);
    assert!(seen.started > 0 && seen.static_shared > 0 && seen.elastic > 0, "{seen:?}");
}

#[test]
fn typed_layouts_of_reference_engine_instances_equal_the_round_trip() {
    // transformers-cb: its own contention default, and no elastic KV.
    let seen = compare("coloc-h200-ladder.toml", &opts(2, 3, None, &[]), 40);
    assert!(seen.started > 0 && seen.refused > 0 && seen.colocated > 0, "{seen:?}");
}

#[test]
fn the_scenarios_contention_reaches_every_layout() {
    // The round trip replaced the whole `[cluster]`, dropping `contention`; the typed path keeps
    // the file's (here set on the command line).
    let sets = ["cluster.contention={ model = \"serialize\", overhead = 3.0 }"];
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/seed-6xh100.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let problem = Problem::new(&text, &path, &opts(2, 4, Some("managed"), &sets)).unwrap();
    let limits = Limits { max_replicas: problem.max_gpus, max_layouts: 100_000 };
    let layouts =
        enumerate_level(&problem.types, problem.models.len(), 4, &[KvCacheMode::Static], limits).unwrap();
    let placed: Vec<Scenario> =
        layouts.iter().take(20).filter_map(|l| problem.scenario_for(l).ok()).collect();
    assert!(!placed.is_empty());
    for s in placed {
        assert_eq!(s.contention, crate::scenario::ContentionSpec::Serialize { overhead: 3.0 });
    }
}
