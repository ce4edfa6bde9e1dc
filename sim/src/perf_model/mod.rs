//! Step-time models: how long one engine step occupies the engine, and when its tokens reach the
//! client, as a function of the batch it runs.
//!
//! A step has GPU time `g` and CPU time `c` (scheduling, input preparation, output processing):
//! - GPU time comes from a [`Roofline`] prior computed from the model architecture and GPU specs
//!   (used when no profile exists; every output then says "uncalibrated") or from linear
//!   coefficients fitted from live traces (`profiles/*.toml`, see `calibration`). On top, CUDA
//!   graphs: a step of `T` query tokens at most the largest capture size runs a graph padded to
//!   the smallest capture size `>= T`, the padding charged as decode sequences; a larger step (or
//!   one the engine's graph rule excludes) runs eagerly and pays `eager_fixed_s`.
//! - CPU time is `cpu.fixed_s + cpu.per_request_s x scheduled requests`.
//! - The step's period (how long it occupies the engine): with async scheduling CPU overlaps GPU,
//!   `max(g, c)`; without, `g + c`.
//! - Its tokens reach the client `output_delay_s` after the step ends.
//!
//! Nothing here knows about requests or queues: the input is the [`BatchFeatures`] of one
//! `SchedulerOutput`.

mod prior;
mod roofline;

pub use prior::{cuda_graph_rule, default_capture_sizes, prior_overheads};
pub use roofline::Roofline;

use crate::scenario::{
    CpuCost, CudaGraphSpec, EngineConfig, GpuSpec, InstanceSpec, ModelSpec, PerfSpec, StepCoefficients,
};
use crate::time::SimDuration;

/// The largest CUDA-graph capture size a step model takes, in tokens.
pub const MAX_CAPTURE_SIZE: u32 = 65_536;

/// A fitted profile may extrapolate below zero for tiny batches; a step never takes less than a
/// microsecond.
const MIN_STEP_S: f64 = 1e-6;

/// The larger of `a` and `b`, or `b` when either is NaN (which finite specs never produce): a
/// plain compare, cheaper than `f64::max` in the per-step loops.
#[inline]
fn larger(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// What a step's batch looks like, as far as its duration is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchFeatures {
    /// Requests in the batch.
    pub num_scheduled_requests: u32,
    /// Prompt (or recompute) tokens computed in the step.
    pub num_prefill_tokens: u32,
    /// Requests decoding one token.
    pub num_decode_seqs: u32,
    /// KV tokens attention reads (context of every scheduled request, new tokens included).
    pub num_kv_tokens_read: u64,
    /// Sum over prefill chunks of new tokens x mean context: the quadratic part of attention.
    pub num_prefill_attn_pairs: u64,
    /// Longest context of a scheduled request, new tokens included (vLLM 0.6.4 runs a decode
    /// batch eagerly when it exceeds `max_seq_len_to_capture`).
    pub max_seq_len: u32,
}

/// How a step runs with respect to CUDA graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphMode {
    /// The engine has no graphs: no padding, no eager cost.
    NoGraphs,
    /// A captured graph, with this many padding tokens.
    Padded(u32),
    /// Without a graph (too large, or excluded by the engine's rule): pays `eager_fixed_s`.
    Eager,
}

/// The GPU part of a step: fitted coefficients or the roofline prior.
#[derive(Clone, Debug, PartialEq)]
enum GpuTime {
    /// Linear coefficients from a calibrated profile.
    Linear(StepCoefficients),
    /// The uncalibrated roofline prior.
    Roofline(Roofline),
}

/// Captured sizes and the rule deciding which batches may use them.
#[derive(Clone, Debug, PartialEq)]
struct CudaGraphs {
    /// `graph_size[t]`: the smallest capture size `>= t`, for `t` up to the largest (empty:
    /// no graphs). A table: the lookup runs for every step.
    graph_size: Vec<u32>,
    eager_fixed_s: f64,
    decode_only: bool,
    /// `u32::MAX` when unlimited.
    max_seq_len: u32,
}

