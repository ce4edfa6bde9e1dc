//! Validation and compilation of a [`WorkloadSpec`] into per-phase plans: bounds, arrival
//! process, model mix and per-model length samplers, with errors that name the phase and field.
//! It holds no running state (see `generator`).

use super::arrivals::ArrivalProcess;
use super::error::WorkloadError;
use super::lengths::LengthSampler;
use super::replay::{ReplayPlan, ReplaySource};
use super::sessions::SessionPlan;
use crate::ids::ModelId;
use crate::scenario::{ArrivalSpec, DelayDist, PhaseSpec, WorkloadSpec};
use crate::time::SimDuration;
use rand::Rng;
use std::path::Path;

/// A phase ready to run.
#[derive(Clone, Debug)]
pub(crate) struct PhasePlan {
    /// Time bound (`duration_s`).
    pub duration: Option<SimDuration>,
    /// Count bound (`num_requests`).
    pub limit: Option<u64>,
    /// How requests are issued.
    pub kind: PhaseKind,
    /// Model choice for open-loop phases and Azure replay (`None` for a run-dir replay without a mix).
    pub mix: Option<Mix>,
    /// Length samplers indexed by `ModelId` (the phase defaults, or the per-model override).
    pub lengths: Vec<ModelLengths>,
}

/// How a phase issues its requests.
#[derive(Clone, Debug)]
pub(crate) enum PhaseKind {
    /// A synthetic open-loop process.
    Open(ArrivalProcess),
    /// genai-perf style clients.
    Closed {
        /// Clients per model.
        concurrency: u32,
        /// Models with a positive mix weight, in mix order.
        models: Vec<ModelId>,
        /// A client's wait between its request's end and its next send.
        reissue_delay: DelayDist,
    },
    /// A recorded trace.
    Replay(ReplayPlan),
    /// Multi-turn sessions.
    Sessions(SessionPlan),
}

/// A model mix with weights normalised to its total.
#[derive(Clone, Debug)]
pub(crate) struct Mix {
    /// Running sums of the positive weights, with their models, in mix order.
    cumulative: Vec<(f64, ModelId)>,
}

impl Mix {
    /// Picks a model with probability proportional to its weight (one uniform draw).
    pub(crate) fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> ModelId {
        let total = self.cumulative.last().map_or(0.0, |c| c.0);
        let u = rng.random::<f64>() * total;
        self.cumulative.iter().find(|c| u < c.0).or(self.cumulative.last()).map_or(ModelId(0), |c| c.1)
    }

    /// Models with a positive weight, in mix order.
    pub(crate) fn models(&self) -> Vec<ModelId> {
        self.cumulative.iter().map(|c| c.1).collect()
    }
}

/// Length samplers of one model in one phase.
#[derive(Clone, Debug)]
pub(crate) struct ModelLengths {
    /// Prompt tokens.
    pub input: LengthSampler,
    /// Output tokens.
    pub output: LengthSampler,
}

/// The shared-prefix settings, when enabled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrefixPlan {
    /// Prefix length in tokens.
    pub tokens: u32,
    /// Distinct prefixes per model.
    pub groups: u32,
    /// Probability that a request carries a prefix.
    pub fraction: f64,
}

impl PhasePlan {
    /// Requests the phase issues, when known before it runs.
    pub(crate) fn planned(&self) -> Option<u64> {
        match &self.kind {
            PhaseKind::Replay(r) => Some(r.planned()),
            PhaseKind::Open(_) | PhaseKind::Closed { .. } => {
                self.duration.is_none().then_some(self.limit).flatten()
            }
            // Sessions may end before the count bound (num_sessions, max_context_tokens).
            PhaseKind::Sessions(s) => {
                (self.duration.is_none() && s.num_sessions.is_none() && s.max_context_tokens.is_none())
                    .then_some(self.limit)
                    .flatten()
            }
        }
    }
}

