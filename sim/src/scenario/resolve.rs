//! One variant's parsed file (`RawFile`) -> a validated, resolved `Scenario`.
//!
//! Resolution rules:
//! - GPUs: `[cluster]` names from the built-in catalogue plus `[gpu_catalog]`, indexed by `GpuId`.
//! - Models: only models with an instance, `ModelId`s in order of first appearance in
//!   `[[instances]]` (so the ids do not depend on map order in the file).
//! - Instances: named `"<model>#<k>"` (k counts that model's instances from 0) unless `name` is
//!   set; `port` defaults to `8001 + index`; engine = preset defaults, then `[defaults.engine]`,
//!   then the instance's `engine` table (the preset itself may be set at either level, default
//!   `vllm-v1`); knobs vLLM derives from others are derived after the explicit ones are known.
//! - Step times: see `perf`. Memory: see `memory`. Workload: see `phases`.
//!
//! This module checks meaning; the schema (field names and types) was checked by serde.

use super::catalog::{gpu_catalog, model_catalog};
use super::error::{Ctx, GIB, ScenarioError, quoted_list};
use super::limits::{Limits, MIN_SAMPLE_INTERVAL_S, planned_work};
use super::memory::{EngineField, check_memory};
use super::perf::{PerfKey, Profile, check_perf, perf_for_instance, scan_profiles};
use super::phases::{Models, resolve_workload};
use super::presets::{derive_engine, gets_large_batch_defaults};
use super::raw::RawContention;
use super::raw::{RawCluster, RawEngine, RawFile, RawGpu, RawInstance, RawModel, RawModelSettings};
use super::types::{
    ContentionSpec, EngineConfig, EngineGeneration, EnginePreset, GpuSpec, InstanceSpec, KvCacheMode,
    ModelSpec, OutputSpec, PerfSpec, PrefixRouting, RouterSpec, Scenario, SloSpec, WeightFormat,
};
use crate::ids::{GpuId, ModelId};
use std::collections::BTreeMap;

/// The most GPUs a cluster may have (guards against a typo allocating millions).
const MAX_GPUS: u32 = 4096;

/// vLLM's `--block-size` choices on CUDA.
const BLOCK_SIZES: [u32; 6] = [1, 8, 16, 32, 64, 128];

/// transformers' continuous batching takes any block size of at least 4 tokens
/// (`ContinuousBatchingConfig.block_size`); the upper bound guards against unit mistakes.
const CB_BLOCK_SIZES: std::ops::RangeInclusive<u32> = 4..=4096;

/// Names and description of the variant being resolved.
pub(crate) struct VariantInfo<'a> {
    /// Variant name.
    pub name: &'a str,
    /// The variant's own description, if it has one.
    pub description: Option<&'a str>,
    /// The scenario name when the file sets none (the file stem).
    pub default_name: &'a str,
}

/// A scenario `name` names its output dir (`results/<name>/...`): nothing that leaves `results/`.
pub(crate) fn check_scenario_name(ctx: Ctx<'_>, name: &str) -> Result<(), ScenarioError> {
    if name.trim().is_empty() {
        return Err(ctx.err("name", "the scenario name is empty"));
    }
    if !is_file_name_safe(name) {
        return Err(ctx.err(
            "name",
            format!(
                "\"{name}\" cannot name an output dir: use only letters, digits, `-`, `_` and `.` (not `.` or \
                 `..`); pass --out to write elsewhere"
            ),
        ));
    }
    Ok(())
}

