//! Placing a scenario's models on GPUs again and again (for `plan`): each model's
//! `[[instances]]` template is read once, then every placement is built as typed instances and
//! resolved and checked by the loader's own code.
//!
//! A [`Placer`] loads one variant once, with `instances` replaced by the templates (template `m`
//! alone on GPU `m`: the *probe*) and the command line's overrides around them, as `simulate`
//! would load that file, and resolves each template's engine and step times once per KV mode it
//! can be placed with. [`Placer::place`] then puts copies of the templates on the GPUs a layout
//! gives them — no TOML — and runs the loader's instance resolution (`resolve::resolve_instances`,
//! handed the engines resolved already) and startup checks (`resolve::check_placement`) on them,
//! so a placement starts or is refused exactly as the file with those `[[instances]]` and that
//! `[cluster]` would. This module does not choose placements (see `plan`).

use super::error::{Ctx, ScenarioError};
use super::load::{ParsedVariant, annotate, parse_variants};
use super::overrides::Override;
use super::raw::{RawCluster, RawContention, RawFile, RawInstance};
use super::resolve::{
    InstanceEnv, ResolvedEngine, check_placement, contention_of, engine_field, instance_env, limits_of,
    resolve_cluster, resolve_engine, resolve_instances,
};
use super::types::{KvCacheMode, Scenario};
use crate::ids::{GpuId, ModelId};
use std::path::{Path, PathBuf};

/// Where one instance of a placement runs, and with which KV settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// Whose template it copies (the probe's `ModelId`).
    pub model: ModelId,
    /// Its GPU.
    pub gpu: GpuId,
    /// `engine.kv_cache` to set (`None`: the template's).
    pub kv_cache: Option<KvCacheMode>,
    /// `engine.gpu_memory_utilization` to set (`None`: the template's).
    pub gpu_memory_utilization: Option<f64>,
}

/// What a [`Placer`] is built from: the variant's file, the templates and the overrides.
#[derive(Clone, Copy, Debug)]
pub struct PlacerInput<'a> {
    /// The scenario text.
    pub text: &'a str,
    /// Its path (messages, relative paths).
    pub path: &'a Path,
    /// The variant to load.
    pub variant: &'a str,
    /// The GPU kind of the cluster (`[cluster] gpu`).
    pub gpu: &'a str,
    /// One `[[instances]]` entry per model (without `gpu`), in model order.
    pub templates: &'a [toml::Table],
    /// Overrides applied before `cluster` and `instances` are replaced.
    pub pre: &'a [Override],
    /// Overrides applied after (`instances.*.FIELD`: they shape every template).
    pub post: &'a [Override],
}

/// One variant loaded once, ready to build the scenario of any placement of its models.
#[derive(Debug)]
pub struct Placer {
    file: PathBuf,
    base_dir: PathBuf,
    /// The probe: every template alone on its own GPU.
    probe: Scenario,
    /// The probe's typed file (its `instances` are the templates, with `post` applied).
    raw: RawFile,
    env: InstanceEnv,
    /// Per template, its engine and step times as written, with static KV and with elastic KV
    /// (see [`kv_slot`]); `None` where the loader refuses it (`place` then resolves it again at
    /// the instance's index, for the error).
    engines: Vec<[Option<ResolvedEngine>; 3]>,
    /// The variant's `set` and the `pre` overrides, named in errors about fields they set.
    origins: Vec<(Override, String)>,
    /// The scenario's own `[cluster] contention` (after `pre`): the probe's `[cluster]` replaces
    /// the file's, so it is read from the file as written.
    contention: Option<RawContention>,
}

