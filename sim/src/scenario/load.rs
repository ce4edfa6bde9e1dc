//! Loading a scenario file: TOML text -> value tree -> per-variant overrides -> typed -> resolved.
//!
//! For each variant (file order; one named `"default"` without `[variants]`), the base tree is
//! copied, the variant's `set` overrides are applied, then the command line's (which win), then the
//! tree is deserialized into the schema with field paths on error and resolved. Variants therefore
//! share everything they do not set — the workload in particular. This module does no validation
//! of its own beyond variant names and override placement.

use super::error::{Ctx, ScenarioError, quoted_list};
use super::overrides::{Override, apply, top_level_key, touches};
use super::raw::{RawFile, RawVariant};
use super::resolve::{VariantInfo, resolve};
use super::types::Scenario;
use std::path::{Path, PathBuf};

/// A scenario file resolved into one `Scenario` per variant.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioFile {
    /// Scenario name (`name` in the file, else the file stem).
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// Directory relative paths in the file are resolved against (the file's directory).
    pub base_dir: PathBuf,
    /// The variants in file order; one named `"default"` when the file has no `[variants]`.
    pub variants: Vec<Scenario>,
}

impl ScenarioFile {
    /// The variant called `name`; the error lists the available names.
    pub fn variant(&self, name: &str) -> Result<&Scenario, ScenarioError> {
        self.variants.iter().find(|v| v.variant == name).ok_or_else(|| {
            ScenarioError::new(
                &self.path,
                "--variant",
                format!(
                    "no variant \"{name}\" in this scenario; available: {}",
                    quoted_list(self.variants.iter().map(|v| v.variant.as_str()))
                ),
            )
        })
    }
}

/// Reads, resolves and validates the scenario file at `path`, applying `overrides` (`--set`) to
/// every variant after the variant's own `set`.
pub fn load_scenario(path: &Path, overrides: &[Override]) -> Result<ScenarioFile, ScenarioError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ScenarioError::new(path, "(file)", format!("cannot read the scenario file: {e}")))?;
    parse_scenario(&text, path, overrides)
}

/// Like [`load_scenario`] with the text given; `path` is used for messages, the default name and
/// as the base for relative paths in the file.
pub fn parse_scenario(
    text: &str,
    path: &Path,
    overrides: &[Override],
) -> Result<ScenarioFile, ScenarioError> {
    parse_variants(text, path, overrides).map(|(file, _)| file)
}

/// One variant as the loader read it: the schema after its overrides, and the overrides applied
/// (each with where it came from), which errors about the fields they set mention.
pub(crate) struct ParsedVariant {
    /// The typed file after the variant's `set` and the command line's overrides.
    pub raw: RawFile,
    /// The overrides applied, in order, with their origin (`--set ...`, `variant ... set ...`).
    pub applied: Vec<(Override, String)>,
}

/// [`parse_scenario`], also returning each variant's [`ParsedVariant`] (in variant order).
pub(crate) fn parse_variants(
    text: &str,
    path: &Path,
    overrides: &[Override],
) -> Result<(ScenarioFile, Vec<ParsedVariant>), ScenarioError> {
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let ctx = Ctx { file: path, base_dir: &base_dir };
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut root: toml::Table = text.parse().map_err(|e: toml::de::Error| syntax_error(ctx, text, &e))?;
    let variants = take_variants(ctx, text, &mut root)?;
    for ov in overrides {
        if top_level_key(&ov.path).as_deref() == Some("variants") {
            return Err(ctx.err(
                &ov.path,
                "--set cannot change [variants]; choose a variant with --variant and set fields directly",
            ));
        }
    }
    let mut base = root.clone();
    let cli: Vec<(Override, String)> = overrides.iter().map(|o| (o.clone(), format!("--set {o}"))).collect();
    apply_all(ctx, &mut base, &cli)?;

    let mut scenarios = Vec::with_capacity(variants.len());
    let mut parsed = Vec::with_capacity(variants.len());
    for variant in &variants {
        let mut tree = root.clone();
        let mut applied: Vec<(Override, String)> =
            variant.set.iter().map(|o| (o.clone(), format!("variant `{}` set {o}", variant.name))).collect();
        applied.extend(cli.iter().cloned());
        apply_all(ctx, &mut tree, &applied)?;
        let info = VariantInfo {
            name: &variant.name,
            description: variant.description.as_deref(),
            default_name: &stem,
        };
        let raw = typed(ctx, tree).map_err(|e| annotate(ctx, e, &applied))?;
        let scenario = resolve(ctx, &raw, &info).map_err(|e| annotate(ctx, e, &applied))?;
        scenarios.push(scenario);
        parsed.push(ParsedVariant { raw, applied });
    }
    // It names the output dir (`results/<name>/<variant>`): checked as each variant's is.
    let name = match base.get("name").and_then(|v| v.as_str()) {
        Some(n) => {
            super::resolve::check_scenario_name(ctx, n)?;
            n.to_string()
        }
        None => super::resolve::safe_file_name(&stem),
    };
    Ok((ScenarioFile { name, path: path.to_path_buf(), base_dir, variants: scenarios }, parsed))
}