impl CudaGraphs {
    fn new(spec: &CudaGraphSpec) -> CudaGraphs {
        let mut sizes = spec.capture_sizes.clone();
        // Profiles are checked to stay within this; no engine captures larger graphs.
        sizes.retain(|&s| (1..=MAX_CAPTURE_SIZE).contains(&s));
        sizes.sort_unstable();
        sizes.dedup();
        let largest = sizes.last().copied().unwrap_or(0);
        let graph_size = if largest == 0 {
            Vec::new()
        } else {
            (0..=largest).map(|t| sizes[sizes.partition_point(|&s| s < t)]).collect()
        };
        CudaGraphs {
            graph_size,
            eager_fixed_s: spec.eager_fixed_s,
            decode_only: spec.decode_only,
            max_seq_len: spec.max_seq_len_to_capture.unwrap_or(u32::MAX),
        }
    }

    /// The mode of a step of `tokens` query tokens, `pure_decode` when it has no prefill, whose
    /// longest context is `max_seq_len`.
    #[inline]
    fn mode(&self, tokens: u32, pure_decode: bool, max_seq_len: u32) -> GraphMode {
        if self.graph_size.is_empty() {
            return GraphMode::NoGraphs;
        }
        match self.graph_size.get(tokens as usize) {
            Some(&size) if (pure_decode || !self.decode_only) && max_seq_len <= self.max_seq_len => {
                GraphMode::Padded(size - tokens)
            }
            _ => GraphMode::Eager,
        }
    }
}

/// The step-time model of one instance: a (model, GPU, engine) triple and its engine's
/// scheduling mode.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTimeModel {
    gpu: GpuTime,
    graphs: CudaGraphs,
    cpu: CpuCost,
    async_scheduling: bool,
    output_delay: SimDuration,
}

impl StepTimeModel {
    /// The model an instance's [`PerfSpec`] asks for, under `engine`'s scheduling mode.
    pub fn from_spec(
        perf: &PerfSpec,
        model: &ModelSpec,
        gpu: &GpuSpec,
        engine: &EngineConfig,
    ) -> StepTimeModel {
        let gpu = match perf {
            PerfSpec::Profile { coefficients, .. } => GpuTime::Linear(coefficients.clone()),
            // The roofline prior charges the AWQ kernels the engine's `--quantization` selects
            // ([`Roofline::with_awq_kernel`]); calibrated profiles are used as they are.
            PerfSpec::Roofline { mfu, bandwidth_efficiency, step_overhead_s, .. } => {
                let r = Roofline::new(model, gpu, *mfu, *bandwidth_efficiency, *step_overhead_s);
                GpuTime::Roofline(match engine.awq_kernel() {
                    Some(kernel) => r.with_awq_kernel(model, gpu, *mfu, kernel),
                    None => r,
                })
            }
        };
        let o = perf.overheads();
        StepTimeModel {
            gpu,
            graphs: CudaGraphs::new(&o.cuda_graphs),
            cpu: o.cpu.clone(),
            async_scheduling: engine.async_scheduling,
            output_delay: SimDuration::from_secs_f64(o.output_delay_s.max(0.0)),
        }
    }

    /// The model of instance `spec` (of `model` on `gpu`): [`StepTimeModel::from_spec`] with the
    /// instance's own perf spec and engine.
    pub fn for_instance(spec: &InstanceSpec, model: &ModelSpec, gpu: &GpuSpec) -> StepTimeModel {
        StepTimeModel::from_spec(&spec.perf, model, gpu, &spec.engine)
    }

    /// A model of linear GPU coefficients only (no CPU time, graphs or delay), scheduling
    /// synchronously: a v1 profile.
    pub fn linear(coefficients: StepCoefficients) -> StepTimeModel {
        StepTimeModel {
            gpu: GpuTime::Linear(coefficients),
            graphs: CudaGraphs::new(&CudaGraphSpec::default()),
            cpu: CpuCost::default(),
            async_scheduling: false,
            output_delay: SimDuration::ZERO,
        }
    }

