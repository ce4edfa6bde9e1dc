//! `calibrate`: from live run dirs to a profile. Picks the (model, GPU, engine) the runs
//! measured, turns each run into fit rows (from the server's step log when every run dir has
//! one, else reconstructed from client timestamps), fits the step-time coefficients by NNLS,
//! estimates the pipeline's output delay from lone requests' TTFT, and writes the profile and
//! the fit report.

use crate::dataset::{LoadedRun, Target, TargetFilter, choose_target, load_runs, sole_instance};
use crate::error::CalibrationError;
use crate::fit::{Fit, fit_nnls};
use crate::profile::{CpuCoefficients, CudaGraphs, FitSummary, Pipeline, Profile, default_profile_path};
use crate::reconstruct::{ClientRequest, ReconCounts, ReconOptions, bursts, replay};
use crate::report::{FitReport, write_fit_report};
use crate::step::{StepFeatures, StepModel, StepSample, Term};
use crate::steps_log::samples_from_log;
use sim::metrics::percentile;
use sim::scenario::MAX_OUTPUT_DELAY_S;
use sim::trace::{RequestStatus, files};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Where the fit rows come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataSource {
    /// The server's step log when every run dir has one, else client timestamps.
    #[default]
    Auto,
    /// Client timestamps (`tokens.csv`) only, even where a step log exists.
    Client,
    /// The server's step log (`steps.csv`) only.
    StepLog,
}

/// What `calibrate` is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrateOptions {
    /// Live run dirs of one (model, GPU, engine).
    pub run_dirs: Vec<PathBuf>,
    /// `--model`, `--gpu`, `--engine`.
    pub filter: TargetFilter,
    /// Where the rows come from.
    pub source: DataSource,
    /// Client path: a request sent within this long before a step's start may or may not be in
    /// it (those steps are left out), seconds.
    pub arrival_margin_s: f64,
    /// The profile to write (default `<profiles_dir>/<gpu>-<model>-<engine>.toml`).
    pub out: Option<PathBuf>,
    /// Where profiles go by default.
    pub profiles_dir: PathBuf,
    /// The fit report's directory (default `results/calibrate/<profile file stem>`).
    pub report_dir: Option<PathBuf>,
}

impl CalibrateOptions {
    /// Defaults for `run_dirs`: auto source, 2 ms arrival margin, `profiles/`.
    pub fn new(run_dirs: Vec<PathBuf>) -> Self {
        CalibrateOptions {
            run_dirs,
            filter: TargetFilter::default(),
            source: DataSource::Auto,
            arrival_margin_s: 0.002,
            out: None,
            profiles_dir: PathBuf::from("profiles"),
            report_dir: None,
        }
    }
}

/// How the rows were obtained.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// The engines' own step logs.
    StepLog {
        /// Steps dropped because they captured a CUDA graph.
        captured: usize,
        /// Steps that scheduled nothing.
        empty: usize,
        /// Graph steps kept.
        graph_steps: usize,
        /// Eager steps kept.
        eager_steps: usize,
    },
    /// Steps reconstructed from client timestamps.
    Client {
        /// Pipeline lag chosen, steps.
        lag: usize,
        /// R^2 of the fit at each lag tried.
        r2_by_lag: Vec<(usize, f64)>,
        /// What the reconstruction kept and left out.
        counts: ReconCounts,
        /// How each instance's chunk arrivals were cut into bursts.
        bursts: Vec<BurstInfo>,
    },
}

/// How one instance's chunk arrivals were cut into bursts (one per step end).
#[derive(Clone, Debug, PartialEq)]
pub struct BurstInfo {
    /// Run dir and instance name.
    pub instance: String,
    /// Gap that separates two bursts, seconds.
    pub threshold_s: f64,
    /// 99th percentile of a burst's spread (last - first arrival), seconds.
    pub spread_p99_s: f64,
}

/// Rows reconstructed from client timestamps at one pipeline lag.
struct ClientRows {
    rows: Vec<StepSample>,
    counts: ReconCounts,
    bursts: Vec<BurstInfo>,
}

