//! `[workload]` of a scenario file -> a validated `WorkloadSpec`.
//!
//! Checks every rate, count, length distribution and model reference of each phase and turns
//! model names into `ModelId`s; files (empirical length columns, the seed's custom JSON) are read
//! through the workload module's loaders. Sampling requests is the workload module's job, not this
//! one's.

use super::error::{Ctx, ScenarioError, quoted_list};
use super::raw::{RawArrival, RawDelay, RawDelayDist, RawDist, RawPhase, RawPrefix, RawWorkload};
use super::replay::ReplayOptions;
use super::types::{
    ArrivalSpec, DelayDist, LengthDist, ModelSpec, PhaseSpec, PrefixSpec, SessionSpec, SessionStart,
    WorkloadSpec,
};
use crate::ids::ModelId;
use crate::workload::{load_empirical_column, phase_from_custom_json};

/// Model names as the workload may use them: the catalogue, and the models that have instances
/// (indexed by `ModelId`).
pub(crate) struct Models<'a> {
    /// Every model the file could name.
    pub catalog: &'a [ModelSpec],
    /// The scenario's models, indexed by `ModelId`.
    pub used: &'a [ModelSpec],
}

impl Models<'_> {
    /// The id of `name`, which must be a served model.
    pub fn served_id(&self, ctx: Ctx<'_>, field: &str, name: &str) -> Result<ModelId, ScenarioError> {
        if let Some(i) = self.used.iter().position(|m| m.name == name) {
            return Ok(ModelId(i as u32));
        }
        if self.catalog.iter().any(|m| m.name == name) {
            return Err(ctx.err(
                field,
                format!(
                    "model \"{name}\" has no instance in [[instances]] (served: {}); add an instance \
                     or remove it here",
                    quoted_list(self.used.iter().map(|m| m.name.as_str()))
                ),
            ));
        }
        Err(ctx.err(
            field,
            format!(
                "unknown model \"{name}\"; known models: {} (add others under [model_catalog])",
                quoted_list(self.catalog.iter().map(|m| m.name.as_str()))
            ),
        ))
    }
}

/// Resolves `[workload]`.
pub(crate) fn resolve_workload(
    ctx: Ctx<'_>,
    raw: &RawWorkload,
    models: &Models<'_>,
) -> Result<WorkloadSpec, ScenarioError> {
    if raw.phases.is_empty() {
        return Err(
            ctx.err("workload.phases", "the workload has no phases; add at least one [[workload.phases]]")
        );
    }
    let phases = raw
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| resolve_phase(ctx, &format!("workload.phases[{i}]"), i, p, models))
        .collect::<Result<Vec<_>, _>>()?;
    let (lo, hi) = raw.prompt_token_id_range;
    if lo >= hi {
        return Err(ctx.err(
            "workload.prompt_token_id_range",
            format!("[{lo}, {hi}) is empty; the first bound must be below the second"),
        ));
    }
    let smallest = models.used.iter().min_by_key(|m| m.vocab_size);
    if let Some(small) = smallest.filter(|m| hi > m.vocab_size) {
        return Err(ctx.err(
            "workload.prompt_token_id_range",
            format!(
                "token ids up to {hi} exceed {}'s vocabulary of {}; keep the range below it",
                small.name, small.vocab_size
            ),
        ));
    }
    Ok(WorkloadSpec { phases, prefix: resolve_prefix(ctx, &raw.prefix)?, prompt_token_id_range: (lo, hi) })
}

fn resolve_prefix(ctx: Ctx<'_>, p: &RawPrefix) -> Result<PrefixSpec, ScenarioError> {
    if !(p.fraction.is_finite() && (0.0..=1.0).contains(&p.fraction)) {
        return Err(ctx.err(
            "workload.prefix.fraction",
            format!("a fraction of requests must be in [0, 1], got {}", p.fraction),
        ));
    }
    if p.tokens > 0 && p.groups == 0 {
        return Err(ctx.err("workload.prefix.groups", "a shared prefix needs at least 1 group"));
    }
    let fraction = if p.tokens == 0 { 0.0 } else { p.fraction };
    Ok(PrefixSpec { tokens: p.tokens, groups: p.groups, fraction })
}

fn positive(ctx: Ctx<'_>, field: String, v: f64, what: &str) -> Result<(), ScenarioError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ctx.err(field, format!("{what} must be a positive number, got {v}")))
    }
}

