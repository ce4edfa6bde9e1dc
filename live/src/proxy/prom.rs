//! Prometheus text: reading an engine's load figures out of its `/metrics`, and writing
//! samples with escaped labels.
//!
//! Only the exposition-format subset vLLM emits is read (one sample per line, optional labels,
//! a float value, an optional timestamp); comments and every other metric are skipped. Both
//! naming generations of the KV gauge are accepted: `vllm:gpu_cache_usage_perc` (0.6.4..0.11)
//! and `vllm:kv_cache_usage_perc` (0.9.2+). This file does no I/O.

use sim::router::PolledLoad;
use std::fmt::Write as _;

/// One sample line: metric name, raw label text (without braces) and value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// Metric name, e.g. `vllm:num_requests_running`.
    pub name: &'a str,
    /// The text between `{` and `}` (empty without labels).
    pub labels: &'a str,
    /// The value.
    pub value: f64,
}

/// Parses one exposition line; `None` for comments, blanks and lines it cannot read.
pub fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = "";
    if rest.starts_with('{') {
        let close = closing_brace(rest)?;
        labels = &rest[1..close];
        rest = &rest[close + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// Index of the `}` closing the label set that `s` starts with, skipping quoted values.
fn closing_brace(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// The load figures of one engine's `/metrics` text: running and waiting summed over every
/// series (one per engine/model label set), KV usage the largest series. `None` when the text
/// has neither request gauge (not a vLLM endpoint).
pub fn parse_vllm_load(text: &str) -> Option<PolledLoad> {
    let mut load = PolledLoad::default();
    let mut seen = false;
    for sample in text.lines().filter_map(parse_sample) {
        let v = sample.value;
        match sample.name {
            "vllm:num_requests_running" => {
                load.running = load.running.saturating_add(gauge_to_u32(v));
                seen = true;
            }
            "vllm:num_requests_waiting" => {
                load.waiting = load.waiting.saturating_add(gauge_to_u32(v));
                seen = true;
            }
            "vllm:gpu_cache_usage_perc" | "vllm:kv_cache_usage_perc" if v.is_finite() => {
                load.kv_usage = load.kv_usage.max(v);
            }
            _ => {}
        }
    }
    seen.then_some(load)
}

fn gauge_to_u32(v: f64) -> u32 {
    if v.is_finite() && v > 0.0 { v.round().min(f64::from(u32::MAX)) as u32 } else { 0 }
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
    fn label_values_are_escaped_and_read_back() {
        let mut out = String::new();
        write_sample(&mut out, "x", &[("model", "a\"b\\c}")], 2.0);
        assert_eq!(out, "x{model=\"a\\\"b\\\\c}\"} 2.0\n");
        let s = parse_sample(out.trim()).unwrap();
        assert_eq!((s.name, s.value), ("x", 2.0));
    }
}
