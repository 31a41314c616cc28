use std::process::ExitCode;

use anyhow::{Context, Result};
use lifesweep_runner::{parse_device, run_worker, WorkerConfig};
use lifesweep_store::{Store, StoreError};

use crate::cli::WorkArgs;
use crate::common;

pub fn work(args: WorkArgs) -> Result<ExitCode> {
    // candle's CPU kernels size their thread pool from this variable; set it before any pool
    // exists. A scheduler already sets it for the workers it starts.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    }
    let device = parse_device(&args.device)?;
    device.open()?; // a build without CUDA fails here, before any job is claimed
    let device_label = match &args.device_label {
        Some(label) => parse_device(label)
            .with_context(|| format!("--device-label {label:?}"))?
            .label(),
        None => device.label(),
    };
    let heartbeat = common::heartbeat(args.heartbeat)?;
    let worker_id = args
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", lifesweep_runner::hostname(), std::process::id()));
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let stop = common::stop_on_signals()?;
        let store = common::open_store(&args.db.db).await?;
        let weights_dir = common::weights_dir(
            &args.db.db,
            args.weights.weights_dir.as_deref(),
            store.saves_weights(args.sweep.as_deref()).await?,
            args.sweep.as_deref(),
        )?;
        let fuse_seeds = match args.fuse_seeds {
            Some(k) => k as usize,
            None => default_fuse_seeds(&store, args.sweep.as_deref()).await?,
        };
        let config = WorkerConfig {
            worker_id,
            sweep: args.sweep.clone(),
            device,
            device_label,
            heartbeat,
            lease: heartbeat * 3,
            exit_when_idle: args.exit_when_idle,
            poll_interval: std::time::Duration::from_secs(2),
            weights_dir,
            max_jobs: args.max_jobs,
            fuse_seeds,
        };
        let summary = run_worker(&store, &config, stop).await?;
        Ok(if summary.stopped {
            ExitCode::from(common::EXIT_INTERRUPTED)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// The named sweep's `[sweep] fuse_seeds`; without a name, that of the database's only sweep,
/// or 1 when it holds several (or none yet).
async fn default_fuse_seeds(store: &Store, sweep: Option<&str>) -> Result<usize> {
    match store.resolve_sweep(sweep).await {
        Ok(name) => Ok(store.fuse_seeds(&name).await?),
        Err(StoreError::NoSweep | StoreError::AmbiguousSweep { .. }) => Ok(1),
        Err(e) => Err(e.into()),
    }
}
