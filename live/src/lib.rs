//! Live harness: load generator, LB proxy, engine launcher and real-time emulator (see issue "Live harness").

pub mod emulator;
pub mod launcher;
pub mod proxy;
