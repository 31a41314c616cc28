use std::process::ExitCode;

use anyhow::Result;

use crate::cli::ResumeArgs;
use crate::commands::run::{drive_sweep, placements, scheduler_config, worker_log_args};
use crate::common;

pub fn resume(args: ResumeArgs, quiet: bool, verbose: u8) -> Result<ExitCode> {
    // The devices are checked before the database is opened.
    let placements = placements(&args.pool)?;
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        let sweep = store.resolve_sweep(args.sweep.as_deref()).await?;
        let weights_dir = common::weights_dir(
            &args.db.db,
            args.pool.weights.weights_dir.as_deref(),
            store.saves_weights(Some(&sweep)).await?,
            Some(&sweep),
        )?;
        let config = scheduler_config(
            &args.pool,
            placements,
            weights_dir,
            &args.db.db,
            &sweep,
            store.fuse_seeds(&sweep).await?,
            worker_log_args(quiet, verbose),
        )?;
        let axes = store
            .sweeps()
            .await?
            .into_iter()
            .find(|s| s.name == sweep)
            .map(|s| s.axes)
            .unwrap_or_default();
        let group_keys = lifesweep_spec::group_keys_for(&axes);
        let stop = common::stop_on_signals()?;
        let resume_hint = format!("lifesweep resume {sweep} --db {}", args.db.db);
        drive_sweep(
            &store,
            &config,
            &group_keys,
            args.format,
            quiet,
            stop,
            &resume_hint,
        )
        .await
    })
}
