//! `explain` end to end: a scenario whose answer is known by construction, the seed's automatic
//! grouping, and sharding + merging giving the unsharded explanation byte for byte.

use sim::explain::{self, ExplainSpec, Explanation, MetricExplanation, Target};
use sim::scenario::Override;
use sim::sweep::SweepOptions;
use std::fs;
use std::path::{Path, PathBuf};

/// A profile whose step takes exactly 10 ms + 0.1 ms per prompt token (no decode, KV, CPU,
/// CUDA-graph or pipeline terms), so every delay below is known in advance.
const PROFILE: &str = r#"
model = "llama-3.1-8b"
gpu = "H100-80GB-SXM"
engine = "vllm-v1"
[coefficients]
fixed_s = 0.01
per_prefill_token_s = 0.0001
per_decode_seq_s = 0.0
per_kv_token_s = 0.0
"#;

/// One 8B instance, 20 requests 2 s apart (never two at once). From `a` to `b`:
/// - 500 more prompt tokens: +50 ms on every TTFT (500 x 0.1 ms), independent of the rest;
/// - 10 more output tokens: +100 ms on every E2E (10 steps x 10 ms), nothing on TTFT;
/// - prefix caching on, and a shared 256-token prefix on every prompt: either alone changes
///   nothing; together every request but the first skips 256 prompt tokens (-25.6 ms).
const SCENARIO: &str = r#"
name = "known-answer"
seed = 1
[cluster]
gpu = "H100-80GB-SXM"
num_gpus = 1
[defaults.engine]
preset = "vllm-v1"
enable_prefix_caching = false
[[instances]]
model = "llama-3.1-8b"
gpu = 0
profile = "p.toml"
[workload.prefix]
tokens = 256
groups = 1
fraction = 0.0
[[workload.phases]]
name = "sparse"
num_requests = 20
arrival = { process = "constant", rate = 0.5 }
mix = { "llama-3.1-8b" = 1 }
input_tokens = { dist = "fixed", value = 512 }
output_tokens = { dist = "fixed", value = 16 }
[variants.a]
set = { "workload.phases.0.input_tokens.value" = 512 }
[variants.b]
set = { "workload.phases.0.input_tokens.value" = 1012, "workload.phases.0.output_tokens.value" = 26, "defaults.engine.enable_prefix_caching" = true, "workload.prefix.fraction" = 1.0 }
"#;

const INPUT: &str = "workload.phases.0.input_tokens.value";
const OUTPUT: &str = "workload.phases.0.output_tokens.value";
const CACHING: &str = "defaults.engine.enable_prefix_caching";
const PREFIX: &str = "workload.prefix.fraction";

fn known_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("p.toml"), PROFILE).unwrap();
    fs::write(dir.path().join("ka.toml"), SCENARIO).unwrap();
    dir
}

fn spec(scenario: PathBuf, from: &str, to: &str, reps: u32, overrides: Vec<Override>) -> ExplainSpec {
    ExplainSpec {
        scenario,
        from: from.into(),
        to: Target::Variant(to.into()),
        overrides,
        reps,
        groups: vec![],
        permutations: 0,
    }
}

fn run(spec: &ExplainSpec, out: &Path, shard: Option<&str>) -> Option<Explanation> {
    let plan = explain::plan(spec).unwrap();
    let opts =
        SweepOptions { shard: shard.map(|s| s.parse().unwrap()), jobs: Some(2), ..SweepOptions::default() };
    explain::run(&plan, out, &opts).unwrap()
}

