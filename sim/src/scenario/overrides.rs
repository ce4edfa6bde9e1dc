//! Overrides: `path=value` edits of the TOML value tree, applied before typed deserialization.
//!
//! One mechanism serves a variant's `set` table and the command line's `--set`, so both reach
//! exactly the fields the file can hold and both fail the same way on a field that does not exist
//! (the typed pass after the edit rejects unknown fields and names them). A path is dot-separated;
//! a segment is a table key, an array index (`phases.0`) or `*` (every element of an array or
//! every value of a table); a segment holding dots is quoted (`mix."llama-3.1-8b"`). Missing
//! tables on the way are created. The value keeps its TOML type. This module does not know the
//! schema.

use super::error::ScenarioError;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// One `path = value` edit of a scenario's TOML tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Dotted path, e.g. `workload.phases.0.arrival.rate` or `instances.*.engine.max_num_seqs`.
    pub path: String,
    /// The value to put there (replaces what was there, tables included).
    pub value: toml::Value,
}

impl Override {
    /// An override of `path` with `value`.
    pub fn new(path: impl Into<String>, value: toml::Value) -> Self {
        Self { path: path.into(), value }
    }

    /// Whether this override may set `field` (a field path such as `instances[0].engine.kv_cache`):
    /// one is a prefix of the other, segment by segment, `*` matching any segment.
    pub fn touches(&self, field: &str) -> bool {
        touches(&self.path, field)
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.path, self.value)
    }
}

/// Parses `path=value`: the value as a TOML value (number, bool, string, array, inline table),
/// and a bare word that is not valid TOML as a string (`router.policy=queue_aware`).
impl FromStr for Override {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ScenarioError::new(Path::new("--set"), s, reason);
        let Some((path, value)) = s.split_once('=') else {
            return Err(err("expected PATH=VALUE, e.g. router.policy=queue_aware".into()));
        };
        let path = path.trim();
        parse_path(path).map_err(|r| err(format!("bad path `{path}`: {r}")))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(err(format!("no value after `{path}=`")));
        }
        Ok(Override::new(path, parse_value(value).map_err(|r| err(format!("bad value for `{path}`: {r}")))?))
    }
}

/// A TOML value from override text. Bare words that are not a TOML value are taken as a string
/// (`router.policy=queue_aware`), but text that looks like a number, array, inline table or
/// quoted string must parse as one: `rate=1,5` or `mix=[1,2` is an error, not a string.
fn parse_value(text: &str) -> Result<toml::Value, String> {
    let doc = format!("v = {text}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) if t.len() == 1 => Ok(t.remove("v").unwrap_or_else(|| toml::Value::String(text.into()))),
        Ok(_) => Err(format!("`{text}` is more than one value; quote a string, e.g. '\"a b\"'")),
        Err(e) => {
            let structured = text.starts_with(['[', '{', '"', '\'']);
            let numeric = text.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c))
                && text.chars().all(|c| c.is_ascii_digit() || "+-._eE,:".contains(c));
            if structured || numeric {
                let what = if numeric { "a number" } else { "a TOML array, inline table or string" };
                let msg = e.message().trim().to_string();
                return Err(format!(
                    "`{text}` looks like {what} but does not parse ({msg}); write it in TOML syntax"
                ));
            }
            Ok(toml::Value::String(text.to_string()))
        }
    }
}

/// One step of an override path.
#[derive(Clone, Debug, PartialEq)]
enum Segment {
    /// Unquoted text: a table key, or an array index when it is all digits and meets an array.
    Bare(String),
    /// Quoted text: always a table key.
    Quoted(String),
    /// `*`: every element or value.
    Wildcard,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Bare(s) => f.write_str(s),
            Segment::Quoted(s) => write!(f, "\"{s}\""),
            Segment::Wildcard => f.write_str("*"),
        }
    }
}

/// Splits a dotted path into segments; the reason on error.
fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    let mut segments = Vec::new();
    let mut chars = path.chars().peekable();
    loop {
        let segment = match chars.peek() {
            Some('"') => {
                chars.next();
                let mut key = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => key.push(c),
                        None => return Err("a quoted segment is not closed".into()),
                    }
                }
                Segment::Quoted(key)
            }
            _ => {
                let mut key = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*') {
                        return Err(format!(
                            "`{c}` is not allowed in an unquoted segment (quote it: \"...\")"
                        ));
                    }
                    key.push(c);
                    chars.next();
                }
                match key.as_str() {
                    "" => return Err("a segment is empty (two dots in a row, or a dot at an end)".into()),
                    "*" => Segment::Wildcard,
                    k if k.contains('*') => {
                        return Err("`*` must be a whole segment".into());
                    }
                    _ => Segment::Bare(key),
                }
            }
        };
        segments.push(segment);
        match chars.next() {
            None => return Ok(segments),
            Some('.') => {}
            Some(c) => return Err(format!("expected `.` after a quoted segment, found `{c}`")),
        }
    }
}