/// The output delay: fitted by simulating the calibration runs (`delay`), with the lone-request
/// estimate beside it.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputDelay {
    /// The delay written to the profile, seconds: the simulated fit's where there is one, else
    /// the lone-request median (0 when nothing was measured).
    pub value_s: f64,
    /// The fit by simulation of the calibration runs' streams.
    pub simulated: Option<crate::delay::DelayFit>,
    /// Median of lone requests' TTFT minus their modelled prefill, seconds.
    pub lone_s: f64,
    /// Requests it came from.
    pub requests: usize,
    /// 10th and 90th percentiles of the same, seconds.
    pub p10_s: f64,
    /// 90th percentile.
    pub p90_s: f64,
}

/// What `calibrate` produced.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// The triple fitted.
    pub target: Target,
    /// The profile written.
    pub profile: Profile,
    /// Where.
    pub profile_path: PathBuf,
    /// The fit.
    pub fit: Fit,
    /// Its rows.
    pub samples: Vec<StepSample>,
    /// How the rows were obtained.
    pub method: Method,
    /// The output-delay estimate.
    pub output_delay: OutputDelay,
    /// The fit report.
    pub report: FitReport,
    /// What was identified and what assumed, one sentence each.
    pub notes: Vec<String>,
}

/// The instance names of `run` that run `target`.
fn instance_names(run: &LoadedRun, target: &Target) -> Vec<(usize, String)> {
    let s = &run.dir.meta.scenario;
    (0..s.instances.len())
        .filter(|&i| crate::dataset::instance_target(s, i).as_ref() == Some(target))
        .map(|i| (i, s.instances[i].name.clone()))
        .collect()
}

/// The requests of instance `i` (name `name`) of `run` with their chunks.
fn client_requests(run: &LoadedRun, i: usize, name: &str) -> Result<Vec<ClientRequest>, CalibrationError> {
    let Some(tokens) = &run.tokens else {
        return Err(CalibrationError::input(
            run.path().join(files::TOKENS_CSV),
            "missing: calibrating from client timestamps needs the per-chunk times; re-run \
             `modelsguard live run` with --tokens (or give run dirs whose engines logged steps.csv)",
        ));
    };
    let s = &run.dir.meta.scenario;
    let model = s.instances.get(i).and_then(|x| s.models.get(x.model.index())).map(|m| m.name.as_str());
    let sole = sole_instance(s, i);
    let mut by_id: BTreeMap<u64, ClientRequest> = run
        .dir
        .requests
        .iter()
        .filter(|r| r.instance == name || (r.instance.is_empty() && sole && Some(r.model.as_str()) == model))
        .map(|r| {
            (r.id, ClientRequest { send_s: r.send_s, prompt_tokens: r.prompt_tokens, chunks: Vec::new() })
        })
        .collect();
    let mut sorted = true;
    for t in tokens {
        if let Some(q) = by_id.get_mut(&t.id) {
            if q.chunks.len() != t.index as usize {
                sorted = false;
            }
            q.chunks.push((t.time_s, t.tokens));
        }
    }
    if !sorted {
        return Err(CalibrationError::input(
            run.path().join(files::TOKENS_CSV),
            "chunks of a request are not in index order; the file was edited or written by another tool",
        ));
    }
    Ok(by_id.into_values().filter(|q| !q.chunks.is_empty()).collect())
}

/// Features of a prompt of `p` tokens computed alone, in chunks of at most `budget`.
fn lone_prefill(p: u32, budget: u32, graphs: Option<&CudaGraphs>) -> StepFeatures {
    let mut f = StepFeatures::default();
    let (mut done, p, budget) = (0u64, u64::from(p), u64::from(budget.max(1)));
    while done < p {
        let n = (p - done).min(budget);
        f.num_steps += 1;
        f.add_prefill_chunk(done, n);
        if let Some(g) = graphs {
            match g.capture_sizes.iter().find(|&&c| u64::from(c) >= n) {
                Some(&c) => f.num_padding_tokens += u64::from(c) - n,
                None if !g.capture_sizes.is_empty() => f.num_eager_steps += 1,
                None => {}
            }
        }
        done += n;
    }
    f
}

