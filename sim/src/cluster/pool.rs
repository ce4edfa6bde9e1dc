//! One GPU's physical pool of elastic KV memory, shared first come first served by the elastic
//! instances on that GPU (kvcached engines map pages from the GPU's free memory).
//!
//! The pool only counts bytes: each tenant maps whole pages of its own size (`2 MiB x 2 x
//! layers`), up to its own limit, and the sum never exceeds the pool. Which blocks live on which
//! page is the instance's business (`engine::kv_cache::ElasticPages`). The simulation is
//! single-threaded: the driver owns the pools and lends `&mut GpuPool` to the instance stepping.

use crate::engine::KvCacheManager;
use crate::ids::{GpuId, InstanceId};
use serde::{Deserialize, Serialize};

/// A tenant's index in its GPU's pool (its rank among the GPU's elastic instances).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PoolSlot(pub u32);

/// One elastic instance drawing on a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolTenant {
    /// The instance.
    pub instance: InstanceId,
    /// Bytes of one of its pages.
    pub page_bytes: u64,
    /// Pages it may map at once (its memory limit).
    pub limit_pages: u32,
    /// Pages it has mapped now (reserve included).
    pub mapped_pages: u32,
}

/// A change the pool refused: a bug in the caller, which must ask what it may map first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Mapping would exceed the GPU's pool.
    #[error(
        "GPU {gpu}: instance {instance} would map {pages} pages ({bytes} bytes) but the pool has \
         {free_bytes} of {capacity_bytes} bytes free"
    )]
    Exhausted {
        /// The GPU.
        gpu: GpuId,
        /// The tenant.
        instance: InstanceId,
        /// Pages it asked to hold in all.
        pages: u32,
        /// Bytes that would need.
        bytes: u64,
        /// Free bytes before the change.
        free_bytes: u64,
        /// The pool's size.
        capacity_bytes: u64,
    },
    /// Mapping would exceed the tenant's own limit.
    #[error("GPU {gpu}: instance {instance} would map {pages} pages, over its limit of {limit_pages}")]
    OverLimit {
        /// The GPU.
        gpu: GpuId,
        /// The tenant.
        instance: InstanceId,
        /// Pages it asked to hold in all.
        pages: u32,
        /// Its limit.
        limit_pages: u32,
    },
}

/// The elastic KV pool of one GPU; see the module doc.
#[derive(Clone, Debug)]
pub struct GpuPool {
    gpu: GpuId,
    capacity_bytes: u64,
    mapped_bytes: u64,
    tenants: Vec<PoolTenant>,
    /// Bumped whenever `mapped_bytes` changes: a settle seeing the same version, mapped pages
    /// and budget as its tenant's last one, with a full reserve, would change nothing.
    version: u64,
    /// Per slot: the state its last settle left (see [`GpuPool::settle`]).
    settled: Vec<Option<SettleMark>>,
}

/// What a tenant's last settle left: the pool's version, its mapped pages and its page budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SettleMark {
    version: u64,
    mapped_pages: u32,
    budget: u32,
}

impl GpuPool {
    /// An empty pool of `capacity_bytes` on `gpu`.
    pub fn new(gpu: GpuId, capacity_bytes: u64) -> GpuPool {
        GpuPool { gpu, capacity_bytes, mapped_bytes: 0, tenants: Vec::new(), version: 0, settled: Vec::new() }
    }

    /// Adds a tenant with pages of `page_bytes` and a limit of `limit_pages`; returns its slot.
    pub fn add_tenant(&mut self, instance: InstanceId, page_bytes: u64, limit_pages: u32) -> PoolSlot {
        self.tenants.push(PoolTenant {
            instance,
            page_bytes: page_bytes.max(1),
            limit_pages,
            mapped_pages: 0,
        });
        self.settled.push(None);
        PoolSlot(self.tenants.len() as u32 - 1)
    }

    /// The GPU.
    pub fn gpu(&self) -> GpuId {
        self.gpu
    }

    /// The pool's size, bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Bytes mapped by all tenants.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// Bytes nobody has mapped.
    pub fn free_bytes(&self) -> u64 {
        self.capacity_bytes - self.mapped_bytes
    }

    /// The tenants, by slot.
    pub fn tenants(&self) -> &[PoolTenant] {
        &self.tenants
    }

    /// The tenant in `slot`.
    pub fn tenant(&self, slot: PoolSlot) -> &PoolTenant {
        &self.tenants[slot.0 as usize]
    }

    /// Forgets every tenant's last settle, so the next ones take the full path (tests compare it
    /// with the shortcut).
    #[cfg(test)]
    pub(crate) fn forget_settles(&mut self) {
        self.settled.iter_mut().for_each(|m| *m = None);
    }

