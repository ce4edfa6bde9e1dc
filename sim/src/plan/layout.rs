//! Layouts: how many instances of each model, which of them share a GPU, and with which KV mode.
//!
//! GPUs of one kind are interchangeable, so a layout is a multiset of *GPU groups* — the distinct
//! models one GPU holds (a single model: a dedicated GPU) — each taken some number of times: the
//! canonical form deduplicates placements that differ only by GPU numbering. `enumerate_level`
//! lists every layout using exactly `g` GPUs in which every model has at least one replica, each
//! model at most `max_replicas`, ordered by instance count (the cost tiebreak). A model never
//! shares a GPU with itself (a second engine of the same model on one GPU only splits its memory
//! and compute). This module does not simulate or judge layouts (see `search`).

use super::fit::{Footprint, elastic_fits, static_split};
use crate::ids::ModelId;
use crate::scenario::KvCacheMode;
use serde::Serialize;

/// A set of distinct models that can start together on one GPU, and how.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupType {
    /// Models on the GPU, ascending.
    pub models: Vec<ModelId>,
    /// `gpu_memory_utilization` per member with static KV; `None` when they do not fit statically.
    /// Single-model groups keep the scenario's value (`Some(vec![template])`).
    pub static_utils: Option<Vec<f64>>,
    /// Whether the members fit as elastic instances sharing the GPU's pool.
    pub elastic_ok: bool,
}

impl GroupType {
    /// Whether more than one instance shares the GPU.
    pub fn is_shared(&self) -> bool {
        self.models.len() > 1
    }

    fn allows(&self, kv: KvCacheMode) -> bool {
        !self.is_shared()
            || match kv {
                KvCacheMode::Static => self.static_utils.is_some(),
                KvCacheMode::Elastic => self.elastic_ok,
            }
    }
}

/// Every group type of up to `colocate` distinct models (of `footprints`) that fits on one GPU of
/// `gpu_bytes`, singles first. Single models are always listed (the loader has checked they fit).
pub(crate) fn group_types(footprints: &[Footprint], gpu_bytes: u64, colocate: u32) -> Vec<GroupType> {
    let n = footprints.len();
    let mut out: Vec<GroupType> = (0..n)
        .map(|m| GroupType {
            models: vec![ModelId(m as u32)],
            static_utils: Some(vec![footprints[m].util]),
            elastic_ok: true,
        })
        .collect();
    for size in 2..=(colocate as usize).min(n) {
        for combo in combinations(n, size) {
            let members: Vec<Footprint> = combo.iter().map(|&m| footprints[m]).collect();
            let static_utils = static_split(&members, gpu_bytes);
            let elastic_ok = elastic_fits(&members, gpu_bytes);
            if static_utils.is_some() || elastic_ok {
                let models = combo.iter().map(|&m| ModelId(m as u32)).collect();
                out.push(GroupType { models, static_utils, elastic_ok });
            }
        }
    }
    out
}

/// All `k`-subsets of `0..n`, lexicographic.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    fn rec(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            rec(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    rec(0, n, k, &mut Vec::with_capacity(k), &mut out);
    out
}

/// One candidate layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Layout {
    /// `(group type index, copies)`, ascending by type, copies >= 1.
    pub groups: Vec<(usize, u32)>,
    /// KV mode of the shared GPUs; `None` when every GPU holds one instance (dedicated GPUs
    /// keep the scenario's mode).
    pub kv: Option<KvCacheMode>,
}

impl Layout {
    /// A total order among layouts (groups, then static before elastic), for stable sorting.
    pub fn key(&self) -> (Vec<(usize, u32)>, u8) {
        let kv = match self.kv {
            None => 0,
            Some(KvCacheMode::Static) => 1,
            Some(KvCacheMode::Elastic) => 2,
        };
        (self.groups.clone(), kv)
    }

    /// GPUs used.
    pub fn gpus(&self) -> u32 {
        self.groups.iter().map(|&(_, c)| c).sum()
    }

    /// Engine instances.
    pub fn instances(&self, types: &[GroupType]) -> u32 {
        self.groups.iter().map(|&(t, c)| c * types[t].models.len() as u32).sum()
    }

