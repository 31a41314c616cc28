use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lifesweep_runner::{
    gpu_placements, parse_device, parse_device_list, requeue_dead_local_workers, run_scheduler,
    Placement, RunnerError, SchedulerConfig, SchedulerOutcome,
};
use lifesweep_store::{JobCounts, Store};

use crate::cli::{OutputFormat, PoolArgs, RunArgs};
use crate::commands::results::grid_table;
use crate::common;

pub fn run(args: RunArgs, quiet: bool, verbose: u8) -> Result<ExitCode> {
    // Everything the user gave is checked before the database is touched.
    let (spec, text) = common::load_spec(&args.config)?;
    let placements = placements(&args.pool)?;
    let weights_dir = common::weights_dir(
        &args.db.db,
        args.pool.weights.weights_dir.as_deref(),
        spec.jobs().iter().any(|job| job.params.save_weights),
        Some(&spec.name),
    )?;
    let config = scheduler_config(
        &args.pool,
        placements,
        weights_dir,
        &args.db.db,
        &spec.name,
        spec.fuse_seeds,
        worker_log_args(quiet, verbose),
    )?;
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let stop = common::stop_on_signals()?;
        let store = common::open_store(&args.db.db).await?;
        let changes = common::changed_settings(&store, &spec).await?;
        let submitted = store.submit_sweep(&spec, &text, args.max_attempts).await?;
        if !quiet && !changes.is_empty() {
            crate::say!(
                "sweep {}: settings updated: {}",
                spec.name,
                changes.join(", ")
            );
        }
        if !quiet {
            crate::say!(
                "sweep {}: {} jobs ({} new, {} already present) in {}",
                spec.name,
                submitted.added + submitted.existing,
                submitted.added,
                submitted.existing,
                args.db.db,
            );
        }
        let resume_hint = format!("lifesweep resume {} --db {}", spec.name, args.db.db);
        drive_sweep(
            &store,
            &config,
            &spec.group_keys(),
            args.format,
            quiet,
            stop,
            &resume_hint,
        )
        .await
    })
}

