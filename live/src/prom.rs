//! A Prometheus text-format reader for the few vLLM `/metrics` series the harness needs.
//!
//! It reads `vllm:num_requests_running`, `vllm:num_requests_waiting`, the KV-cache usage gauge
//! under both of its names (`vllm:gpu_cache_usage_perc` in 0.6.4..0.11,
//! `vllm:kv_cache_usage_perc` from 0.9.2) and `vllm:num_preemptions_total`, with labels in any
//! order (`{model_name}` in 0.6.4, `{model_name, engine}` in V1). Comments, other metrics,
//! `_created` samples and lines it cannot parse are skipped: a scrape never fails on content.
//! It is a pure function of the text; fetching is `scrape`'s job.

/// The vLLM gauges and counters of one scrape; `None` when the series was absent.
///
/// When several series of one metric are present (several engines behind one server, or several
/// `model_name`s), counts are summed and KV usage is the largest, so "busy" is never understated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VllmMetrics {
    /// `vllm:num_requests_running`.
    pub num_requests_running: Option<f64>,
    /// `vllm:num_requests_waiting`.
    pub num_requests_waiting: Option<f64>,
    /// `vllm:kv_cache_usage_perc`, else `vllm:gpu_cache_usage_perc`: a fraction in [0, 1].
    pub kv_cache_usage: Option<f64>,
    /// `vllm:num_preemptions_total`.
    pub num_preemptions_total: Option<f64>,
}

/// The metric a sample line belongs to, if it is one we read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Series {
    Running,
    Waiting,
    KvUsage,
    GpuCacheUsage,
    Preemptions,
}

fn series_of(name: &str) -> Option<Series> {
    Some(match name {
        "vllm:num_requests_running" => Series::Running,
        "vllm:num_requests_waiting" => Series::Waiting,
        "vllm:kv_cache_usage_perc" => Series::KvUsage,
        "vllm:gpu_cache_usage_perc" => Series::GpuCacheUsage,
        "vllm:num_preemptions_total" => Series::Preemptions,
        _ => return None,
    })
}

/// One parsed sample: metric name, labels (unescaped) and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Label pairs in file order.
    pub labels: Vec<(&'a str, String)>,
    /// The value (`NaN`, `+Inf` allowed).
    pub value: f64,
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// Parses one sample line (`name{l="v",...} value [timestamp]`); `None` for comments, blank and
/// malformed lines.
pub fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end =
        line.char_indices().find(|&(i, c)| !is_name_char(c, i == 0)).map_or(line.len(), |(i, _)| i);
    if name_end == 0 {
        return None;
    }
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let (l, after) = parse_labels(r)?;
        labels = l;
        rest = after;
    }
    // The value must be separated from name/labels by whitespace; a timestamp may follow.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut parts = rest.split_whitespace();
    let value = parse_value(parts.next()?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Sample { name, labels, value })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse::<f64>().ok(),
    }
}

/// Parses `l1="v1",l2="v2"}` (after the `{`); returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().enumerate().all(|(i, c)| is_name_char(c, i == 0) && c != ':') {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// Reads the vLLM series from a `/metrics` body. Never fails: what is missing or unreadable is
/// `None`. Non-finite values, and samples whose sum would not be finite, are ignored.
pub fn parse_vllm_metrics(text: &str) -> VllmMetrics {
    let mut m = VllmMetrics::default();
    let mut gpu_cache: Option<f64> = None;
    for line in text.lines() {
        let Some(sample) = parse_sample(line) else { continue };
        let Some(series) = series_of(sample.name) else { continue };
        let v = sample.value;
        if !v.is_finite() {
            continue;
        }
        // A sum that overflows (engines reporting 1e308 each) is no count: that sample is dropped,
        // so every field stays finite.
        let add = |slot: &mut Option<f64>| {
            let sum = slot.unwrap_or(0.0) + v;
            if sum.is_finite() {
                *slot = Some(sum);
            }
        };
        let max = |slot: &mut Option<f64>| *slot = Some(slot.map_or(v, |x| x.max(v)));
        match series {
            Series::Running => add(&mut m.num_requests_running),
            Series::Waiting => add(&mut m.num_requests_waiting),
            Series::Preemptions => add(&mut m.num_preemptions_total),
            Series::KvUsage => max(&mut m.kv_cache_usage),
            Series::GpuCacheUsage => max(&mut gpu_cache),
        }
    }
    m.kv_cache_usage = m.kv_cache_usage.or(gpu_cache);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_escapes_commas_and_braces_parse() {
        let s = parse_sample(r#"x{a="1,}\"q\\",b="two"} 3.5 1700000000"#).unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(s.labels, vec![("a", r#"1,}"q\"#.to_string()), ("b", "two".to_string())]);
        assert_eq!(s.value, 3.5);
    }

    #[test]
    fn malformed_lines_are_none() {
        for l in ["{a=\"1\"} 2", "x{a=1} 2", "x{a=\"1\" 2", "x 1 2 3", "x{a=\"1\"}2", "x abc", "# HELP x y"] {
            assert_eq!(parse_sample(l), None, "{l}");
        }
    }
}
