//! The campaign's steps, worked out up front from the scenario (so progress can say "step i of
//! n"): per variant `up`, a calibration run per model not yet calibrated, the scenario's run,
//! `down`; then `calibrate` per (model, GPU, engine), `validate` per variant, and the report.
//!
//! A (model, GPU, engine) is calibrated once, from the first variant that runs it: a profile is
//! keyed by exactly that triple, so a second variant's ladder on the same engines would measure
//! the same thing again. A variant whose engines differ (another preset or card) gets its own.

use crate::CampaignOptions;
use crate::error::CampaignError;
use crate::ladder::calibration_scenario;
use crate::layout::Layout;
use crate::quick;
use crate::state::Settings;
use calibration::dataset::{Target, instance_target};
use calibration::profile::profile_file_name;
use sim::scenario::{Override, Scenario, load_scenario};
use std::path::PathBuf;

/// One variant: what its run and validation load, and its calibration runs.
#[derive(Clone, Debug)]
pub(crate) struct VariantPlan {
    /// The variant's scenario as `live run` sends it (the file with `overrides`).
    pub scenario: Scenario,
    /// Relative paths of the file resolve against this.
    pub base_dir: PathBuf,
    /// The user's overrides and this variant's `--quick` ones.
    pub overrides: Vec<Override>,
    /// The (model, GPU, engine) triples its instances run.
    pub targets: Vec<Target>,
    /// Its calibration runs: model and ladder scenario.
    pub calibrations: Vec<(String, Scenario)>,
}

/// One profile to fit.
#[derive(Clone, Debug)]
pub(crate) struct TargetPlan {
    /// What it is fitted for.
    pub target: Target,
    /// The calibration run dirs it is fitted from.
    pub runs: Vec<PathBuf>,
    /// The calibration run that measures it: (variant, calibration) indices.
    pub from: (usize, usize),
    /// The profile file written.
    pub profile: PathBuf,
    /// The fit report's directory.
    pub fit_dir: PathBuf,
}

/// What a step does (indices into the plan's variants, their calibrations, and targets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepKind {
    Up(usize),
    Calibration(usize, usize),
    Run(usize),
    Down(usize),
    Calibrate(usize),
    Validate(usize),
    Report,
}

/// One step.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// Stable id (marker name).
    pub id: String,
    /// What it does, for people.
    pub label: String,
    pub kind: StepKind,
    /// Steps whose rerun makes this one rerun.
    pub deps: Vec<usize>,
}

/// The steps of one variant's engine session, as indices into the plan's steps.
#[derive(Clone, Debug)]
pub(crate) struct VariantSteps {
    pub up: usize,
    pub calibrations: Vec<usize>,
    pub run: usize,
    pub down: usize,
}

/// Where each kind of step sits in the plan's steps.
#[derive(Clone, Debug)]
pub(crate) struct Indices {
    pub variants: Vec<VariantSteps>,
    pub calibrate: Vec<usize>,
    pub validate: Vec<usize>,
    pub report: usize,
}

/// Everything the campaign will do.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub variants: Vec<VariantPlan>,
    pub targets: Vec<TargetPlan>,
    pub steps: Vec<Step>,
    pub index: Indices,
    pub settings: Settings,
}

