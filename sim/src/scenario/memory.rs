//! Startup memory checks: would each vLLM instance of the scenario start on its GPU?
//!
//! Mirrors the checks vLLM runs before serving: `max_model_len` within the model's
//! `max_position_embeddings` (vllm/config.py `_get_and_verify_max_len`); at least one KV block after
//! weights and the profiled reserve ("No available memory for the cache blocks",
//! vllm/worker/worker.py `raise_if_cache_size_invalid` in 0.6.4, vllm/v1/worker/gpu_worker.py in
//! V1); and one `max_model_len` request fitting in the KV cache (`raise_if_cache_size_invalid`;
//! V1 vllm/v1/core/kv_cache_utils.py `check_enough_kv_cache_memory`). Co-tenants of a GPU: static
//! instances each take `total x gpu_memory_utilization`, so their fractions must sum to <= 1;
//! elastic (kvcached) instances share one pool of `total x gpu_memory_utilization` from which every
//! co-tenant's weights and reserve (and static co-tenants' whole share) come first, and which must
//! also hold every elastic instance's pre-mapped reserve pages. This module only checks; the
//! cluster module computes the same plans (`cluster::gpu_kv_plan`, `elastic_kv_plan`) at run time.

use super::error::{Ctx, ScenarioError, gib};
use super::types::{EngineConfig, GpuSpec, InstanceSpec, KvCacheMode, ModelSpec};
use crate::cluster::{PageGeometry, elastic_kv_plan_in, gpu_kv_plan, static_kv_budget};
use crate::ids::GpuId;

/// Names the TOML field an engine knob of instance `i` came from (the instance's own table or
/// `[defaults.engine]`).
pub(crate) type EngineField<'a> = &'a dyn Fn(usize, &str) -> String;

/// Bytes an instance takes from its GPU before any elastic KV: its whole share when static, its
/// weights and reserve when elastic.
fn footprint(model: &ModelSpec, gpu: &GpuSpec, e: &EngineConfig) -> u64 {
    match e.kv_cache {
        KvCacheMode::Static => usable(gpu, e),
        KvCacheMode::Elastic => model.weight_bytes().saturating_add(e.activation_reserve_bytes),
    }
}

fn usable(gpu: &GpuSpec, e: &EngineConfig) -> u64 {
    (gpu.memory_bytes as f64 * e.gpu_memory_utilization) as u64
}

/// Runs every startup check over the resolved instances.
pub(crate) fn check_memory(
    ctx: Ctx<'_>,
    gpus: &[GpuSpec],
    models: &[ModelSpec],
    instances: &[InstanceSpec],
    field: EngineField<'_>,
) -> Result<(), ScenarioError> {
    for (i, inst) in instances.iter().enumerate() {
        let model = &models[inst.model.index()];
        if inst.engine.max_model_len > model.max_position_embeddings {
            return Err(ctx.instance_err(
                i,
                field(i, "max_model_len"),
                format!(
                    "max_model_len {} is greater than {}'s max_position_embeddings {}; vLLM \
                     refuses to start (\"User-specified max_model_len is greater than the derived \
                     max_model_len\"): use at most {}",
                    inst.engine.max_model_len,
                    model.name,
                    model.max_position_embeddings,
                    model.max_position_embeddings
                ),
            ));
        }
    }
    check_gpu_sharing(ctx, gpus, models, instances, field)?;
    for i in 0..instances.len() {
        check_instance(ctx, gpus, models, instances, i, field)?;
    }
    Ok(())
}

