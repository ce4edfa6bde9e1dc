//! The factors of an explanation: the `set` keys whose values differ between the *from* and the
//! *to* variant, each with its value on either side.
//!
//! A variant's value of a key is its own `set` entry, else the base file's value at that path. A
//! key both sides give the same value is not a factor (the seed's `router.poll_interval_s`: the
//! managed variant sets 1.0, which the base file already holds). The *to* side is another variant
//! or the *from* variant plus `--to-set` overrides. Keys the command line's `--set` touches, keys
//! nested in one another, and keys one side leaves to the schema's default are refused with what
//! to write instead: each factor must be switchable by one override with an explicit value. This
//! module reads TOML only; it runs nothing.

use super::ExplainError;
use crate::scenario::Override;
use std::path::Path;

/// One setting that differs between the two variants.
#[derive(Clone, Debug, PartialEq)]
pub struct Factor {
    /// The `set` key (dotted field path), e.g. `defaults.engine.enable_prefix_caching`.
    pub path: String,
    /// Its value in the *from* variant.
    pub from: toml::Value,
    /// Its value in the *to* variant.
    pub to: toml::Value,
}

impl Factor {
    /// `path: from -> to`, for tables and messages.
    pub fn describe(&self) -> String {
        format!("{}: {} -> {}", self.path, self.from, self.to)
    }
}

/// What the explanation goes to.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Another variant of the file.
    Variant(String),
    /// The *from* variant with these overrides (`--to-set`).
    Sets(Vec<Override>),
}

/// The factors between variant `from` and `to` of the scenario `text` (read from `path`), in the
/// order their keys appear in the *to* side's `set` (then the *from* side's), with `cli` the
/// `--set` overrides every run gets.
pub fn factors(
    text: &str,
    path: &Path,
    from: &str,
    to: &Target,
    cli: &[Override],
) -> Result<Vec<Factor>, ExplainError> {
    let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ExplainError::Spec(format!("{}: TOML syntax error: {}", path.display(), e.message().trim()))
    })?;
    let from_set = variant_set(&root, path, from)?;
    let to_set: Vec<(String, toml::Value)> = match to {
        Target::Variant(name) => variant_set(&root, path, name)?,
        Target::Sets(overrides) => {
            let mut set = from_set.clone();
            for o in overrides {
                set.retain(|(k, _)| *k != o.path);
                set.push((o.path.clone(), o.value.clone()));
            }
            set
        }
    };
    let to_name = match to {
        Target::Variant(name) => format!("variant `{name}`"),
        Target::Sets(_) => "--to-set".to_string(),
    };
    let mut keys: Vec<&String> = to_set.iter().map(|(k, _)| k).collect();
    for (k, _) in &from_set {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let value_of = |set: &[(String, toml::Value)], key: &str| {
        set.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).or_else(|| lookup(&root, key))
    };
    let mut out: Vec<Factor> = Vec::new();
    for key in keys {
        let (a, b) = (value_of(&from_set, key), value_of(&to_set, key));
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (a, _) => {
                let side = if a.is_none() { format!("variant `{from}`") } else { to_name.clone() };
                return Err(ExplainError::Spec(format!(
                    "{}: {side} leaves `{key}` to its default, so explain cannot switch it with an \
                     override: write its value in the base file (or in that variant's `set`)",
                    path.display()
                )));
            }
        };
        if same(&a, &b) {
            continue;
        }
        if let Some(o) = cli.iter().find(|o| nested(&o.path, key)) {
            return Err(ExplainError::Spec(format!(
                "--set {o} also sets `{key}`, which differs between the two variants: every run would \
                 get the --set value and the factor would explain nothing; drop that --set"
            )));
        }
        out.push(Factor { path: key.clone(), from: a, to: b });
    }
    for (i, f) in out.iter().enumerate() {
        if let Some(g) = out[..i].iter().find(|g| nested(&g.path, &f.path)) {
            return Err(ExplainError::Spec(format!(
                "the differing keys `{}` and `{}` overlap (one holds the other), so switching one \
                 alone is not defined: set the inner field in both variants instead of the table",
                g.path, f.path
            )));
        }
    }
    Ok(out)
}

