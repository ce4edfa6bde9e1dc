//! `validate`: simulates exactly the request stream of a live run, with the step-time profile of
//! each instance's (model, GPU, engine), and compares: TTFT, TPOT, ITL and E2E p50/p90/p99 and
//! throughput per model and overall, sim against live, as signed relative errors of the
//! simulation. Writes the simulated run dir, `validation.json`, and (through the reports crate)
//! `validation.csv`, the overlay charts and `report.md`.
//!
//! The stream is the live run's: the scenario file is loaded with the live run's seed, and its
//! resolved variant is checked against the scenario recorded in the live `run.json`. Differences
//! that change the request stream or the cluster (workload, models, instances' models, GPUs or
//! engine settings) are an error unless allowed; step-time sources (what is being validated),
//! ports, launch commands and output settings may differ, and every difference is listed.

use crate::dataset::{engine_name, instance_target};
use crate::error::CalibrationError;
use crate::profile::{Profile, profile_file_name};
use reports::{ErrorRow, ReportOptions, ThroughputRow, compare_sim_live, compare_throughput, write_report};
use serde::Serialize;
use serde_json::Value;
use sim::runner::simulate_to_dir;
use sim::scenario::{Override, Scenario, load_scenario};
use sim::simulation::SimOptions;
use sim::trace::{Source, read_run_dir};
use std::path::{Path, PathBuf};

/// What `validate` is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidateOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// `--set` overrides.
    pub overrides: Vec<Override>,
    /// The variant (default: the live run's).
    pub variant: Option<String>,
    /// The live run dir.
    pub live: PathBuf,
    /// Output directory (default `<live>/validation`).
    pub out: Option<PathBuf>,
    /// A profile for every instance it matches (model, GPU and engine).
    pub profile: Option<PathBuf>,
    /// Where to look for `<gpu>-<model>-<engine>.toml` profiles when `profile` is not given.
    pub profiles_dir: PathBuf,
    /// Go on when the scenario differs from the live run's in what shapes the load.
    pub allow_mismatch: bool,
}

impl ValidateOptions {
    /// Defaults: the live run's variant, profiles from `profiles/`, mismatches refused.
    pub fn new(scenario: impl Into<PathBuf>, live: impl Into<PathBuf>) -> Self {
        ValidateOptions {
            scenario: scenario.into(),
            overrides: Vec::new(),
            variant: None,
            live: live.into(),
            out: None,
            profile: None,
            profiles_dir: PathBuf::from("profiles"),
            allow_mismatch: false,
        }
    }
}

/// What `validate` produced.
#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    /// Scenario name.
    pub scenario: String,
    /// Variant.
    pub variant: String,
    /// The simulated run dir.
    pub sim_dir: PathBuf,
    /// The live run dir.
    pub live_dir: PathBuf,
    /// Each instance's step-time source in the simulation.
    pub step_times: Vec<(String, String)>,
    /// Where the scenario differs from the live run's (allowed ones), one line each.
    pub differences: Vec<String>,
    /// Latency rows: model x metric x percentile.
    pub latencies: Vec<ErrorRow>,
    /// Throughput rows: model x metric.
    pub throughput: Vec<ThroughputRow>,
    /// `report.md` of the overlays.
    pub report_md: PathBuf,
    /// `validation.json`.
    pub json: PathBuf,
}

/// Top-level scenario fields whose differences are allowed: they do not change the request
/// stream nor the cluster (step times, the contention model and the simulated LB's poll phase,
/// which a live LB does not control, are what a validation checks).
fn allowed_difference(path: &str) -> bool {
    let tail = |p: &str| path.ends_with(p) || path.contains(&format!("{p}."));
    path.starts_with("output")
        || path.starts_with("contention")
        || path == "router.poll_offset_s"
        || path == "description"
        || tail(".perf")
        || tail(".port")
        || tail(".launch_command")
        || tail(".model_path")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

/// Every path where `a` (the file) and `b` (the live run) differ.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, String)>) {
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                diff(&join(k), va, y.get(k).unwrap_or(&Value::Null), out);
            }
            for (k, vb) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                diff(&join(k), &Value::Null, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(&join(&i.to_string()), va, vb, out);
            }
        }
        _ if a != b => out.push((
            path.to_string(),
            format!("{}: scenario file {} vs live run {}", path, short(a), short(b)),
        )),
        _ => {}
    }
}

