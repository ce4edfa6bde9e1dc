//! What `plan` returns: the ranked layouts with their per-model p90s, margins and load headroom,
//! and how the search went; as serde types (`--json`) and as a terminal table.
//!
//! This module formats; it decides nothing about which layouts pass (see `problem`, `search`).

use super::budget::BudgetNote;
use crate::scenario::KvCacheMode;
use serde::Serialize;
use std::fmt::Write;

/// Which target limits a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// p90 time to first token.
    Ttft,
    /// p90 time per output token.
    Tpot,
    /// Too many requests failed, timed out or were rejected.
    Success,
}

impl Metric {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Ttft => "TTFT",
            Metric::Tpot => "TPOT",
            Metric::Success => "success",
        }
    }
}

/// One model's result in one layout.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelResult {
    /// Model key.
    pub model: String,
    /// Requests of this model in the evaluation.
    pub requests: u64,
    /// ok / requests.
    pub success_rate: f64,
    /// p90 TTFT, seconds (None: no successful request).
    pub ttft_p90_s: Option<f64>,
    /// p90 TPOT, seconds (None: no request with more than one output token).
    pub tpot_p90_s: Option<f64>,
    /// min over its targets of (target - p90) / target; negative = missed.
    pub margin: Option<f64>,
    /// The target setting the margin (or `success` when too many requests failed).
    pub limit: Option<Metric>,
    /// Meets every target and the success-rate floor.
    pub passes: bool,
}

/// GPUs of a layout that hold several instances.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SharedGpus {
    /// Models on each such GPU.
    pub models: Vec<String>,
    /// How many GPUs hold this combination.
    pub copies: u32,
    /// Each member's `gpu_memory_utilization` (static KV), in `models` order.
    pub gpu_memory_utilization: Option<Vec<f64>>,
}

/// The largest load multiple a layout sustains.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Headroom {
    /// Highest multiple of the scenario's load found to meet every target.
    pub sustained: f64,
    /// Lowest multiple found to miss (None: passed the search's upper bound too).
    pub fails_at: Option<f64>,
}

/// One layout of the answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayoutResult {
    /// 1-based rank.
    pub rank: usize,
    /// GPUs used (the cost).
    pub gpus: u32,
    /// Engine instances (the cost tiebreak).
    pub instances: u32,
    /// Replicas per model, in `PlanReport::models` order.
    pub replicas: Vec<u32>,
    /// One-line description (short model names).
    pub layout: String,
    /// GPUs holding several instances.
    pub shared: Vec<SharedGpus>,
    /// KV mode of the shared GPUs (None: every GPU holds one instance, scenario's mode).
    pub kv: Option<KvCacheMode>,
    /// Meets every model's targets.
    pub passes: bool,
    /// Smallest model margin.
    pub margin: Option<f64>,
    /// Model and metric setting the margin, e.g. `llama-70b TTFT`.
    pub limiting: Option<String>,
    /// Per model, in `PlanReport::models` order.
    pub models: Vec<ModelResult>,
    /// Load headroom (None when not searched).
    pub max_load: Option<Headroom>,
}

/// A model and its targets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedModel {
    /// Catalogue key.
    pub name: String,
    /// Name used in the table.
    pub short: String,
    /// p90 TTFT target, seconds.
    pub ttft_p90_s: Option<f64>,
    /// p90 TPOT target, seconds.
    pub tpot_p90_s: Option<f64>,
}

/// How the search went.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SearchStats {
    /// GPU counts searched, smallest and largest.
    pub gpu_levels: (u32, u32),
    /// Candidate layouts on those levels.
    pub candidates: usize,
    /// Layouts simulated.
    pub simulated: usize,
    /// Layouts skipped because a simulated layout dominates them (see the README).
    pub pruned: usize,
    /// Layouts the loader refused (would not start).
    pub not_started: usize,
    /// Evaluations in all, headroom bisection included (each runs up to `seeds` simulations).
    pub simulations: usize,
    /// Dedicated-only layouts not tried with elastic KV (one instance per GPU gains nothing).
    pub elastic_skipped: usize,
    /// Layouts that met the targets.
    pub passing: usize,
    /// Worker threads.
    pub jobs: usize,
    /// Wall time of the whole plan, seconds.
    pub wall_s: f64,
}

/// The whole answer of `plan`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanReport {
    /// Scenario name.
    pub scenario: String,
    /// Variant planned.
    pub variant: String,
    /// GPU kind.
    pub gpu: String,
    /// Most GPUs a layout may use.
    pub max_gpus: u32,
    /// Models and their targets, in scenario order.
    pub models: Vec<PlannedModel>,
    /// Seed of every evaluation (the first, with `seeds` > 1).
    pub seed: u64,
    /// Request streams per evaluation (seeds `seed`..`seed + seeds`); p90s shown are each
    /// model's worst.
    pub seeds: u32,
    /// Load multiple the targets are checked at (1 = the scenario's workload).
    pub at_load: f64,
    /// Requests per evaluation.
    pub budget: BudgetNote,
    /// Least success rate per model.
    pub min_success: f64,
    /// KV mode of the variant's instances, kept on dedicated GPUs (None: it differs by model).
    pub variant_kv: Option<KvCacheMode>,
    /// Whether some layout meets the targets.
    pub feasible: bool,
    /// Cheapest passing layouts by GPUs, instances, then margin.
    pub layouts: Vec<LayoutResult>,
    /// Failing layouts cheaper than the first of `layouts`, closest first: a few when some layout
    /// passes, up to `top` when none does.
    pub misses: Vec<LayoutResult>,
    /// Search counters.
    pub search: SearchStats,
    /// Remarks on what was skipped and why.
    pub notes: Vec<String>,
}

