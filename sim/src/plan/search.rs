//! The layout search: cheapest first, dominated layouts skipped, a batch of simulations at a time
//! on worker threads, then a load bisection for the winners.
//!
//! Levels are GPU counts, from the fewest that can hold every model up to `--gpus`; inside a
//! level, layouts with fewer instances come first. Each batch takes the next [`BATCH`] layouts
//! that no result so far dominates and simulates them on up to `jobs` threads, so what is
//! simulated, pruned and printed depends neither on thread timing nor on the number of cores. Two dominance rules, both resting on "more load per instance and a shared GPU never
//! help" (the README says more):
//! 1. a model that misses its targets with `r` replicas on dedicated GPUs misses them in every
//!    layout giving it `r` or fewer replicas, however placed;
//! 2. a model that misses in a colocated layout A misses in every layout B with the same KV mode,
//!    no more replicas of any model than A, and no GPU combination holding the model that A does
//!    not have as often.
//!
//! The search stops after the first level at which `top` layouts have passed (cheaper levels are
//! always finished, so the cheapest answer is never missed). With pruning off it simulates every
//! layout of every level (the brute force the tests compare against). This module does not
//! format anything (see `report`).

use super::error::PlanError;
use super::layout::{Layout, Limits, enumerate_level};
use super::problem::{Judged, Problem};
use super::report::{Headroom, SearchStats};
use crate::ids::ModelId;
use crate::scenario::{KvCacheMode, Scenario};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Layouts simulated between two dominance checks (fixed, so results do not depend on `jobs`).
pub(crate) const BATCH: usize = 4;

/// Cheaper failing layouts shown next to a feasible answer.
const NEAR_MISSES: usize = 3;

/// Search settings.
#[derive(Clone, Debug)]
pub(crate) struct SearchConfig {
    /// Passing layouts wanted.
    pub top: usize,
    /// Worker threads.
    pub jobs: usize,
    /// Skip dominated layouts and stop early (false: brute force).
    pub prune: bool,
    /// KV modes tried on shared GPUs.
    pub kv_modes: Vec<KvCacheMode>,
    /// Enumeration limits.
    pub limits: Limits,
    /// Most instances per GPU.
    pub colocate: u32,
    /// Load multiple the targets are checked at.
    pub at_load: f64,
    /// Headroom search: upper bound and bisection steps (None: skip).
    pub headroom: Option<(f64, u32)>,
}

/// A simulated layout.
#[derive(Clone, Debug)]
pub(crate) struct Evaluated {
    /// The layout.
    pub layout: Layout,
    /// Its runnable scenario (reused by the headroom search).
    pub scenario: Scenario,
    /// The verdict at `at_load`.
    pub judged: Judged,
    /// Load headroom, when searched.
    pub headroom: Option<Headroom>,
}

/// What the search found.
#[derive(Debug)]
pub(crate) struct Found {
    /// The answer: passing layouts ranked by cost then margin (with headroom), at most `top`.
    pub ranked: Vec<Evaluated>,
    /// Failing layouts cheaper than the answer, closest first (a few; up to `top` when nothing
    /// passes).
    pub misses: Vec<Evaluated>,
    /// Counters (wall time left for the caller).
    pub stats: SearchStats,
    /// The first few layouts the loader refused, with its reason.
    pub not_started: Vec<(String, String)>,
}

/// What failures so far rule out.
#[derive(Debug, Default)]
struct Knowledge {
    /// Per model: most replicas with which it missed on dedicated GPUs (0: none known).
    dedicated_miss: Vec<u32>,
    /// Misses of a model in colocated layouts.
    shared_misses: Vec<SharedMiss>,
}

#[derive(Debug)]
struct SharedMiss {
    kv: Option<KvCacheMode>,
    replicas: Vec<u32>,
    model: ModelId,
    /// Every group type holding the model, with copies (dedicated ones included).
    slots: Vec<(usize, u32)>,
}

fn slots_of(problem: &Problem, layout: &Layout, model: ModelId) -> Vec<(usize, u32)> {
    layout.groups.iter().filter(|&&(t, _)| problem.types[t].models.contains(&model)).copied().collect()
}

