//! Fit rows from a server's own step log (`steps.csv`): every step's measured duration and batch,
//! as the engine counted them. CUDA graphs: a graph step's padding (padded tokens minus scheduled
//! tokens) is charged like decodes; an eager step pays the eager cost on top; a step that captured
//! a new graph measured the capture, not a step, and is dropped (and counted).
//!
//! Not in the log: prefill attention pairs (the quadratic part of attention needs each request's
//! context), so `per_prefill_attn_pair_s` is not fitted from it.

use crate::dataset::ServerStepRow;
use crate::error::CalibrationError;
use crate::step::{StepFeatures, StepSample};
use std::collections::BTreeSet;
use std::path::Path;

/// Fit rows of one run's step log, with what was set aside.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogSamples {
    /// Usable steps.
    pub samples: Vec<StepSample>,
    /// Steps dropped because they captured a CUDA graph.
    pub captured: usize,
    /// Steps that scheduled nothing (dropped).
    pub empty: usize,
    /// Padded token counts seen on graph steps (the capture sizes in use).
    pub graph_sizes: BTreeSet<u32>,
    /// Graph steps and eager steps kept.
    pub graph_steps: usize,
    /// Eager steps kept.
    pub eager_steps: usize,
}

/// Turns the rows of `instances` in `rows` (from the file `path`, run index `run`) into fit rows.
pub fn samples_from_log(
    path: &Path,
    run: usize,
    rows: &[ServerStepRow],
    instances: &[String],
) -> Result<LogSamples, CalibrationError> {
    let mut out = LogSamples::default();
    for (line, r) in rows.iter().enumerate() {
        if !instances.contains(&r.instance) {
            continue;
        }
        let at = || format!("row {} (step {} of {})", line + 2, r.step, r.instance);
        if !(r.duration_s.is_finite() && r.duration_s >= 0.0) {
            return Err(CalibrationError::input(
                path,
                format!("{}: duration_s {} is not a duration in seconds", at(), r.duration_s),
            ));
        }
        if r.captured != 0 {
            out.captured += 1;
            continue;
        }
        let scheduled = r.num_prefill_tokens + r.num_decode_seqs;
        if r.num_scheduled_requests == 0 || scheduled == 0 || r.duration_s == 0.0 {
            out.empty += 1;
            continue;
        }
        let graph = r.cuda_graph != 0;
        let padding = if graph {
            if r.num_padded_tokens < scheduled {
                return Err(CalibrationError::input(
                    path,
                    format!(
                        "{}: num_padded_tokens {} is below the {} tokens scheduled; the log is \
                         inconsistent",
                        at(),
                        r.num_padded_tokens,
                        scheduled
                    ),
                ));
            }
            out.graph_sizes.insert(u32::try_from(r.num_padded_tokens).unwrap_or(u32::MAX));
            out.graph_steps += 1;
            r.num_padded_tokens - scheduled
        } else {
            out.eager_steps += 1;
            0
        };
        out.samples.push(StepSample {
            run,
            instance: r.instance.clone(),
            chain: (run as u64) << 40 | line as u64,
            duration_s: r.duration_s,
            features: StepFeatures {
                num_steps: 1,
                num_eager_steps: u32::from(!graph),
                num_scheduled_requests: r.num_scheduled_requests,
                num_prefill_tokens: r.num_prefill_tokens,
                num_decode_seqs: r.num_decode_seqs,
                num_padding_tokens: padding,
                num_kv_tokens_read: r.num_kv_tokens_read,
                num_prefill_attn_pairs: 0,
            },
        });
    }
    Ok(out)
}
