use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::RetryArgs;
use crate::common;

pub fn retry(args: RetryArgs, quiet: bool) -> Result<ExitCode> {
    if !args.failed && !args.cancelled {
        bail!("retry: say which jobs to re-queue: --failed, --cancelled, or both");
    }
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        let sweep = store.resolve_sweep(args.sweep.as_deref()).await?;
        let failed = if args.failed {
            store.retry_failed(Some(&sweep)).await?
        } else {
            0
        };
        let cancelled = if args.cancelled {
            store.uncancel(Some(&sweep)).await?
        } else {
            0
        };
        if !quiet {
            crate::outln!(
                "sweep {sweep}: re-queued {failed} failed and {cancelled} cancelled job(s); \
                 run them with `lifesweep resume {sweep} --db {}`",
                args.db.db
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