    /// The same model with these CPU costs, CUDA graphs, scheduling mode and output delay.
    pub fn with_overheads(
        mut self,
        cpu: CpuCost,
        graphs: &CudaGraphSpec,
        async_scheduling: bool,
        output_delay_s: f64,
    ) -> StepTimeModel {
        self.cpu = cpu;
        self.graphs = CudaGraphs::new(graphs);
        self.async_scheduling = async_scheduling;
        self.output_delay = SimDuration::from_secs_f64(output_delay_s.max(0.0));
        self
    }

    /// How `batch` runs with respect to CUDA graphs.
    #[inline]
    pub fn graph_mode(&self, batch: &BatchFeatures) -> GraphMode {
        let tokens = batch.num_prefill_tokens.saturating_add(batch.num_decode_seqs);
        self.graphs.mode(tokens, batch.num_prefill_tokens == 0, batch.max_seq_len)
    }

    /// Whether the graph mode of `batch` depends on its `max_seq_len` (vLLM 0.6.4's
    /// `max_seq_len_to_capture` on a batch that could otherwise run a graph); when it does not,
    /// the caller may leave `max_seq_len` unset.
    #[inline]
    pub fn reads_max_seq_len(&self, batch: &BatchFeatures) -> bool {
        let g = &self.graphs;
        let tokens = batch.num_prefill_tokens.saturating_add(batch.num_decode_seqs);
        g.max_seq_len != u32::MAX
            && (batch.num_prefill_tokens == 0 || !g.decode_only)
            && (tokens as usize) < g.graph_size.len()
    }

    /// GPU seconds of a step running `batch` in `mode`.
    #[inline]
    fn gpu_s(&self, b: &BatchFeatures, mode: GraphMode) -> f64 {
        match &self.gpu {
            GpuTime::Linear(c) => {
                let base = c.fixed_s
                    + c.per_prefill_token_s * f64::from(b.num_prefill_tokens)
                    + c.per_decode_seq_s * f64::from(b.num_decode_seqs)
                    + c.per_kv_token_s * b.num_kv_tokens_read as f64
                    + c.per_prefill_attn_pair_s * b.num_prefill_attn_pairs as f64;
                match mode {
                    GraphMode::NoGraphs => base,
                    GraphMode::Padded(pad) => base + c.per_decode_seq_s * f64::from(pad),
                    GraphMode::Eager => base + self.graphs.eager_fixed_s,
                }
            }
            GpuTime::Roofline(r) => match mode {
                GraphMode::NoGraphs => r.step_time_s(b, 0),
                GraphMode::Padded(pad) => r.step_time_s(b, pad),
                GraphMode::Eager => r.step_time_s(b, 0) + self.graphs.eager_fixed_s,
            },
        }
    }

    /// GPU seconds of a step running `batch` (padding and eager cost included).
    pub fn gpu_time_s(&self, batch: &BatchFeatures) -> f64 {
        self.gpu_s(batch, self.graph_mode(batch))
    }

    /// Share of a step's period spent computing prefill (GPU-bound work), in [0, 1]: the
    /// profile's prefill terms over the period; for the roofline prior, the prefill tokens' share
    /// of the step's query tokens times the GPU share of the period (an approximation: a prefill
    /// step of the prior is compute-bound). Colocation contention uses it (`cluster`).
    pub fn prefill_share(&self, batch: &BatchFeatures) -> f64 {
        let period = self.step_time(batch).as_secs_f64();
        if batch.num_prefill_tokens == 0 || period <= 0.0 {
            return 0.0;
        }
        let prefill_s = match &self.gpu {
            GpuTime::Linear(c) => {
                c.per_prefill_token_s * f64::from(batch.num_prefill_tokens)
                    + c.per_prefill_attn_pair_s * batch.num_prefill_attn_pairs as f64
            }
            GpuTime::Roofline(_) => {
                let tokens = f64::from(batch.num_prefill_tokens) + f64::from(batch.num_decode_seqs);
                self.gpu_time_s(batch) * f64::from(batch.num_prefill_tokens) / tokens
            }
        };
        (prefill_s / period).clamp(0.0, 1.0)
    }