/// The profile overrides: `--profile` for every instance it matches, else
/// `<profiles_dir>/<gpu>-<model>-<engine>.toml` where one exists.
fn profile_overrides(s: &Scenario, opts: &ValidateOptions) -> Result<Vec<Override>, CalibrationError> {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let set = |i: usize, p: &Path| {
        Override::new(format!("instances.{i}.profile"), toml::Value::String(abs(p).display().to_string()))
    };
    let mut out = Vec::new();
    if let Some(path) = &opts.profile {
        let text = std::fs::read_to_string(path).map_err(CalibrationError::io(path))?;
        let p = Profile::from_toml(&text)
            .map_err(|e| CalibrationError::input(path, format!("not a profile: {}", e.message())))?;
        for i in 0..s.instances.len() {
            if let Some(t) = instance_target(s, i)
                && t.model == p.model
                && t.gpu == p.gpu
                && t.engine == p.engine
            {
                out.push(set(i, path));
            }
        }
        if out.is_empty() {
            let have: Vec<String> = (0..s.instances.len())
                .filter_map(|i| instance_target(s, i).map(|t| format!("{}: {t}", s.instances[i].name)))
                .collect();
            return Err(CalibrationError::input(
                path,
                format!(
                    "fitted for {} on {} with {}, which no instance runs ({}); pass the profile of one of them",
                    p.model,
                    p.gpu,
                    p.engine,
                    have.join("; ")
                ),
            ));
        }
        return Ok(out);
    }
    for (i, inst) in s.instances.iter().enumerate() {
        let Some(gpu) = s.gpus.get(inst.gpu.index()) else { continue };
        let Some(model) = s.models.get(inst.model.index()) else { continue };
        let file = opts.profiles_dir.join(profile_file_name(
            &gpu.name,
            &model.name,
            &engine_name(inst.engine.preset),
        ));
        if file.is_file() {
            out.push(set(i, &file));
        }
    }
    Ok(out)
}

/// `p` relative to the working directory when it lies under it, else as it is.
fn relative_to_cwd(p: &str) -> String {
    let cwd = std::env::current_dir().ok().and_then(|d| std::fs::canonicalize(d).ok());
    match cwd.as_deref().and_then(|c| Path::new(p).strip_prefix(c).ok()) {
        Some(rel) => rel.display().to_string(),
        None => p.to_string(),
    }
}

fn pick_variant<'a>(
    file: &'a sim::scenario::ScenarioFile,
    want: &str,
    explicit: bool,
) -> Result<&'a Scenario, CalibrationError> {
    match file.variant(want) {
        Ok(s) => Ok(s),
        Err(_) if !explicit && file.variants.len() == 1 => Ok(&file.variants[0]),
        Err(e) => Err(e.into()),
    }
}