/// Checks `spec` and compiles its phases; `model_keys` are the scenario's model keys (indexed by
/// `ModelId`), `base_dir` resolves relative replay paths.
/// `seed` drives a replay's thinning.
pub(crate) fn compile(
    spec: &WorkloadSpec,
    model_keys: &[String],
    base_dir: &Path,
    seed: u64,
) -> Result<(Vec<PhasePlan>, Option<PrefixPlan>), WorkloadError> {
    if spec.phases.is_empty() {
        return Err(WorkloadError::NoPhases);
    }
    let prefix = compile_prefix(spec)?;
    if prefix.is_some() && spec.phases.iter().all(|p| matches!(p.arrival, ArrivalSpec::Replay { .. })) {
        return Err(WorkloadError::Prefix {
            reason: "every phase replays a trace, and a synthetic prefix is never added to replayed rows \
                     (their prefixes come from the trace's block ids); remove [workload.prefix]"
                .into(),
        });
    }
    let phases = spec
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            compile_phase(p, i as u32, model_keys, base_dir, seed).map_err(|reason| match reason {
                PhaseError::Reason(reason) => WorkloadError::Phase { index: i, name: p.name.clone(), reason },
                PhaseError::File(e) => e,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((phases, prefix))
}

fn compile_prefix(spec: &WorkloadSpec) -> Result<Option<PrefixPlan>, WorkloadError> {
    let p = &spec.prefix;
    if p.tokens == 0 {
        return Ok(None);
    }
    let err = |reason: String| WorkloadError::Prefix { reason };
    if p.groups == 0 {
        return Err(err(format!(
            "tokens = {} but groups = 0; set groups >= 1 (or tokens = 0 for no shared prefix)",
            p.tokens
        )));
    }
    if !(0.0..=1.0).contains(&p.fraction) {
        return Err(err(format!("fraction must be within [0, 1], got {}", p.fraction)));
    }
    Ok(Some(PrefixPlan { tokens: p.tokens, groups: p.groups, fraction: p.fraction }))
}

/// A phase error: a reason (the caller names the phase) or a file error (which names the file).
enum PhaseError {
    Reason(String),
    File(WorkloadError),
}

impl From<String> for PhaseError {
    fn from(s: String) -> Self {
        PhaseError::Reason(s)
    }
}

fn compile_phase(
    p: &PhaseSpec,
    phase: u32,
    model_keys: &[String],
    base_dir: &Path,
    seed: u64,
) -> Result<PhasePlan, PhaseError> {
    let num_models = model_keys.len();
    let mut duration = match p.duration_s {
        None => None,
        Some(d) if d.is_finite() && d > 0.0 && SimDuration::from_secs_f64(d).0 > 0 => {
            Some(SimDuration::from_secs_f64(d))
        }
        Some(d) => return Err(format!("duration_s must be a finite number of seconds > 0, got {d}").into()),
    };
    if p.num_requests == Some(0) {
        return Err("num_requests = 0: the phase would send nothing; remove the phase or raise it"
            .to_string()
            .into());
    }
    let bounded = duration.is_some() || p.num_requests.is_some();
    let unbounded = |what: &str| -> PhaseError {
        format!("{what} needs duration_s or num_requests, or it never ends; set one").into()
    };
    let mix = compile_mix(&p.mix, num_models)?;
    let need_mix = |mix: &Option<Mix>, what: &str| -> Result<Mix, PhaseError> {
        mix.clone().ok_or_else(|| {
            format!("{what} needs a model mix; list at least one model with a weight > 0").into()
        })
    };
    let kind = match &p.arrival {
        ArrivalSpec::Poisson { rate } => PhaseKind::Open(ArrivalProcess::poisson(*rate)?),
        ArrivalSpec::Gamma { rate, burstiness } => {
            PhaseKind::Open(ArrivalProcess::gamma(*rate, *burstiness)?)
        }
        ArrivalSpec::Constant { rate } => PhaseKind::Open(ArrivalProcess::constant(*rate)?),
        ArrivalSpec::Ramp { start_rate, end_rate } => {
            let d = p.duration_s.filter(|_| duration.is_some()).ok_or_else(|| {
                PhaseError::Reason(
                    "a ramp needs duration_s (its rate goes from start_rate to end_rate over it)".into(),
                )
            })?;
            PhaseKind::Open(ArrivalProcess::ramp(*start_rate, *end_rate, d)?)
        }
        ArrivalSpec::ClosedLoop { concurrency, reissue_delay_s } => {
            if *concurrency == 0 {
                return Err("closed_loop concurrency must be >= 1 client per model".to_string().into());
            }
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            let valid = match *reissue_delay_s {
                DelayDist::Fixed { value } => ok(value),
                DelayDist::Uniform { min, max } => ok(min) && ok(max) && min <= max,
                DelayDist::Exponential { mean } => ok(mean),
            };
            if !valid {
                return Err(format!(
                    "closed_loop reissue_delay_s must be seconds >= 0 (uniform: min <= max), got {reissue_delay_s:?}"
                )
                .into());
            }
            PhaseKind::Closed {
                concurrency: *concurrency,
                models: need_mix(&mix, "a closed-loop phase")?.models(),
                reissue_delay: reissue_delay_s.clone(),
            }
        }
        ArrivalSpec::Sessions(spec) => PhaseKind::Sessions(SessionPlan {
            start: spec.start,
            turns: LengthSampler::new(&spec.turns).map_err(|e| format!("sessions turns: {e}"))?,
            think: spec.think_time_s.clone(),
            user_tokens: LengthSampler::new(&spec.user_tokens)
                .map_err(|e| format!("sessions user_tokens: {e}"))?,
            num_sessions: spec.num_sessions,
            max_context_tokens: spec.max_context_tokens,
            mix: need_mix(&mix, "a sessions phase")?,
        }),
        ArrivalSpec::Replay { path, speedup, options } => {
            if !speedup.is_finite() || *speedup <= 0.0 {
                return Err(format!("replay speedup must be a finite number > 0, got {speedup}").into());
            }
            options.check(p.duration_s).map_err(|(field, reason)| format!("replay {field}: {reason}"))?;
            let full = base_dir.join(path);
            let plan = ReplayPlan::load(&ReplaySource {
                path: &full,
                speedup: *speedup,
                options,
                duration_s: p.duration_s,
                limit: p.num_requests,
                model_keys,
                seed,
                phase,
            })
            .map_err(PhaseError::File)?;
            if !plan.has_models() {
                need_mix(
                    &mix,
                    &format!("replaying a {} trace without models = \"trace\"", plan.format.as_str()),
                )?;
            }
            // duration_s is the source window's length: the phase lasts it after speedup.
            duration = plan.duration();
            PhaseKind::Replay(plan)
        }
    };
    let counted_sessions = matches!(&kind, PhaseKind::Sessions(s) if s.num_sessions.is_some());
    if !bounded && !matches!(kind, PhaseKind::Replay(_)) && !counted_sessions {
        return Err(unbounded(if matches!(kind, PhaseKind::Closed { .. }) {
            "a closed-loop phase"
        } else {
            "an open-loop phase"
        }));
    }
    if matches!(kind, PhaseKind::Open(_)) {
        need_mix(&mix, "an open-loop phase")?;
    }
    let lengths = compile_lengths(p, num_models)?;
    Ok(PhasePlan { duration, limit: p.num_requests, kind, mix, lengths })
}

fn compile_mix(mix: &[(ModelId, f64)], num_models: usize) -> Result<Option<Mix>, String> {
    let mut cumulative = Vec::with_capacity(mix.len());
    let mut total = 0.0;
    for (i, &(m, w)) in mix.iter().enumerate() {
        if m.index() >= num_models {
            return Err(format!("mix[{i}] names model {m} but the scenario has {num_models} models"));
        }
        if mix[..i].iter().any(|e| e.0 == m) {
            return Err(format!("mix[{i}]: model {m} appears twice; give it one weight"));
        }
        if !w.is_finite() || w < 0.0 {
            return Err(format!("mix[{i}]: weight must be a finite number >= 0, got {w}"));
        }
        if w > 0.0 {
            total += w;
            cumulative.push((total, m));
        }
    }
    if mix.is_empty() {
        return Ok(None);
    }
    if cumulative.is_empty() {
        return Err("every mix weight is 0; give at least one model a weight > 0".into());
    }
    Ok(Some(Mix { cumulative }))
}

fn compile_lengths(p: &PhaseSpec, num_models: usize) -> Result<Vec<ModelLengths>, String> {
    let input = LengthSampler::new(&p.input_tokens).map_err(|e| format!("input_tokens: {e}"))?;
    let output = LengthSampler::new(&p.output_tokens).map_err(|e| format!("output_tokens: {e}"))?;
    let mut lengths = vec![ModelLengths { input, output }; num_models];
    for (i, (m, inp, out)) in p.per_model_lengths.iter().enumerate() {
        if m.index() >= num_models {
            return Err(format!(
                "per_model_lengths[{i}] names model {m} but the scenario has {num_models} models"
            ));
        }
        if p.per_model_lengths[..i].iter().any(|e| e.0 == *m) {
            return Err(format!("per_model_lengths[{i}]: model {m} appears twice; merge the entries"));
        }
        lengths[m.index()] = ModelLengths {
            input: LengthSampler::new(inp).map_err(|e| format!("per_model_lengths[{i}] input: {e}"))?,
            output: LengthSampler::new(out).map_err(|e| format!("per_model_lengths[{i}] output: {e}"))?,
        };
    }
    Ok(lengths)
}
