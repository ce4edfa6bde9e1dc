//! Live harness: load generator, LB proxy, engine launcher and real-time emulator (see issue "Live harness").

pub mod bench;
pub mod checkpoint;
pub mod client;
pub mod emulator;
pub mod export;
pub mod import;
pub mod launcher;
pub mod loadgen;
pub mod procfs;
pub mod prom;
pub mod prompt_ids;
pub mod proxy;
pub mod run;
pub mod scrape;
pub mod signals;
pub mod sse;
pub mod step_log;
pub mod text_tokens;
