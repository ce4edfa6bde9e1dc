//! Copy newtype ids that index the simulator's `Vec`s.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub $inner);

        impl $name {
            /// The id as a `usize` index.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A request, numbered in issue order from 0 within one run (identical across variants).
    RequestId(u64)
);
id_type!(
    /// A model of the scenario (index into `Scenario::models`).
    ModelId(u32)
);
id_type!(
    /// An engine instance (index into `Scenario::instances`).
    InstanceId(u32)
);
id_type!(
    /// A GPU of the cluster (index into `Scenario::gpus`).
    GpuId(u32)
);
id_type!(
    /// A KV-cache block inside one instance's block pool.
    BlockId(u32)
);