/// Whether `name` is one path component made of letters, digits, `-`, `_` and `.` (and not `.` or
/// `..`), as variant names are.
fn is_file_name_safe(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `name` with every character outside letters, digits, `-`, `_` and `.` replaced by `-` (and
/// `scenario` for an empty, `.` or `..` name).
pub(crate) fn safe_file_name(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    if is_file_name_safe(&s) { s } else { "scenario".to_string() }
}

/// What resolving `[[instances]]` needs from the rest of a file, resolved once per variant.
#[derive(Clone, Debug)]
pub(crate) struct InstanceEnv {
    /// Built-in GPUs plus `[gpu_catalog]`.
    pub gpu_catalog: Vec<GpuSpec>,
    /// Built-in models plus `[model_catalog]`, with `[models]` settings applied.
    pub model_catalog: Vec<ModelSpec>,
    /// The profiles of `[perf] profiles_dir`.
    pub profiles: Vec<Profile>,
}

/// The catalogues and profiles of `raw`, checked.
pub(crate) fn instance_env(ctx: Ctx<'_>, raw: &RawFile) -> Result<InstanceEnv, ScenarioError> {
    let gpu_catalog = merged_gpu_catalog(ctx, &raw.gpu_catalog)?;
    let mut model_catalog = merged_model_catalog(ctx, &raw.model_catalog)?;
    apply_model_settings(ctx, &raw.models, &mut model_catalog)?;
    check_perf(ctx, &raw.perf)?;
    let profiles = scan_profiles(ctx, &raw.perf)?;
    Ok(InstanceEnv { gpu_catalog, model_catalog, profiles })
}

/// The field an error about engine knob `knob` of `instances[i]` names: the instance's own table
/// when it sets the knob, else `[defaults.engine]` when that does.
pub(crate) fn engine_field(defaults: &RawEngine, instances: &[RawInstance], i: usize, knob: &str) -> String {
    let in_instance = instances.get(i).is_some_and(|x| x.engine.sets(knob));
    if !in_instance && defaults.sets(knob) {
        format!("defaults.engine.{knob}")
    } else {
        format!("instances[{i}].engine.{knob}")
    }
}

/// The `[output]` limits of `raw`.
pub(crate) fn limits_of(raw: &RawFile) -> Limits {
    let o = &raw.output;
    Limits { max_requests: o.max_requests, max_samples: o.max_samples, max_tokens: o.max_tokens }
}

/// Resolves and validates one variant.
pub(crate) fn resolve(ctx: Ctx<'_>, raw: &RawFile, v: &VariantInfo<'_>) -> Result<Scenario, ScenarioError> {
    let name = match &raw.name {
        Some(name) => {
            check_scenario_name(ctx, name)?;
            name.clone()
        }
        // The file stem: anything else becomes `-`.
        None => safe_file_name(v.default_name),
    };
    let env = instance_env(ctx, raw)?;
    let gpus = resolve_cluster(ctx, &raw.cluster, &env.gpu_catalog)?;

    if raw.instances.is_empty() {
        return Err(ctx.err("instances", "no [[instances]]: add at least one engine instance"));
    }
    check_engine_knobs(ctx, "defaults.engine", &raw.defaults.engine)?;
    let (models, instances) = resolve_instances(ctx, raw, &env, &raw.instances, &gpus, &|_| None)?;
    let contention = contention_of(ctx, raw.cluster.contention.as_ref(), &instances)?;

    let r = &raw.router;
    if !(r.poll_interval_s.is_finite() && r.poll_interval_s > 0.0) {
        return Err(ctx.err(
            "router.poll_interval_s",
            format!("must be a positive number of seconds, got {}", r.poll_interval_s),
        ));
    }
    if !(r.poll_offset_s.is_finite() && (0.0..r.poll_interval_s).contains(&r.poll_offset_s)) {
        return Err(ctx.err(
            "router.poll_offset_s",
            format!(
                "must be in [0, poll_interval_s = {}) seconds (the polls' phase in their interval), got {}",
                r.poll_interval_s, r.poll_offset_s
            ),
        ));
    }
    let mut prefix = PrefixRouting::default();
    for (name, given, slot) in [
        ("prefix_block_tokens", r.prefix_block_tokens, &mut prefix.block_tokens),
        ("prefix_index_blocks", r.prefix_index_blocks, &mut prefix.index_blocks),
    ] {
        match given {
            Some(0) => return Err(ctx.err(format!("router.{name}"), "must be at least 1")),
            Some(v) => *slot = v,
            None => {}
        }
    }
    let router = RouterSpec {
        policy: r.policy,
        poll_interval_s: r.poll_interval_s,
        poll_offset_s: r.poll_offset_s,
        score: r.score,
        prefix,
    };
    let workload =
        resolve_workload(ctx, &raw.workload, &Models { catalog: &env.model_catalog, used: &models })?;

    let s = &raw.slo;
    for (n, val) in [
        ("ttft_s", s.ttft_s),
        ("tpot_s", s.tpot_s),
        ("e2e_s", s.e2e_s),
        ("ttft_p90_s", s.ttft_p90_s),
        ("tpot_p90_s", s.tpot_p90_s),
    ] {
        if let Some(x) = val.filter(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(ctx.err(format!("slo.{n}"), format!("must be a positive number of seconds, got {x}")));
        }
    }
    let slo = SloSpec {
        ttft_s: s.ttft_s,
        tpot_s: s.tpot_s,
        e2e_s: s.e2e_s,
        ttft_p90_s: s.ttft_p90_s,
        tpot_p90_s: s.tpot_p90_s,
    };
    let o = &raw.output;
    for (n, val) in [("sample_interval_s", o.sample_interval_s), ("drain_timeout_s", o.drain_timeout_s)] {
        if !(val.is_finite() && val > 0.0) {
            return Err(
                ctx.err(format!("output.{n}"), format!("must be a positive number of seconds, got {val}"))
            );
        }
    }
    if o.sample_interval_s < MIN_SAMPLE_INTERVAL_S {
        return Err(ctx.err(
            "output.sample_interval_s",
            format!(
                "{} s is below the smallest sample interval, {MIN_SAMPLE_INTERVAL_S} s (finer than any \
                 engine step); give a larger one",
                o.sample_interval_s
            ),
        ));
    }
    let output = OutputSpec {
        sample_interval_s: o.sample_interval_s,
        tokens_csv: o.tokens_csv,
        drain_timeout_s: o.drain_timeout_s,
        max_samples: o.max_samples,
    };
    let scenario = Scenario {
        name,
        variant: v.name.to_string(),
        description: v.description.map_or_else(|| raw.description.clone(), str::to_string),
        seed: raw.seed,
        gpus,
        models,
        instances,
        router,
        workload,
        slo,
        output,
        contention,
    };
    let field = |i: usize, knob: &str| engine_field(&raw.defaults.engine, &raw.instances, i, knob);
    check_placement(ctx, &scenario, &limits_of(raw), &field)?;
    Ok(scenario)
}

/// The startup checks that depend on where the instances are: memory on every GPU (see `memory`)
/// and the work planned for the instance count against `[output]` limits. `field` names an
/// instance's engine knob (see [`engine_field`]).
pub(crate) fn check_placement(
    ctx: Ctx<'_>,
    s: &Scenario,
    limits: &Limits,
    field: EngineField<'_>,
) -> Result<(), ScenarioError> {
    check_memory(ctx, &s.gpus, &s.models, &s.instances, field)?;
    let o = &s.output;
    let work = planned_work(&s.workload, s.instances.len(), o.sample_interval_s, o.drain_timeout_s);
    super::limits::check(ctx, &work, limits)
}

/// An instance's engine and step-time source: what its settings, model and GPU kind decide,
/// whatever its place in the list.
#[derive(Clone, Debug)]
pub(crate) struct ResolvedEngine {
    /// The engine, preset and knobs resolved.
    pub engine: EngineConfig,
    /// Its step-time source.
    pub perf: PerfSpec,
}

/// Resolves `instances` (placed on `gpus`) with `raw`'s engine defaults and perf settings: the
/// models they serve, in order of first appearance, and the instances. `known(i)` may give the
/// [`resolve_engine`] result of `instances[i]` already (`None`: resolve it here). Errors about one
/// instance carry its index.
pub(crate) fn resolve_instances(
    ctx: Ctx<'_>,
    raw: &RawFile,
    env: &InstanceEnv,
    instances: &[RawInstance],
    gpus: &[GpuSpec],
    known: &dyn Fn(usize) -> Option<ResolvedEngine>,
) -> Result<(Vec<ModelSpec>, Vec<InstanceSpec>), ScenarioError> {
    let mut models: Vec<ModelSpec> = Vec::new();
    let mut out: Vec<InstanceSpec> = Vec::with_capacity(instances.len());
    for (i, ri) in instances.iter().enumerate() {
        let field = |knob: &str| engine_field(&raw.defaults.engine, instances, i, knob);
        let place = Place { i, ri, gpus, earlier: &out };
        let spec = resolve_instance(ctx, raw, env, &place, &mut models, known(i), &field)
            .map_err(|e| e.about_instance(i))?;
        out.push(spec);
    }
    Ok((models, out))
}

/// `instances[i]` and what it is checked against: the cluster and the instances before it.
struct Place<'a> {
    i: usize,
    ri: &'a RawInstance,
    gpus: &'a [GpuSpec],
    earlier: &'a [InstanceSpec],
}

/// Resolves `instances[i]` (with its engine `known` already, or not); adds its model to
/// `models` when new.
fn resolve_instance(
    ctx: Ctx<'_>,
    raw: &RawFile,
    env: &InstanceEnv,
    place: &Place<'_>,
    models: &mut Vec<ModelSpec>,
    known: Option<ResolvedEngine>,
    engine_field: &dyn Fn(&str) -> String,
) -> Result<InstanceSpec, ScenarioError> {
    let Place { i, ri, gpus, earlier } = *place;
    let model_cat = &env.model_catalog;
    let f = |n: &str| format!("instances[{i}].{n}");
    let Some(model) = model_cat.iter().find(|m| m.name == ri.model) else {
        return Err(ctx.err(
            f("model"),
            format!(
                "unknown model \"{}\"; known models: {} (add others under [model_catalog])",
                ri.model,
                quoted_list(model_cat.iter().map(|m| m.name.as_str()))
            ),
        ));
    };
    let model_id = match models.iter().position(|m| m.name == model.name) {
        Some(p) => ModelId(p as u32),
        None => {
            models.push(model.clone());
            ModelId(models.len() as u32 - 1)
        }
    };
    let Some(gpu) = gpus.get(ri.gpu as usize) else {
        return Err(ctx.err(
            f("gpu"),
            format!(
                "GPU index {} does not exist: the cluster has {} GPU(s), indexed 0..={}",
                ri.gpu,
                gpus.len(),
                gpus.len() - 1
            ),
        ));
    };
    let k = earlier.iter().filter(|x| x.model == model_id).count();
    let name = ri.name.clone().unwrap_or_else(|| format!("{}#{k}", model.name));
    if let Some(j) = earlier.iter().position(|x| x.name == name) {
        return Err(ctx.err(f("name"), format!("name \"{name}\" is already used by instances[{j}]")));
    }
    let port = match ri.port {
        Some(p) => p,
        None => {
            u16::try_from(8001 + i).map_err(|_| ctx.err(f("port"), "no default port past 65535: set port"))?
        }
    };
    if let Some(j) = earlier.iter().position(|x| x.port == port) {
        return Err(ctx
            .err(f("port"), format!("port {port} is already used by instances[{j}] ({})", earlier[j].name)));
    }
    check_engine_knobs(ctx, &f("engine"), &ri.engine)?;
    let ResolvedEngine { engine, perf } = match known {
        Some(e) => e,
        None => resolve_engine(ctx, raw, env, (i, ri), model, gpu, engine_field)?,
    };
    Ok(InstanceSpec {
        name,
        model: model_id,
        gpu: GpuId(ri.gpu),
        port,
        engine,
        perf,
        launch_command: ri.launch_command.clone(),
    })
}

/// The engine (preset defaults, `[defaults.engine]`, then the instance's table, derived knobs)
/// and step-time source of `instances[i]` serving `model` on a `gpu`, checked as vLLM would at
/// startup.
pub(crate) fn resolve_engine(
    ctx: Ctx<'_>,
    raw: &RawFile,
    env: &InstanceEnv,
    (i, ri): (usize, &RawInstance),
    model: &ModelSpec,
    gpu: &GpuSpec,
    engine_field: &dyn Fn(&str) -> String,
) -> Result<ResolvedEngine, ScenarioError> {
    let merged = raw.defaults.engine.overlaid_by(&ri.engine);
    let preset = merged.preset.unwrap_or(EnginePreset::VllmV1);
    let mut engine = derive_engine(preset, model, gets_large_batch_defaults(gpu), &merged);
    check_block_size(ctx, &engine, &engine_field("block_size"))?;
    if engine.max_num_batched_tokens < engine.max_num_seqs {
        return Err(ctx.err(
            engine_field("max_num_batched_tokens"),
            format!(
                "max_num_batched_tokens ({}) must be >= max_num_seqs ({}), as vLLM's \
                 SchedulerConfig requires",
                engine.max_num_batched_tokens, engine.max_num_seqs
            ),
        ));
    }
    if !engine.enable_chunked_prefill && engine.max_num_batched_tokens < engine.max_model_len {
        return Err(ctx.err(
            engine_field("max_num_batched_tokens"),
            format!(
                "max_num_batched_tokens ({}) is smaller than max_model_len ({}) without chunked \
                 prefill; vLLM refuses to start (SchedulerConfig._verify_args): raise it, lower \
                 max_model_len or enable chunked prefill",
                engine.max_num_batched_tokens, engine.max_model_len
            ),
        ));
    }
    check_elastic(ctx, &engine, engine_field)?;
    check_version_knobs(ctx, &merged, model, engine_field)?;
    let key = PerfKey { model, catalog: &env.model_catalog, gpu: &gpu.name, engine: &engine };
    let field = format!("instances[{i}].profile");
    let resolved = perf_for_instance(ctx, &field, ri.profile.as_deref(), &key, &env.profiles, &raw.perf)?;
    // A profile measured with (or without) async scheduling says how the engine ran, unless
    // the scenario sets the knob itself.
    if let (Some(a), false) = (resolved.async_scheduling, merged.sets("async_scheduling")) {
        engine.async_scheduling = a;
    }
    Ok(ResolvedEngine { engine, perf: resolved.spec })
}

/// The contention model of `instances`: `[cluster] contention` when set, else the default for
/// their engines (see [`resolve_contention`]).
pub(crate) fn contention_of(
    ctx: Ctx<'_>,
    c: Option<&RawContention>,
    instances: &[InstanceSpec],
) -> Result<ContentionSpec, ScenarioError> {
    let all_cb = instances.iter().all(|i| i.engine.preset == EnginePreset::TransformersCb);
    let all_graphs = instances.iter().all(|i| i.perf.replays_cuda_graphs());
    resolve_contention(ctx, c, all_cb, all_graphs)
}

/// `[cluster] contention`. Default when every instance runs the `transformers-cb` preset
/// (`all_cb`): `time_slice` as measured on the reference engine replaying CUDA graphs when every
/// instance does (`all_graphs`), else `gpu_share` as measured on the eager reference engine; for
/// other presets serialise + 10 % (a guess for vLLM, whose CUDA-graph decode steps are GPU-bound:
/// not measured colocated).
fn resolve_contention(
    ctx: Ctx<'_>,
    c: Option<&RawContention>,
    all_cb: bool,
    all_graphs: bool,
) -> Result<ContentionSpec, ScenarioError> {
    match c {
        None if all_cb && all_graphs => Ok(ContentionSpec::REFERENCE_ENGINE_GRAPHS_H200),
        None if all_cb => Ok(ContentionSpec::REFERENCE_ENGINE_H200),
        None => Ok(ContentionSpec::default()),
        Some(RawContention::None) => Ok(ContentionSpec::None),
        Some(&RawContention::Serialize { overhead }) => {
            if !(overhead.is_finite() && (0.0..=10.0).contains(&overhead)) {
                return Err(ctx.err(
                    "cluster.contention.overhead",
                    format!("must be a fraction in [0, 10] (0.10 = 10 % time-slicing cost), got {overhead}"),
                ));
            }
            Ok(ContentionSpec::Serialize { overhead })
        }
        Some(&RawContention::GpuShare { slowdown, decode_gpu_share }) => {
            if !(slowdown.is_finite() && (0.0..=10.0).contains(&slowdown)) {
                return Err(ctx.err(
                    "cluster.contention.slowdown",
                    format!("must be in [0, 10] (1.0: the exposed GPU work takes twice as long under a fully busy co-tenant), got {slowdown}"),
                ));
            }
            if !(decode_gpu_share.is_finite() && (0.0..=1.0).contains(&decode_gpu_share)) {
                return Err(ctx.err(
                    "cluster.contention.decode_gpu_share",
                    format!("must be a fraction in [0, 1] (the GPU share of a step's non-prefill work), got {decode_gpu_share}"),
                ));
            }
            Ok(ContentionSpec::GpuShare { slowdown, decode_gpu_share })
        }
        Some(&RawContention::TimeSlice { decode, prefill }) => {
            for (field, v) in [("cluster.contention.decode", decode), ("cluster.contention.prefill", prefill)]
            {
                if !(v.is_finite() && (0.0..=10.0).contains(&v)) {
                    return Err(ctx.err(
                        field,
                        format!("must be in [0, 10] (1.0: a step takes twice as long beside one busy co-tenant), got {v}"),
                    ));
                }
            }
            Ok(ContentionSpec::TimeSlice { decode, prefill })
        }
    }
}

/// vLLM's block sizes for vLLM presets; transformers' range for `transformers-cb`.
fn check_block_size(ctx: Ctx<'_>, e: &super::types::EngineConfig, field: &str) -> Result<(), ScenarioError> {
    let b = e.block_size;
    match e.preset {
        EnginePreset::TransformersCb if !CB_BLOCK_SIZES.contains(&b) => Err(ctx.err(
            field,
            format!("{b} is outside transformers' continuous-batching block sizes {CB_BLOCK_SIZES:?}"),
        )),
        EnginePreset::Vllm064 | EnginePreset::Vllm092 | EnginePreset::Vllm0190 | EnginePreset::VllmV1
            if !BLOCK_SIZES.contains(&b) =>
        {
            Err(ctx.err(field, format!("{b} is not one of vLLM's block sizes {BLOCK_SIZES:?}")))
        }
        _ => Ok(()),
    }
}

/// Elastic KV needs a V1 engine (kvcached supports vLLM >= 0.8.4) and a consistent reserve.
fn check_elastic(
    ctx: Ctx<'_>,
    e: &super::types::EngineConfig,
    field: &dyn Fn(&str) -> String,
) -> Result<(), ScenarioError> {
    if e.kv_cache != KvCacheMode::Elastic {
        return Ok(());
    }
    if e.preset.generation() == EngineGeneration::V0 || !e.preset.is_vllm() {
        return Err(ctx.err(
            field("kv_cache"),
            format!(
                "kv_cache = \"elastic\" is kvcached, which needs vLLM >= 0.8.4: use preset = \"vllm-v1\" \
                 ({} can only run static KV)",
                e.preset.name()
            ),
        ));
    }
    if let Some(n) = e.num_gpu_blocks_override {
        return Err(ctx.err(
            field("num_gpu_blocks_override"),
            format!(
                "num_gpu_blocks_override = {n} fixes a static block count, but kv_cache = \"elastic\" \
                 maps KV pages on demand from the GPU's shared pool: drop the knob, or use \
                 kv_cache = \"static\""
            ),
        ));
    }
    let x = &e.elastic;
    if x.min_reserve_pages > x.max_reserve_pages {
        return Err(ctx.err(
            field("elastic.min_reserve_pages"),
            format!(
                "min_reserve_pages ({}) must be <= max_reserve_pages ({}): the background pre-allocation \
                 refills the reserve to the minimum, freed pages stay mapped up to the maximum",
                x.min_reserve_pages, x.max_reserve_pages
            ),
        ));
    }
    Ok(())
}

/// Knobs that only some releases or models have: `scheduler_reserve_full_isl` (vLLM >= 0.19.0;
/// turning it on elsewhere could not be passed to the engine) and `quantization` (AWQ models only:
/// vLLM refuses `--quantization awq` on a checkpoint without an AWQ config).
fn check_version_knobs(
    ctx: Ctx<'_>,
    set: &RawEngine,
    model: &ModelSpec,
    field: &dyn Fn(&str) -> String,
) -> Result<(), ScenarioError> {
    let preset = set.preset.unwrap_or(EnginePreset::VllmV1);
    if set.scheduler_reserve_full_isl == Some(true) && !preset.has_reserve_full_isl() {
        return Err(ctx.err(
            field("scheduler_reserve_full_isl"),
            format!(
                "{} has no scheduler_reserve_full_isl (vLLM added it in 0.19.0); its admission rule \
                 is fixed: drop the knob or use preset = \"vllm-0.19.0\" or \"vllm-v1\"",
                preset.name()
            ),
        ));
    }
    if let Some(q) = set.quantization
        && model.weight_format != WeightFormat::AwqInt4
    {
        return Err(ctx.err(
            field("quantization"),
            format!(
                "quantization = \"{}\" needs an AWQ model (weight_format = \"awq-int4\"), but \"{}\" \
                 has bf16 weights; vLLM refuses --quantization {} on a checkpoint without an AWQ \
                 quantization config",
                q.as_flag(),
                model.name,
                q.as_flag()
            ),
        ));
    }
    Ok(())
}

/// Range checks of the knobs one engine table sets (`field` is the table's path).
fn check_engine_knobs(ctx: Ctx<'_>, field: &str, e: &RawEngine) -> Result<(), ScenarioError> {
    let f = |n: &str| format!("{field}.{n}");
    if let Some(u) = e.gpu_memory_utilization.filter(|u| !(u.is_finite() && *u > 0.0 && *u <= 1.0)) {
        return Err(ctx.err(f("gpu_memory_utilization"), format!("must be in (0, 1], got {u}")));
    }
    for (n, val) in [
        ("max_num_seqs", e.max_num_seqs),
        ("max_num_batched_tokens", e.max_num_batched_tokens),
        ("max_model_len", e.max_model_len),
        ("num_gpu_blocks_override", e.num_gpu_blocks_override),
    ] {
        if val == Some(0) {
            return Err(ctx.err(f(n), "must be at least 1"));
        }
    }
    if e.activation_reserve_bytes.is_some() && e.activation_reserve_gib.is_some() {
        return Err(ctx.err(
            f("activation_reserve_gib"),
            "set activation_reserve_bytes or activation_reserve_gib, not both",
        ));
    }
    if let Some(g) = e.activation_reserve_gib.filter(|g| !(g.is_finite() && *g >= 0.0 && *g < 1e6)) {
        return Err(ctx.err(f("activation_reserve_gib"), format!("must be a number of GiB >= 0, got {g}")));
    }
    if let Some(x) = &e.elastic {
        let f = |n: &str| format!("{field}.elastic.{n}");
        if let Some(v) = x.map_latency_s.filter(|v| !(v.is_finite() && (0.0..=1.0).contains(v))) {
            return Err(ctx.err(f("map_latency_s"), format!("must be seconds in [0, 1] per page, got {v}")));
        }
        if let Some(v) = x.step_overhead_factor.filter(|v| !(v.is_finite() && (1.0..=10.0).contains(v))) {
            return Err(ctx.err(
                f("step_overhead_factor"),
                format!("must be in [1, 10] (1.05 = steps 5 % slower), got {v}"),
            ));
        }
        if let Some(v) = x.max_memory_gib.filter(|v| !(v.is_finite() && *v > 0.0 && *v < 1e6)) {
            return Err(ctx.err(f("max_memory_gib"), format!("must be a positive number of GiB, got {v}")));
        }
        for (n, v) in [("min_reserve_pages", x.min_reserve_pages), ("max_reserve_pages", x.max_reserve_pages)]
        {
            if let Some(v) = v.filter(|v| *v > 100_000) {
                return Err(ctx.err(f(n), format!("must be at most 100000 pages, got {v}")));
            }
        }
    }
    Ok(())
}

fn merged_gpu_catalog(ctx: Ctx<'_>, extra: &BTreeMap<String, RawGpu>) -> Result<Vec<GpuSpec>, ScenarioError> {
    let mut cat = gpu_catalog();
    for (name, g) in extra {
        let f = |n: &str| format!("gpu_catalog.{name}.{n}");
        let memory_bytes = match (g.memory_bytes, g.memory_gib) {
            (Some(b), None) => b,
            (None, Some(gib)) if gib.is_finite() && gib > 0.0 && gib < 1e6 => (gib * GIB) as u64,
            (None, Some(gib)) => {
                return Err(ctx.err(f("memory_gib"), format!("must be a positive number of GiB, got {gib}")));
            }
            _ => {
                return Err(
                    ctx.err(format!("gpu_catalog.{name}"), "set exactly one of memory_bytes, memory_gib")
                );
            }
        };
        if memory_bytes == 0 {
            return Err(ctx.err(f("memory_bytes"), "must be positive"));
        }
        for (n, val) in [("bf16_flops", g.bf16_flops), ("hbm_bytes_per_s", g.hbm_bytes_per_s)] {
            if !(val.is_finite() && val > 0.0) {
                return Err(ctx.err(f(n), format!("must be a positive number, got {val}")));
            }
        }
        let spec = GpuSpec {
            name: name.clone(),
            memory_bytes,
            bf16_flops: g.bf16_flops,
            hbm_bytes_per_s: g.hbm_bytes_per_s,
        };
        match cat.iter_mut().find(|x| x.name == *name) {
            Some(slot) => *slot = spec,
            None => cat.push(spec),
        }
    }
    Ok(cat)
}

fn merged_model_catalog(
    ctx: Ctx<'_>,
    extra: &BTreeMap<String, RawModel>,
) -> Result<Vec<ModelSpec>, ScenarioError> {
    let mut cat = model_catalog();
    for (name, m) in extra {
        let f = |n: &str| format!("model_catalog.{name}.{n}");
        let head_dim = match m.head_dim {
            Some(d) => d,
            None => m.hidden_size.checked_div(m.num_attention_heads).unwrap_or(0),
        };
        // Bounds keep parameter arithmetic in u64 and catch unit mistakes.
        for (n, val, max) in [
            ("num_layers", m.num_layers, 4096),
            ("hidden_size", m.hidden_size, 1 << 20),
            ("num_attention_heads", m.num_attention_heads, 1 << 12),
            ("num_kv_heads", m.num_kv_heads, 1 << 12),
            ("head_dim", head_dim, 1 << 12),
            ("intermediate_size", m.intermediate_size, 1 << 22),
            ("vocab_size", m.vocab_size, 1 << 24),
            ("max_position_embeddings", m.max_position_embeddings, 1 << 30),
        ] {
            if val == 0 || val > max {
                return Err(ctx.err(f(n), format!("must be in 1..={max}, got {val}")));
            }
        }
        if m.num_attention_heads % m.num_kv_heads != 0 {
            return Err(ctx.err(
                f("num_kv_heads"),
                format!(
                    "num_attention_heads ({}) must be a multiple of num_kv_heads ({})",
                    m.num_attention_heads, m.num_kv_heads
                ),
            ));
        }
        if ![1, 2, 4].contains(&m.kv_cache_dtype_bytes) {
            return Err(ctx.err(f("kv_cache_dtype_bytes"), "must be 1 (fp8), 2 (bf16/fp16) or 4 (fp32)"));
        }
        let served_name = m.served_name.clone().unwrap_or_else(|| name.clone());
        let spec = ModelSpec {
            name: name.clone(),
            model_path: m.model_path.clone().unwrap_or_else(|| served_name.clone()),
            served_name,
            num_layers: m.num_layers,
            hidden_size: m.hidden_size,
            num_attention_heads: m.num_attention_heads,
            num_kv_heads: m.num_kv_heads,
            head_dim,
            intermediate_size: m.intermediate_size,
            vocab_size: m.vocab_size,
            tie_word_embeddings: m.tie_word_embeddings,
            weight_format: m.weight_format,
            max_position_embeddings: m.max_position_embeddings,
            kv_cache_dtype_bytes: m.kv_cache_dtype_bytes,
        };
        match cat.iter_mut().find(|x| x.name == *name) {
            Some(slot) => *slot = spec,
            None => cat.push(spec),
        }
    }
    Ok(cat)
}

/// `[models."name"]`: per-model serving settings of catalogue models (the checkpoint to load).
fn apply_model_settings(
    ctx: Ctx<'_>,
    settings: &BTreeMap<String, RawModelSettings>,
    cat: &mut [ModelSpec],
) -> Result<(), ScenarioError> {
    for (name, s) in settings {
        let known = quoted_list(cat.iter().map(|m| m.name.as_str()));
        let Some(model) = cat.iter_mut().find(|m| m.name == *name) else {
            return Err(ctx.err(
                format!("models.{name}"),
                format!("unknown model \"{name}\"; known models: {known} (add others under [model_catalog])"),
            ));
        };
        if let Some(path) = &s.model_path {
            if path.trim().is_empty() {
                return Err(ctx.err(
                    format!("models.{name}.model_path"),
                    "is empty: give a Hugging Face repo id or a local checkpoint directory",
                ));
            }
            model.model_path.clone_from(path);
        }
    }
    Ok(())
}

pub(crate) fn resolve_cluster(
    ctx: Ctx<'_>,
    c: &RawCluster,
    cat: &[GpuSpec],
) -> Result<Vec<GpuSpec>, ScenarioError> {
    let lookup = |field: String, name: &str| {
        cat.iter().find(|g| g.name == name).cloned().ok_or_else(|| {
            ctx.err(
                field,
                format!(
                    "unknown GPU \"{name}\"; known GPUs: {} (add others under [gpu_catalog])",
                    quoted_list(cat.iter().map(|g| g.name.as_str()))
                ),
            )
        })
    };
    match (&c.gpu, c.num_gpus, &c.gpus) {
        (Some(name), n, None) => {
            let n = n.unwrap_or(1);
            if n == 0 || n > MAX_GPUS {
                return Err(ctx.err("cluster.num_gpus", format!("must be in 1..={MAX_GPUS}, got {n}")));
            }
            let gpu = lookup("cluster.gpu".into(), name)?;
            Ok(vec![gpu; n as usize])
        }
        (None, None, Some(list)) => {
            if list.is_empty() {
                return Err(ctx.err("cluster.gpus", "the cluster has no GPUs"));
            }
            if list.len() > MAX_GPUS as usize {
                return Err(ctx.err("cluster.gpus", format!("at most {MAX_GPUS} GPUs")));
            }
            list.iter().enumerate().map(|(i, name)| lookup(format!("cluster.gpus[{i}]"), name)).collect()
        }
        (None, Some(_), None) => Err(ctx.err("cluster.gpu", "num_gpus needs gpu = \"<catalogue name>\"")),
        (None, None, None) => Err(
            ctx.err("cluster", "set gpu = \"H100-80GB-SXM\" (+ num_gpus) or gpus = [\"H100-80GB-SXM\", ...]")
        ),
        _ => Err(ctx.err("cluster.gpus", "give either gpu + num_gpus or a gpus list, not both")),
    }
}
