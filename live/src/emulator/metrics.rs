//! The emulator's `/metrics`: vLLM's gauges and counters under either naming generation.
//!
//! vLLM 0.6.4 labels every series `{model_name}` and calls the KV gauge
//! `vllm:gpu_cache_usage_perc`; V1 labels `{model_name, engine}` and calls it
//! `vllm:kv_cache_usage_perc` (vllm/engine/metrics.py, vllm/v1/metrics/loggers.py). Latency
//! histograms are not emitted (the load generator measures latency itself). This file does no I/O.

use crate::proxy::prom::{write_header, write_sample};
use sim::scenario::{EngineGeneration, EnginePreset};

/// Which generation of vLLM metric names to expose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsNaming {
    /// vLLM 0.6.4: `{model_name}` labels, `vllm:gpu_cache_usage_perc`.
    Vllm064,
    /// vLLM V1: `{model_name, engine}` labels, `vllm:kv_cache_usage_perc`.
    V1,
}

impl MetricsNaming {
    /// The naming an engine of `preset` uses.
    pub fn of_preset(preset: EnginePreset) -> MetricsNaming {
        match preset.generation() {
            EngineGeneration::V0 => MetricsNaming::Vllm064,
            EngineGeneration::V1 => MetricsNaming::V1,
        }
    }
}

/// The engine figures `/metrics` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// Requests in the running batch.
    pub running: u32,
    /// Requests queued (new or preempted).
    pub waiting: u32,
    /// Fraction of KV blocks in use, 0..1.
    pub kv_usage: f64,
    /// Preemptions since start.
    pub preemptions_total: u64,
    /// Prompt tokens of admitted requests since start.
    pub prompt_tokens_total: u64,
    /// Output tokens generated since start.
    pub generation_tokens_total: u64,
    /// Requests that finished (all at `max_tokens`: `finished_reason="length"`).
    pub requests_finished_total: u64,
    /// KV blocks of the instance.
    pub num_gpu_blocks: u32,
    /// Tokens per KV block.
    pub block_size: u32,
    /// Prompt tokens looked up in the prefix cache since start.
    pub prefix_cache_queries_total: u64,
    /// Prompt tokens found there since start.
    pub prefix_cache_hits_total: u64,
}

/// Renders `stats` for `model_name` in `naming`.
pub fn render(naming: MetricsNaming, model_name: &str, stats: &EngineStats) -> String {
    let mut out = String::new();
    let base: Vec<(&str, &str)> = match naming {
        MetricsNaming::Vllm064 => vec![("model_name", model_name)],
        MetricsNaming::V1 => vec![("model_name", model_name), ("engine", "0")],
    };
    let kv_name = match naming {
        MetricsNaming::Vllm064 => "vllm:gpu_cache_usage_perc",
        MetricsNaming::V1 => "vllm:kv_cache_usage_perc",
    };
    let gauges = [
        (
            "vllm:num_requests_running",
            "Number of requests currently running on GPU.",
            f64::from(stats.running),
        ),
        (
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            f64::from(stats.waiting),
        ),
        (kv_name, "KV-cache usage. 1 means 100 percent usage.", stats.kv_usage),
    ];
    for (name, help, value) in gauges {
        write_header(&mut out, name, "gauge", help);
        write_sample(&mut out, name, &base, value);
    }
    let counters = [
        (
            "vllm:num_preemptions_total",
            "Cumulative number of preemption from the engine.",
            stats.preemptions_total,
        ),
        ("vllm:prompt_tokens_total", "Number of prefill tokens processed.", stats.prompt_tokens_total),
        (
            "vllm:generation_tokens_total",
            "Number of generation tokens processed.",
            stats.generation_tokens_total,
        ),
        // vLLM V1's names (vllm/v1/metrics/loggers.py: `vllm:prefix_cache_queries`, `_hits`).
        (
            "vllm:prefix_cache_queries_total",
            "Prefix cache queries, in terms of number of queried tokens.",
            stats.prefix_cache_queries_total,
        ),
        (
            "vllm:prefix_cache_hits_total",
            "Prefix cache hits, in terms of number of cached tokens.",
            stats.prefix_cache_hits_total,
        ),
    ];
    for (name, help, value) in counters {
        write_header(&mut out, name, "counter", help);
        write_sample(&mut out, name, &base, value as f64);
    }
    let name = "vllm:request_success_total";
    write_header(&mut out, name, "counter", "Count of successfully processed requests.");
    let mut labels = base.clone();
    labels.push(("finished_reason", "length"));
    write_sample(&mut out, name, &labels, stats.requests_finished_total as f64);
    let name = "vllm:cache_config_info";
    write_header(&mut out, name, "gauge", "Information of the LLMEngine CacheConfig");
    let (blocks, size) = (stats.num_gpu_blocks.to_string(), stats.block_size.to_string());
    let mut labels = base;
    labels.push(("block_size", &size));
    labels.push(("num_gpu_blocks", &blocks));
    write_sample(&mut out, name, &labels, 1.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::prom::parse_vllm_load;
    use sim::router::PolledLoad;

    fn stats() -> EngineStats {
        EngineStats {
            running: 2,
            waiting: 5,
            kv_usage: 0.5,
            num_gpu_blocks: 100,
            block_size: 16,
            ..Default::default()
        }
    }

    #[test]
    fn old_names_label_by_model_only() {
        let text = render(MetricsNaming::Vllm064, "org/a", &stats());
        assert!(text.contains("vllm:gpu_cache_usage_perc{model_name=\"org/a\"} 0.5\n"), "{text}");
        assert!(text.contains("vllm:num_requests_waiting{model_name=\"org/a\"} 5.0\n"));
        assert!(!text.contains("kv_cache_usage_perc"));
    }

    #[test]
    fn v1_names_add_the_engine_label() {
        let text = render(MetricsNaming::V1, "org/a", &stats());
        assert!(text.contains("vllm:kv_cache_usage_perc{model_name=\"org/a\",engine=\"0\"} 0.5\n"), "{text}");
        assert!(text.contains("num_gpu_blocks=\"100\""));
    }

    #[test]
    fn the_lb_reads_both_generations_back() {
        for naming in [MetricsNaming::Vllm064, MetricsNaming::V1] {
            let load = parse_vllm_load(&render(naming, "m", &stats())).unwrap();
            assert_eq!(load, PolledLoad { running: 2, waiting: 5, kv_usage: 0.5 });
        }
    }
}