impl Knowledge {
    fn dominated(&self, problem: &Problem, layout: &Layout) -> bool {
        let reps = layout.replicas(&problem.types, problem.models.len());
        if reps.iter().zip(&self.dedicated_miss).any(|(&r, &miss)| r <= miss) {
            return true;
        }
        self.shared_misses.iter().any(|f| {
            f.kv == layout.kv
                && reps.iter().zip(&f.replicas).all(|(b, a)| b <= a)
                && slots_of(problem, layout, f.model)
                    .iter()
                    .all(|&(t, c)| f.slots.iter().any(|&(ft, fc)| ft == t && c <= fc))
        })
    }

    fn record(&mut self, problem: &Problem, layout: &Layout, judged: &Judged) {
        let reps = layout.replicas(&problem.types, problem.models.len());
        for m in (0..problem.models.len()).map(|m| ModelId(m as u32)) {
            if judged.model_passes(m) {
                continue;
            }
            if layout.is_dedicated(&problem.types, m) {
                let miss = &mut self.dedicated_miss[m.index()];
                *miss = (*miss).max(reps[m.index()]);
            } else {
                self.shared_misses.push(SharedMiss {
                    kv: layout.kv,
                    replicas: reps.clone(),
                    model: m,
                    slots: slots_of(problem, layout, m),
                });
            }
        }
    }
}

/// Maps `f` over `items` on up to `jobs` scoped threads; results in item order.
fn par_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if jobs <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut parts: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.min(items.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    parts.sort_by_key(|(i, _)| *i);
    parts.into_iter().map(|(_, r)| r).collect()
}

/// One layout: loaded (or refused) and simulated.
enum Trial {
    Ran(Box<Evaluated>),
    /// The loader refused it: the layout and the reason.
    NotStarted(String, String),
}

fn try_layout(problem: &Problem, layout: &Layout, at_load: f64) -> Result<Trial, PlanError> {
    let describe = || layout.describe(&problem.types, &short(problem));
    let scenario = match problem.scenario_for(layout) {
        Ok(s) => s,
        Err(e) => return Ok(Trial::NotStarted(describe(), format!("{}: {}", e.field, e.reason))),
    };
    let judged = problem
        .evaluate(&scenario, at_load)
        .map_err(|source| PlanError::Simulation { layout: describe(), source })?;
    Ok(Trial::Ran(Box::new(Evaluated { layout: layout.clone(), scenario, judged, headroom: None })))
}

fn short(problem: &Problem) -> Vec<String> {
    problem.models.iter().map(|m| m.short.clone()).collect()
}

/// Bisects the highest load multiple `e` sustains, from `base` (known to pass) up to `max`.
fn headroom(
    problem: &Problem,
    e: &Evaluated,
    base: f64,
    max: f64,
    steps: u32,
) -> Result<(Headroom, usize), PlanError> {
    bisect_load(base, max, steps, |scale| {
        problem.evaluate(&e.scenario, scale).map(|j| j.passes).map_err(|source| PlanError::Simulation {
            layout: e.layout.describe(&problem.types, &short(problem)),
            source,
        })
    })
}

/// The highest load multiple that `passes`, from `base` (known to pass) up to `max`: doubles
/// until a multiple fails (or `max` passes), then bisects geometrically `steps` times. Returns
/// the bounds and the number of `passes` calls. `explain`'s operating point uses it too.
pub fn bisect_load<E>(
    base: f64,
    max: f64,
    steps: u32,
    mut passes: impl FnMut(f64) -> Result<bool, E>,
) -> Result<(Headroom, usize), E> {
    let mut sims = 0;
    let mut probe_at = |scale: f64| {
        sims += 1;
        passes(scale)
    };
    let mut lo = base;
    let mut hi = None;
    let mut probe = (base * 2.0).min(max);
    while probe > lo * (1.0 + 1e-9) {
        if probe_at(probe)? {
            lo = probe;
            probe = (probe * 2.0).min(max);
        } else {
            hi = Some(probe);
            break;
        }
    }
    if let Some(mut h) = hi {
        for _ in 0..steps {
            let mid = (lo * h).sqrt();
            if probe_at(mid)? { lo = mid } else { h = mid }
        }
        hi = Some(h);
    }
    Ok((Headroom { sustained: lo, fails_at: hi }, sims))
}

