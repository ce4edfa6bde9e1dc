//! The built-in calibration load of one model: a closed-loop concurrency ladder derived from the
//! variant's own instances, about a minute per model at full length.
//!
//! Design choice (issue 9 item 6): the load comes from the scenario's models, not from a second
//! file per model, so every scenario can run a campaign unchanged. It mirrors the shipped
//! calibration scenarios (`scenarios/calibration-h200-*.toml`), shortened: levels of 1, 2, 4, ...
//! streams per instance of the model up to its `max_num_seqs` (at most 64), each held for
//! [`LEVEL_S`] seconds, prompts drawn uniformly from 64 to 4096 tokens and outputs from 8 to 384
//! (both capped by `max_model_len`), so every step-time term varies: sequences decoding, prefill
//! tokens, KV tokens read. Only this model is loaded; its co-tenants on a shared GPU sit idle,
//! so the fit measures the engine alone (contention is the simulator's separate model).
//! `calibrate` fits from the client's chunk timestamps (`tokens.csv`, always written) or, when
//! the engines serve `GET /steps`, from their step log. These lengths are a guess at what excites
//! every term in a minute, not calibrated themselves; the full scenarios run ~2.5 minutes.

use sim::ModelId;
use sim::scenario::{ArrivalSpec, LengthDist, PhaseSpec, PrefixSpec, Scenario};

/// Seconds each concurrency level lasts at full length.
pub const LEVEL_S: f64 = 8.0;
/// Shortest level under `--quick`, seconds (fewer steps than this fit poorly).
pub const MIN_LEVEL_S: f64 = 1.0;
/// Most streams per instance the ladder climbs to.
pub const MAX_STREAMS_PER_INSTANCE: u32 = 64;
/// Prompt lengths, tokens (the top is capped at half of `max_model_len`).
pub const PROMPT_TOKENS: (u32, u32) = (64, 4096);
/// Output lengths, tokens (the top is scaled by `--quick`, at least [`MIN_QUICK_OUTPUT`], and
/// capped at a quarter of `max_model_len`).
pub const OUTPUT_TOKENS: (u32, u32) = (8, 384);
/// Smallest top of the output range under `--quick`.
pub const MIN_QUICK_OUTPUT: u32 = 16;
/// Least drain timeout of a calibration run, seconds.
const MIN_DRAIN_S: f64 = 60.0;

/// The ladder's streams per instance: 1, 2, 4, ... below `cap`, then `cap` (at least `[1]`).
pub fn levels(cap: u32) -> Vec<u32> {
    let cap = cap.max(1);
    let mut out = Vec::new();
    let mut c = 1u32;
    while c < cap {
        out.push(c);
        c = c.saturating_mul(2);
    }
    out.push(cap);
    out
}