/// TTFT minus the modelled prefill of requests that had their instance to themselves from send
/// to first token: the pipeline's output delay plus client-to-engine latency. A lone request whose
/// delay so measured exceeds [`MAX_OUTPUT_DELAY_S`] (the most a profile may hold) is an error
/// naming its row: no pipeline delays that long, and fitting the delay by simulation up to it
/// would simulate that long.
fn estimate_output_delay(
    runs: &[LoadedRun],
    target: &Target,
    model: &StepModel,
    graphs: Option<&CudaGraphs>,
) -> Result<OutputDelay, CalibrationError> {
    let mut d = Vec::new();
    for run in runs {
        let s = &run.dir.meta.scenario;
        for (i, name) in instance_names(run, target) {
            let budget = s.instances[i].engine.max_num_batched_tokens;
            let sole = sole_instance(s, i);
            let mine: Vec<_> = run
                .dir
                .requests
                .iter()
                .filter(|r| r.instance == name || (r.instance.is_empty() && sole && r.model == target.model))
                .filter(|r| r.status == RequestStatus::Ok)
                .collect();
            for r in &mine {
                let (Some(first), Some(ttft)) = (r.first_token_s, r.ttft_s) else { continue };
                let alone = mine
                    .iter()
                    .all(|o| o.id == r.id || o.send_s > first || o.end_s.is_some_and(|e| e <= r.send_s));
                if alone {
                    let delay = ttft - model.predict(&lone_prefill(r.prompt_tokens, budget, graphs));
                    if delay > MAX_OUTPUT_DELAY_S {
                        return Err(CalibrationError::input(
                            run.path().join(files::REQUESTS_CSV),
                            format!(
                                "request {}: ttft_s {ttft} s of a request alone on its instance is {delay:.3} s \
                                 more than its modelled prefill, beyond the {MAX_OUTPUT_DELAY_S} s a pipeline \
                                 delay can be; the row is corrupt or the engine stalled: leave this run dir out",
                                r.id
                            ),
                        ));
                    }
                    d.push(delay);
                }
            }
        }
    }
    d.sort_by(f64::total_cmp);
    let pct = |q| percentile(&d, q).unwrap_or(0.0);
    let lone_s = pct(50.0).max(0.0);
    Ok(OutputDelay {
        value_s: lone_s,
        simulated: None,
        lone_s,
        requests: d.len(),
        p10_s: pct(10.0),
        p90_s: pct(90.0),
    })
}

/// Rows from the step logs of every run dir.
fn log_rows(
    runs: &[LoadedRun],
    target: &Target,
) -> Result<(Vec<StepSample>, Method, BTreeSet<u32>), CalibrationError> {
    let mut rows = Vec::new();
    let (mut captured, mut empty, mut graph_steps, mut eager_steps) = (0, 0, 0, 0);
    let mut sizes = BTreeSet::new();
    for (ri, run) in runs.iter().enumerate() {
        let path = run.path().join(crate::dataset::STEPS_CSV);
        let Some(log) = &run.steps else {
            return Err(CalibrationError::input(
                path,
                "missing: the engine served no step log (GET /steps); use client timestamps \
                 (--source client, needs tokens.csv)",
            ));
        };
        let names: Vec<String> = instance_names(run, target).into_iter().map(|(_, n)| n).collect();
        let got = samples_from_log(&path, ri, log, &names)?;
        if got.samples.is_empty() {
            return Err(CalibrationError::input(
                path,
                format!("no usable steps of {} in it; is it the log of this run?", names.join(", ")),
            ));
        }
        captured += got.captured;
        empty += got.empty;
        graph_steps += got.graph_steps;
        eager_steps += got.eager_steps;
        sizes.extend(got.graph_sizes);
        rows.extend(got.samples);
    }
    Ok((rows, Method::StepLog { captured, empty, graph_steps, eager_steps }, sizes))
}