/// A closed-loop client's re-issue delay (default 0: it sends again the instant its request ends).
fn resolve_delay(ctx: Ctx<'_>, field: &str, raw: Option<&RawDelay>) -> Result<DelayDist, ScenarioError> {
    let check = |name: Option<&str>, v: f64| {
        if v.is_finite() && (0.0..=86_400.0).contains(&v) {
            Ok(())
        } else {
            let field = name.map_or_else(|| field.to_string(), |n| format!("{field}.{n}"));
            Err(ctx.err(field, format!("a delay must be a number of seconds in [0, 86400], got {v}")))
        }
    };
    Ok(match raw {
        None => DelayDist::default(),
        Some(RawDelay::Fixed(v)) => {
            check(None, *v)?;
            DelayDist::Fixed { value: *v }
        }
        Some(RawDelay::Dist(RawDelayDist::Fixed { value })) => {
            check(Some("value"), *value)?;
            DelayDist::Fixed { value: *value }
        }
        Some(RawDelay::Dist(RawDelayDist::Uniform { min, max })) => {
            check(Some("min"), *min)?;
            check(Some("max"), *max)?;
            if min > max {
                return Err(ctx.err(format!("{field}.max"), format!("max ({max}) must be >= min ({min})")));
            }
            DelayDist::Uniform { min: *min, max: *max }
        }
        Some(RawDelay::Dist(RawDelayDist::Exponential { mean })) => {
            check(Some("mean"), *mean)?;
            DelayDist::Exponential { mean: *mean }
        }
    })
}

fn resolve_arrival(
    ctx: Ctx<'_>,
    field: &str,
    raw: &RawArrival,
    duration_s: Option<f64>,
) -> Result<ArrivalSpec, ScenarioError> {
    let f = |name: &str| format!("{field}.{name}");
    Ok(match *raw {
        RawArrival::Poisson { rate } => {
            positive(ctx, f("rate"), rate, "the arrival rate (requests/s)")?;
            ArrivalSpec::Poisson { rate }
        }
        RawArrival::Gamma { rate, burstiness } => {
            positive(ctx, f("rate"), rate, "the arrival rate (requests/s)")?;
            positive(ctx, f("burstiness"), burstiness, "burstiness (the gamma shape)")?;
            ArrivalSpec::Gamma { rate, burstiness }
        }
        RawArrival::Constant { rate } => {
            positive(ctx, f("rate"), rate, "the arrival rate (requests/s)")?;
            ArrivalSpec::Constant { rate }
        }
        RawArrival::Ramp { start_rate, end_rate } => {
            for (name, v) in [("start_rate", start_rate), ("end_rate", end_rate)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(ctx.err(f(name), format!("a rate must be >= 0 requests/s, got {v}")));
                }
            }
            if start_rate.max(end_rate) <= 0.0 {
                return Err(ctx.err(f("end_rate"), "a ramp from 0 to 0 requests/s sends nothing"));
            }
            if duration_s.is_none() {
                return Err(ctx.err(
                    format!("{}.duration_s", field.trim_end_matches(".arrival")),
                    "a ramp needs duration_s: the rate moves from start_rate to end_rate over it",
                ));
            }
            ArrivalSpec::Ramp { start_rate, end_rate }
        }
        RawArrival::ClosedLoop { concurrency, ref reissue_delay_s } => {
            if concurrency == 0 {
                return Err(ctx.err(f("concurrency"), "concurrency must be at least 1"));
            }
            let reissue_delay_s = resolve_delay(ctx, &f("reissue_delay_s"), reissue_delay_s.as_ref())?;
            ArrivalSpec::ClosedLoop { concurrency, reissue_delay_s }
        }
        RawArrival::Sessions { .. } => ArrivalSpec::Sessions(resolve_sessions(ctx, field, raw)?),
        RawArrival::Replay {
            ref path,
            speedup,
            format,
            start_s,
            end_s,
            rate_scale,
            models,
            ref model_map,
            block_size,
        } => {
            positive(ctx, f("speedup"), speedup, "speedup")?;
            let resolved = ctx.resolve_path(path);
            if !resolved.exists() {
                return Err(ctx
                    .err(f("path"), format!("{} does not exist", resolved.display()))
                    .about_missing_file(&resolved));
            }
            let d = ReplayOptions::default();
            let options = ReplayOptions {
                format,
                start_s: start_s.unwrap_or(d.start_s),
                end_s,
                rate_scale: rate_scale.unwrap_or(d.rate_scale),
                models: models.unwrap_or(d.models),
                model_map: model_map.clone().unwrap_or_default(),
                block_size: block_size.unwrap_or(d.block_size),
            };
            options.check(duration_s).map_err(|(name, reason)| {
                let name = if name == "duration_s" {
                    format!("{}.duration_s", field.trim_end_matches(".arrival"))
                } else {
                    f(name)
                };
                ctx.err(name, reason)
            })?;
            // Absolute, so the workload (which joins paths to its base dir) finds it from any
            // working directory (a relative scenario path would otherwise be joined twice).
            let resolved = std::fs::canonicalize(&resolved).unwrap_or(resolved);
            ArrivalSpec::Replay { path: resolved.display().to_string(), speedup, options }
        }
    })
}

