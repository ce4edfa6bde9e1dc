//! `modelsguard explain` (and `explain merge`): plan and run the subsets through `sim::explain`,
//! print the tables and sentences, write `explain.md` and draw a waterfall per model and metric.

use crate::cli::{ExplainAction, ExplainArgs};
use crate::commands::parse_overrides;
use anyhow::{Context, Result, bail};
use reports::{WaterfallChart, WaterfallStep, render_waterfall};
use sim::explain::{
    ExplainSpec, Explanation, HEADLINE_METRICS, Target, metric_label, operating_points, operating_table,
    plan as explain_plan, run as explain_run, sentences, tables,
};
use sim::scenario::Override;
use sim::sweep::{Shard, SweepOptions};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Runs `explain`.
pub fn explain(args: ExplainArgs) -> Result<()> {
    let metrics: Vec<String> = if args.metrics.is_empty() {
        HEADLINE_METRICS.iter().map(|s| s.to_string()).collect()
    } else {
        args.metrics.clone()
    };
    for m in &metrics {
        if !sim::sweep::metrics::METRICS.contains(&m.as_str()) {
            bail!("explain: --metric {m}: unknown; one of {}", sim::sweep::metrics::METRICS.join(", "));
        }
    }
    if let Some(ExplainAction::Merge(m)) = args.action {
        let t0 = Instant::now();
        let e = sim::explain::merge(&m.shards, &m.out)?;
        eprintln!("merged {} shards in {:.1} s", m.shards.len(), t0.elapsed().as_secs_f64());
        return present(&e, &m.out, &metrics, None);
    }
    let (Some(scenario), Some(from)) = (args.scenario, args.from) else {
        bail!("explain: give a scenario file and --from VARIANT")
    };
    let to = match args.to {
        Some(v) => Target::Variant(v),
        None => Target::Sets(parse_overrides(&args.to_set)?),
    };
    let mut overrides = parse_overrides(&args.overrides)?;
    if let Some(seed) = args.seed {
        overrides.push(format!("seed={seed}").parse::<Override>()?);
    }
    let groups: Vec<Vec<String>> =
        args.groups.iter().map(|g| g.split(',').map(|p| p.trim().to_string()).collect()).collect();
    let spec = ExplainSpec {
        scenario,
        from,
        to,
        overrides,
        reps: args.replications,
        groups,
        permutations: args.permutations,
    };
    let plan = explain_plan(&spec)?;
    let shard = args.shard.as_deref().map(str::parse::<Shard>).transpose()?;
    let out = args.out.unwrap_or_else(|| default_out(&plan, shard));
    let k = plan.groups.len();
    let how = if plan.permutations.is_empty() {
        format!("2^{k} subsets")
    } else {
        format!("{} subsets along {} sampled orders", plan.masks.len(), plan.permutations.len())
    };
    eprintln!(
        "explain {}: {} -> {}: {k} differing settings, {how} x {} replications = {} runs{} -> {}",
        plan.sweep.name,
        spec.from,
        sim::explain::describe_target(&spec.to),
        spec.reps,
        plan.sweep.runs(Shard::WHOLE),
        shard.map(|s| format!(" (shard {s}: {})", plan.sweep.runs(s))).unwrap_or_default(),
        out.display()
    );
    for g in &plan.groups {
        let f: Vec<String> = g.factors.iter().map(|&i| plan.factors[i].describe()).collect();
        eprintln!("  factor {}", f.join(" + "));
        if let Some(note) = &g.note {
            eprintln!("    ({note})");
        }
    }
    let t0 = Instant::now();
    let opts = SweepOptions { shard, jobs: args.jobs, run_dirs: false, progress: true, stop: None };
    let done = explain_run(&plan, &out, &opts)?;
    eprintln!("ran in {:.1} s", t0.elapsed().as_secs_f64());
    match done {
        Some(e) => {
            let operating = if args.no_operating_point {
                None
            } else {
                if !(args.max_load.is_finite() && args.max_load > 1.0) {
                    bail!("explain: --max-load must be a number > 1, got {}", args.max_load);
                }
                let t1 = Instant::now();
                let points = operating_points(&plan, args.max_load, 4)?;
                eprintln!("operating point in {:.1} s", t1.elapsed().as_secs_f64());
                let path = out.join("operating-point.json");
                let json =
                    serde_json::to_string_pretty(&points).context("serialising the operating point")?;
                std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
                Some(operating_table(&points, &plan.spec.from))
            };
            present(&e, &out, &metrics, operating.as_deref())
        }
        None => {
            outln!(
                "shard written to {}; combine all shards with `modelsguard explain merge <dirs>... --out DIR`",
                out.display()
            );
            Ok(())
        }
    }
}