    /// More pages the tenant in `slot` may map now: what the free bytes hold, within its limit.
    pub fn grantable_pages(&self, slot: PoolSlot) -> u32 {
        let t = &self.tenants[slot.0 as usize];
        let by_pool = u32::try_from(self.free_bytes() / t.page_bytes).unwrap_or(u32::MAX);
        by_pool.min(t.limit_pages.saturating_sub(t.mapped_pages))
    }

    /// Records that the tenant in `slot` now holds `pages` mapped pages (more: it mapped, fewer:
    /// it unmapped). Refused, changing nothing, when that would exceed the pool or its limit.
    pub fn set_mapped(&mut self, slot: PoolSlot, pages: u32) -> Result<(), PoolError> {
        let gpu = self.gpu;
        let free = self.free_bytes();
        let capacity = self.capacity_bytes;
        let t = &mut self.tenants[slot.0 as usize];
        if pages > t.limit_pages {
            return Err(PoolError::OverLimit {
                gpu,
                instance: t.instance,
                pages,
                limit_pages: t.limit_pages,
            });
        }
        let old = u64::from(t.mapped_pages) * t.page_bytes;
        let new = u64::from(pages) * t.page_bytes;
        if new > old && new - old > free {
            return Err(PoolError::Exhausted {
                gpu,
                instance: t.instance,
                pages,
                bytes: new,
                free_bytes: free,
                capacity_bytes: capacity,
            });
        }
        t.mapped_pages = pages;
        if new != old {
            self.mapped_bytes = self.mapped_bytes - old + new;
            self.version += 1;
        }
        Ok(())
    }
}

impl GpuPool {
    /// Settles the elastic `kv` of the tenant in `slot` with the pool: records the pages it has
    /// mapped or unmapped since the last call, lets its background pre-allocation refill the
    /// reserve from what the pool can spare (kvcached's `_prealloc_worker`), and sets its page
    /// budget to the pages it holds plus what the pool grants now. The budget is only valid until a
    /// co-tenant maps: settle right before scheduling, and after anything that maps or frees. An
    /// error means the manager mapped more than it was granted (a bug); nothing is recorded then.
    ///
    /// A settle that would change nothing returns at once: when neither the pool (its version)
    /// nor the tenant's mapped pages and budget moved since its last settle and its reserve is
    /// full, the steps below are all no-ops (same mapped count, nothing to refill, the same grant
    /// hence the same budget).
    pub fn settle(&mut self, slot: PoolSlot, kv: &mut KvCacheManager) -> Result<(), PoolError> {
        let state = |kv: &KvCacheManager| {
            kv.elastic().map_or((0, 0, true), |e| {
                let full = e.num_empty_mapped_pages() >= e.params().min_reserve_pages;
                (e.num_mapped_pages(), e.budget(), full)
            })
        };
        let (mapped, budget, reserve_full) = state(kv);
        let unchanged = SettleMark { version: self.version, mapped_pages: mapped, budget };
        if reserve_full && self.settled[slot.0 as usize] == Some(unchanged) {
            return Ok(());
        }
        self.set_mapped(slot, mapped)?;
        if kv.refill_reserve(self.grantable_pages(slot)) > 0 {
            self.set_mapped(slot, state(kv).0)?;
        }
        let mapped = state(kv).0;
        kv.set_page_budget(mapped.saturating_add(self.grantable_pages(slot)));
        let (mapped, budget, _) = state(kv);
        self.settled[slot.0 as usize] =
            Some(SettleMark { version: self.version, mapped_pages: mapped, budget });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_draw_on_one_pool_first_come_first_served() {
        let mut p = GpuPool::new(GpuId(0), 10 * 100);
        let a = p.add_tenant(InstanceId(0), 100, 8);
        let b = p.add_tenant(InstanceId(1), 300, 8);
        assert_eq!(p.grantable_pages(a), 8, "a's own limit binds first");
        p.set_mapped(a, 7).unwrap();
        assert_eq!(p.grantable_pages(b), 1);
        assert!(matches!(p.set_mapped(b, 2), Err(PoolError::Exhausted { .. })));
        p.set_mapped(b, 1).unwrap();
        assert_eq!((p.free_bytes(), p.grantable_pages(a)), (0, 0));
        p.set_mapped(a, 4).unwrap();
        assert_eq!(p.grantable_pages(b), 1, "300 free bytes = one of b's pages");
        assert!(matches!(p.set_mapped(a, 9), Err(PoolError::OverLimit { .. })));
    }
}