fn factor(e: &Explanation, m: &MetricExplanation, path: &str) -> (f64, f64) {
    let i = e.factors.iter().position(|f| f.path == path).unwrap();
    let c = m.contributions.iter().find(|c| c.factor == i).unwrap();
    (c.shapley.mean, c.alone.mean)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_scenario_with_a_known_answer_is_explained_exactly() {
    let dir = known_dir();
    let out = dir.path().join("out");
    let e = run(&spec(dir.path().join("ka.toml"), "a", "b", 2, vec![]), &out, None).unwrap();
    assert_eq!(e.factors.len(), 4);
    assert_eq!((e.reps, e.runs), (2, 32));
    let model = e.model("llama-3.1-8b").unwrap();

    let ttft = model.metric("ttft_p50").unwrap();
    assert!(close(ttft.total.mean, 0.050 - 0.0256), "{:?}", ttft.total);
    let (input, input_alone) = factor(&e, ttft, INPUT);
    assert!(close(input, 0.050) && close(input_alone, 0.050), "{input} {input_alone}");
    let (output, _) = factor(&e, ttft, OUTPUT);
    assert!(close(output, 0.0), "{output}");
    // The pair that only matters together: nothing alone, its joint effect split in two.
    for path in [CACHING, PREFIX] {
        let (shapley, alone) = factor(&e, ttft, path);
        assert!(close(shapley, -0.0128) && close(alone, 0.0), "{path}: {shapley} {alone}");
    }
    assert!(close(ttft.interaction.mean, -0.0256), "{:?}", ttft.interaction);
    let top = &ttft.pairs[0];
    let names = (e.factors[top.factors.0].path.as_str(), e.factors[top.factors.1].path.as_str());
    assert!(names == (CACHING, PREFIX) || names == (PREFIX, CACHING), "{names:?}");
    assert!(close(top.index.mean, -0.0256));
    assert!(ttft.pairs[1..].iter().all(|p| close(p.index.mean, 0.0)));
    // Identical runs per replication: a zero-width interval.
    assert_eq!(ttft.total.ci_low, ttft.total.ci_high);

    let e2e = model.metric("e2e_mean").unwrap();
    let (output, output_alone) = factor(&e, e2e, OUTPUT);
    assert!(close(output, 0.100) && close(output_alone, 0.100), "{output}");
    assert!(close(factor(&e, e2e, INPUT).0, 0.050));
    // 19 of the 20 requests find the prefix cached.
    assert!(close(e2e.interaction.mean, -0.0256 * 19.0 / 20.0), "{:?}", e2e.interaction);
    assert_eq!(
        model.metrics[0].contributions[0].factor,
        e.factors.iter().position(|f| f.path == INPUT).unwrap()
    );
}

#[test]
fn contributions_add_up_to_the_change_for_every_model_and_metric() {
    let dir = known_dir();
    let e =
        run(&spec(dir.path().join("ka.toml"), "a", "b", 2, vec![]), &dir.path().join("out"), None).unwrap();
    let mut checked = 0;
    for model in &e.models {
        for m in &model.metrics {
            let sum: f64 = m.contributions.iter().map(|c| c.shapley.mean).sum();
            let scale = m.from.mean.abs().max(m.to.mean.abs()).max(1e-9);
            assert!(
                (sum - m.total.mean).abs() <= 1e-9 * scale,
                "{} {}: {sum} vs {:?}",
                model.model,
                m.metric,
                m.total
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked}");
}

fn seed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/seed-6xh100.toml")
}

fn small_seed_spec() -> ExplainSpec {
    let short: Override = "workload.phases.*.duration_s=3".parse().unwrap();
    spec(seed_path(), "baseline", "managed", 2, vec![short])
}

#[test]
fn the_seed_joins_elastic_kv_with_the_engine_that_can_run_it() {
    let plan = explain::plan(&small_seed_spec()).unwrap();
    let paths: Vec<String> = plan.groups.iter().map(|g| explain::group_path(&plan.factors, g)).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(paths.contains(&"defaults.engine.kv_cache + defaults.engine.preset".to_string()), "{paths:?}");
    let joined = plan.groups.iter().find(|g| g.factors.len() == 2).unwrap();
    assert!(joined.note.as_deref().unwrap().contains("needs vLLM >= 0.8.4"), "{:?}", joined.note);
    // router.poll_interval_s and router.score are set by managed to the base file's values.
    assert!(!plan.factors.iter().any(|f| f.path.starts_with("router.poll") || f.path == "router.score"));
    assert_eq!(plan.sweep.total_points(), 8 * 2);
}

#[test]
fn shards_merge_into_the_unsharded_explanation_byte_for_byte() {
    let spec = small_seed_spec();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    run(&spec, &whole, None).unwrap();
    let shards: Vec<PathBuf> = (1..=3).map(|i| dir.path().join(format!("s{i}"))).collect();
    for (i, s) in shards.iter().enumerate() {
        assert!(run(&spec, s, Some(&format!("{}/3", i + 1))).is_none());
    }
    let merged = dir.path().join("merged");
    explain::merge(&shards, &merged).unwrap();
    for f in ["explain.json", "sweep.csv", "sweep.json", "explain-spec.json"] {
        assert_eq!(fs::read(whole.join(f)).unwrap(), fs::read(merged.join(f)).unwrap(), "{f}");
    }
    let e = explain::analyse_dir(&merged).unwrap();
    assert!(e.model("llama-3.3-70b-awq").unwrap().metric("ttft_p90").is_some());
    // An incomplete set of shards is refused, naming the missing one.
    let err = explain::merge(&shards[..2], &dir.path().join("bad")).unwrap_err().to_string();
    assert!(err.contains("shard 3/3 is missing"), "{err}");
}

#[test]
fn nothing_to_explain_and_unknown_variants_are_clear_errors() {
    let dir = known_dir();
    let e = explain::plan(&spec(dir.path().join("ka.toml"), "a", "a", 1, vec![])).unwrap_err().to_string();
    assert!(e.contains("nothing to explain"), "{e}");
    let e = explain::plan(&spec(dir.path().join("ka.toml"), "a", "zz", 1, vec![])).unwrap_err().to_string();
    assert!(e.contains("no variant \"zz\""), "{e}");
    let bad = spec(dir.path().join("ka.toml"), "a", "b", 0, vec![]);
    assert!(explain::plan(&bad).unwrap_err().to_string().contains("--replications"));
}

#[test]
fn a_permutation_estimate_recovers_the_known_answer() {
    let dir = known_dir();
    let mut spec = spec(dir.path().join("ka.toml"), "a", "b", 1, vec![]);
    spec.permutations = 40;
    let plan = explain::plan(&spec).unwrap();
    assert_eq!(plan.permutations.len(), 40);
    let e = explain::run(&plan, &dir.path().join("out"), &SweepOptions::default()).unwrap().unwrap();
    assert_eq!(e.permutations, 40);
    let ttft = e.model("llama-3.1-8b").unwrap().metric("ttft_p50").unwrap();
    // Additive factors have the same marginal in every order: estimated exactly.
    assert!(close(factor(&e, ttft, INPUT).0, 0.050));
    assert!(close(factor(&e, ttft, OUTPUT).0, 0.0));
    // The pair's joint effect is split by order; together they still hold it all.
    let (c, p) = (factor(&e, ttft, CACHING).0, factor(&e, ttft, PREFIX).0);
    assert!(close(c + p, -0.0256), "{c} + {p}");
    assert!((-0.0256..=0.0).contains(&c) && (-0.0256..=0.0).contains(&p), "{c} {p}");
    assert!(ttft.pairs.is_empty());
    assert!(close(ttft.interaction.mean, -0.0256));
}

#[test]
fn the_operating_point_brackets_the_load_where_the_target_breaks() {
    let dir = known_dir();
    let point = |target: Option<&str>| {
        let mut o: Vec<Override> = Vec::new();
        if let Some(t) = target {
            o.push(format!("slo.ttft_p90_s={t}").parse().unwrap());
        }
        let plan = explain::plan(&spec(dir.path().join("ka.toml"), "a", "b", 1, o)).unwrap();
        explain::operating_points(&plan, 32.0, 4).unwrap().remove(0)
    };
    // 61 ms p90 TTFT alone; requests start to overlap (and queue) once they come faster than one
    // per ~211 ms, i.e. beyond ~9.5x the 0.5 req/s.
    let p = point(Some("0.07"));
    assert!(p.meets_slo, "{p:?}");
    let (s, b) = (p.sustained.unwrap(), p.breaks_at.unwrap());
    assert!((8.0..32.0).contains(&s) && s < b && b <= 32.0, "{p:?}");
    assert!(b / s < 1.1, "4 bisection steps bracket it within 10%: {p:?}");
    // A target missed at every load: no sustainable multiple.
    let p = point(Some("0.05"));
    assert!(!p.meets_slo && p.sustained.is_none(), "{p:?}");
    // No target: nothing to break.
    let p = point(None);
    assert!(p.sustained.is_none() && p.breaks_at.is_none(), "{p:?}");
    // One request at a time: it waits at most for its own admission.
    assert!(p.model == "llama-3.1-8b" && p.peak_waiting <= 1, "{p:?}");
}