/// Rows reconstructed from client timestamps at pipeline lag `lag`.
fn client_rows(
    runs: &[LoadedRun],
    target: &Target,
    margin: f64,
    lag: usize,
) -> Result<ClientRows, CalibrationError> {
    let mut rows = Vec::new();
    let mut counts = ReconCounts::default();
    let mut info = Vec::new();
    let mut chain = 0u64;
    for (ri, run) in runs.iter().enumerate() {
        let s = &run.dir.meta.scenario;
        for (i, name) in instance_names(run, target) {
            let reqs = client_requests(run, i, &name)?;
            if reqs.is_empty() {
                continue;
            }
            let b = bursts(&reqs).map_err(|reason| {
                CalibrationError::input(
                    run.path().join(files::TOKENS_CSV),
                    format!("instance {name}: {reason}"),
                )
            })?;
            let opts = ReconOptions { arrival_margin_s: margin, lag };
            let engine = sim::instance::Instance::new(s, sim::InstanceId(i as u32));
            let (steps, c) = replay(&engine, s.instances[i].model, &reqs, &b, &opts);
            counts.add(&c);
            info.push(BurstInfo {
                instance: format!("{} {name}", run.path().display()),
                threshold_s: b.threshold_s,
                spread_p99_s: b.spread_p99_s,
            });
            // Consecutive usable steps share their end times: one chain.
            let mut prev_used = false;
            for st in steps {
                match st.duration_s {
                    Some(d) => {
                        if !prev_used {
                            chain += 1;
                        }
                        prev_used = true;
                        rows.push(StepSample {
                            run: ri,
                            instance: name.clone(),
                            chain,
                            duration_s: d,
                            features: st.features,
                        });
                    }
                    None => prev_used = false,
                }
            }
        }
    }
    Ok(ClientRows { rows, counts, bursts: info })
}

