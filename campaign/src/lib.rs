//! `modelsguard live campaign <scenario>`: a whole node validation as one resumable command.
//!
//! For each variant of the scenario: start its engines and the LB (`live up`), run a short
//! calibration load per model (a built-in closed-loop ladder, see [`ladder`]), run the scenario's
//! own request stream (`live run`), stop the engines (`live down`). Then fit a profile per
//! (model, GPU, engine) from the calibration runs (`calibrate`), replay each variant's live run
//! through the simulator with those profiles (`validate`), and write one report comparing
//! simulated and measured runs of every variant, plus `summary.md` with the validation tables and
//! the measured against predicted difference of every variant from the first.
//!
//! Everything lands under one campaign dir (see [`Layout`]). A step is finished when its marker
//! file (`state/<step>.json`, written atomically after the step) exists and every output it lists
//! is still there; a rerun skips finished steps, so a campaign resumes after a failure or Ctrl-C.
//! A step reruns when a step it depends on ran again. `campaign.json` records the settings; a
//! rerun with other settings is refused (or starts over with `fresh`).
//!
//! This crate only sequences the library functions of `live` (launcher, run), `calibration`
//! (calibrate, validate) and `reports`; it measures, fits and draws nothing itself.

#![deny(missing_docs)]

mod engines;
mod error;
mod executor;
mod interrupt;
pub mod ladder;
mod layout;
mod plan;
mod progress;
pub mod quick;
mod state;
mod summary;

pub use error::CampaignError;
pub use executor::{CampaignReport, run_campaign};
pub use interrupt::{Interrupt, InterruptHandle, interrupt_pair};
pub use layout::Layout;

use sim::scenario::Override;
use std::path::PathBuf;
use std::time::Duration;

/// What `live campaign` is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// `--set` overrides (and `seed=N` for `--seed`), applied to every step that loads the file.
    pub overrides: Vec<Override>,
    /// Only these variants, in this order (empty: every variant, in file order).
    pub variants: Vec<String>,
    /// The campaign dir.
    pub out: PathBuf,
    /// `--quick F`: scale the scenario's phase lengths and the calibration ladder by `F` in (0, 1]
    /// for a dry run (see [`quick`] and [`ladder`]).
    pub quick: Option<f64>,
    /// Serve every instance with `<exe> emulate` (this modelsguard executable) instead of the
    /// scenario's launch command: a dry run without GPUs.
    pub emulate: Option<PathBuf>,
    /// Forget finished steps and the recorded settings; start over.
    pub fresh: bool,
    /// Host the engines listen on.
    pub engine_host: String,
    /// Longest wait for every engine's `/health`.
    pub health_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when engines are stopped.
    pub grace: Duration,
    /// Also write `tokens.csv` for the scenario runs (calibration runs always do).
    pub tokens: bool,
    /// Print progress lines on stderr (they always go to `campaign.log`).
    pub progress: bool,
}

impl CampaignOptions {
    /// Campaign of `scenario` into the campaign dir `out`. Defaults: every variant, full length,
    /// the scenario's launch commands, 20 min health timeout, 30 s grace, progress on stderr.
    pub fn new(scenario: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        CampaignOptions {
            scenario: scenario.into(),
            overrides: Vec::new(),
            variants: Vec::new(),
            out: out.into(),
            quick: None,
            emulate: None,
            fresh: false,
            engine_host: "127.0.0.1".into(),
            health_timeout: Duration::from_secs(1200),
            grace: Duration::from_secs(30),
            tokens: false,
            progress: true,
        }
    }
}
