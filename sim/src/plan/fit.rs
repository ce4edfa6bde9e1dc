//! Will a group of instances start together on one GPU? The planner's estimate of the loader's
//! startup checks (`scenario::memory`), used to enumerate colocations without loading each one,
//! and the `gpu_memory_utilization` split that lets static instances share a GPU.
//!
//! Static co-tenants each reserve `total x gpu_memory_utilization`, so their fractions are split:
//! every member first gets its weights, reserve and one `max_model_len` request of KV, and the rest
//! of the GPU's usable memory is shared equally in bytes. Elastic (kvcached) co-tenants keep their
//! fraction and draw KV from one pool after everyone's weights and reserve. The loader re-checks
//! every layout exactly; a layout it rejects is reported as "does not start", never simulated.
//! This module does not place instances on GPUs (see `layout`).

use crate::scenario::{EngineConfig, ModelSpec};

/// What one instance needs from its GPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Footprint {
    /// Weight bytes.
    pub weights: u64,
    /// Activation / CUDA graph / context reserve, bytes.
    pub reserve: u64,
    /// Bytes of one KV block (all layers).
    pub block_bytes: u64,
    /// Tokens per block.
    pub block_size: u32,
    /// Longest request; its KV must fit for vLLM to start.
    pub max_model_len: u32,
    /// The instance's `gpu_memory_utilization` when it has the GPU to itself.
    pub util: f64,
}

impl Footprint {
    /// The footprint of `model` with the resolved `engine` settings.
    pub fn of(model: &ModelSpec, engine: &EngineConfig) -> Self {
        let block_size = engine.block_size.max(1);
        Footprint {
            weights: model.weight_bytes(),
            reserve: engine.activation_reserve_bytes,
            block_bytes: model.kv_bytes_per_token().saturating_mul(u64::from(block_size)),
            block_size,
            max_model_len: engine.max_model_len,
            util: engine.gpu_memory_utilization,
        }
    }

    /// Weights plus reserve.
    fn fixed(&self) -> u64 {
        self.weights.saturating_add(self.reserve)
    }

    /// Whether `kv_bytes` of KV holds one `max_model_len` request (vLLM's startup check).
    fn holds_one_request(&self, kv_bytes: u64) -> bool {
        let blocks = kv_bytes / self.block_bytes.max(1);
        blocks > 0 && blocks.saturating_mul(u64::from(self.block_size)) >= u64::from(self.max_model_len)
    }

    /// KV bytes of one `max_model_len` request, rounded up to whole blocks.
    fn min_kv(&self) -> u64 {
        let blocks = u64::from(self.max_model_len).div_ceil(u64::from(self.block_size));
        blocks.max(1).saturating_mul(self.block_bytes)
    }
}

/// `gpu_memory_utilization` per member when they share a GPU of `gpu_bytes` with static KV
/// caches, or `None` when they cannot all start. The usable total is the smallest member fraction.
pub(crate) fn static_split(members: &[Footprint], gpu_bytes: u64) -> Option<Vec<f64>> {
    let base = members.iter().map(|m| m.util).fold(1.0, f64::min);
    let usable = (gpu_bytes as f64 * base) as u64;
    let needs: Vec<u64> = members.iter().map(|m| m.fixed().saturating_add(m.min_kv())).collect();
    let total: u64 = needs.iter().fold(0, |a, &b| a.saturating_add(b));
    if total >= usable {
        return None;
    }
    let spare = (usable - total) / members.len().max(1) as u64;
    let utils: Vec<f64> =
        needs.iter().map(|&need| ((need + spare) as f64 / gpu_bytes as f64 * 1e4).floor() / 1e4).collect();
    let fits = members.iter().zip(&utils).all(|(m, &u)| {
        let share = (gpu_bytes as f64 * u) as u64;
        share > m.fixed() && m.holds_one_request(share - m.fixed())
    });
    fits.then_some(utils)
}

/// Whether the members start together as elastic (kvcached) instances: each one's pool
/// (`total x its fraction`) minus every member's weights and reserve holds one request.
pub(crate) fn elastic_fits(members: &[Footprint], gpu_bytes: u64) -> bool {
    let fixed: u64 = members.iter().map(Footprint::fixed).fold(0, u64::saturating_add);
    if fixed > gpu_bytes {
        return false;
    }
    members.iter().all(|m| {
        let pool = (gpu_bytes as f64 * m.util) as u64;
        pool > fixed && m.holds_one_request(pool - fixed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn fp(weights_gib: u64, len: u32) -> Footprint {
        Footprint {
            weights: weights_gib * GIB,
            reserve: 2 * GIB,
            block_bytes: 16 * 128 * 1024,
            block_size: 16,
            max_model_len: len,
            util: 0.9,
        }
    }

    #[test]
    fn two_small_models_split_the_fraction_and_each_holds_a_request() {
        let m = [fp(15, 32_768), fp(14, 32_768)];
        let u = static_split(&m, 80 * GIB).unwrap();
        assert!(u.iter().sum::<f64>() <= 0.9 + 1e-9);
        assert!(u[0] > u[1], "the heavier model gets the larger share: {u:?}");
    }

    #[test]
    fn members_whose_weights_exceed_the_gpu_do_not_fit_either_way() {
        let m = [fp(40, 4096), fp(38, 4096)];
        assert_eq!(static_split(&m, 80 * GIB), None);
        assert!(!elastic_fits(&m, 80 * GIB));
    }

    #[test]
    fn elastic_fits_where_static_needs_one_request_of_kv_for_each() {
        // 37 + 16 GiB of weights and 4 GiB of reserve leave ~15 GiB of the 72 usable: one
        // 40K-token request (4.9 GiB at 128 KiB/token) fits, one of 200K tokens (24 GiB) does not.
        let m = [fp(37, 40_000), fp(16, 40_000)];
        assert!(elastic_fits(&m, 80 * GIB));
        assert!(static_split(&m, 80 * GIB).is_some());
        let long = [fp(37, 200_000), fp(16, 200_000)];
        assert!(!elastic_fits(&long, 80 * GIB), "one 200K-token request needs 24 GiB of KV");
    }
}