/// Co-tenants of one GPU must fit together.
fn check_gpu_sharing(
    ctx: Ctx<'_>,
    gpus: &[GpuSpec],
    models: &[ModelSpec],
    instances: &[InstanceSpec],
    field: EngineField<'_>,
) -> Result<(), ScenarioError> {
    for (g, gpu) in gpus.iter().enumerate() {
        let mut static_sum = 0.0;
        let mut static_names: Vec<&str> = Vec::new();
        for (i, inst) in instances.iter().enumerate().filter(|(_, x)| x.gpu.index() == g) {
            if inst.engine.kv_cache == KvCacheMode::Static {
                static_sum += inst.engine.gpu_memory_utilization;
                static_names.push(&inst.name);
                if static_sum > 1.0 + 1e-9 {
                    return Err(ctx.instance_err(
                        i,
                        field(i, "gpu_memory_utilization"),
                        format!(
                            "static instances {} on GPU {g} ({}) reserve {static_sum:.2} of its \
                             memory in all; each static instance takes total x \
                             gpu_memory_utilization, so the fractions must sum to <= 1 (e.g. {:.2} \
                             each), or use kv_cache = \"elastic\"",
                            static_names.join(", "),
                            gpu.name,
                            (100.0 / static_names.len() as f64).floor() / 100.0
                        ),
                    ));
                }
            }
        }
        let tenants: Vec<(usize, &InstanceSpec)> =
            instances.iter().enumerate().filter(|(_, x)| x.gpu.index() == g).collect();
        let total: u64 = tenants
            .iter()
            .map(|(_, x)| footprint(&models[x.model.index()], gpu, &x.engine))
            .fold(0u64, u64::saturating_add);
        if let (true, Some((i, _))) = (total > gpu.memory_bytes, tenants.last()) {
            return Err(ctx.instance_err(
                *i,
                field(*i, "gpu_memory_utilization"),
                format!(
                    "the instances on GPU {g} ({}, {}) need {} before any elastic KV (static \
                     shares plus elastic weights and reserves): {}; move an instance to another GPU",
                    gpu.name,
                    gib(gpu.memory_bytes),
                    gib(total),
                    tenants
                        .iter()
                        .map(|(_, x)| format!(
                            "{} {}",
                            x.name,
                            gib(footprint(&models[x.model.index()], gpu, &x.engine))
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        check_elastic_pool(ctx, GpuId(g as u32), gpu, models, instances, field)?;
    }
    Ok(())
}

/// Elastic co-tenants: weights, activation reserves, static shares and every elastic instance's
/// pre-mapped reserve pages must fit in `total x cap`.
fn check_elastic_pool(
    ctx: Ctx<'_>,
    g: GpuId,
    gpu: &GpuSpec,
    models: &[ModelSpec],
    instances: &[InstanceSpec],
    field: EngineField<'_>,
) -> Result<(), ScenarioError> {
    let plan = gpu_kv_plan(g, gpu, models, instances);
    let Some(usable_bytes) = plan.elastic_usable_bytes else { return Ok(()) };
    let need = plan.taken_bytes.saturating_add(plan.reserve_page_bytes);
    if need <= usable_bytes {
        return Ok(());
    }
    let elastic: Vec<usize> = plan
        .instances
        .iter()
        .map(|i| i.index())
        .filter(|&i| instances[i].engine.kv_cache == KvCacheMode::Elastic)
        .collect();
    let cap = elastic.iter().map(|&i| instances[i].engine.gpu_memory_utilization).fold(1.0, f64::min);
    let parts: Vec<String> = plan
        .instances
        .iter()
        .map(|i| {
            let x = &instances[i.index()];
            let m = &models[x.model.index()];
            match x.engine.kv_cache {
                KvCacheMode::Static => format!("{} static share {}", x.name, gib(usable(gpu, &x.engine))),
                KvCacheMode::Elastic => {
                    let pages = PageGeometry::new(m, x.engine.block_size).map_or(0, |p| p.page_bytes)
                        * u64::from(x.engine.elastic.min_reserve_pages);
                    format!(
                        "{} weights {} + reserve {} + {} reserve pages {}",
                        x.name,
                        gib(m.weight_bytes()),
                        gib(x.engine.activation_reserve_bytes),
                        x.engine.elastic.min_reserve_pages,
                        gib(pages)
                    )
                }
            }
        })
        .collect();
    let i = elastic.last().copied().unwrap_or(0);
    Err(ctx.instance_err(
        i,
        field(i, "gpu_memory_utilization"),
        format!(
            "the instances on GPU {g} ({}) need {} (weights, activation reserves and static shares {} + \
             pre-mapped elastic reserve pages {}) but {} x gpu_memory_utilization {cap} = {}: {}; move \
             an instance to another GPU, lower elastic.min_reserve_pages or raise gpu_memory_utilization",
            gpu.name,
            gib(need),
            gib(plan.taken_bytes),
            gib(plan.reserve_page_bytes),
            gib(gpu.memory_bytes),
            gib(usable_bytes),
            parts.join(", ")
        ),
    ))
}

/// One instance: weights and reserve fit its share, some KV blocks remain, and one
/// `max_model_len` request fits in them (elastic instances: see `check_elastic_instance`).
fn check_instance(
    ctx: Ctx<'_>,
    gpus: &[GpuSpec],
    models: &[ModelSpec],
    instances: &[InstanceSpec],
    i: usize,
    field: EngineField<'_>,
) -> Result<(), ScenarioError> {
    let inst = &instances[i];
    if inst.engine.kv_cache == KvCacheMode::Elastic {
        return check_elastic_instance(ctx, gpus, models, instances, i, field);
    }
    let model = &models[inst.model.index()];
    let gpu_id = inst.gpu.index();
    let gpu = &gpus[gpu_id];
    let e = &inst.engine;
    let weights = model.weight_bytes();
    let reserve = e.activation_reserve_bytes;
    let block_bytes = model.kv_bytes_per_token().saturating_mul(u64::from(e.block_size.max(1)));
    let share = usable(gpu, e);
    let needed = weights.saturating_add(reserve);
    if needed >= share {
        return Err(ctx.instance_err(
            i,
            field(i, "gpu_memory_utilization"),
            format!(
                "{} does not fit on GPU {gpu_id} ({}): weights {} + reserve {} = {}, but {} x \
                 gpu_memory_utilization {} = {}; raise gpu_memory_utilization, lower \
                 max_num_batched_tokens/max_num_seqs, or use a bigger GPU",
                inst.name,
                gpu.name,
                gib(weights),
                gib(reserve),
                gib(weights.saturating_add(reserve)),
                gib(gpu.memory_bytes),
                e.gpu_memory_utilization,
                gib(share),
            ),
        ));
    }
    let kv_bytes = share - needed;
    let num_blocks = match e.num_gpu_blocks_override {
        Some(n) => u64::from(n),
        None => u64::from(static_kv_budget(model, gpu, e).num_gpu_blocks),
    };
    if num_blocks == 0 {
        return Err(ctx.instance_err(
            i,
            field(i, "gpu_memory_utilization"),
            format!(
                "no KV blocks left for {} on GPU {gpu_id} ({}): {} remain after weights and \
                 reserve, one block of {} tokens needs {}; vLLM stops with \"No \
                 available memory for the cache blocks\": raise gpu_memory_utilization",
                inst.name,
                gpu.name,
                gib(kv_bytes),
                e.block_size,
                gib(block_bytes)
            ),
        ));
    }
    let capacity = num_blocks.saturating_mul(u64::from(e.block_size));
    if capacity < u64::from(e.max_model_len) {
        let need = u64::from(e.max_model_len).saturating_mul(model.kv_bytes_per_token());
        return Err(ctx.instance_err(
            i,
            field(i, "max_model_len"),
            format!(
                "{}'s KV cache holds {capacity} tokens ({}) but max_model_len {} needs {}; vLLM \
                 refuses to start (\"The model's max seq len is larger than the maximum number of \
                 tokens that can be stored in KV cache\"): set max_model_len <= {capacity} or raise \
                 gpu_memory_utilization",
                inst.name,
                gib(num_blocks.saturating_mul(block_bytes)),
                e.max_model_len,
                gib(need),
            ),
        ));
    }
    Ok(())
}

/// One elastic instance: its blocks fit a kvcached page, and the pool (within its limit) holds
/// one `max_model_len` request.
fn check_elastic_instance(
    ctx: Ctx<'_>,
    gpus: &[GpuSpec],
    models: &[ModelSpec],
    instances: &[InstanceSpec],
    i: usize,
    field: EngineField<'_>,
) -> Result<(), ScenarioError> {
    let inst = &instances[i];
    let model = &models[inst.model.index()];
    let e = &inst.engine;
    let gpu = &gpus[inst.gpu.index()];
    let Some(plan) = elastic_kv_plan_in(gpus, models, instances, i) else {
        return Err(ctx.instance_err(
            i,
            field(i, "block_size"),
            format!(
                "one block of {} tokens of {} per layer is larger than kvcached's 2 MiB page: use a \
                 smaller block_size",
                e.block_size, model.name
            ),
        ));
    };
    let g = &plan.geometry;
    let limit_note = match e.elastic.max_memory_bytes {
        Some(m) if m < plan.pool_bytes => format!(" (its elastic.max_memory_gib limit is {})", gib(m)),
        _ => String::new(),
    };
    if plan.limit_pages == 0 {
        return Err(ctx.instance_err(
            i,
            field(i, "gpu_memory_utilization"),
            format!(
                "no KV page left for {} on GPU {} ({}): the elastic pool is {}{limit_note} and one page \
                 (2 MiB x 2 x {} layers) needs {}; raise gpu_memory_utilization or move a co-tenant",
                inst.name,
                inst.gpu,
                gpu.name,
                gib(plan.pool_bytes),
                model.num_layers,
                gib(g.page_bytes)
            ),
        ));
    }
    let capacity = u64::from(plan.limit_pages) * g.tokens_per_page();
    if capacity < u64::from(e.max_model_len) {
        return Err(ctx.instance_err(
            i,
            field(i, "max_model_len"),
            format!(
                "{}'s elastic KV can hold at most {capacity} tokens ({} pages of {} tokens from GPU {}'s \
                 pool of {}{limit_note}) but max_model_len is {}; vLLM refuses to start: set \
                 max_model_len <= {capacity}",
                inst.name,
                plan.limit_pages,
                g.tokens_per_page(),
                inst.gpu,
                gib(plan.pool_bytes),
                e.max_model_len
            ),
        ));
    }
    Ok(())
}
