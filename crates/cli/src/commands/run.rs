use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lifesweep_runner::{parse_device, run_scheduler, SchedulerConfig};
use lifesweep_store::JobCounts;

use crate::cli::RunArgs;
use crate::commands::results::grid_table;
use crate::common;

pub fn run(args: RunArgs, quiet: bool, verbose: u8) -> Result<ExitCode> {
    // Everything the user gave is checked before the database is touched.
    let (spec, text) = common::load_spec(&args.config)?;
    let device = parse_device(&args.device)?;
    device.open()?;
    let heartbeat = common::heartbeat(args.heartbeat)?;
    let workers = match args.workers {
        Some(w) => w as usize,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let exe = std::env::current_exe().context("finding the lifesweep executable to start workers")?;
    let mut worker_args = Vec::new();
    if verbose > 0 {
        worker_args.push(format!("-{}", "v".repeat(verbose as usize)));
    }
    if quiet {
        worker_args.push("--quiet".to_string());
    }
    let config = SchedulerConfig {
        exe,
        db: args.db.db.clone(),
        sweep: spec.name.clone(),
        workers,
        device,
        heartbeat,
        poll_interval: Duration::from_millis(250),
        grace: Duration::from_secs(30),
        worker_args,
    };

    let runtime = common::runtime()?;
    runtime.block_on(async {
        let stop = common::stop_on_signals()?;
        let store = common::open_store(&args.db.db).await?;
        let submitted = store.submit_sweep(&spec, &text, args.max_attempts).await?;
        if !quiet {
            eprintln!(
                "sweep {}: {} jobs ({} new, {} already present) in {}; {} worker(s) on {}",
                spec.name,
                submitted.added + submitted.existing,
                submitted.added,
                submitted.existing,
                args.db.db,
                workers,
                config.device.label()
            );
        }
        let mut progress = Progress::new(quiet);
        let outcome = run_scheduler(&store, &config, stop, |counts| progress.update(counts)).await?;
        progress.finish(&outcome.counts);

        let rows = store.runs(Some(&spec.name)).await?;
        let table = grid_table(&rows, &spec.group_keys())?;
        print!("{}", table.render(args.format.into())?);

        let counts = outcome.counts;
        if outcome.interrupted {
            eprintln!(
                "interrupted: {} done, {} still queued; continue with `lifesweep run {}` (finished runs are kept)",
                counts.done,
                counts.queued + counts.running,
                args.config.display()
            );
            return Ok(ExitCode::from(common::EXIT_INTERRUPTED));
        }
        if counts.failed > 0 {
            eprintln!("{} job(s) failed; see `lifesweep results --runs` for their errors", counts.failed);
            return Ok(ExitCode::from(common::EXIT_FAILED_JOBS));
        }
        Ok(ExitCode::SUCCESS)
    })
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
                ProgressStyle::with_template("{bar:40} {pos}/{len} runs  {msg}  [{elapsed_precise}, eta {eta}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress { bar, quiet, last_line: None, last_done: u64::MAX }
    }

    fn update(&mut self, counts: &JobCounts) {
        let finished = counts.done + counts.failed;
        let total = counts.queued + counts.running + finished;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(finished);
            bar.set_message(format!("{} running, {} failed", counts.running, counts.failed));
        } else if !self.quiet {
            let due = self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
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
