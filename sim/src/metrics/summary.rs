//! `summary.json`: per-model and overall aggregates of one run, built as rows stream past.

use super::send_lag::{SendLagAcc, SendLagSummary};
use super::{LatencyStats, LogHistogram};
use crate::cluster::{elastic_kv_plan, gpu_kv_plans, static_kv_budget};
use crate::ids::InstanceId;
use crate::observe::Observer;
use crate::scenario::{KvCacheMode, SloSpec};
use crate::trace::{InstanceRow, RequestRow, RequestStatus, SCHEMA_VERSION, Source};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// Aggregates of one model (or of all models: `model = "all"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Model key, or `"all"`.
    pub model: String,
    /// Requests issued.
    pub requests: u64,
    /// Requests that finished with every token.
    pub ok: u64,
    /// Requests that failed.
    pub error: u64,
    /// Requests that timed out.
    pub timeout: u64,
    /// Requests refused before running.
    pub rejected: u64,
    /// ok / requests.
    pub success_rate: f64,
    /// First send to last end of this model's requests, seconds.
    pub duration_s: f64,
    /// ok requests per second of `duration_s`.
    pub request_throughput: f64,
    /// Output tokens of ok requests per second.
    pub output_token_throughput: f64,
    /// Prompt + output tokens of ok requests per second.
    pub total_token_throughput: f64,
    /// Time to first token.
    pub ttft: Option<LatencyStats>,
    /// Time per output token after the first.
    pub tpot: Option<LatencyStats>,
    /// Inter-token latency (every gap).
    pub itl: Option<LatencyStats>,
    /// End-to-end latency.
    pub e2e: Option<LatencyStats>,
    /// Preemptions suffered by this model's requests.
    pub preemptions: u64,
    /// ok requests meeting every per-request SLO, per second (None without SLOs).
    pub goodput: Option<f64>,
    /// Fraction of issued requests meeting every per-request SLO (None without SLOs).
    pub slo_attainment: Option<f64>,
    /// Prefix-cache figures of this model's requests (see [`PrefixCacheStats`]).
    #[serde(default)]
    pub prefix_cache: PrefixCacheStats,
}

/// Prefix-cache hits as vLLM counts them (`vllm:prefix_cache_queries` / `vllm:prefix_cache_hits`,
/// vllm 0.33.0 v1/core/kv_cache_manager.py `record_prefix_cache_stats`): when a request is first
/// admitted (not when resumed after a preemption), `queries` grows by its tokens and `hits` by the
/// tokens found cached; instances with prefix caching off count nothing. From the request rows'
/// `cached_tokens` (the simulator's, or what a live server's usage reported as
/// `prompt_tokens_details.cached_tokens`; rows without it report no rate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrefixCacheStats {
    /// Prompt tokens looked up at first admission.
    pub queries: u64,
    /// Of those, tokens served from the cache.
    pub hits: u64,
    /// `hits / queries` (None when nothing was queried: no request admitted, caching off, live).
    pub hit_rate: Option<f64>,
}

impl PrefixCacheStats {
    fn add(&mut self, prompt_tokens: u32, cached_tokens: u32) {
        self.queries += u64::from(prompt_tokens);
        self.hits += u64::from(cached_tokens);
    }

    fn merge(&mut self, o: &PrefixCacheStats) {
        self.queries += o.queries;
        self.hits += o.hits;
    }

    fn finished(mut self) -> PrefixCacheStats {
        self.hit_rate = (self.queries > 0).then(|| self.hits as f64 / self.queries as f64);
        self
    }
}

/// KV and load figures of one instance over the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    /// Instance name.
    pub instance: String,
    /// Model key.
    pub model: String,
    /// GPU index.
    pub gpu: u32,
    /// Requests routed to it.
    pub requests: u64,
    /// Peak KV usage fraction seen in samples.
    pub peak_kv_usage: f64,
    /// Mean KV usage fraction over samples.
    pub mean_kv_usage: f64,
    /// Peak waiting queue seen in samples.
    pub peak_waiting: u32,
    /// Preemptions at the last sample.
    pub preemptions: u64,
    /// Peak GPU memory its KV cache held in samples, bytes: blocks in use x block bytes (static),
    /// mapped pages x page bytes (elastic). None when the run's layout is unknown.
    #[serde(default)]
    pub peak_kv_memory_bytes: Option<u64>,
    /// Mean of the same over samples, bytes.
    #[serde(default)]
    pub mean_kv_memory_bytes: Option<f64>,
    /// Prefix-cache figures of the requests it served (see [`PrefixCacheStats`]).
    #[serde(default)]
    pub prefix_cache: PrefixCacheStats,
}

