//! Readers for workload inputs kept outside the scenario file: the seed benchmark's
//! custom-workload JSON (`benchmark/run.py --workload custom.json`) turned into one phase, and a
//! CSV column of observed lengths for `LengthDist::Empirical`. No tokenizer is involved.

use super::error::WorkloadError;
use crate::ids::ModelId;
use crate::scenario::{ArrivalSpec, LengthDist, PhaseSpec};
use serde::Deserialize;
use std::path::Path;

/// The seed's custom workload file: `{"models": [...served names...], "prompts": [...],
/// "max_tokens_range": [lo, hi], "temperature_range": [lo, hi]}`.
#[derive(Deserialize)]
struct CustomWorkload {
    models: Vec<String>,
    prompts: Vec<String>,
    max_tokens_range: (u32, u32),
    /// Read for completeness; sampling temperature does not change load when outputs are forced
    /// to `max_tokens` with `ignore_eos`, so it is not used.
    #[serde(default)]
    #[allow(dead_code)]
    temperature_range: Option<(f64, f64)>,
}

/// Converts the seed benchmark's custom-workload JSON into one closed-loop phase of
/// `num_requests` requests, as `benchmark/run.py --workload FILE --num-requests N --concurrency C`
/// runs it:
/// - mix: uniform over the file's `models`, matched against `served_names` (the scenario's
///   `ModelSpec::served_name`, indexed by `ModelId`); an unknown name is an error;
/// - prompt lengths: `Empirical` over the prompts' token estimates, characters / 4 rounded up
///   (at least 1) — no tokenizer is run, so this is an estimate (~4 characters per token for
///   English with Llama/Qwen tokenizers);
/// - output lengths: `Uniform` over `max_tokens_range`;
/// - `temperature_range` is ignored: with `ignore_eos` every request generates `max_tokens`
///   tokens, so temperature does not change the load;
/// - arrivals: closed loop with `concurrency` clients per model. The file has no request rate,
///   so without a concurrency there is no way to pace it and this is an error.
pub fn phase_from_custom_json(
    path: &Path,
    served_names: &[String],
    num_requests: u64,
    concurrency: Option<u32>,
) -> Result<PhaseSpec, WorkloadError> {
    let file_err = |reason: String| WorkloadError::File { path: path.into(), reason };
    let text =
        std::fs::read_to_string(path).map_err(|source| WorkloadError::Io { path: path.into(), source })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let w: CustomWorkload = serde_path_to_error::deserialize(de).map_err(|e| {
        file_err(format!(
            "{e} (at {}); expected {{\"models\": [..], \"prompts\": [..], \"max_tokens_range\": [lo, hi]}}",
            e.path()
        ))
    })?;
    let concurrency = concurrency.ok_or_else(|| {
        file_err(
            "a custom workload has no request rate; pass a concurrency (closed loop, as --concurrency)"
                .into(),
        )
    })?;
    if concurrency == 0 {
        return Err(file_err("concurrency must be >= 1".into()));
    }
    if num_requests == 0 {
        return Err(file_err("num_requests must be >= 1".into()));
    }
    if w.models.is_empty() {
        return Err(file_err("\"models\" is empty; list at least one served model name".into()));
    }
    if w.prompts.is_empty() {
        return Err(file_err("\"prompts\" is empty; list at least one prompt".into()));
    }
    let (lo, hi) = w.max_tokens_range;
    if lo == 0 || lo > hi {
        return Err(file_err(format!("max_tokens_range [{lo}, {hi}] must satisfy 1 <= lo <= hi")));
    }
    let mut mix: Vec<(ModelId, f64)> = Vec::with_capacity(w.models.len());
    for name in &w.models {
        let i = served_names.iter().position(|s| s == name).ok_or_else(|| {
            file_err(format!("model {name:?} is not served by this scenario (served: {served_names:?}); fix the name or add the model"))
        })?;
        if mix.iter().any(|m| m.0.index() == i) {
            return Err(file_err(format!("model {name:?} is listed twice")));
        }
        mix.push((ModelId(i as u32), 1.0));
    }
    let values = w.prompts.iter().map(|p| prompt_tokens_estimate(p)).collect();
    Ok(PhaseSpec {
        name: path.file_stem().map_or_else(|| "custom".into(), |s| s.to_string_lossy().into_owned()),
        duration_s: None,
        num_requests: Some(num_requests),
        arrival: ArrivalSpec::closed_loop(concurrency),
        mix,
        input_tokens: LengthDist::Empirical {
            source: format!("{} prompts (characters / 4)", path.display()),
            values,
        },
        output_tokens: LengthDist::Uniform { min: lo, max: hi },
        per_model_lengths: Vec::new(),
    })
}

/// Token estimate of a prompt without a tokenizer: characters / 4, rounded up, at least 1.
fn prompt_tokens_estimate(prompt: &str) -> u32 {
    let chars = u32::try_from(prompt.chars().count()).unwrap_or(u32::MAX);
    chars.div_ceil(4).max(1)
}

/// Reads one column of a CSV file (with a header row) as token lengths for
/// `LengthDist::Empirical`. Values must be whole numbers >= 0 (a float with no fractional part,
/// such as `128.0`, is accepted); errors name the file and line.
pub fn load_empirical_column(path: &Path, column: &str) -> Result<Vec<u32>, WorkloadError> {
    let file = std::fs::File::open(path).map_err(|source| WorkloadError::Io { path: path.into(), source })?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
    let csv_err = |e: csv::Error| WorkloadError::File { path: path.into(), reason: e.to_string() };
    let headers = reader.headers().map_err(csv_err)?.clone();
    let idx = headers.iter().position(|h| h == column).ok_or_else(|| WorkloadError::File {
        path: path.into(),
        reason: format!("no column {column:?}; the columns are {:?}", headers.iter().collect::<Vec<_>>()),
    })?;
    let mut values = Vec::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_err)? {
        let line = record.position().map_or(0, |p| p.line());
        let cell = record.get(idx).unwrap_or("");
        let v = parse_length(cell).ok_or_else(|| WorkloadError::Line {
            path: path.into(),
            line,
            reason: format!("{column} {cell:?} is not a whole number of tokens"),
        })?;
        values.push(v);
    }
    if values.is_empty() {
        return Err(WorkloadError::File {
            path: path.into(),
            reason: format!("column {column:?} has no values"),
        });
    }
    Ok(values)
}

fn parse_length(cell: &str) -> Option<u32> {
    cell.parse::<u32>().ok().or_else(|| {
        let f = cell.parse::<f64>().ok()?;
        (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= f64::from(u32::MAX)).then_some(f as u32)
    })
}