/// Loads the scenario, derives every variant's run and calibration scenarios and lists the steps.
pub(crate) fn build(opts: &CampaignOptions, layout: &Layout) -> Result<Plan, CampaignError> {
    let text = std::fs::read_to_string(&opts.scenario)
        .map_err(|source| CampaignError::Io { path: opts.scenario.clone(), source })?;
    let file = load_scenario(&opts.scenario, &opts.overrides)?;
    let names: Vec<String> = if opts.variants.is_empty() {
        file.variants.iter().map(|v| v.variant.clone()).collect()
    } else {
        opts.variants.clone()
    };
    let scale = opts.quick.unwrap_or(1.0);
    let mut variants = Vec::new();
    let mut targets: Vec<TargetPlan> = Vec::new();
    for name in &names {
        let base = file.variant(name)?;
        let mut overrides = opts.overrides.clone();
        let scenario = match opts.quick {
            Some(f) => {
                overrides.extend(quick::overrides(base, f));
                load_scenario(&opts.scenario, &overrides)?.variant(name)?.clone()
            }
            None => base.clone(),
        };
        let mut mine: Vec<Target> = Vec::new();
        let mut models: Vec<String> = Vec::new();
        for (i, inst) in scenario.instances.iter().enumerate() {
            if let Some(t) = instance_target(&scenario, i)
                && !mine.contains(&t)
            {
                mine.push(t);
            }
            if let Some(m) = scenario.models.get(inst.model.index())
                && !models.contains(&m.name)
            {
                models.push(m.name.clone());
            }
        }
        let mut calibrations = Vec::new();
        for model in models {
            let new: Vec<&Target> = mine
                .iter()
                .filter(|t| t.model == model && !targets.iter().any(|p| p.target == **t))
                .collect();
            if new.is_empty() {
                continue;
            }
            let run = layout.calibration_run(name, &model);
            for t in new {
                let file_name = profile_file_name(&t.gpu, &t.model, &t.engine);
                targets.push(TargetPlan {
                    target: t.clone(),
                    runs: vec![run.clone()],
                    from: (variants.len(), calibrations.len()),
                    profile: layout.profiles().join(&file_name),
                    fit_dir: layout.fit_report(&file_name),
                });
            }
            let ladder = calibration_scenario(&scenario, &model, scale)
                .map_err(|reason| CampaignError::Options(format!("{}: {reason}", opts.scenario.display())))?;
            calibrations.push((model, ladder));
        }
        variants.push(VariantPlan {
            scenario,
            base_dir: file.base_dir.clone(),
            overrides,
            targets: mine,
            calibrations,
        });
    }
    let (steps, index) = list_steps(&variants, &targets);
    let settings = Settings {
        scenario: opts.scenario.display().to_string(),
        scenario_text: text,
        overrides: opts.overrides.iter().map(ToString::to_string).collect(),
        variants: names,
        quick: opts.quick,
        emulate: opts.emulate.is_some(),
    };
    Ok(Plan { variants, targets, steps, index, settings })
}

fn push(steps: &mut Vec<Step>, id: String, label: String, kind: StepKind, deps: Vec<usize>) -> usize {
    steps.push(Step { id, label, kind, deps });
    steps.len() - 1
}

fn list_steps(variants: &[VariantPlan], targets: &[TargetPlan]) -> (Vec<Step>, Indices) {
    let mut steps: Vec<Step> = Vec::new();
    let mut per_variant = Vec::new();
    for (v, vp) in variants.iter().enumerate() {
        let name = &vp.scenario.variant;
        let n = vp.scenario.instances.len();
        let label = format!("{name}: start {n} engines and the LB");
        let up = push(&mut steps, format!("{name}/up"), label, StepKind::Up(v), vec![]);
        let mut calibrations = Vec::new();
        for (k, (model, _)) in vp.calibrations.iter().enumerate() {
            let label = format!("{name}: calibration ladder of {model}");
            let id = format!("{name}/calibration/{model}");
            calibrations.push(push(&mut steps, id, label, StepKind::Calibration(v, k), vec![]));
        }
        let label = format!("{name}: live run of the scenario");
        let run = push(&mut steps, format!("{name}/run"), label, StepKind::Run(v), vec![]);
        let label = format!("{name}: stop the engines");
        let down = push(&mut steps, format!("{name}/down"), label, StepKind::Down(v), vec![]);
        per_variant.push(VariantSteps { up, calibrations, run, down });
    }
    let mut calibrate = Vec::new();
    for (t, tp) in targets.iter().enumerate() {
        let (v, k) = tp.from;
        let deps = per_variant.get(v).and_then(|s| s.calibrations.get(k)).copied().into_iter().collect();
        let stem = tp.profile.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let label = format!("calibrate {}", tp.target);
        calibrate.push(push(&mut steps, format!("calibrate/{stem}"), label, StepKind::Calibrate(t), deps));
    }
    let mut validate = Vec::new();
    for (v, vp) in variants.iter().enumerate() {
        let mut deps = vec![per_variant[v].run];
        for (t, tp) in targets.iter().enumerate() {
            if vp.targets.contains(&tp.target) {
                deps.push(calibrate[t]);
            }
        }
        let name = &vp.scenario.variant;
        let label = format!("{name}: validate against its simulation with the fitted profiles");
        validate.push(push(&mut steps, format!("validate/{name}"), label, StepKind::Validate(v), deps));
    }
    let label = "report: simulated and measured, every variant".to_string();
    let report = push(&mut steps, "report".into(), label, StepKind::Report, validate.clone());
    (steps, Indices { variants: per_variant, calibrate, validate, report })
}