/// KV memory of one GPU over the run: the sum over its instances of the samples taken at the
/// same instant (the simulator samples every instance at once; live scrapes that differ in time
/// are not summed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuSummary {
    /// GPU index.
    pub gpu: u32,
    /// Its instances, in scenario order.
    pub instances: Vec<String>,
    /// KV bytes the GPU can hold: the elastic pool plus the static instances' caches.
    pub kv_capacity_bytes: u64,
    /// The elastic pool shared by its elastic instances, bytes (None without elastic KV).
    pub elastic_pool_bytes: Option<u64>,
    /// Peak KV memory of its instances together at one sample time, bytes.
    pub peak_kv_memory_bytes: u64,
    /// Mean KV memory of its instances together over sample times, bytes.
    pub mean_kv_memory_bytes: f64,
    /// Least free memory seen in its elastic pool, bytes (None without elastic KV).
    pub min_pool_free_bytes: Option<u64>,
}

/// The whole of `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run-dir schema version.
    pub schema_version: u32,
    /// Sim or live.
    pub source: Source,
    /// Scenario name.
    pub scenario_name: String,
    /// Variant name.
    pub variant: String,
    /// Whether step times came from calibrated profiles (always false for live: not applicable).
    pub calibrated: bool,
    /// One entry per model, in scenario order.
    pub models: Vec<ModelSummary>,
    /// All models together.
    pub overall: ModelSummary,
    /// One entry per instance, in scenario order.
    pub instances: Vec<InstanceSummary>,
    /// KV memory per GPU, by GPU index (empty when the run's layout is unknown).
    #[serde(default)]
    pub gpus: Vec<GpuSummary>,
    /// How late the requests were sent (live runs only; simulated requests are sent on time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<SendLagSummary>,
}

/// Requests counted by how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct StatusCounts {
    ok: u64,
    error: u64,
    timeout: u64,
    rejected: u64,
}

impl StatusCounts {
    fn add(&mut self, status: RequestStatus) {
        let n = match status {
            RequestStatus::Ok => &mut self.ok,
            RequestStatus::Error => &mut self.error,
            RequestStatus::Timeout => &mut self.timeout,
            RequestStatus::Rejected => &mut self.rejected,
        };
        *n += 1;
    }

    fn merge(&mut self, o: &StatusCounts) {
        self.ok += o.ok;
        self.error += o.error;
        self.timeout += o.timeout;
        self.rejected += o.rejected;
    }

    fn total(&self) -> u64 {
        self.ok + self.error + self.timeout + self.rejected
    }
}

#[derive(Default)]
struct ModelAcc {
    statuses: StatusCounts,
    ttft: Vec<f64>,
    tpot: Vec<f64>,
    e2e: Vec<f64>,
    itl: LogHistogram,
    prompt_tokens: u64,
    output_tokens: u64,
    preemptions: u64,
    good: u64,
    first_send: Option<f64>,
    last_end: Option<f64>,
    prefix_cache: PrefixCacheStats,
}

impl ModelAcc {
    fn add(&mut self, row: &RequestRow, slo: &SloSpec, caching: bool) {
        if let (true, Some(cached)) = (caching, row.cached_tokens) {
            self.prefix_cache.add(row.prompt_tokens, cached);
        }
        self.statuses.add(row.status);
        self.preemptions += u64::from(row.preemptions.unwrap_or(0));
        self.first_send = Some(self.first_send.map_or(row.send_s, |f| f.min(row.send_s)));
        if let Some(end) = row.end_s {
            self.last_end = Some(self.last_end.map_or(end, |l| l.max(end)));
        }
        if row.status != RequestStatus::Ok {
            return;
        }
        self.prompt_tokens += u64::from(row.prompt_tokens);
        self.output_tokens += u64::from(row.output_tokens);
        self.ttft.extend(row.ttft_s);
        self.tpot.extend(row.tpot_s);
        self.e2e.extend(row.e2e_s);
        let meets = |bound: Option<f64>, v: Option<f64>| match (bound, v) {
            (None, _) => true,
            (Some(b), Some(v)) => v <= b,
            (Some(_), None) => true,
        };
        if meets(slo.ttft_s, row.ttft_s) && meets(slo.tpot_s, row.tpot_s) && meets(slo.e2e_s, row.e2e_s) {
            self.good += 1;
        }
    }

