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
    /// Ascending, deduplicated.
    sizes: Vec<u32>,
    eager_fixed_s: f64,
    decode_only: bool,
    /// `u32::MAX` when unlimited.
    max_seq_len: u32,
}

impl CudaGraphs {
    fn new(spec: &CudaGraphSpec) -> CudaGraphs {
        let mut sizes = spec.capture_sizes.clone();
        sizes.retain(|&s| s > 0);
        sizes.sort_unstable();
        sizes.dedup();
        CudaGraphs {
            sizes,
            eager_fixed_s: spec.eager_fixed_s,
            decode_only: spec.decode_only,
            max_seq_len: spec.max_seq_len_to_capture.unwrap_or(u32::MAX),
        }
    }

    /// The mode of a step of `tokens` query tokens, `pure_decode` when it has no prefill, whose
    /// longest context is `max_seq_len`.
    #[inline]
    fn mode(&self, tokens: u32, pure_decode: bool, max_seq_len: u32) -> GraphMode {
        let Some(&largest) = self.sizes.last() else { return GraphMode::NoGraphs };
        if tokens <= largest && (pure_decode || !self.decode_only) && max_seq_len <= self.max_seq_len {
            let size = self.sizes[self.sizes.partition_point(|&s| s < tokens)];
            GraphMode::Padded(size - tokens)
        } else {
            GraphMode::Eager
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

    /// CPU seconds of a step running `batch`.
    #[inline]
    pub fn cpu_time_s(&self, batch: &BatchFeatures) -> f64 {
        self.cpu.fixed_s + self.cpu.per_request_s * f64::from(batch.num_scheduled_requests)
    }

    /// The period of a step of `gpu_s` GPU and `cpu_s` CPU seconds: `max` when they overlap
    /// (async scheduling), the sum when they run in turn.
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
        let mut batch = BatchFeatures {
            num_scheduled_requests: num_seqs,
            num_prefill_tokens: 0,
            num_decode_seqs: num_seqs,
            num_kv_tokens_read: first_kv_tokens_read,
            num_prefill_attn_pairs: 0,
            max_seq_len: first_max_seq_len,
        };
        if num_seqs == 0 {
            out.fill(SimDuration(1));
            return;
        }
        // The graph mode depends on the step only through the longest context (vLLM 0.6.4's
        // limit): decide it once for either side of the limit.
        let within = self.graphs.mode(num_seqs, true, 0);
        let beyond = self.graphs.mode(num_seqs, true, u32::MAX);
        let limit = self.graphs.max_seq_len;
        let cpu_s = self.cpu_time_s(&batch);
        for d in out.iter_mut() {
            let mode = if batch.max_seq_len <= limit { within } else { beyond };
            *d = self.period(self.gpu_s(&batch, mode), cpu_s).max(SimDuration(1));
            batch.num_kv_tokens_read += u64::from(num_seqs);
            batch.max_seq_len = batch.max_seq_len.saturating_add(1);
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

#[cfg(test)]
mod tests;