fn ms(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_string(), |v| format!("{:.0}", v * 1e3))
}

fn target_text(m: &PlannedModel) -> String {
    let mut parts = Vec::new();
    if let Some(t) = m.ttft_p90_s {
        parts.push(format!("TTFT <= {} ms", ms(Some(t))));
    }
    if let Some(t) = m.tpot_p90_s {
        parts.push(format!("TPOT <= {} ms", ms(Some(t))));
    }
    parts.join(", ")
}

impl PlanReport {
    /// The report as pretty-printed JSON (`--json`).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Aligned rows of `layouts` under a header.
    fn rows(&self, layouts: &[LayoutResult]) -> String {
        let mut out = String::new();
        let mut header = vec!["rank".to_string(), "GPUs".into(), "inst".into(), "layout".into(), "KV".into()];
        header.extend(self.models.iter().map(|m| format!("{} TTFT/TPOT", m.short)));
        header.extend(["margin".to_string(), "limit".into(), "max load".into()]);
        let mut rows = vec![header];
        for l in layouts {
            let mut row = vec![
                if l.passes { l.rank.to_string() } else { "FAIL".to_string() },
                l.gpus.to_string(),
                l.instances.to_string(),
                l.layout.clone(),
                match l.kv.or(self.variant_kv) {
                    None => "mixed".to_string(),
                    Some(KvCacheMode::Static) => "static".into(),
                    Some(KvCacheMode::Elastic) => "elastic".into(),
                },
            ];
            for m in &l.models {
                let flag = if m.passes { "" } else { " !" };
                row.push(format!("{}/{}{flag}", ms(m.ttft_p90_s), ms(m.tpot_p90_s)));
            }
            row.push(l.margin.map_or_else(|| "-".to_string(), |g| format!("{:+.0}%", g * 100.0)));
            row.push(l.limiting.clone().unwrap_or_else(|| "-".into()));
            row.push(match l.max_load {
                None => "-".to_string(),
                Some(Headroom { sustained, fails_at: None }) => format!(">={sustained:.2}x"),
                Some(Headroom { sustained, fails_at: Some(_) }) => format!("{sustained:.2}x"),
            });
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let left = |c: usize, n: usize| c == 3 || c == 4 || c == n - 2;
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(
                    |(c, (cell, w))| {
                        if left(c, row.len()) { format!("{cell:<w$}") } else { format!("{cell:>w$}") }
                    },
                )
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
            if i == 0 {
                let _ =
                    writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
            }
        }
        out
    }

    /// The terminal table (see the README's "Capacity planning" for how to read it).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan: {} / {} on up to {} x {}; {} requests per evaluation ({}{}), load x{:.2}",
            self.scenario,
            self.variant,
            self.max_gpus,
            self.gpu,
            self.budget.requests_per_evaluation,
            if self.seeds > 1 {
                format!("seeds {}..{}, worst shown", self.seed, self.seed + u64::from(self.seeds) - 1)
            } else {
                format!("seed {}", self.seed)
            },
            if self.budget.truncated { ", workload shortened" } else { "" },
            self.at_load
        );
        let targets: Vec<String> = self.models.iter().map(target_text).collect();
        if targets.iter().all(|t| *t == targets[0]) {
            let _ = writeln!(out, "p90 targets (every model): {}", targets[0]);
        }
        for (m, t) in self.models.iter().zip(&targets) {
            let extra = if targets.iter().all(|x| x == t) { String::new() } else { format!(": {t}") };
            let _ = writeln!(out, "  {:<10} = {}{extra}", m.short, m.name);
        }
        if self.feasible {
            out.push_str(&self.rows(&self.layouts));
        } else {
            let _ = writeln!(
                out,
                "NO layout on <= {} GPUs meets the targets; the closest misses:",
                self.max_gpus
            );
        }
        if !self.misses.is_empty() {
            if self.feasible {
                let _ = writeln!(out, "cheaper layouts that miss (closest first):");
            }
            out.push_str(&self.rows(&self.misses));
        }
        let s = &self.search;
        let _ = writeln!(
            out,
            "p90s in ms (! = misses its target); margin = min over models of (target - p90) / target; \
             max load = highest multiple of the workload's rates still meeting every target"
        );
        let _ = writeln!(
            out,
            "searched {}-{} GPUs: {} candidates, evaluated {} layouts ({} passed), pruned {} dominated, \
             {} would not start; {} evaluations in {:.1} s on {} thread(s)",
            s.gpu_levels.0,
            s.gpu_levels.1,
            s.candidates,
            s.simulated,
            s.passing,
            s.pruned,
            s.not_started,
            s.simulations,
            s.wall_s,
            s.jobs
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}