    /// Replicas per model.
    pub fn replicas(&self, types: &[GroupType], num_models: usize) -> Vec<u32> {
        let mut r = vec![0; num_models];
        for &(t, c) in &self.groups {
            for m in &types[t].models {
                r[m.index()] += c;
            }
        }
        r
    }

    /// Whether every instance of `model` has a GPU to itself.
    pub fn is_dedicated(&self, types: &[GroupType], model: ModelId) -> bool {
        self.groups.iter().all(|&(t, _)| !types[t].is_shared() || !types[t].models.contains(&model))
    }

    /// One line: replicas per model, then the shared GPUs, e.g.
    /// `llama-8b x2 | qwen-7b x2 | llama-70b x2 ; [llama-8b+qwen-7b] x2`.
    pub fn describe(&self, types: &[GroupType], short: &[String]) -> String {
        let replicas = self.replicas(types, short.len());
        let mut s = short
            .iter()
            .zip(&replicas)
            .map(|(name, r)| format!("{name} x{r}"))
            .collect::<Vec<_>>()
            .join(" | ");
        let shared: Vec<String> = self
            .groups
            .iter()
            .filter(|&&(t, _)| types[t].is_shared())
            .map(|&(t, c)| {
                let names: Vec<&str> = types[t].models.iter().map(|m| short[m.index()].as_str()).collect();
                format!("[{}] x{c}", names.join("+"))
            })
            .collect();
        if !shared.is_empty() {
            s.push_str(" ; ");
            s.push_str(&shared.join(" "));
        }
        s
    }
}

/// Limits of one level's enumeration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Most replicas of one model.
    pub max_replicas: u32,
    /// Give up past this many layouts (`Err(count)`).
    pub max_layouts: usize,
}

/// Every layout on exactly `gpus` GPUs, one per KV mode in `kv_modes` that its shared groups
/// allow (dedicated-only layouts once, `kv = None`), sorted by instances, then replicas, groups
/// and KV mode. `Err(n)` when more than `limits.max_layouts` exist.
pub(crate) fn enumerate_level(
    types: &[GroupType],
    num_models: usize,
    gpus: u32,
    kv_modes: &[KvCacheMode],
    limits: Limits,
) -> Result<Vec<Layout>, usize> {
    let mut multisets = Vec::new();
    let mut state =
        Walk { types, limits, replicas: vec![0; num_models], current: Vec::new(), out: &mut multisets };
    state.rec(0, gpus)?;
    let mut out = Vec::new();
    for groups in multisets {
        let shared = groups.iter().any(|&(t, _)| types[t].is_shared());
        if shared {
            for &kv in kv_modes {
                if groups.iter().all(|&(t, _)| types[t].allows(kv)) {
                    out.push(Layout { groups: groups.clone(), kv: Some(kv) });
                }
            }
        } else {
            out.push(Layout { groups, kv: None });
        }
        if out.len() > limits.max_layouts {
            return Err(out.len());
        }
    }
    out.sort_by_cached_key(|l| (l.instances(types), l.replicas(types, num_models), l.key()));
    Ok(out)
}

/// The recursive walk over group-type counts.
struct Walk<'a> {
    types: &'a [GroupType],
    limits: Limits,
    replicas: Vec<u32>,
    current: Vec<(usize, u32)>,
    out: &'a mut Vec<Vec<(usize, u32)>>,
}

