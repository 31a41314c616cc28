//! `lifesweep status`: where a sweep stands, for a person watching it or a script.

use std::process::ExitCode;

use anyhow::{bail, Result};
use lifesweep_results::progress;

use crate::cli::StatusArgs;
use crate::common;

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    if !(args.window.is_finite() && args.window > 0.0) {
        bail!(
            "--window: expected a positive number of minutes, got {}",
            args.window
        );
    }
    let window_seconds = args.window * 60.0;
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        let sweep = store.resolve_sweep(args.sweep.as_deref()).await?;
        let counts = store.job_counts(Some(&sweep)).await?;
        let finished = store
            .recent_completions(Some(&sweep), window_seconds)
            .await?;
        let failures = store.failures(Some(&sweep)).await?;
        let axes: Vec<String> = store
            .sweeps()
            .await?
            .into_iter()
            .find(|s| s.name == sweep)
            .map(|s| s.axes)
            .unwrap_or_default();
        let progress = progress(&sweep, counts, finished, window_seconds, failures);
        crate::out!("{}", progress.render(args.format.into(), &axes)?);
        Ok(ExitCode::SUCCESS)
    })
}
