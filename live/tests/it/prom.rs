//! The `/metrics` reader against vLLM 0.6.4 and V1 exposition text, plus garbage tolerance.

use live::prom::{VllmMetrics, parse_vllm_metrics};
use proptest::prelude::*;

/// Shaped like vLLM 0.6.4's `/metrics` (V0, `{model_name}` labels, `gpu_cache_usage_perc`).
const VLLM_064: &str = r#"# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",gpu_memory_utilization="0.9",num_cpu_blocks="2048",num_gpu_blocks="27713"} 1.0
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# HELP vllm:num_requests_swapped Number of requests swapped to CPU.
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.8734
# TYPE vllm:cpu_cache_usage_perc gauge
vllm:cpu_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_preemptions_created{model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.7326e+09
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.5
python_gc_objects_collected_total{generation="0"} 1234.0
"#;

/// Shaped like current vLLM V1 (`{engine, model_name}` labels, both KV names during the rename).
const VLLM_V1: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 7.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.25
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.25
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 0.0
vllm:num_preemptions_created{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"} 1.76e+09
"#;

#[test]
fn vllm_0_6_4_metrics_read_with_the_old_kv_name() {
    let m = parse_vllm_metrics(VLLM_064);
    assert_eq!(
        m,
        VllmMetrics {
            num_requests_running: Some(12.0),
            num_requests_waiting: Some(4.0),
            kv_cache_usage: Some(0.8734),
            num_preemptions_total: Some(3.0),
        }
    );
}

#[test]
fn vllm_v1_metrics_read_with_engine_labels_in_any_order() {
    let m = parse_vllm_metrics(VLLM_V1);
    assert_eq!(
        m,
        VllmMetrics {
            num_requests_running: Some(7.0),
            num_requests_waiting: Some(0.0),
            kv_cache_usage: Some(0.25),
            num_preemptions_total: Some(0.0),
        }
    );
    let swapped = VLLM_V1.replace(
        r#"{engine="0",model_name="Qwen/Qwen2.5-7B-Instruct"}"#,
        r#"{model_name="Qwen/Qwen2.5-7B-Instruct",engine="0"}"#,
    );
    assert_eq!(parse_vllm_metrics(&swapped), m);
}

#[test]
fn the_new_kv_name_wins_over_the_old_one_when_both_are_present() {
    let text = "vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\n";
    assert_eq!(parse_vllm_metrics(text).kv_cache_usage, Some(0.1));
}

#[test]
fn several_engines_add_their_counts_and_report_the_fullest_kv_cache() {
    let text = concat!(
        "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 2\n",
        "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 3\n",
        "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.2\n",
        "vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.7\n",
    );
    let m = parse_vllm_metrics(text);
    assert_eq!((m.num_requests_running, m.kv_cache_usage), (Some(5.0), Some(0.7)));
}

#[test]
fn a_server_without_vllm_metrics_reads_as_all_absent() {
    assert_eq!(parse_vllm_metrics("up 1\n# nothing\n"), VllmMetrics::default());
    assert_eq!(parse_vllm_metrics(""), VllmMetrics::default());
}

#[test]
fn non_finite_and_timestamped_samples_are_handled() {
    let text = "vllm:num_requests_running NaN\nvllm:num_requests_waiting 3 1700000000000\n";
    let m = parse_vllm_metrics(text);
    assert_eq!((m.num_requests_running, m.num_requests_waiting), (None, Some(3.0)));
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = parse_vllm_metrics(&text);
    }

    #[test]
    fn garbage_lines_between_samples_change_nothing(
        garbage in prop::collection::vec("[^\n]{0,60}", 0..20),
        seed in any::<u64>(),
    ) {
        // Garbage that happens to be a valid vllm:* sample would change the answer; skip those.
        let garbage: Vec<String> = garbage.into_iter().filter(|g| !g.trim_start().starts_with("vllm:")).collect();
        let lines: Vec<&str> = VLLM_064.lines().collect();
        let mut mixed = Vec::new();
        for (k, l) in lines.iter().enumerate() {
            mixed.push(l.to_string());
            if !garbage.is_empty() {
                mixed.push(garbage[(seed as usize).wrapping_add(k) % garbage.len()].clone());
            }
        }
        prop_assert_eq!(parse_vllm_metrics(&mixed.join("\n")), parse_vllm_metrics(VLLM_064));
    }
}

/// A vLLM sample line with a hostile value and labels.
fn hostile_sample() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:num_preemptions_total",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
    ]);
    let value = prop::sample::select(vec![
        "1e308",
        "-1e308",
        "1.7976931348623157e308",
        "NaN",
        "+Inf",
        "-Inf",
        "-1",
        "0",
        "4294967296",
        "1e-320",
        "0x10",
        "",
    ]);
    let labels = prop::sample::select(vec![
        "",
        "{}",
        "{engine=\"0\"}",
        "{engine=\"1\",model_name=\"m\"}",
        "{a=\"\\\"",
    ]);
    (name, labels, value, prop::option::of(any::<i64>()))
        .prop_map(|(n, l, v, ts)| format!("{n}{l} {v}{}", ts.map(|t| format!(" {t}")).unwrap_or_default()))
}

proptest! {
    /// Issue 12 item 10: whatever values a server exposes, every field read is finite or absent.
    #[test]
    fn hostile_values_read_finite_or_absent(lines in prop::collection::vec(hostile_sample(), 0..40)) {
        let m = parse_vllm_metrics(&lines.join("\n"));
        for v in [m.num_requests_running, m.num_requests_waiting, m.num_preemptions_total, m.kv_cache_usage] {
            prop_assert!(v.is_none_or(f64::is_finite), "{m:?}");
        }
    }
}

#[test]
fn engines_whose_counts_overflow_a_float_sum_keep_a_finite_count() {
    let m = parse_vllm_metrics(
        "vllm:num_requests_running{engine=\"0\"} 1e308\nvllm:num_requests_running{engine=\"1\"} 1e308\n",
    );
    assert_eq!(m.num_requests_running, Some(1e308));
}