/// One `[variants.NAME]` entry, ready to apply.
struct Variant {
    name: String,
    description: Option<String>,
    set: Vec<Override>,
}

/// Removes `[variants]` from the tree and returns the variants in file order (or `"default"`).
fn take_variants(ctx: Ctx<'_>, text: &str, root: &mut toml::Table) -> Result<Vec<Variant>, ScenarioError> {
    let default = || vec![Variant { name: "default".into(), description: None, set: Vec::new() }];
    let Some(value) = root.remove("variants") else { return Ok(default()) };
    let toml::Value::Table(table) = value else {
        return Err(ctx.err("variants", "must be a table of [variants.NAME] entries"));
    };
    if table.is_empty() {
        return Ok(default());
    }
    let order = variant_order(text);
    let mut names: Vec<&String> = table.keys().collect();
    names.sort_by_key(|n| (order.iter().position(|o| o == *n).unwrap_or(usize::MAX), (*n).clone()));
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let field = format!("variants.{name}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(ctx.err(&field, "variant names may use only letters, digits, `-`, `_` and `.`"));
        }
        let value = table.get(name).cloned().unwrap_or(toml::Value::Table(toml::Table::new()));
        let raw: RawVariant = serde_path_to_error::deserialize(value)
            .map_err(|e| ctx.err(join_field(&field, &e.path().to_string()), e.inner().message()))?;
        let set = raw.set.into_iter().map(|(path, value)| Override::new(path, value)).collect();
        out.push(Variant { name: name.clone(), description: raw.description, set });
    }
    Ok(out)
}

/// Variant names in the order they appear in the text (the value tree sorts its keys).
fn variant_order(text: &str) -> Vec<String> {
    let Ok(doc) = toml::de::DeTable::parse(text) else { return Vec::new() };
    let Some(variants) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == "variants").map(|(_, v)| v) else {
        return Vec::new();
    };
    let Some(table) = variants.get_ref().as_table() else { return Vec::new() };
    let mut keyed: Vec<(usize, String)> =
        table.iter().map(|(k, _)| (k.span().start, k.get_ref().to_string())).collect();
    keyed.sort();
    keyed.into_iter().map(|(_, k)| k).collect()
}

fn apply_all(
    ctx: Ctx<'_>,
    tree: &mut toml::Table,
    overrides: &[(Override, String)],
) -> Result<(), ScenarioError> {
    for (ov, origin) in overrides {
        apply(tree, ov).map_err(|reason| ctx.err(&ov.path, format!("{reason} (from {origin})")))?;
    }
    Ok(())
}

/// Deserializes the edited tree into the schema; errors carry the field path (and the instance
/// index, for a field of one `[[instances]]` entry).
fn typed(ctx: Ctx<'_>, tree: toml::Table) -> Result<RawFile, ScenarioError> {
    use serde_path_to_error::Segment;
    serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
        let err = ctx.err(join_field("", &e.path().to_string()), e.inner().message());
        let mut path = e.path().iter();
        match (path.next(), path.next()) {
            (Some(Segment::Map { key }), Some(&Segment::Seq { index })) if key == "instances" => {
                err.about_instance(index)
            }
            _ => err,
        }
    })
}

/// Adds which override set a field to an error about it.
pub(crate) fn annotate(ctx: Ctx<'_>, mut e: ScenarioError, applied: &[(Override, String)]) -> ScenarioError {
    if e.file != ctx.file {
        return e;
    }
    let origins: Vec<&str> = applied
        .iter()
        .filter(|(o, _)| touches(&o.path, &e.field))
        .map(|(_, origin)| origin.as_str())
        .collect();
    if !origins.is_empty() {
        e.reason = format!("{} (from {})", e.reason, origins.join("; "));
    }
    e
}

/// `prefix` + a serde path (`.` for the root) as one dotted field name.
fn join_field(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path == "." || path.is_empty()) {
        (true, true) => "(top level)".to_string(),
        (true, false) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

fn syntax_error(ctx: Ctx<'_>, text: &str, e: &toml::de::Error) -> ScenarioError {
    let field = match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            format!("line {line}, column {col}")
        }
        None => "(toml)".to_string(),
    };
    ctx.err(field, format!("TOML syntax error: {}", e.message().trim()))
}