/// Runs the search (see the module doc).
pub(crate) fn search(problem: &Problem, cfg: &SearchConfig) -> Result<Found, PlanError> {
    let n = problem.models.len();
    let first = (n.div_ceil(cfg.colocate.max(1) as usize) as u32).max(1);
    let mut knowledge = Knowledge { dedicated_miss: vec![0; n], shared_misses: Vec::new() };
    let mut stats = SearchStats { gpu_levels: (first, first), jobs: cfg.jobs, ..SearchStats::default() };
    let mut evaluated: Vec<Evaluated> = Vec::new();
    let mut not_started = Vec::new();
    for gpus in first..=problem.max_gpus {
        stats.gpu_levels.1 = gpus;
        let level = enumerate_level(&problem.types, n, gpus, &cfg.kv_modes, cfg.limits)
            .map_err(|count| PlanError::TooManyLayouts { count, gpus })?;
        stats.candidates += level.len();
        if cfg.kv_modes.contains(&KvCacheMode::Elastic) {
            stats.elastic_skipped += level.iter().filter(|l| l.kv.is_none()).count();
        }
        let mut i = 0;
        while i < level.len() {
            let mut batch = Vec::new();
            while batch.len() < BATCH && i < level.len() {
                if cfg.prune && knowledge.dominated(problem, &level[i]) {
                    stats.pruned += 1;
                } else {
                    batch.push(level[i].clone());
                }
                i += 1;
            }
            for trial in par_map(&batch, cfg.jobs, |l| try_layout(problem, l, cfg.at_load)) {
                match trial? {
                    Trial::Ran(e) => {
                        stats.simulated += 1;
                        stats.simulations += 1;
                        knowledge.record(problem, &e.layout, &e.judged);
                        stats.passing += usize::from(e.judged.passes);
                        evaluated.push(*e);
                    }
                    Trial::NotStarted(layout, reason) => {
                        stats.not_started += 1;
                        if not_started.len() < 3 {
                            not_started.push((layout, reason));
                        }
                    }
                }
            }
        }
        if cfg.prune && stats.passing >= cfg.top {
            break;
        }
    }

    let types = &problem.types;
    let margin_desc = |e: &Evaluated| std::cmp::Reverse(ordered(e.judged.margin));
    let (mut ranked, failing): (Vec<Evaluated>, Vec<Evaluated>) =
        evaluated.into_iter().partition(|e| e.judged.passes);
    ranked
        .sort_by_cached_key(|e| (e.layout.gpus(), e.layout.instances(types), margin_desc(e), e.layout.key()));
    ranked.truncate(cfg.top);
    // Misses worth showing: those cheaper than the answer (all of them when nothing passes).
    let cheapest = ranked.first().map(|e| e.layout.gpus());
    let mut misses: Vec<Evaluated> =
        failing.into_iter().filter(|e| cheapest.is_none_or(|g| e.layout.gpus() < g)).collect();
    misses.sort_by_cached_key(|e| (margin_desc(e), e.layout.gpus(), e.layout.key()));
    misses.truncate(if cheapest.is_some() { NEAR_MISSES } else { cfg.top });
    if let Some((max, steps)) = cfg.headroom {
        let found = par_map(&ranked, cfg.jobs, |e| headroom(problem, e, cfg.at_load, max, steps));
        for (e, h) in ranked.iter_mut().zip(found) {
            let (h, sims) = h?;
            e.headroom = Some(h);
            stats.simulations += sims;
        }
    }
    Ok(Found { ranked, misses, stats, not_started })
}

/// A total order key for optional margins (None lowest).
fn ordered(m: Option<f64>) -> i64 {
    m.map_or(i64::MIN, |g| (g * 1e9).round() as i64)
}