impl Walk<'_> {
    fn rec(&mut self, t: usize, left: u32) -> Result<(), usize> {
        if left == 0 {
            if self.replicas.iter().all(|&r| r >= 1) {
                self.out.push(self.current.clone());
                if self.out.len() > self.limits.max_layouts {
                    return Err(self.out.len());
                }
            }
            return Ok(());
        }
        if t == self.types.len() {
            return Ok(());
        }
        // Models still missing must be coverable by the GPUs left.
        let missing = self.replicas.iter().filter(|&&r| r == 0).count();
        let widest = self.types[t..].iter().map(|g| g.models.len()).max().unwrap_or(0);
        if missing > left as usize * widest {
            return Ok(());
        }
        let models = &self.types[t].models;
        for copies in (0..=left).rev() {
            if models.iter().any(|m| self.replicas[m.index()] + copies > self.limits.max_replicas) {
                continue;
            }
            for m in models {
                self.replicas[m.index()] += copies;
            }
            if copies > 0 {
                self.current.push((t, copies));
            }
            let result = self.rec(t + 1, left - copies);
            if copies > 0 {
                self.current.pop();
            }
            for m in models {
                self.replicas[m.index()] -= copies;
            }
            result?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(m: u32) -> GroupType {
        GroupType { models: vec![ModelId(m)], static_utils: Some(vec![0.9]), elastic_ok: true }
    }

    fn pair(a: u32, b: u32, static_ok: bool) -> GroupType {
        GroupType {
            models: vec![ModelId(a), ModelId(b)],
            static_utils: static_ok.then(|| vec![0.45, 0.45]),
            elastic_ok: true,
        }
    }

    const LIMITS: Limits = Limits { max_replicas: 8, max_layouts: 100_000 };

    #[test]
    fn dedicated_layouts_of_three_models_on_four_gpus_are_the_three_ways_to_add_one_replica() {
        let types = [single(0), single(1), single(2)];
        let level = enumerate_level(&types, 3, 4, &[KvCacheMode::Static], LIMITS).unwrap();
        let reps: Vec<Vec<u32>> = level.iter().map(|l| l.replicas(&types, 3)).collect();
        assert_eq!(reps, vec![vec![1, 1, 2], vec![1, 2, 1], vec![2, 1, 1]]);
        assert!(level.iter().all(|l| l.kv.is_none()));
    }

    #[test]
    fn a_level_with_too_few_gpus_for_every_model_is_empty() {
        let types = [single(0), single(1), single(2)];
        assert!(enumerate_level(&types, 3, 2, &[KvCacheMode::Static], LIMITS).unwrap().is_empty());
    }

    #[test]
    fn colocated_layouts_come_once_per_kv_mode_their_groups_allow() {
        let types = [single(0), single(1), single(2), pair(0, 1, false)];
        let kv = [KvCacheMode::Static, KvCacheMode::Elastic];
        let level = enumerate_level(&types, 3, 2, &kv, LIMITS).unwrap();
        // [0+1] + [2]: only elastic (the pair does not fit statically).
        assert_eq!(level, vec![Layout { groups: vec![(2, 1), (3, 1)], kv: Some(KvCacheMode::Elastic) }]);
        assert_eq!(
            level[0].describe(&types, &["a".into(), "b".into(), "c".into()]),
            "a x1 | b x1 | c x1 ; [a+b] x1"
        );
    }

    #[test]
    fn replicas_never_exceed_the_limit() {
        let types = [single(0), single(1)];
        let limits = Limits { max_replicas: 2, ..LIMITS };
        assert!(enumerate_level(&types, 2, 5, &[KvCacheMode::Static], limits).unwrap().is_empty());
        assert_eq!(enumerate_level(&types, 2, 4, &[KvCacheMode::Static], limits).unwrap().len(), 1);
    }

    #[test]
    fn too_many_layouts_is_reported_not_enumerated_forever() {
        let types = [single(0), single(1), single(2)];
        let limits = Limits { max_replicas: 64, max_layouts: 10 };
        assert!(enumerate_level(&types, 3, 12, &[KvCacheMode::Static], limits).is_err());
    }

    #[test]
    fn groups_enumerate_pairs_that_fit() {
        let fp = |gib: u64| Footprint {
            weights: gib << 30,
            reserve: 2 << 30,
            block_bytes: 2 << 20,
            block_size: 16,
            max_model_len: 8192,
            util: 0.9,
        };
        let types = group_types(&[fp(15), fp(14), fp(60)], 80 << 30, 2);
        let shapes: Vec<Vec<u32>> = types.iter().map(|g| g.models.iter().map(|m| m.0).collect()).collect();
        assert_eq!(shapes, vec![vec![0], vec![1], vec![2], vec![0, 1]]);
    }
}
