use std::process::ExitCode;

use anyhow::Result;

use crate::cli::CancelArgs;
use crate::common;

pub fn cancel(args: CancelArgs, quiet: bool) -> Result<ExitCode> {
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        let sweep = store.resolve_sweep(args.sweep.as_deref()).await?;
        let cancelled = store.cancel(Some(&sweep)).await?;
        if !quiet {
            crate::outln!(
                "sweep {sweep}: cancelled {cancelled} queued job(s); jobs already running finish; \
                 `lifesweep retry {sweep} --cancelled` queues them again"
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