/// Where the workers run, from `--device` and `--workers` or from `--devices` and
/// `--workers-per-device`. Every device is opened once here, so a bad index or a build without
/// CUDA is an error at start, before any database is touched.
pub fn placements(pool: &PoolArgs) -> Result<Vec<Placement>> {
    let Some(list) = &pool.devices else {
        let device = parse_device(&pool.device)?;
        device.open()?;
        let workers = match pool.workers {
            Some(w) => w as usize,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        return Ok(vec![Placement::shared(device); workers]);
    };
    let flag = |error: RunnerError| match error {
        // The list's own complaint: name the flag instead of repeating the list.
        RunnerError::Device { spec, message } if spec == *list => {
            anyhow!("--devices {list:?}: {message}")
        }
        other => anyhow!("--devices {list:?}: {other}"),
    };
    let devices = parse_device_list(list).map_err(flag)?;
    let per_device = pool.workers_per_device.unwrap_or(1) as usize;
    let inherited = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let placements = gpu_placements(&devices, per_device, inherited.as_deref()).map_err(flag)?;
    for device in &devices {
        device.open().map_err(flag)?;
    }
    Ok(placements)
}

/// The log flags a scheduler passes on to its workers.
pub fn worker_log_args(quiet: bool, verbose: u8) -> Vec<String> {
    let mut args = Vec::new();
    if verbose > 0 {
        args.push(format!("-{}", "v".repeat(verbose as usize)));
    }
    if quiet {
        args.push("--quiet".to_string());
    }
    args
}

/// Checks the remaining pool flags and builds the scheduler's configuration.
pub fn scheduler_config(
    pool: &PoolArgs,
    placements: Vec<Placement>,
    weights_dir: Option<std::path::PathBuf>,
    db: &str,
    sweep: &str,
    default_fuse_seeds: usize,
    worker_args: Vec<String>,
) -> Result<SchedulerConfig> {
    let heartbeat = common::heartbeat(pool.heartbeat)?;
    if !(pool.grace.is_finite() && (0.0..=3600.0).contains(&pool.grace)) {
        bail!(
            "--grace: expected seconds between 0 and 3600, got {}",
            pool.grace
        );
    }
    let exe =
        std::env::current_exe().context("finding the lifesweep executable to start workers")?;
    Ok(SchedulerConfig {
        exe,
        db: db.to_string(),
        sweep: sweep.to_string(),
        placements,
        weights_dir,
        heartbeat,
        poll_interval: Duration::from_millis(250),
        grace: Duration::from_secs_f64(pool.grace),
        fuse_seeds: pool.fuse_seeds.map_or(default_fuse_seeds, |k| k as usize),
        worker_args,
    })
}

/// Runs a submitted sweep to the end (or to a stop request), prints its table and returns the
/// exit code: 0 all done, 1 some failed, 130 interrupted.
pub async fn drive_sweep(
    store: &Store,
    config: &SchedulerConfig,
    group_keys: &[String],
    format: OutputFormat,
    quiet: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    resume_hint: &str,
) -> Result<ExitCode> {
    let outcome = run_pool(store, config, quiet, stop).await?;
    let rows = store.runs(Some(&config.sweep)).await?;
    let mut table = grid_table(&rows, group_keys)?;
    if format == OutputFormat::Table {
        table = table.select(|c| !lifesweep_results::WIDE_ONLY_COLUMNS.contains(&c));
    }
    crate::out!("{}", table.render(format.into())?);
    Ok(exit_code(&outcome, resume_hint))
}

/// Takes back the jobs of this host's dead workers, then runs the scheduler with live
/// progress until the sweep's queue is empty or `stop` is set.
pub async fn run_pool(
    store: &Store,
    config: &SchedulerConfig,
    quiet: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<SchedulerOutcome> {
    let requeued = requeue_dead_local_workers(store).await?;
    if requeued > 0 && !quiet {
        crate::say!("re-queued {requeued} job(s) whose worker on this host is gone");
    }
    if !quiet {
        crate::say!("running with {}", describe_placements(&config.placements));
    }
    let mut progress = Progress::new(quiet);
    let outcome = run_scheduler(store, config, stop, |counts| progress.update(counts)).await?;
    progress.finish(&outcome.counts);
    Ok(outcome)
}

/// 0 all done, 1 some failed, 130 interrupted (saying how to continue).
pub fn exit_code(outcome: &SchedulerOutcome, resume_hint: &str) -> ExitCode {
    let counts = &outcome.counts;
    if outcome.interrupted {
        crate::say!(
            "interrupted: {} done, {} not yet run; continue with `{resume_hint}` (finished runs are kept)",
            counts.done,
            counts.queued + counts.running,
        );
        return ExitCode::from(common::EXIT_INTERRUPTED);
    }
    if counts.failed > 0 {
        crate::say!(
            "{} job(s) failed; see `lifesweep status` for their errors, `lifesweep retry --failed` to run them again",
            counts.failed
        );
        return ExitCode::from(common::EXIT_FAILED_JOBS);
    }
    ExitCode::SUCCESS
}

/// "2 worker(s) on cpu", or "4 worker(s): 2 on cuda:0, 2 on cuda:1".
fn describe_placements(placements: &[Placement]) -> String {
    let mut per_device: Vec<(String, usize)> = Vec::new();
    for placement in placements {
        let label = placement.device.label();
        match per_device.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => per_device.push((label, 1)),
        }
    }
    match per_device.as_slice() {
        [(label, n)] => format!("{n} worker(s) on {label}"),
        _ => {
            let parts: Vec<String> = per_device
                .iter()
                .map(|(label, n)| format!("{n} on {label}"))
                .collect();
            format!("{} worker(s): {}", placements.len(), parts.join(", "))
        }
    }
}

/// Live progress: a bar on a terminal, a line every few seconds otherwise, nothing if quiet.
struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    last_line: Option<Instant>,
    last_done: u64,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} runs  {msg}  [{elapsed_precise}, eta {eta}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            quiet,
            last_line: None,
            last_done: u64::MAX,
        }
    }

    fn update(&mut self, counts: &JobCounts) {
        let finished = counts.done + counts.failed;
        let total = counts.queued + counts.running + finished;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(finished);
            bar.set_message(format!(
                "{} running, {} failed",
                counts.running, counts.failed
            ));
        } else if !self.quiet {
            let due = self
                .last_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if due && finished != self.last_done {
                crate::say!(
                    "progress: {finished}/{total} finished ({} failed), {} running, {} queued",
                    counts.failed,
                    counts.running,
                    counts.queued
                );
                self.last_line = Some(Instant::now());
                self.last_done = finished;
            }
        }
    }

    fn finish(&mut self, counts: &JobCounts) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.quiet {
            crate::say!(
                "finished: {} done, {} failed, {} queued, {} running, {} cancelled",
                counts.done,
                counts.failed,
                counts.queued,
                counts.running,
                counts.cancelled
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use lifesweep_runner::DeviceSpec;

    use super::*;

    #[test]
    fn the_start_line_counts_workers_per_device() {
        let cpu = vec![Placement::shared(DeviceSpec::Cpu); 3];
        assert_eq!(describe_placements(&cpu), "3 worker(s) on cpu");
        let gpus = gpu_placements(&[DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)], 2, None).unwrap();
        assert_eq!(
            describe_placements(&gpus),
            "4 worker(s): 2 on cuda:0, 2 on cuda:1"
        );
    }
}