/// The calibration scenario of `model` in `variant`: the variant's cluster, engines and router
/// with the ladder as its workload, `tokens.csv` on, no shared prefixes. `scale` (the `--quick`
/// factor, 1 at full length) shortens levels and outputs. The reason when the variant does not
/// serve `model`.
pub fn calibration_scenario(variant: &Scenario, model: &str, scale: f64) -> Result<Scenario, String> {
    let Some(mid) = variant.models.iter().position(|m| m.name == model) else {
        return Err(format!("no model \"{model}\" in variant {}", variant.variant));
    };
    let insts: Vec<_> = variant.instances.iter().filter(|i| i.model.index() == mid).collect();
    if insts.is_empty() {
        return Err(format!("variant {} runs no instance of {model}", variant.variant));
    }
    let seqs = insts.iter().map(|i| i.engine.max_num_seqs).min().unwrap_or(1);
    let max_len = insts.iter().map(|i| i.engine.max_model_len).min().unwrap_or(2048).max(64);
    let n = u32::try_from(insts.len()).unwrap_or(u32::MAX);
    let prompt_hi = PROMPT_TOKENS.1.min(max_len / 2).max(2);
    let prompt = LengthDist::Uniform { min: PROMPT_TOKENS.0.min(prompt_hi / 2).max(1), max: prompt_hi };
    let out_hi = ((f64::from(OUTPUT_TOKENS.1) * scale).round() as u32)
        .max(MIN_QUICK_OUTPUT)
        .min(OUTPUT_TOKENS.1)
        .min(max_len / 4)
        .max(2);
    let output = LengthDist::Uniform { min: OUTPUT_TOKENS.0.min(out_hi / 2).max(1), max: out_hi };
    let level_s = (LEVEL_S * scale).max(MIN_LEVEL_S);
    let phases = levels(seqs.min(MAX_STREAMS_PER_INSTANCE))
        .into_iter()
        .map(|c| PhaseSpec {
            name: format!("c{}", c.saturating_mul(n)),
            duration_s: Some(level_s),
            num_requests: None,
            arrival: ArrivalSpec::closed_loop(c.saturating_mul(n)),
            mix: vec![(ModelId(mid as u32), 1.0)],
            input_tokens: prompt.clone(),
            output_tokens: output.clone(),
            per_model_lengths: Vec::new(),
        })
        .collect();
    let mut s = variant.clone();
    s.name = format!("{}-calibration-{model}", variant.name);
    s.description = format!("calibration ladder of {model} (live campaign of {})", variant.name);
    s.workload.phases = phases;
    s.workload.prefix = PrefixSpec { tokens: 0, ..s.workload.prefix };
    s.output.tokens_csv = true;
    s.output.drain_timeout_s = s.output.drain_timeout_s.max(MIN_DRAIN_S);
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn levels_double_from_one_and_end_at_the_cap(cap in 0u32..5000) {
            let l = levels(cap);
            prop_assert_eq!(l[0], 1);
            prop_assert_eq!(*l.last().unwrap(), cap.max(1));
            for w in l.windows(2) {
                prop_assert!(w[0] < w[1] && w[1] <= 2 * w[0], "{:?}", l);
            }
        }
    }

    fn two_models() -> Scenario {
        let text = r#"
name = "t"
[cluster]
gpu = "H200"
num_gpus = 3
[defaults.engine]
max_num_seqs = 12
max_model_len = 4096
[[instances]]
model = "llama-3.1-8b"
gpu = 0
[[instances]]
model = "llama-3.1-8b"
gpu = 1
[[instances]]
model = "qwen2.5-7b"
gpu = 2
[[workload.phases]]
duration_s = 10
arrival = { process = "poisson", rate = 1.0 }
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 10 }
"#;
        let f = sim::scenario::parse_scenario(text, std::path::Path::new("t.toml"), &[]).unwrap();
        f.variants[0].clone()
    }

    #[test]
    fn the_ladder_loads_only_its_model_per_instance_within_the_engines_limits() {
        let s = two_models();
        let c = calibration_scenario(&s, "llama-3.1-8b", 1.0).unwrap();
        let conc: Vec<u32> = c
            .workload
            .phases
            .iter()
            .map(|p| match p.arrival {
                ArrivalSpec::ClosedLoop { concurrency, .. } => concurrency,
                _ => 0,
            })
            .collect();
        assert_eq!(conc, [2, 4, 8, 16, 24], "1, 2, 4, 8, 12 streams on each of the two instances");
        for p in &c.workload.phases {
            assert_eq!(p.mix, [(ModelId(0), 1.0)]);
            assert_eq!(p.duration_s, Some(LEVEL_S));
            assert_eq!(p.input_tokens, LengthDist::Uniform { min: 64, max: 2048 });
            assert_eq!(p.output_tokens, LengthDist::Uniform { min: 8, max: 384 });
        }
        assert!(c.output.tokens_csv && c.workload.prefix.tokens == 0);
        assert_eq!(c.instances, s.instances, "the engines are the variant's");
        let q = calibration_scenario(&s, "qwen2.5-7b", 0.1).unwrap();
        assert_eq!(q.workload.phases[0].mix, [(ModelId(1), 1.0)]);
        assert_eq!(q.workload.phases[0].duration_s, Some(MIN_LEVEL_S));
        assert_eq!(q.workload.phases[0].output_tokens, LengthDist::Uniform { min: 8, max: 38 });
        assert!(calibration_scenario(&s, "nope", 1.0).unwrap_err().contains("nope"));
    }
}
