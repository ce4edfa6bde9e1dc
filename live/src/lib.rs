//! Live harness: load generator, LB proxy, engine launcher and real-time emulator (see issue "Live harness").

pub mod client;
pub mod genai_perf;
pub mod loadgen;
pub mod prom;
pub mod run;
pub mod scrape;
pub mod sse;