impl Placer {
    /// Loads the probe: `input.variant` of `input.text` with `pre`, then `[cluster]` = one GPU of
    /// `input.gpu` per template and `instances` = the templates (template `m` on GPU `m`), then
    /// `post`. Errors are the loader's, as `simulate` would report them for that file.
    pub fn new(input: &PlacerInput<'_>) -> Result<Placer, ScenarioError> {
        let n = input.templates.len();
        let mut cluster = toml::Table::new();
        cluster.insert("gpu".into(), toml::Value::String(input.gpu.to_string()));
        cluster.insert("num_gpus".into(), toml::Value::Integer(n as i64));
        let probe: Vec<toml::Value> = input
            .templates
            .iter()
            .enumerate()
            .map(|(m, t)| {
                let mut t = t.clone();
                t.insert("gpu".into(), toml::Value::Integer(m as i64));
                toml::Value::Table(t)
            })
            .collect();
        let mut overrides = input.pre.to_vec();
        overrides.push(Override::new("cluster", toml::Value::Table(cluster)));
        overrides.push(Override::new("instances", toml::Value::Array(probe)));
        overrides.extend(input.post.iter().cloned());
        let (file, parsed) = parse_variants(input.text, input.path, &overrides)?;
        let probe = file.variant(input.variant)?.clone();
        let index = file.variants.iter().position(|v| v.variant == input.variant).unwrap_or_default();
        let Some(ParsedVariant { raw, applied }) = parsed.into_iter().nth(index) else {
            return Err(ScenarioError::new(
                input.path,
                "--variant",
                format!("no variant \"{}\"", input.variant),
            ));
        };
        // The file as written (with `pre`) for what the probe's `[cluster]` replaced.
        let (_, written) = parse_variants(input.text, input.path, input.pre)?;
        let contention = written.into_iter().nth(index).and_then(|p| p.raw.cluster.contention);
        let ctx = Ctx { file: input.path, base_dir: &file.base_dir };
        let env = instance_env(ctx, &raw)?;
        let engines = (0..raw.instances.len().min(probe.instances.len()))
            .map(|m| {
                let model = &probe.models[probe.instances[m].model.index()];
                let gpu = &probe.gpus[probe.instances[m].gpu.index()];
                [None, Some(KvCacheMode::Static), Some(KvCacheMode::Elastic)].map(|kv| {
                    let mut ri = raw.instances[m].clone();
                    if kv.is_some() {
                        ri.engine.kv_cache = kv;
                    }
                    // A refusal is not kept: `place` asks again at the instance's own index.
                    let field = |knob: &str| knob.to_string();
                    resolve_engine(ctx, &raw, &env, (m, &ri), model, gpu, &field).ok()
                })
            })
            .collect();
        // The variant's own `set` comes first; then the command line's, of which `pre` are the
        // first `input.pre.len()`.
        let own = applied.len().saturating_sub(overrides.len());
        let origins = applied.into_iter().take(own + input.pre.len()).collect();
        Ok(Placer {
            file: input.path.to_path_buf(),
            base_dir: file.base_dir,
            probe,
            raw,
            env,
            engines,
            origins,
            contention,
        })
    }

    /// The probe scenario: every template alone on its own GPU.
    pub fn probe(&self) -> &Scenario {
        &self.probe
    }

    /// The scenario of `placements` on `num_gpus` GPUs of the probe's kind: each instance a copy of
    /// its model's template on its GPU with its KV settings, resolved and checked as the loader
    /// does; or the loader's refusal. The placements must list the models in probe order (each
    /// model's first instance before the next model's), so the workload's model ids hold.
    pub fn place(&self, num_gpus: u32, placements: &[Placement]) -> Result<Scenario, ScenarioError> {
        let ctx = Ctx { file: &self.file, base_dir: &self.base_dir };
        self.build(ctx, num_gpus, placements).map_err(|e| annotate(ctx, e, &self.origins))
    }

    fn build(
        &self,
        ctx: Ctx<'_>,
        num_gpus: u32,
        placements: &[Placement],
    ) -> Result<Scenario, ScenarioError> {
        let cluster = RawCluster {
            gpu: self.raw.cluster.gpu.clone(),
            num_gpus: Some(num_gpus),
            gpus: None,
            contention: None,
        };
        let gpus = resolve_cluster(ctx, &cluster, &self.env.gpu_catalog)?;
        let mut instances: Vec<RawInstance> = Vec::with_capacity(placements.len());
        for p in placements {
            let Some(template) = self.raw.instances.get(p.model.index()) else {
                return Err(ctx.err("instances", format!("no template for model {}", p.model.index())));
            };
            let mut ri = template.clone();
            ri.gpu = p.gpu.0;
            if let Some(kv) = p.kv_cache {
                ri.engine.kv_cache = Some(kv);
            }
            if let Some(u) = p.gpu_memory_utilization {
                ri.engine.gpu_memory_utilization = Some(u);
            }
            instances.push(ri);
        }
        // `gpu_memory_utilization` derives no other knob (`presets::derive_engine`): it is set on
        // the engine resolved for the template's KV mode.
        let known = |i: usize| {
            let p = placements.get(i)?;
            let mut e = self.engines.get(p.model.index())?[kv_slot(p.kv_cache)].clone()?;
            if let Some(u) = p.gpu_memory_utilization {
                e.engine.gpu_memory_utilization = u;
            }
            Some(e)
        };
        let (models, specs) = resolve_instances(ctx, &self.raw, &self.env, &instances, &gpus, &known)?;
        if models != self.probe.models {
            return Err(ctx.err(
                "instances",
                "a placement must give every model an instance, models in the probe's order",
            ));
        }
        let contention = contention_of(ctx, self.contention.as_ref(), &specs)?;
        let scenario = Scenario { gpus, instances: specs, contention, ..self.probe.clone() };
        let field = |i: usize, knob: &str| engine_field(&self.raw.defaults.engine, &instances, i, knob);
        check_placement(ctx, &scenario, &limits_of(&self.raw), &field)?;
        Ok(scenario)
    }
}

/// Where a KV setting's engine is kept in `Placer::engines`: as written, static, elastic.
fn kv_slot(kv: Option<KvCacheMode>) -> usize {
    match kv {
        None => 0,
        Some(KvCacheMode::Static) => 1,
        Some(KvCacheMode::Elastic) => 2,
    }
}