/// `arrival = { process = "sessions", ... }`: multi-turn sessions (`workload::sessions`).
fn resolve_sessions(ctx: Ctx<'_>, field: &str, raw: &RawArrival) -> Result<SessionSpec, ScenarioError> {
    let RawArrival::Sessions {
        concurrency,
        rate,
        turns,
        think_time_s,
        user_tokens,
        num_sessions,
        max_context_tokens,
    } = raw
    else {
        return Err(ctx.err(field, "expected process = \"sessions\""));
    };
    let f = |name: &str| format!("{field}.{name}");
    let start = match (concurrency, rate) {
        (Some(0), None) => return Err(ctx.err(f("concurrency"), "concurrency must be at least 1 session")),
        (Some(n), None) => SessionStart::Concurrent(*n),
        (None, Some(r)) => {
            positive(ctx, f("rate"), *r, "the session arrival rate (sessions/s)")?;
            SessionStart::Rate(*r)
        }
        _ => {
            return Err(ctx.err(
                field,
                "give exactly one of concurrency (closed loop: sessions running at once per model) \
                 and rate (open loop: new sessions per second)",
            ));
        }
    };
    if *num_sessions == Some(0) {
        return Err(ctx.err(f("num_sessions"), "num_sessions must be at least 1"));
    }
    if *max_context_tokens == Some(0) {
        return Err(ctx.err(f("max_context_tokens"), "max_context_tokens must be at least 1 token"));
    }
    Ok(SessionSpec {
        start,
        turns: resolve_dist(ctx, &f("turns"), turns)?,
        think_time_s: resolve_delay(ctx, &f("think_time_s"), think_time_s.as_ref())?,
        user_tokens: resolve_dist(ctx, &f("user_tokens"), user_tokens)?,
        num_sessions: *num_sessions,
        max_context_tokens: *max_context_tokens,
    })
}

/// Resolves a length distribution; `field` is e.g. `workload.phases[0].input_tokens`.
fn resolve_dist(ctx: Ctx<'_>, field: &str, raw: &RawDist) -> Result<LengthDist, ScenarioError> {
    let f = |name: &str| format!("{field}.{name}");
    let check_bounds = |min: u32, max: u32| {
        if min == 0 {
            Err(ctx.err(f("min"), "lengths must be at least 1 token"))
        } else if min > max {
            Err(ctx.err(f("min"), format!("min {min} is greater than max {max}")))
        } else {
            Ok(())
        }
    };
    let check_moments = |mean: f64, std: f64| {
        positive(ctx, f("mean"), mean, "the mean length")?;
        if std.is_finite() && std >= 0.0 {
            Ok(())
        } else {
            Err(ctx.err(f("std"), format!("the standard deviation must be >= 0, got {std}")))
        }
    };
    Ok(match raw {
        &RawDist::Fixed { value } => {
            if value == 0 {
                return Err(ctx.err(f("value"), "lengths must be at least 1 token"));
            }
            LengthDist::Fixed { value }
        }
        &RawDist::Uniform { min, max } => {
            check_bounds(min, max)?;
            LengthDist::Uniform { min, max }
        }
        &RawDist::Normal { mean, std, min, max } => {
            check_moments(mean, std)?;
            check_bounds(min, max)?;
            LengthDist::Normal { mean, std, min, max }
        }
        &RawDist::Lognormal { mean, std, min, max } => {
            check_moments(mean, std)?;
            check_bounds(min, max)?;
            LengthDist::Lognormal { mean, std, min, max }
        }
        RawDist::Empirical { file, column, values } => {
            let (source, values) = match (file, column, values) {
                (Some(file), Some(column), None) => {
                    let path = ctx.resolve_path(file);
                    let values = load_empirical_column(&path, column)
                        .map_err(|e| ctx.err(f("file"), format!("cannot read column \"{column}\": {e}")))?;
                    (format!("{}:{column}", path.display()), values)
                }
                (Some(_), None, None) => {
                    return Err(ctx.err(f("column"), "an empirical file needs the column to read"));
                }
                (None, None, Some(values)) => ("inline".to_string(), values.clone()),
                _ => {
                    return Err(ctx.err(
                        field,
                        "an empirical distribution takes either file + column or values, not both",
                    ));
                }
            };
            if values.is_empty() {
                return Err(ctx.err(field, format!("no lengths in {source}")));
            }
            let zeros = values.iter().filter(|&&v| v == 0).count();
            if zeros > 0 {
                return Err(ctx.err(
                    field,
                    format!("{zeros} of {} lengths in {source} are 0; lengths must be >= 1", values.len()),
                ));
            }
            LengthDist::Empirical { source, values }
        }
    })
}