    /// CPU seconds of a step running `batch`.
    #[inline]
    pub fn cpu_time_s(&self, batch: &BatchFeatures) -> f64 {
        self.cpu.fixed_s + self.cpu.per_request_s * f64::from(batch.num_scheduled_requests)
    }

    /// The period of a step of `gpu_s` GPU and `cpu_s` CPU seconds: `max` when they overlap
    /// (async scheduling), the sum when they run in turn (`decode_periods` repeats it).
    #[inline]
    fn period(&self, gpu_s: f64, cpu_s: f64) -> SimDuration {
        let secs = if self.async_scheduling { larger(gpu_s, cpu_s) } else { gpu_s + cpu_s };
        SimDuration::from_secs_f64(larger(secs, MIN_STEP_S))
    }

    /// How long a step running `batch` occupies the engine (its period: see the module doc).
    /// An empty batch takes no time.
    #[inline]
    pub fn step_time(&self, batch: &BatchFeatures) -> SimDuration {
        if batch.num_scheduled_requests == 0 {
            return SimDuration::ZERO;
        }
        self.period(self.gpu_s(batch, self.graph_mode(batch)), self.cpu_time_s(batch))
    }

    /// Periods of consecutive pure-decode steps of `num_seqs` requests (one token each), the
    /// first reading `first_kv_tokens_read` KV tokens with a longest context of
    /// `first_max_seq_len`, each next one reading `num_seqs` more with a context one longer (a
    /// decode stretch): `out[i]` is [`StepTimeModel::step_time`] of step `i`, at least a
    /// nanosecond (a test checks it bit for bit).
    pub fn decode_step_times(
        &self,
        num_seqs: u32,
        first_kv_tokens_read: u64,
        first_max_seq_len: u32,
        out: &mut [SimDuration],
    ) {
        if num_seqs == 0 {
            out.fill(SimDuration(1));
            return;
        }
        // The graph mode depends on the step only through the longest context (vLLM 0.6.4's
        // limit): the steps within the limit come first, then those beyond, each part with one
        // mode.
        let limit = self.graphs.max_seq_len;
        let split = match limit.checked_sub(first_max_seq_len) {
            Some(left) => out.len().min((left as usize).saturating_add(1)),
            None => 0,
        };
        // `cpu_time_s` of every step of the stretch.
        let cpu_s = self.cpu.fixed_s + self.cpu.per_request_s * f64::from(num_seqs);
        let (first, rest) = out.split_at_mut(split);
        // Exact: token counts stay far below 2^53.
        let kv = first_kv_tokens_read as f64;
        let kv = self.decode_part(num_seqs, true, cpu_s, kv, first);
        self.decode_part(num_seqs, false, cpu_s, kv, rest);
    }

    /// Fills `out` with the periods of decode steps of `num_seqs` sequences whose longest context
    /// is `within` the graph limit, the first reading `kv` KV tokens; returns the next KV read.
    #[inline]
    fn decode_part(&self, num_seqs: u32, within: bool, cpu_s: f64, kv: f64, out: &mut [SimDuration]) -> f64 {
        if out.is_empty() {
            return kv;
        }
        let mode = self.graphs.mode(num_seqs, true, if within { 0 } else { u32::MAX });
        let gpu = DecodeGpu::new(&self.gpu, num_seqs, mode, self.graphs.eager_fixed_s);
        let step = f64::from(num_seqs);
        if self.async_scheduling {
            decode_periods::<true>(&gpu, cpu_s, kv, step, out)
        } else {
            decode_periods::<false>(&gpu, cpu_s, kv, step, out)
        }
    }

    /// When a step's tokens reach the client, after the step ends.
    pub fn output_delay(&self) -> SimDuration {
        self.output_delay
    }

    /// Whether CPU time overlaps GPU time (async scheduling).
    pub fn async_scheduling(&self) -> bool {
        self.async_scheduling
    }

    /// The roofline prior of the GPU part (None when it comes from a calibrated profile).
    pub fn roofline(&self) -> Option<&Roofline> {
        match &self.gpu {
            GpuTime::Roofline(r) => Some(r),
            GpuTime::Linear(_) => None,
        }
    }

