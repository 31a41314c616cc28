use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lifesweep_runner::{parse_device, requeue_dead_local_workers, run_scheduler, SchedulerConfig};
use lifesweep_store::{JobCounts, Store};

use crate::cli::{OutputFormat, PoolArgs, RunArgs};
use crate::commands::results::grid_table;
use crate::common;

pub fn run(args: RunArgs, quiet: bool, verbose: u8) -> Result<ExitCode> {
    // Everything the user gave is checked before the database is touched.
    let (spec, text) = common::load_spec(&args.config)?;
    let config = scheduler_config(
        &args.pool,
        &args.db.db,
        &spec.name,
        spec.fuse_seeds,
        quiet,
        verbose,
    )?;
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let stop = common::stop_on_signals()?;
        let store = common::open_store(&args.db.db).await?;
        let submitted = store.submit_sweep(&spec, &text, args.max_attempts).await?;
        if !quiet {
            eprintln!(
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

/// Checks the pool flags and builds the scheduler's configuration.
pub fn scheduler_config(
    pool: &PoolArgs,
    db: &str,
    sweep: &str,
    default_fuse_seeds: usize,
    quiet: bool,
    verbose: u8,
) -> Result<SchedulerConfig> {
    let device = parse_device(&pool.device)?;
    device.open()?;
    let heartbeat = common::heartbeat(pool.heartbeat)?;
    if !(pool.grace.is_finite() && (0.0..=3600.0).contains(&pool.grace)) {
        bail!(
            "--grace: expected seconds between 0 and 3600, got {}",
            pool.grace
        );
    }
    let workers = match pool.workers {
        Some(w) => w as usize,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let exe =
        std::env::current_exe().context("finding the lifesweep executable to start workers")?;
    let mut worker_args = Vec::new();
    if verbose > 0 {
        worker_args.push(format!("-{}", "v".repeat(verbose as usize)));
    }
    if quiet {
        worker_args.push("--quiet".to_string());
    }
    Ok(SchedulerConfig {
        exe,
        db: db.to_string(),
        sweep: sweep.to_string(),
        workers,
        device,
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
    let requeued = requeue_dead_local_workers(store).await?;
    if requeued > 0 && !quiet {
        eprintln!("re-queued {requeued} job(s) whose worker on this host is gone");
    }
    if !quiet {
        eprintln!(
            "running with {} worker(s) on {}",
            config.workers,
            config.device.label()
        );
    }
    let mut progress = Progress::new(quiet);
    let outcome = run_scheduler(store, config, stop, |counts| progress.update(counts)).await?;
    progress.finish(&outcome.counts);

    let rows = store.runs(Some(&config.sweep)).await?;
    let mut table = grid_table(&rows, group_keys)?;
    if format == OutputFormat::Table {
        table = table.select(|c| !lifesweep_results::WIDE_ONLY_COLUMNS.contains(&c));
    }
    print!("{}", table.render(format.into())?);

    let counts = outcome.counts;
    if outcome.interrupted {
        eprintln!(
            "interrupted: {} done, {} not yet run; continue with `{resume_hint}` (finished runs are kept)",
            counts.done,
            counts.queued + counts.running,
        );
        return Ok(ExitCode::from(common::EXIT_INTERRUPTED));
    }
    if counts.failed > 0 {
        eprintln!(
            "{} job(s) failed; see `lifesweep status` for their errors, `lifesweep retry --failed` to run them again",
            counts.failed
        );
        return Ok(ExitCode::from(common::EXIT_FAILED_JOBS));
    }
    Ok(ExitCode::SUCCESS)
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
                eprintln!(
                    "progress: {finished}/{total} finished ({} failed), {} running, {} queued",
                    counts.failed, counts.running, counts.queued
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
            eprintln!(
                "finished: {} done, {} failed, {} queued, {} running, {} cancelled",
                counts.done, counts.failed, counts.queued, counts.running, counts.cancelled
            );
        }
    }
}