fn resolve_phase(
    ctx: Ctx<'_>,
    field: &str,
    index: usize,
    raw: &RawPhase,
    models: &Models<'_>,
) -> Result<PhaseSpec, ScenarioError> {
    let f = |name: &str| format!("{field}.{name}");
    let name = raw.name.clone().unwrap_or_else(|| format!("phase{index}"));
    if let Some(d) = raw.duration_s {
        positive(ctx, f("duration_s"), d, "duration_s")?;
    }
    if raw.num_requests == Some(0) {
        return Err(ctx.err(f("num_requests"), "num_requests must be at least 1"));
    }
    if let Some(file) = &raw.custom_json {
        return custom_json_phase(ctx, field, name, file, raw, models);
    }
    let Some(arrival) = &raw.arrival else {
        return Err(ctx.err(
            field,
            "missing arrival, e.g. arrival = { process = \"poisson\", rate = 10.0 } or \
             { process = \"closed_loop\", concurrency = 10 }",
        ));
    };
    let arrival = resolve_arrival(ctx, &f("arrival"), arrival, raw.duration_s)?;
    let is_replay = matches!(arrival, ArrivalSpec::Replay { .. });
    let counted_sessions = matches!(&arrival, ArrivalSpec::Sessions(s) if s.num_sessions.is_some());
    if raw.duration_s.is_none() && raw.num_requests.is_none() && !is_replay && !counted_sessions {
        return Err(ctx.err(
            field,
            "the phase never ends: set duration_s, num_requests or both (only a replay, or \
             sessions with arrival.num_sessions, may omit them)",
        ));
    }
    let mix = resolve_mix(ctx, &f("mix"), raw, models)?;
    // A replay takes its lengths from the trace: distributions are optional there (and unused).
    let placeholder = RawDist::Fixed { value: 1 };
    let (input, output) = if is_replay {
        (
            Some(raw.input_tokens.as_ref().unwrap_or(&placeholder)),
            Some(raw.output_tokens.as_ref().unwrap_or(&placeholder)),
        )
    } else {
        (raw.input_tokens.as_ref(), raw.output_tokens.as_ref())
    };
    let (Some(input), Some(output)) = (input, output) else {
        let missing = if raw.input_tokens.is_none() { "input_tokens" } else { "output_tokens" };
        return Err(ctx.err(
            f(missing),
            format!("missing {missing}, e.g. {{ dist = \"lognormal\", mean = 550, std = 300, max = 4096 }}"),
        ));
    };
    let input_tokens = resolve_dist(ctx, &f("input_tokens"), input)?;
    let output_tokens = resolve_dist(ctx, &f("output_tokens"), output)?;
    let mut per_model_lengths = Vec::new();
    for (model_name, lengths) in &raw.per_model {
        let pf = format!("{field}.per_model.{model_name}");
        let id = models.served_id(ctx, &pf, model_name)?;
        if !mix.iter().any(|(m, _)| *m == id) {
            return Err(ctx.err(&pf, format!("model \"{model_name}\" is not in this phase's mix")));
        }
        let input = match &lengths.input_tokens {
            Some(d) => resolve_dist(ctx, &format!("{pf}.input_tokens"), d)?,
            None => input_tokens.clone(),
        };
        let output = match &lengths.output_tokens {
            Some(d) => resolve_dist(ctx, &format!("{pf}.output_tokens"), d)?,
            None => output_tokens.clone(),
        };
        per_model_lengths.push((id, input, output));
    }
    per_model_lengths.sort_by_key(|(id, _, _)| *id);
    Ok(PhaseSpec {
        name,
        duration_s: raw.duration_s,
        num_requests: raw.num_requests,
        arrival,
        mix,
        input_tokens,
        output_tokens,
        per_model_lengths,
    })
}