/// The `set` table of variant `name`, in file order of its keys as the TOML tree gives them.
fn variant_set(
    root: &toml::Table,
    path: &Path,
    name: &str,
) -> Result<Vec<(String, toml::Value)>, ExplainError> {
    let variants = root.get("variants").and_then(toml::Value::as_table);
    let Some(v) = variants.and_then(|t| t.get(name)) else {
        let names: Vec<String> =
            variants.map(|t| t.keys().map(|k| format!("\"{k}\"")).collect()).unwrap_or_default();
        return Err(ExplainError::Spec(format!(
            "{}: no variant \"{name}\"; available: {}",
            path.display(),
            if names.is_empty() { "none (the file has no [variants])".into() } else { names.join(", ") }
        )));
    };
    let set = v.get("set").and_then(toml::Value::as_table).cloned().unwrap_or_default();
    Ok(set.into_iter().collect())
}

/// The value at dotted `key` in `root` (segments may be quoted; digits index arrays).
fn lookup(root: &toml::Table, key: &str) -> Option<toml::Value> {
    let mut current = toml::Value::Table(root.clone());
    for seg in segments(key) {
        current = match current {
            toml::Value::Table(mut t) => t.remove(&seg)?,
            toml::Value::Array(mut a) => {
                let i: usize = seg.parse().ok()?;
                (i < a.len()).then(|| a.swap_remove(i))?
            }
            _ => return None,
        };
    }
    Some(current)
}

/// Splits a dotted path on dots outside double quotes, unquoting the segments.
fn segments(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in key.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Whether paths `a` and `b` are the same field or one holds the other.
fn nested(a: &str, b: &str) -> bool {
    let (sa, sb) = (segments(a), segments(b));
    let n = sa.len().min(sb.len());
    sa[..n] == sb[..n]
}

/// Equal values, with an integer equal to the same float (`1` and `1.0`).
fn same(a: &toml::Value, b: &toml::Value) -> bool {
    match (a, b) {
        (toml::Value::Integer(i), toml::Value::Float(f))
        | (toml::Value::Float(f), toml::Value::Integer(i)) => *i as f64 == *f,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[router]
policy = "round_robin"
poll_interval_s = 1.0
[workload]
x = 1
[variants.a]
set = { "router.policy" = "round_robin", "defaults.engine.kv_cache" = "static" }
[variants.b]
set = { "router.policy" = "queue_aware", "router.poll_interval_s" = 1, "defaults.engine.kv_cache" = "elastic" }
"#;

    fn run(to: Target, cli: &[Override]) -> Result<Vec<Factor>, ExplainError> {
        factors(TEXT, Path::new("s.toml"), "a", &to, cli)
    }

    #[test]
    fn keys_with_equal_values_on_both_sides_are_not_factors() {
        let f = run(Target::Variant("b".into()), &[]).unwrap();
        let paths: Vec<&str> = f.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths.contains(&"router.policy") && paths.contains(&"defaults.engine.kv_cache"));
        let p = f.iter().find(|f| f.path == "router.policy").unwrap();
        assert_eq!(p.describe(), "router.policy: \"round_robin\" -> \"queue_aware\"");
    }

    #[test]
    fn to_set_overrides_the_from_variant() {
        let o: Override = "router.poll_interval_s=2.5".parse().unwrap();
        let f = run(Target::Sets(vec![o]), &[]).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].from, toml::Value::Float(1.0));
        assert_eq!(f[0].to, toml::Value::Float(2.5));
    }

    #[test]
    fn unusable_keys_are_refused_with_what_to_do() {
        let o: Override = "workload.y=3".parse().unwrap();
        let e = run(Target::Sets(vec![o]), &[]).unwrap_err().to_string();
        assert!(e.contains("variant `a` leaves `workload.y` to its default"), "{e}");
        let cli: Override = "router=\"x\"".parse().unwrap();
        let e = run(Target::Variant("b".into()), &[cli]).unwrap_err().to_string();
        assert!(e.contains("drop that --set"), "{e}");
        let e = run(Target::Variant("zz".into()), &[]).unwrap_err().to_string();
        assert!(e.contains("no variant \"zz\"") && e.contains("\"b\""), "{e}");
    }
}