    fn merge_from(&mut self, o: &ModelAcc) {
        self.statuses.merge(&o.statuses);
        self.ttft.extend_from_slice(&o.ttft);
        self.tpot.extend_from_slice(&o.tpot);
        self.e2e.extend_from_slice(&o.e2e);
        self.itl.merge(&o.itl);
        self.prompt_tokens += o.prompt_tokens;
        self.output_tokens += o.output_tokens;
        self.preemptions += o.preemptions;
        self.good += o.good;
        self.prefix_cache.merge(&o.prefix_cache);
        self.first_send = match (self.first_send, o.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_end = match (self.last_end, o.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn finish(mut self, model: String, has_slo: bool) -> ModelSummary {
        let requests = self.statuses.total();
        let ok = self.statuses.ok;
        let duration_s = match (self.first_send, self.last_end) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => 0.0,
        };
        let per_s = |x: f64| {
            if duration_s > 0.0 { x / duration_s } else { 0.0 }
        };
        let itl = self.itl.mean().and_then(|mean| {
            Some(LatencyStats {
                count: self.itl.count(),
                mean,
                p50: self.itl.percentile(50.0)?,
                p90: self.itl.percentile(90.0)?,
                p99: self.itl.percentile(99.0)?,
                p99_9: self.itl.percentile(99.9)?,
                max: self.itl.max(),
            })
        });
        ModelSummary {
            model,
            requests,
            ok,
            error: self.statuses.error,
            timeout: self.statuses.timeout,
            rejected: self.statuses.rejected,
            success_rate: if requests > 0 { ok as f64 / requests as f64 } else { 0.0 },
            duration_s,
            request_throughput: per_s(ok as f64),
            output_token_throughput: per_s(self.output_tokens as f64),
            total_token_throughput: per_s((self.output_tokens + self.prompt_tokens) as f64),
            ttft: LatencyStats::from_samples(&mut self.ttft),
            tpot: LatencyStats::from_samples(&mut self.tpot),
            itl,
            e2e: LatencyStats::from_samples(&mut self.e2e),
            preemptions: self.preemptions,
            goodput: has_slo.then(|| per_s(self.good as f64)),
            slo_attainment: (has_slo && requests > 0).then(|| self.good as f64 / requests as f64),
            prefix_cache: self.prefix_cache.finished(),
        }
    }
}

#[derive(Default)]
struct InstanceAcc {
    model: String,
    gpu: u32,
    requests: u64,
    samples: u64,
    kv_sum: f64,
    kv_peak: f64,
    peak_waiting: u32,
    preemptions: u64,
    mem_sum: f64,
    mem_peak: u64,
    prefix_cache: PrefixCacheStats,
}

/// How to turn an instance's samples into KV bytes.
#[derive(Clone, Copy, Debug)]
struct KvLayout {
    /// KV blocks (`kv_cache_usage` is a fraction of these).
    num_blocks: u32,
    block_bytes: u64,
    /// Elastic: bytes of one page (`mapped_pages` x this).
    page_bytes: Option<u64>,
}

impl KvLayout {
    fn bytes(&self, row: &InstanceRow) -> u64 {
        match (row.mapped_pages, self.page_bytes) {
            (Some(p), Some(b)) => u64::from(p) * b,
            _ => (row.kv_cache_usage * f64::from(self.num_blocks)).round() as u64 * self.block_bytes,
        }
    }
}

/// One GPU's plan and the running sums of its samples.
#[derive(Clone, Debug)]
struct GpuAcc {
    gpu: u32,
    instances: Vec<String>,
    kv_capacity_bytes: u64,
    elastic_pool_bytes: Option<u64>,
    /// The sample time being summed, and the sum so far.
    current: Option<(f64, u64)>,
    samples: u64,
    sum: f64,
    peak: u64,
    min_pool_free: Option<u64>,
}

impl GpuAcc {
    fn add(&mut self, row: &InstanceRow, bytes: u64) {
        match &mut self.current {
            Some((t, total)) if *t == row.time_s => *total += bytes,
            _ => {
                self.flush();
                self.current = Some((row.time_s, bytes));
            }
        }
        if let Some(free) = row.gpu_pool_free_bytes {
            self.min_pool_free = Some(self.min_pool_free.map_or(free, |m| m.min(free)));
        }
    }

    fn flush(&mut self) {
        if let Some((_, total)) = self.current.take() {
            self.samples += 1;
            self.sum += total as f64;
            self.peak = self.peak.max(total);
        }
    }

    fn finish(mut self) -> GpuSummary {
        self.flush();
        GpuSummary {
            gpu: self.gpu,
            instances: self.instances,
            kv_capacity_bytes: self.kv_capacity_bytes,
            elastic_pool_bytes: self.elastic_pool_bytes,
            peak_kv_memory_bytes: self.peak,
            mean_kv_memory_bytes: if self.samples > 0 { self.sum / self.samples as f64 } else { 0.0 },
            min_pool_free_bytes: self.min_pool_free,
        }
    }
}

/// Builds a [`RunSummary`] from the rows of a run; an [`Observer`].
pub struct SummaryBuilder {
    source: Source,
    scenario_name: String,
    variant: String,
    calibrated: bool,
    slo: SloSpec,
    model_order: Vec<String>,
    models: BTreeMap<String, ModelAcc>,
    instance_order: Vec<String>,
    instances: BTreeMap<String, InstanceAcc>,
    /// KV layout per instance name (known for scenario runs only).
    kv_layouts: BTreeMap<String, KvLayout>,
    /// Per-GPU accumulators, by GPU index (scenario runs only).
    gpus: Vec<GpuAcc>,
    /// Instances running with prefix caching off, whose lookups vLLM does not count (scenario
    /// runs only; otherwise every row with `cached_tokens` counts).
    caching_off: BTreeSet<String>,
    /// Send lags (live runs only).
    send_lag: SendLagAcc,
}

impl SummaryBuilder {
    /// A builder for a run of `models` (keys, in scenario order) and `instances` (names, in order).
    pub fn new(
        source: Source,
        scenario_name: &str,
        variant: &str,
        calibrated: bool,
        slo: SloSpec,
        models: Vec<String>,
        instances: Vec<String>,
    ) -> Self {
        SummaryBuilder {
            source,
            scenario_name: scenario_name.to_string(),
            variant: variant.to_string(),
            calibrated,
            slo,
            model_order: models,
            models: BTreeMap::new(),
            instance_order: instances,
            instances: BTreeMap::new(),
            kv_layouts: BTreeMap::new(),
            gpus: Vec::new(),
            caching_off: BTreeSet::new(),
            send_lag: SendLagAcc::default(),
        }
    }

    /// A builder for one resolved scenario variant; it also reports KV memory per instance and
    /// per GPU (from the scenario's memory plans).
    pub fn for_scenario(source: Source, s: &crate::scenario::Scenario, calibrated: bool) -> Self {
        let mut b = Self::new(
            source,
            &s.name,
            &s.variant,
            calibrated,
            s.slo.clone(),
            s.models.iter().map(|m| m.name.clone()).collect(),
            s.instances.iter().map(|i| i.name.clone()).collect(),
        );
        for (i, spec) in s.instances.iter().enumerate() {
            let model = &s.models[spec.model.index()];
            let e = &spec.engine;
            let block_bytes = model.kv_bytes_per_token() * u64::from(e.block_size.max(1));
            let plan = match e.kv_cache {
                KvCacheMode::Elastic => elastic_kv_plan(s, InstanceId(i as u32)),
                KvCacheMode::Static => None,
            };
            let layout = match plan {
                Some(p) => KvLayout {
                    num_blocks: p.num_blocks(),
                    block_bytes,
                    page_bytes: Some(p.geometry.page_bytes),
                },
                None => KvLayout {
                    num_blocks: static_kv_budget(model, &s.gpus[spec.gpu.index()], e).num_gpu_blocks,
                    block_bytes,
                    page_bytes: None,
                },
            };
            b.kv_layouts.insert(spec.name.clone(), layout);
            if !e.enable_prefix_caching {
                b.caching_off.insert(spec.name.clone());
            }
        }
        b.gpus = gpu_kv_plans(s)
            .into_iter()
            .map(|p| GpuAcc {
                gpu: p.gpu.0,
                instances: p.instances.iter().map(|i| s.instances[i.index()].name.clone()).collect(),
                kv_capacity_bytes: p.kv_capacity_bytes(),
                elastic_pool_bytes: p.elastic_usable_bytes.map(|_| p.pool_bytes),
                current: None,
                samples: 0,
                sum: 0.0,
                peak: 0,
                min_pool_free: None,
            })
            .collect();
        b
    }

    /// The summary of everything observed so far.
    pub fn finish(self) -> RunSummary {
        let has_slo = self.slo.ttft_s.is_some() || self.slo.tpot_s.is_some() || self.slo.e2e_s.is_some();
        let mut all = ModelAcc::default();
        let mut models = self.models;
        let mut order = self.model_order;
        for k in models.keys() {
            if !order.contains(k) {
                order.push(k.clone());
            }
        }
        let mut out = Vec::new();
        for name in order {
            let acc = models.remove(&name).unwrap_or_default();
            all.merge_from(&acc);
            out.push(acc.finish(name, has_slo));
        }
        let mut instances = self.instances;
        let mut iorder = self.instance_order;
        for k in instances.keys() {
            if !iorder.contains(k) {
                iorder.push(k.clone());
            }
        }
        let instances = iorder
            .into_iter()
            .map(|name| {
                let a = instances.remove(&name).unwrap_or_default();
                let known = self.kv_layouts.contains_key(&name);
                InstanceSummary {
                    instance: name,
                    model: a.model,
                    gpu: a.gpu,
                    requests: a.requests,
                    peak_kv_usage: a.kv_peak,
                    mean_kv_usage: if a.samples > 0 { a.kv_sum / a.samples as f64 } else { 0.0 },
                    peak_waiting: a.peak_waiting,
                    preemptions: a.preemptions,
                    peak_kv_memory_bytes: known.then_some(a.mem_peak),
                    mean_kv_memory_bytes: known
                        .then(|| if a.samples > 0 { a.mem_sum / a.samples as f64 } else { 0.0 }),
                    prefix_cache: a.prefix_cache.finished(),
                }
            })
            .collect();
        RunSummary {
            schema_version: SCHEMA_VERSION,
            source: self.source,
            scenario_name: self.scenario_name,
            variant: self.variant,
            calibrated: self.calibrated,
            models: out,
            overall: all.finish("all".to_string(), has_slo),
            instances,
            gpus: self.gpus.into_iter().map(GpuAcc::finish).collect(),
            send_lag: if self.source == Source::Live { self.send_lag.finish() } else { None },
        }
    }
}

impl Observer for SummaryBuilder {
    fn on_request(&mut self, row: &RequestRow) -> io::Result<()> {
        let slo = &self.slo;
        let caching = !self.caching_off.contains(&row.instance);
        if self.source == Source::Live {
            self.send_lag.add(row.scheduled_s, row.send_s);
        }
        with_entry(&mut self.models, &row.model, |acc| acc.add(row, slo, caching));
        if !row.instance.is_empty() {
            with_entry(&mut self.instances, &row.instance, |inst| {
                inst.requests += 1;
                if let (true, Some(cached)) = (caching, row.cached_tokens) {
                    inst.prefix_cache.add(row.prompt_tokens, cached);
                }
                if inst.model.is_empty() {
                    inst.model = row.model.clone();
                }
            });
        }
        Ok(())
    }

    fn on_instance_sample(&mut self, row: &InstanceRow) -> io::Result<()> {
        let Self { instances, kv_layouts, gpus, .. } = self;
        with_entry(instances, &row.instance, |a| {
            if a.model != row.model {
                a.model.clone_from(&row.model);
            }
            a.gpu = row.gpu;
            a.samples += 1;
            a.kv_sum += row.kv_cache_usage;
            a.kv_peak = a.kv_peak.max(row.kv_cache_usage);
            a.peak_waiting = a.peak_waiting.max(row.num_requests_waiting);
            a.preemptions = row.num_preemptions_total;
            if let Some(layout) = kv_layouts.get(&row.instance) {
                let bytes = layout.bytes(row);
                a.mem_sum += bytes as f64;
                a.mem_peak = a.mem_peak.max(bytes);
                if let Some(g) = gpus.get_mut(row.gpu as usize) {
                    g.add(row, bytes);
                }
            }
        });
        Ok(())
    }

    fn on_itl(&mut self, model: &str, gap_s: f64, count: u64) -> io::Result<()> {
        with_entry(&mut self.models, model, |acc| acc.itl.add(gap_s, count));
        Ok(())
    }

    fn on_itl_histogram(&mut self, model: &str, _instance: &str, h: &LogHistogram) -> io::Result<()> {
        with_entry(&mut self.models, model, |acc| acc.itl.merge(h));
        Ok(())
    }
}

/// Runs `f` on the accumulator of `key`, created empty on first use (one lookup when it exists;
/// `entry` would allocate the key on every call).
fn with_entry<V: Default, R>(map: &mut BTreeMap<String, V>, key: &str, f: impl FnOnce(&mut V) -> R) -> R {
    match map.get_mut(key) {
        Some(v) => f(v),
        None => f(map.entry(key.to_string()).or_default()),
    }
}