/// Fits the profile of the runs in `opts.run_dirs`, writes it and its fit report.
pub fn calibrate(opts: &CalibrateOptions) -> Result<Calibration, CalibrationError> {
    let runs = load_runs(&opts.run_dirs)?;
    let target = choose_target(&runs, &opts.filter)?;
    let all_logged = runs.iter().all(|r| r.steps.as_ref().is_some_and(|s| !s.is_empty()));
    let use_log = match opts.source {
        DataSource::StepLog => true,
        DataSource::Client => false,
        DataSource::Auto => all_logged,
    };
    let mut notes = Vec::new();
    let (rows, method, fit, graphs) = if use_log {
        let (rows, method, sizes) = log_rows(&runs, &target)?;
        let fit = fit_nnls(
            &rows,
            &[Term::Fixed, Term::PrefillToken, Term::DecodeSeq, Term::KvToken, Term::EagerFixed],
        )?;
        let graphs = (!sizes.is_empty()).then(|| CudaGraphs {
            capture_sizes: sizes.into_iter().collect(),
            eager_fixed_s: fit.model.eager_fixed_s,
        });
        notes.push(
            "step durations and batches from the engines' own step logs (steps.csv); \
             per_prefill_attn_pair_s not fitted (the log has no per-request contexts)"
                .to_string(),
        );
        if let Some(g) = &graphs {
            notes.push(format!(
                "CUDA graph capture sizes: the padded sizes seen on graph steps ({} sizes, largest {})",
                g.capture_sizes.len(),
                g.capture_sizes.last().copied().unwrap_or(0)
            ));
        }
        (rows, method, fit, graphs)
    } else {
        if all_logged {
            notes.push("step logs present but not used (--source client)".into());
        } else if runs.iter().any(|r| r.steps.is_some()) {
            notes.push(
                "some run dirs have a step log, not all: every run reconstructed from client timestamps"
                    .into(),
            );
        }
        let terms = [Term::Fixed, Term::PrefillToken, Term::DecodeSeq, Term::KvToken, Term::PrefillAttnPair];
        let mut best: Option<(ClientRows, Fit, usize)> = None;
        let mut r2_by_lag = Vec::new();
        let mut last_err = None;
        for lag in [0, 1] {
            let got = client_rows(&runs, &target, opts.arrival_margin_s, lag)?;
            match fit_nnls(&got.rows, &terms) {
                Ok(fit) => {
                    r2_by_lag.push((lag, fit.r2));
                    // The lag under which the replay agrees with more of the client's steps; at a
                    // tie, the better fit. (A wrong lag pairs bursts with the wrong steps, so most
                    // of its batches contradict the tokens seen.)
                    let better = |b: &(ClientRows, Fit, usize)| {
                        (got.counts.used, fit.r2).partial_cmp(&(b.0.counts.used, b.1.r2))
                            == Some(std::cmp::Ordering::Greater)
                    };
                    if best.as_ref().is_none_or(better) {
                        best = Some((got, fit, lag));
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some((ClientRows { rows, counts, bursts }, fit, lag)) = best else {
            return Err(last_err.unwrap_or_else(|| CalibrationError::NotEnoughData("no steps".into())));
        };
        notes.push(format!(
            "steps reconstructed from client chunk timestamps: {} of {} steps usable; pipeline lag {lag} \
             step(s) agreed with the most steps",
            counts.used, counts.steps
        ));
        notes.push(
            "assumed: the run's engine preset schedules as the simulator's instance does (admission, \
             chunked prefill, async scheduling's join rule), no prefix-cache hits, no CUDA-graph \
             padding (its cost folds into the decode and fixed terms)"
                .into(),
        );
        (rows, Method::Client { lag, r2_by_lag, counts, bursts }, fit, None)
    };
    for u in &fit.unidentified {
        notes.push(format!("{}: not identified ({})", u.term.key(), u.reason));
    }
    notes.push(
        "[cpu] left at 0: step durations cannot separate CPU from GPU time; the GPU terms include the \
         CPU work of each step"
            .into(),
    );
    let mut output_delay = estimate_output_delay(&runs, &target, &fit.model, graphs.as_ref())?;
    // Search up to twice the lone requests' spread or 100 ms, whichever is more, and never past
    // what a profile may hold.
    let upper = (2.0 * output_delay.p90_s).clamp(0.1, MAX_OUTPUT_DELAY_S);
    output_delay.simulated =
        crate::delay::fit_output_delay(&runs, &target, &fit.model.coefficients, graphs.as_ref(), upper);
    notes.push(match &output_delay.simulated {
        Some(f) => {
            output_delay.value_s = f.value_s;
            format!(
                "output_delay_s fitted by simulating the calibration runs' request streams with these \
                 step costs under the preset's join rule: the delay whose TTFT p50/p90 match the measured \
                 ones best (mean |ln(sim/live)| {:.3}); lone requests alone would say {:.1} ms ({} requests, \
                 TTFT minus modelled prefill)",
                f.objective,
                output_delay.lone_s * 1e3,
                output_delay.requests
            )
        }
        None if output_delay.requests > 0 => format!(
            "output_delay_s = median TTFT minus modelled prefill of {} requests that had their instance \
             to themselves (includes client-engine latency); the runs could not be simulated",
            output_delay.requests
        ),
        None => "output_delay_s not identified (no request had its instance to itself): 0".into(),
    });

    let data: Vec<String> = runs.iter().map(|r| r.path().display().to_string()).collect();
    let method_text = match &method {
        Method::StepLog { .. } => "NNLS on the engines' step logs".to_string(),
        Method::Client { lag, .. } => {
            format!("NNLS on steps reconstructed from client timestamps (lag {lag})")
        }
    };
    let profile = Profile {
        model: target.model.clone(),
        gpu: target.gpu.clone(),
        engine: target.engine.clone(),
        source: format!(
            "modelsguard calibrate {}: {method_text}, {} steps from {} live run dir(s). {}.",
            env!("CARGO_PKG_VERSION"),
            fit.num_rows,
            runs.len(),
            notes.join(". ")
        ),
        coefficients: fit.model.coefficients,
        cpu: Some(CpuCoefficients::default()),
        pipeline: Some(Pipeline { async_scheduling: None, output_delay_s: output_delay.value_s }),
        cuda_graphs: graphs,
        fit: Some(FitSummary {
            num_steps: fit.num_rows as u64,
            r2: fit.r2,
            residual_p50: fit.residual_p50,
            residual_p90: fit.residual_p90,
            residual_p99: fit.residual_p99,
            data,
        }),
    };
    let profile_path = opts.out.clone().unwrap_or_else(|| {
        default_profile_path(&opts.profiles_dir, &target.gpu, &target.model, &target.engine)
    });
    if let Some(parent) = profile_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(CalibrationError::io(parent))?;
    }
    let text = profile
        .to_toml()
        .map_err(|e| CalibrationError::input(&profile_path, format!("cannot serialise the profile: {e}")))?;
    std::fs::write(&profile_path, text).map_err(CalibrationError::io(&profile_path))?;
    let stem = profile_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".into());
    let report_dir =
        opts.report_dir.clone().unwrap_or_else(|| PathBuf::from("results").join("calibrate").join(stem));
    let mut cal = Calibration {
        target,
        profile,
        profile_path,
        fit,
        samples: rows,
        method,
        output_delay,
        report: FitReport::default(),
        notes,
    };
    cal.report = write_fit_report(&report_dir, &cal)?;
    Ok(cal)
}
