//! Prometheus text for the server side: the LB's polled load out of an engine's `/metrics`
//! (read with `crate::prom`, which knows both vLLM naming generations), and writing samples with
//! escaped labels for the LB's and the emulator's own `/metrics`. This file does no I/O.

use crate::prom::parse_vllm_metrics;
use sim::router::PolledLoad;
use std::fmt::Write as _;

/// The router's load figures from one engine's `/metrics` text; `None` when the text has
/// neither request gauge (not a vLLM endpoint). A missing KV gauge reads as 0.
pub fn parse_vllm_load(text: &str) -> Option<PolledLoad> {
    let m = parse_vllm_metrics(text);
    if m.num_requests_running.is_none() && m.num_requests_waiting.is_none() {
        return None;
    }
    Some(PolledLoad {
        running: gauge_to_u32(m.num_requests_running),
        waiting: gauge_to_u32(m.num_requests_waiting),
        kv_usage: m.kv_cache_usage.filter(|v| v.is_finite()).unwrap_or(0.0),
    })
}

fn gauge_to_u32(v: Option<f64>) -> u32 {
    match v {
        Some(v) if v.is_finite() && v > 0.0 => v.round().min(f64::from(u32::MAX)) as u32,
        _ => 0,
    }
}

/// Escapes a label value per the exposition format (`\\`, `\"`, `\n`).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Appends `# HELP` and `# TYPE` lines.
pub fn write_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends one sample; `labels` are (name, unescaped value) pairs.
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

fn format_value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_064_metrics_give_running_waiting_and_gpu_cache_usage() {
        let text = "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n\
            # TYPE vllm:num_requests_running gauge\n\
            vllm:num_requests_running{model_name=\"m\"} 3.0\n\
            vllm:num_requests_waiting{model_name=\"m\"} 7.0\n\
            vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n\
            vllm:num_preemptions_total{model_name=\"m\"} 2.0\n";
        let load = parse_vllm_load(text).unwrap();
        assert_eq!(load, PolledLoad { running: 3, waiting: 7, kv_usage: 0.25 });
    }

    #[test]
    fn v1_metrics_are_summed_over_engines_and_take_the_fullest_kv_cache() {
        let text = "vllm:num_requests_running{engine=\"0\",model_name=\"a}b\"} 2\n\
            vllm:num_requests_running{engine=\"1\",model_name=\"a}b\"} 1\n\
            vllm:num_requests_waiting{engine=\"0\",model_name=\"a}b\"} 0\n\
            vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"a}b\"} 0.5\n\
            vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"a}b\"} 0.75 1700000000000\n";
        let load = parse_vllm_load(text).unwrap();
        assert_eq!(load, PolledLoad { running: 3, waiting: 0, kv_usage: 0.75 });
    }

    #[test]
    fn text_without_request_gauges_is_not_a_load() {
        assert_eq!(parse_vllm_load("# nothing\nprocess_cpu_seconds_total 4\n"), None);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        write_sample(&mut out, "x", &[("model", "a\"b\\c}")], 2.0);
        assert_eq!(out, "x{model=\"a\\\"b\\\\c}\"} 2.0\n");
    }
}
