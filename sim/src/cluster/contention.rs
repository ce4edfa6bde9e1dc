//! Compute contention between instances sharing a GPU: kvcached makes memory elastic, not
//! compute. Without MPS the GPU time-slices between processes. Three models (`[cluster]
//! contention`):
//!
//! - `serialize`: steps of busy co-tenants serialise on the SMs, plus a time-slicing overhead
//!   (measured on an H100 with two engines each serving its own load: 2.15-2.22x slowdown, see
//!   the reference notes). A guess for vLLM, whose CUDA-graph decode steps are GPU-bound; not
//!   measured colocated. The default unless every instance runs `transformers-cb`.
//! - `gpu_share`: only GPU-bound work contends (measured on the reference engine, transformers
//!   continuous batching without CUDA graphs, on one H200: `validation/h200/coloc`). Its decode
//!   steps are mostly CPU (Python); with async batching on, decode steps were not slowed
//!   measurably by anything a co-tenant did (over the profile: 0.81 beside an idle or decoding
//!   co-tenant, 0.84-0.89 beside its prefill, within the run's drift), while steps computing
//!   prefill were slowed +34..38% by a co-tenant's prefill; with async batching off decode steps
//!   were slowed too (+27..31%). `slowdown` is fitted on the async ladder
//!   (`validation/h200/coloc_analysis.py`).
//!
//! - `time_slice`: GPU-bound engines take turns on the SMs, each busy co-tenant adding about a
//!   step's length to a decode step and less to a prefill one (measured on the reference engine
//!   replaying CUDA graphs, where a graph replay is one launch the CPU then waits on: two and
//!   three engines on one H200, `validation/h200/graphs_contention.py`). The default of
//!   all-`transformers-cb` scenarios whose engines replay graphs.
//!
//! This module only turns the steps in flight into a slowdown factor; the driver decides who is
//! busy and when the factor applies (once, when a step begins).

use crate::scenario::ContentionSpec;

/// What the contention model needs to know of one step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepLoad {
    /// Share of the step's period spent computing prefill (GPU-bound), in [0, 1].
    pub prefill_share: f64,
    /// Whether the engine overlaps the CPU work of the next step with this one's GPU work.
    pub async_scheduling: bool,
}

impl StepLoad {
    /// The step's GPU share under `gpu_share`: its prefill plus `decode_gpu_share` of the rest.
    fn gpu_share(self, decode_gpu_share: f64) -> f64 {
        let s = self.prefill_share.clamp(0.0, 1.0);
        s + (1.0 - s) * decode_gpu_share.clamp(0.0, 1.0)
    }

    /// The share of the step that waits when the GPU is shared: the GPU-bound prefill with async
    /// scheduling (the CPU preparing the next step hides the GPU wait of the rest), its whole GPU
    /// share without.
    fn exposed(self, decode_gpu_share: f64) -> f64 {
        if self.async_scheduling {
            self.prefill_share.clamp(0.0, 1.0)
        } else {
            self.gpu_share(decode_gpu_share)
        }
    }
}