/// The phase's model shares, by `ModelId`, normalised to 1, zero weights dropped; without a `mix`,
/// every served model with weight 1.
fn resolve_mix(
    ctx: Ctx<'_>,
    field: &str,
    raw: &RawPhase,
    models: &Models<'_>,
) -> Result<Vec<(ModelId, f64)>, ScenarioError> {
    let Some(mix) = &raw.mix else {
        let n = models.used.len() as f64;
        return Ok((0..models.used.len()).map(|i| (ModelId(i as u32), 1.0 / n)).collect());
    };
    let mut shares = Vec::new();
    for (name, &w) in mix {
        let mf = format!("{field}.{name}");
        let id = models.served_id(ctx, &mf, name)?;
        if !(w.is_finite() && w >= 0.0) {
            return Err(ctx.err(mf, format!("a mix weight must be a finite number >= 0, got {w}")));
        }
        if w > 0.0 {
            shares.push((id, w));
        }
    }
    let total: f64 = shares.iter().map(|(_, w)| w).sum();
    if shares.is_empty() || total <= 0.0 {
        return Err(ctx.err(field, "every mix weight is 0 (or the mix is empty): nothing would be sent"));
    }
    shares.sort_by_key(|(id, _)| *id);
    Ok(shares.into_iter().map(|(id, w)| (id, w / total)).collect())
}

/// A phase taken from the seed's custom workload JSON (models, prompts and `max_tokens_range`).
fn custom_json_phase(
    ctx: Ctx<'_>,
    field: &str,
    name: String,
    file: &str,
    raw: &RawPhase,
    models: &Models<'_>,
) -> Result<PhaseSpec, ScenarioError> {
    let f = |n: &str| format!("{field}.{n}");
    for (present, key) in [
        (raw.mix.is_some(), "mix"),
        (raw.input_tokens.is_some(), "input_tokens"),
        (raw.output_tokens.is_some(), "output_tokens"),
        (!raw.per_model.is_empty(), "per_model"),
    ] {
        if present {
            return Err(ctx.err(
                f(key),
                format!("a custom_json phase takes models and lengths from the JSON file; remove {key}"),
            ));
        }
    }
    let Some(num_requests) = raw.num_requests else {
        return Err(
            ctx.err(f("num_requests"), "a custom_json phase needs num_requests (the seed's --num-requests)")
        );
    };
    let (concurrency, reissue_delay) = match &raw.arrival {
        None => (None, DelayDist::default()),
        Some(RawArrival::ClosedLoop { concurrency, reissue_delay_s }) => {
            if *concurrency == 0 {
                return Err(ctx.err(f("arrival.concurrency"), "concurrency must be at least 1"));
            }
            let delay = resolve_delay(ctx, &f("arrival.reissue_delay_s"), reissue_delay_s.as_ref())?;
            (Some(*concurrency), delay)
        }
        Some(_) => {
            return Err(ctx.err(
                f("arrival"),
                "a custom_json phase runs closed loop like the seed's run.py: use \
                 { process = \"closed_loop\", concurrency = N } or omit arrival",
            ));
        }
    };
    let path = ctx.resolve_path(file);
    if !path.is_file() {
        return Err(ctx.err(f("custom_json"), format!("{} does not exist", path.display())));
    }
    let served: Vec<String> = models.used.iter().map(|m| m.served_name.clone()).collect();
    let mut phase = phase_from_custom_json(&path, &served, num_requests, concurrency)
        .map_err(|e| ctx.err(f("custom_json"), e.to_string()))?;
    phase.name = name;
    phase.duration_s = raw.duration_s;
    if let ArrivalSpec::ClosedLoop { reissue_delay_s, .. } = &mut phase.arrival {
        *reissue_delay_s = reissue_delay;
    }
    Ok(phase)
}
