//! Dispatch of `import`: load the scenario variant, run the library import and print what it
//! returns. No parsing of export files happens here.

use crate::cli::{ImportArgs, ImportFormatArg, OneVariantArgs, ScenarioFileArgs};
use anyhow::{Context, Result};
use live::import::{ImportFormat, ImportOptions, import_export};
use sim::metrics::table::variant_table;

/// `modelsguard import`.
pub fn import(a: ImportArgs) -> Result<()> {
    let args = OneVariantArgs {
        file: ScenarioFileArgs { scenario: a.scenario, overrides: a.overrides, seed: None },
        variant: a.variant,
    };
    let (_, scenario) = crate::live_commands::load_one(&args)?;
    let opts = ImportOptions {
        format: a.format.map(|f| match f {
            ImportFormatArg::GenaiPerf => ImportFormat::GenaiPerf,
            ImportFormatArg::Aiperf => ImportFormat::Aiperf,
        }),
        model: a.model,
    };
    let rep = import_export(&a.export, &scenario, &a.out, &opts)
        .with_context(|| format!("importing {}", a.export.display()))?;
    println!("{}", variant_table(&rep.summary));
    println!(
        "imported {} requests from the {} export {} ({}); run dir {}",
        rep.requests,
        rep.format,
        a.export.display(),
        rep.load,
        rep.run_dir.display()
    );
    for n in &rep.notes {
        println!("  - {n}");
    }
    Ok(())
}