/// How many times longer a step (`own`) takes when the co-tenants whose steps are in flight as
/// it begins run `busy_others`: 1 without busy co-tenants; `(1 + n) x (1 + overhead)` for `n`
/// busy co-tenants under [`ContentionSpec::Serialize`]; `1 + slowdown x exposed x min(1, sum of
/// their GPU shares)` under [`ContentionSpec::GpuShare`]; `1 + n x (decode x (1 - s) + prefill x
/// s)` under [`ContentionSpec::TimeSlice`], `s` the step's prefill share.
pub fn contention_factor(spec: &ContentionSpec, own: StepLoad, busy_others: &[StepLoad]) -> f64 {
    if busy_others.is_empty() {
        return 1.0;
    }
    match *spec {
        ContentionSpec::None => 1.0,
        ContentionSpec::Serialize { overhead } => (1 + busy_others.len()) as f64 * (1.0 + overhead.max(0.0)),
        ContentionSpec::GpuShare { slowdown, decode_gpu_share } => {
            let others: f64 = busy_others.iter().map(|o| o.gpu_share(decode_gpu_share)).sum();
            1.0 + slowdown.max(0.0) * own.exposed(decode_gpu_share) * others.min(1.0)
        }
        ContentionSpec::TimeSlice { decode, prefill } => {
            let s = own.prefill_share.clamp(0.0, 1.0);
            1.0 + busy_others.len() as f64 * (decode.max(0.0) * (1.0 - s) + prefill.max(0.0) * s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(prefill_share: f64, async_scheduling: bool) -> StepLoad {
        StepLoad { prefill_share, async_scheduling }
    }

    #[test]
    fn an_idle_co_tenant_costs_nothing_and_a_busy_one_serialises_with_overhead() {
        let s = ContentionSpec::default();
        let any = load(0.3, true);
        assert_eq!(contention_factor(&s, any, &[]), 1.0);
        assert!((contention_factor(&s, any, &[any]) - 2.2).abs() < 1e-12, "two busy tenants: 2 x 1.10");
        assert!((contention_factor(&s, any, &[any, any]) - 3.3).abs() < 1e-12);
        assert_eq!(contention_factor(&ContentionSpec::None, any, &[any, any, any]), 1.0);
    }

    #[test]
    fn gpu_share_known_answers() {
        let s = ContentionSpec::GpuShare { slowdown: 2.0, decode_gpu_share: 0.1 };
        // Async decode step: nothing exposed, whatever the co-tenant does.
        assert_eq!(contention_factor(&s, load(0.0, true), &[load(1.0, true)]), 1.0);
        // Async step half prefill, co-tenant half prefill: G = 0.5 + 0.5 x 0.1 = 0.55;
        // 1 + 2 x 0.5 x 0.55 = 1.55.
        let f = contention_factor(&s, load(0.5, true), &[load(0.5, true)]);
        assert!((f - 1.55).abs() < 1e-12, "{f}");
        // Sync decode step: exposed 0.1; a decoding co-tenant G = 0.1: 1 + 2 x 0.1 x 0.1 = 1.02.
        let f = contention_factor(&s, load(0.0, false), &[load(0.0, true)]);
        assert!((f - 1.02).abs() < 1e-12, "{f}");
        // Co-tenants' GPU shares add up to at most a whole GPU: 1 + 2 x 1 x 1 = 3.
        let f = contention_factor(&s, load(1.0, true), &[load(0.8, true), load(0.9, false)]);
        assert!((f - 3.0).abs() < 1e-12, "{f}");
    }

    #[test]
    fn the_fitted_model_is_the_reference_engine_default() {
        match ContentionSpec::REFERENCE_ENGINE_H200 {
            ContentionSpec::GpuShare { slowdown, decode_gpu_share } => {
                assert_eq!((slowdown, decode_gpu_share), (1.90, 0.10));
            }
            other => panic!("expected gpu_share, got {other:?}"),
        }
        match ContentionSpec::REFERENCE_ENGINE_GRAPHS_H200 {
            ContentionSpec::TimeSlice { decode, prefill } => assert_eq!((decode, prefill), (1.023, 0.379)),
            other => panic!("expected time_slice, got {other:?}"),
        }
    }

    #[test]
    fn time_slice_known_answers() {
        let s = ContentionSpec::TimeSlice { decode: 1.0, prefill: 0.4 };
        let decode = load(0.0, true);
        let prefill = load(0.5, false);
        // A decode step waits a whole turn per busy co-tenant, whatever they run.
        assert!((contention_factor(&s, decode, &[prefill]) - 2.0).abs() < 1e-12);
        assert!((contention_factor(&s, decode, &[decode, prefill]) - 3.0).abs() < 1e-12);
        // Half prefill: 1 + 1 x (1.0 x 0.5 + 0.4 x 0.5) = 1.7; async makes no difference.
        assert!((contention_factor(&s, prefill, &[decode]) - 1.7).abs() < 1e-12);
        assert_eq!(contention_factor(&s, prefill, &[]), 1.0);
    }

    fn spec() -> impl Strategy<Value = ContentionSpec> {
        prop_oneof![
            Just(ContentionSpec::None),
            (0.0f64..2.0).prop_map(|overhead| ContentionSpec::Serialize { overhead }),
            (0.0f64..10.0, 0.0f64..10.0)
                .prop_map(|(decode, prefill)| ContentionSpec::TimeSlice { decode, prefill }),
            (0.0f64..10.0, 0.0f64..=1.0).prop_map(|(slowdown, decode_gpu_share)| ContentionSpec::GpuShare {
                slowdown,
                decode_gpu_share
            }),
        ]
    }

    fn step() -> impl Strategy<Value = StepLoad> {
        (0.0f64..=1.0, any::<bool>()).prop_map(|(p, a)| load(p, a))
    }

    proptest! {
        #[test]
        fn a_factor_never_speeds_a_step_up_and_grows_with_co_tenants(
            s in spec(), own in step(), others in proptest::collection::vec(step(), 0..4), extra in step(),
        ) {
            let f = contention_factor(&s, own, &others);
            prop_assert!(f.is_finite() && f >= 1.0, "{f}");
            let mut more = others.clone();
            more.push(extra);
            prop_assert!(contention_factor(&s, own, &more) >= f - 1e-12, "one more busy co-tenant cannot help");
            if let ContentionSpec::GpuShare { slowdown, .. } = s {
                prop_assert!(f <= 1.0 + slowdown + 1e-12, "bounded by a whole exposed step fully shared");
                // More prefill in a co-tenant's step never helps either.
                if let Some(first) = others.first().copied() {
                    let mut heavier = others.clone();
                    heavier[0] = StepLoad { prefill_share: (first.prefill_share + 0.3).min(1.0), ..first };
                    prop_assert!(contention_factor(&s, own, &heavier) >= f - 1e-12);
                }
            }
        }
    }
}