/// Simulates the live run `opts.live` with the scenario `opts.scenario` and compares.
pub fn validate(opts: &ValidateOptions) -> Result<Validation, CalibrationError> {
    let live = read_run_dir(&opts.live)?;
    if live.meta.source != Source::Live {
        return Err(CalibrationError::input(
            &opts.live,
            "a simulated run dir; --live needs a live run dir (`modelsguard live run`)",
        ));
    }
    let variant = opts.variant.clone().unwrap_or_else(|| live.meta.variant.clone());
    let mut overrides = opts.overrides.clone();
    overrides.push(Override::new("seed", toml::Value::Integer(live.meta.seed as i64)));
    let file = load_scenario(&opts.scenario, &overrides)?;
    let base = pick_variant(&file, &variant, opts.variant.is_some())?.clone();
    let mut differences = Vec::new();
    let mut blocking = Vec::new();
    let (a, b) = (
        serde_json::to_value(&base).unwrap_or(Value::Null),
        serde_json::to_value(&live.meta.scenario).unwrap_or(Value::Null),
    );
    let mut found = Vec::new();
    diff("", &a, &b, &mut found);
    for (path, line) in found {
        if path == "variant" || path == "name" || allowed_difference(&path) {
            differences.push(line);
        } else {
            blocking.push(line);
        }
    }
    if !blocking.is_empty() && !opts.allow_mismatch {
        return Err(CalibrationError::Mismatch(format!(
            "{}: variant {} differs from the scenario the live run {} ran, so the simulation would not \
             replay its load; fix the scenario or pass --allow-mismatch. Differences:\n  {}",
            opts.scenario.display(),
            base.variant,
            opts.live.display(),
            blocking.join("\n  ")
        )));
    }
    differences.extend(blocking);
    differences.extend(live.partial_warning());
    overrides.extend(profile_overrides(&base, opts)?);
    let file = load_scenario(&opts.scenario, &overrides)?;
    let scenario = pick_variant(&file, &base.variant, true)?.clone();
    let step_times = scenario
        .instances
        .iter()
        .map(|i| {
            let v = serde_json::to_value(&i.perf).unwrap_or(Value::Null);
            let src = match (v.get("source").and_then(Value::as_str), v.get("path").and_then(Value::as_str)) {
                // Recorded relative to the working directory (the repository root in the
                // committed evidence), not as the absolute path the override needed.
                (Some("profile"), Some(p)) => format!("profile {}", relative_to_cwd(p)),
                _ => "roofline prior (UNCALIBRATED)".to_string(),
            };
            (i.name.clone(), src)
        })
        .collect();

    let out = opts.out.clone().unwrap_or_else(|| opts.live.join("validation"));
    let sim_dir = out.join("sim");
    simulate_to_dir(&scenario, &file.base_dir, &sim_dir, true, "validate", SimOptions::default())?;
    let sim = read_run_dir(&sim_dir)?;
    let (sent_live, sent_sim) = (live.summary.overall.requests, sim.summary.overall.requests);
    if sent_live != sent_sim {
        differences.push(format!(
            "the live run issued {sent_live} requests, the simulation {sent_sim} (a deadline, Ctrl-C or \
             drain timeout cut the live run?)"
        ));
    }
    let report = write_report(
        &[sim_dir.clone(), opts.live.clone()],
        &ReportOptions { out_dir: out.clone(), ..ReportOptions::default() },
    )?;
    let mut v = Validation {
        scenario: scenario.name.clone(),
        variant: scenario.variant.clone(),
        sim_dir,
        live_dir: opts.live.clone(),
        step_times,
        differences,
        latencies: compare_sim_live(&sim, &live),
        throughput: compare_throughput(&sim, &live),
        report_md: report.report_md,
        json: out.join("validation.json"),
    };
    let json = serde_json::to_string_pretty(&v)
        .map_err(|e| CalibrationError::input(&v.json, format!("cannot serialise: {e}")))?;
    std::fs::write(&v.json, json + "\n").map_err(CalibrationError::io(&v.json))?;
    v.json = out.join("validation.json");
    Ok(v)
}

/// The error table as the CLI prints it: per model, each latency's p50/p90/p99 and the
/// throughputs, sim / live and the simulation's signed error.
pub fn validation_table(v: &Validation) -> String {
    use std::fmt::Write;
    let ms = |x: Option<f64>| x.map_or("-".to_string(), |s| format!("{:.1}", s * 1e3));
    let pct = |e: Option<f64>| e.map_or("-".to_string(), |e| format!("{:+.1}%", e * 100.0));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<6} {:<4} {:>12} {:>12} {:>9}",
        "model", "metric", "pct", "sim ms", "live ms", "error"
    );
    for r in &v.latencies {
        let _ = writeln!(
            out,
            "{:<20} {:<6} {:<4} {:>12} {:>12} {:>9}",
            r.model,
            r.metric.label(),
            r.percentile.label(),
            ms(r.sim_s),
            ms(r.live_s),
            pct(r.rel_error)
        );
    }
    let _ =
        writeln!(out, "\n{:<20} {:<24} {:>12} {:>12} {:>9}", "model", "throughput", "sim", "live", "error");
    for r in &v.throughput {
        let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
        let _ = writeln!(
            out,
            "{:<20} {:<24} {:>12} {:>12} {:>9}",
            r.model,
            r.metric.label(),
            f(r.sim),
            f(r.live),
            pct(r.rel_error)
        );
    }
    out
}
