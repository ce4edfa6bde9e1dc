//! Workloads: arrival process x length distribution x model mix, deterministic from a seed.

mod spec;

pub use spec::{PrefixRef, RequestSpec};