fn default_out(plan: &sim::explain::ExplainPlan, shard: Option<Shard>) -> PathBuf {
    let to = match &plan.spec.to {
        Target::Variant(v) => v.clone(),
        Target::Sets(_) => "set".to_string(),
    };
    let mut name = format!("{}-explain-{}-{to}", plan.sweep.name, plan.spec.from);
    if let Some(s) = shard.filter(|s| s.count > 1) {
        name.push_str(&format!("-shard-{}-of-{}", s.index, s.count));
    }
    Path::new("results").join(name)
}

/// Prints the tables and sentences, writes `explain.md` and the waterfalls.
fn present(e: &Explanation, out: &Path, metrics: &[String], operating: Option<&str>) -> Result<()> {
    let metrics: Vec<&str> = metrics.iter().map(String::as_str).collect();
    let table = tables(e, &metrics);
    let said = sentences(e, &metrics);
    let warn =
        if e.calibrated { "" } else { "UNCALIBRATED (roofline prior): read directions and rough sizes.\n\n" };
    outln!("{table}");
    for s in &said {
        outln!("- {s}");
    }
    if let Some(o) = operating {
        outln!("{o}");
    }
    let charts = waterfalls(e, out, &metrics)?;
    let mut md = format!(
        "# Why {} differs from {} ({})\n\n{warn}{} replications x {} subsets = {} runs; contributions are \
         Shapley values{} (they add up to the change), `alone` is the setting switched on its own, 95% \
         Student-t intervals over replications.\n\n",
        e.to,
        e.from,
        e.scenario,
        e.reps,
        e.runs / e.reps.max(1),
        e.runs,
        if e.permutations > 0 {
            format!(" estimated from {} sampled orders", e.permutations)
        } else {
            String::new()
        }
    );
    for s in &said {
        let _ = writeln!(md, "- {s}");
    }
    let _ = write!(md, "\n```\n{table}```\n\n");
    if let Some(o) = operating {
        let _ = write!(md, "```\n{o}```\n\n");
    }
    for c in &charts {
        if let Some(name) = c.file_name() {
            let _ = writeln!(md, "![{}]({})\n", name.to_string_lossy(), name.to_string_lossy());
        }
    }
    let path = out.join("explain.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    outln!(
        "explanation: {} and {} ({} waterfalls)",
        path.display(),
        out.join("explain.json").display(),
        charts.len()
    );
    Ok(())
}

/// One waterfall PNG per model and metric.
fn waterfalls(e: &Explanation, out: &Path, metrics: &[&str]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for model in &e.models {
        for metric in metrics {
            let Some(m) = model.metric(metric) else { continue };
            let (unit, scale) = if ["ttft", "tpot", "itl", "e2e"].iter().any(|p| metric.starts_with(p)) {
                ("ms", 1e3)
            } else {
                ("", 1.0)
            };
            let label = |i: usize| e.factors.get(i).map(|f| f.describe()).unwrap_or_default();
            let chart = WaterfallChart {
                title: format!(
                    "{}: why {} of {} moves from {} to {}",
                    e.scenario,
                    metric_label(metric),
                    model.model,
                    e.from,
                    e.to
                ),
                subtitle: format!(
                    "Shapley contributions (sum = change), 95% CI over {} replications{}",
                    e.reps,
                    if e.calibrated { "" } else { "; UNCALIBRATED roofline prior" }
                ),
                axis: if unit.is_empty() {
                    metric_label(metric)
                } else {
                    format!("{} ({unit})", metric_label(metric))
                },
                start: (e.from.clone(), m.from.mean * scale),
                steps: m
                    .contributions
                    .iter()
                    .map(|c| WaterfallStep {
                        label: label(c.factor),
                        delta: c.shapley.mean * scale,
                        ci: c.shapley.ci_low.zip(c.shapley.ci_high).map(|(a, b)| (a * scale, b * scale)),
                    })
                    .collect(),
                end: (e.to.clone(), m.to.mean * scale),
                higher_is_better: !(metric.starts_with("ttft")
                    || metric.starts_with("tpot")
                    || metric.starts_with("itl")
                    || metric.starts_with("e2e")
                    || *metric == "preemptions"),
            };
            let path = out.join(format!("waterfall-{}-{metric}.png", model.model));
            render_waterfall(&path, (1400, 160 + 60 * (chart.steps.len() as u32 + 2)), &chart)?;
            written.push(path);
        }
    }
    Ok(written)
}