/// The first segment of `path` (its top-level table), if the path parses.
pub(crate) fn top_level_key(path: &str) -> Option<String> {
    match parse_path(path).ok()?.into_iter().next()? {
        Segment::Bare(s) | Segment::Quoted(s) => Some(s),
        Segment::Wildcard => None,
    }
}

/// Applies `ov` to `root`; the reason on error (the caller names the file and origin).
pub(crate) fn apply(root: &mut toml::Table, ov: &Override) -> Result<(), String> {
    let segments = parse_path(&ov.path).map_err(|r| format!("bad path: {r}"))?;
    let mut matched = 0usize;
    set_in_table(root, &segments, &ov.value, "", &mut matched)?;
    if matched == 0 {
        return Err("`*` matched nothing: the array or table it ranges over is empty".into());
    }
    Ok(())
}

fn join(walked: &str, segment: &impl fmt::Display) -> String {
    if walked.is_empty() { segment.to_string() } else { format!("{walked}.{segment}") }
}

fn set_in_table(
    table: &mut toml::Table,
    segments: &[Segment],
    value: &toml::Value,
    walked: &str,
    matched: &mut usize,
) -> Result<(), String> {
    let Some((head, rest)) = segments.split_first() else {
        return Ok(());
    };
    let key = match head {
        Segment::Bare(k) | Segment::Quoted(k) => k,
        Segment::Wildcard => {
            for (k, v) in table.iter_mut() {
                set_in_value(v, rest, value, &join(walked, &Segment::Quoted(k.clone())), matched)?;
            }
            return Ok(());
        }
    };
    let here = join(walked, head);
    if rest.is_empty() {
        table.insert(key.clone(), value.clone());
        *matched += 1;
        return Ok(());
    }
    if !table.contains_key(key) {
        match &rest[0] {
            Segment::Bare(next) if next.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(format!("`{here}` does not exist, so `{next}` cannot index it"));
            }
            Segment::Wildcard => {
                return Err(format!("`{here}` does not exist, so `*` has nothing to range over"));
            }
            _ => {
                table.insert(key.clone(), toml::Value::Table(toml::Table::new()));
            }
        }
    }
    match table.get_mut(key) {
        Some(v) => set_in_value(v, rest, value, &here, matched),
        None => Err(format!("`{here}` does not exist")),
    }
}

fn set_in_value(
    target: &mut toml::Value,
    segments: &[Segment],
    value: &toml::Value,
    walked: &str,
    matched: &mut usize,
) -> Result<(), String> {
    if segments.is_empty() {
        *target = value.clone();
        *matched += 1;
        return Ok(());
    }
    match target {
        toml::Value::Table(t) => set_in_table(t, segments, value, walked, matched),
        toml::Value::Array(items) => {
            let (head, rest) = (&segments[0], &segments[1..]);
            match head {
                Segment::Wildcard => {
                    for (i, item) in items.iter_mut().enumerate() {
                        set_in_value(item, rest, value, &join(walked, &i), matched)?;
                    }
                    Ok(())
                }
                Segment::Bare(s) if s.bytes().all(|b| b.is_ascii_digit()) => {
                    let len = items.len();
                    let index = s.parse::<usize>().ok().filter(|&i| i < len).ok_or_else(|| {
                        format!("`{walked}` has {len} element(s), so index {s} is out of range")
                    })?;
                    set_in_value(&mut items[index], rest, value, &join(walked, head), matched)
                }
                _ => Err(format!("`{walked}` is an array: index it with a number or `*`, not `{head}`")),
            }
        }
        other => Err(format!("`{walked}` is a {}, so it has no `{}` inside", other.type_str(), segments[0])),
    }
}

/// Whether an error at `field` (a deserializer path such as `instances[2].engine.max_num_seqs`)
/// may have come from override `path`: one is a prefix of the other, segment by segment, with `*`
/// matching any segment.
pub(crate) fn touches(path: &str, field: &str) -> bool {
    let Ok(ov) = parse_path(path) else { return false };
    let field_segments: Vec<String> = field
        .replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if field_segments.is_empty() {
        return false;
    }
    ov.iter().zip(&field_segments).all(|(o, f)| match o {
        Segment::Wildcard => true,
        Segment::Bare(s) | Segment::Quoted(s) => s == f,
    })
}
