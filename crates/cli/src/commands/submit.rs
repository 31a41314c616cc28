use std::process::ExitCode;

use anyhow::Result;

use crate::cli::SubmitArgs;
use crate::common;

pub fn submit(args: SubmitArgs, quiet: bool) -> Result<ExitCode> {
    let (spec, text) = common::load_spec(&args.config)?;
    if args.dry_run {
        let axes: Vec<String> = spec
            .axes
            .iter()
            .map(|a| format!("{} ({} values)", a.key, a.values.len()))
            .collect();
        crate::outln!(
            "sweep {}: {} jobs over {}; dry run, nothing written",
            spec.name,
            spec.jobs().len(),
            if axes.is_empty() {
                "no grid axes".to_string()
            } else {
                axes.join(" x ")
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let store = common::open_store(&args.db.db).await?;
        let changes = common::changed_settings(&store, &spec).await?;
        let outcome = store.submit_sweep(&spec, &text, args.max_attempts).await?;
        if !quiet {
            crate::outln!(
                "sweep {}: {} jobs added, {} already present ({})",
                spec.name,
                outcome.added,
                outcome.existing,
                args.db.db
            );
            if !changes.is_empty() {
                crate::outln!(
                    "sweep {}: settings updated: {}",
                    spec.name,
                    changes.join(", ")
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