    /// True when the GPU coefficients come from a calibrated profile.
    pub fn is_calibrated(&self) -> bool {
        matches!(self.gpu, GpuTime::Linear(_))
    }
}

/// The GPU time of the steps of a decode stretch as a function of their KV read, with the terms
/// fixed over the stretch hoisted: the same operations in the same order as
/// `StepTimeModel::gpu_s` on a pure-decode batch, so the same bits (a test checks it).
enum DecodeGpu<'a> {
    /// `((fixed + pp x 0) + pd x n) + pk x K) + pa x 0` then the graph term, as `gpu_s`.
    Linear {
        /// `(fixed + pp x 0) + pd x n`.
        base: f64,
        per_kv_token_s: f64,
        /// `pa x 0`.
        no_pairs: f64,
        /// The graph term: `pd x padding`, `eager_fixed_s`, or 0 (adding 0 changes nothing).
        graph: f64,
    },
    /// `Roofline::decode_step_time_s` plus the eager term (or 0).
    Roofline { r: &'a Roofline, terms: roofline::DecodeTerms, eager: f64 },
}

impl<'a> DecodeGpu<'a> {
    fn new(gpu: &'a GpuTime, num_seqs: u32, mode: GraphMode, eager_fixed_s: f64) -> Self {
        match gpu {
            GpuTime::Linear(c) => DecodeGpu::Linear {
                base: c.fixed_s
                    + c.per_prefill_token_s * f64::from(0u32)
                    + c.per_decode_seq_s * f64::from(num_seqs),
                per_kv_token_s: c.per_kv_token_s,
                no_pairs: c.per_prefill_attn_pair_s * 0.0,
                graph: match mode {
                    GraphMode::NoGraphs => 0.0,
                    GraphMode::Padded(pad) => c.per_decode_seq_s * f64::from(pad),
                    GraphMode::Eager => eager_fixed_s,
                },
            },
            GpuTime::Roofline(r) => match mode {
                GraphMode::Padded(pad) => {
                    DecodeGpu::Roofline { r, terms: r.decode_terms(num_seqs, pad), eager: 0.0 }
                }
                GraphMode::NoGraphs => {
                    DecodeGpu::Roofline { r, terms: r.decode_terms(num_seqs, 0), eager: 0.0 }
                }
                GraphMode::Eager => {
                    DecodeGpu::Roofline { r, terms: r.decode_terms(num_seqs, 0), eager: eager_fixed_s }
                }
            },
        }
    }

    #[inline(always)]
    fn at(&self, kv: f64) -> f64 {
        match *self {
            DecodeGpu::Linear { base, per_kv_token_s, no_pairs, graph } => {
                base + per_kv_token_s * kv + no_pairs + graph
            }
            DecodeGpu::Roofline { r, ref terms, eager } => r.decode_step_time_s(terms, kv) + eager,
        }
    }
}

/// [`StepTimeModel::decode_step_times`]'s loop: step `i` of `out` reads `kv + i x step` KV
/// tokens; returns the KV read after the last. `ASYNC` selects the period rule of
/// [`StepTimeModel::period`] (a constant, so the loop carries no branch on it).
#[inline(always)]
fn decode_periods<const ASYNC: bool>(
    gpu: &DecodeGpu<'_>,
    cpu_s: f64,
    mut kv: f64,
    step: f64,
    out: &mut [SimDuration],
) -> f64 {
    match gpu {
        DecodeGpu::Linear { .. } => {
            for d in out.iter_mut() {
                let g = gpu.at(kv);
                let secs = if ASYNC { larger(g, cpu_s) } else { g + cpu_s };
                *d = SimDuration::from_secs_f64(larger(secs, MIN_STEP_S)).max(SimDuration(1));
                kv += step;
            }
        }
        DecodeGpu::Roofline { .. } => {
            for d in out.iter_mut() {
                let g = gpu.at(kv);
                let secs = if ASYNC { larger(g, cpu_s) } else { g + cpu_s };
                *d = SimDuration::from_secs_f64(larger(secs, MIN_STEP_S)).max(SimDuration(1));
                kv += step;
            }
        }
    }
    kv
}

#[cfg(test)]
mod tests;
