//! The scheduler of one host: starts worker processes, watches them, replaces those that die,
//! and stops them on request.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifesweep_store::{JobCounts, Store};
use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::{DeviceSpec, RunnerError};

/// How the scheduler runs a sweep.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The `lifesweep` executable whose `work` command runs a worker.
    pub exe: PathBuf,
    /// The database, as given to the workers' `--db`.
    pub db: String,
    pub sweep: String,
    /// Worker processes to keep running.
    pub workers: usize,
    pub device: DeviceSpec,
    pub heartbeat: Duration,
    /// How often the scheduler looks at workers and the queue.
    pub poll_interval: Duration,
    /// After a stop request, how long workers get to hand back their jobs before SIGKILL.
    pub grace: Duration,
    /// Seeds of one grid point each worker trains as one fused computation (1: unfused).
    pub fuse_seeds: usize,
    /// Extra arguments passed to each `work` command (e.g. log verbosity).
    pub worker_args: Vec<String>,
}

/// How a scheduled sweep ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerOutcome {
    pub counts: JobCounts,
    /// Stopped by a request (signal) rather than by running out of jobs.
    pub interrupted: bool,
    /// Worker processes that exited abnormally and were replaced.
    pub workers_lost: u32,
}

struct Worker {
    id: String,
    child: Child,
}

/// Runs `config.sweep` to the end with `config.workers` worker processes. `stop` asks for a
/// graceful stop (set it from a signal handler); `on_progress` sees the job counts at every
/// poll.
pub async fn run_scheduler(
    store: &Store,
    config: &SchedulerConfig,
    stop: Arc<AtomicBool>,
    mut on_progress: impl FnMut(&JobCounts),
) -> Result<SchedulerOutcome, RunnerError> {
    let mut workers: Vec<Worker> = Vec::new();
    let mut next_index = 0usize;
    let mut workers_lost = 0u32;
    let mut idle_restarts = 0u32;
    let max_lost = 3 * config.workers as u32 + 5;
    let mut stop_deadline: Option<Instant> = None;
    let mut last_sweeper = Instant::now();
    let host = crate::hostname();

    let counts = store.job_counts(Some(&config.sweep)).await?;
    on_progress(&counts);
    let initial = counts.queued.min(config.workers as u64) as usize;
    for _ in 0..initial.max(1) {
        workers.push(spawn_worker(config, &host, &mut next_index)?);
    }

    loop {
        // Stop requested: forward it once, then wait for the grace period.
        if stop.load(Ordering::SeqCst) && stop_deadline.is_none() {
            info!("stop requested; workers hand back their jobs");
            for worker in &workers {
                signal(&worker.child, libc::SIGTERM);
            }
            stop_deadline = Some(Instant::now() + config.grace);
        }
        if let Some(deadline) = stop_deadline {
            if Instant::now() >= deadline {
                for worker in &mut workers {
                    warn!(worker = %worker.id, "did not stop within the grace period; killing it");
                    let _ = worker.child.start_kill();
                }
            }
        }

        // Reap workers that exited.
        let mut dead_ids = Vec::new();
        let mut still_running = Vec::with_capacity(workers.len());
        for mut worker in workers.drain(..) {
            match worker.child.try_wait() {
                Ok(None) => still_running.push(worker),
                Ok(Some(status)) => {
                    if !exited_cleanly(status) {
                        if stop_deadline.is_none() {
                            workers_lost += 1;
                            warn!(worker = %worker.id, %status, "worker process died; its job goes back to the queue");
                        }
                        dead_ids.push(worker.id.clone());
                    }
                }
                Err(e) => {
                    warn!(worker = %worker.id, "could not wait for worker: {e}");
                    dead_ids.push(worker.id.clone());
                }
            }
        }
        workers = still_running;
        if !dead_ids.is_empty() {
            let requeued = store.requeue_jobs_of_dead_workers(&dead_ids).await?;
            if requeued > 0 {
                info!(requeued, "re-queued the jobs of dead workers");
            }
        }

        let counts = store.job_counts(Some(&config.sweep)).await?;
        on_progress(&counts);

        if stop_deadline.is_some() {
            if workers.is_empty() {
                return Ok(SchedulerOutcome {
                    counts,
                    interrupted: true,
                    workers_lost,
                });
            }
        } else {
            if workers_lost > max_lost {
                for worker in &workers {
                    signal(&worker.child, libc::SIGTERM);
                }
                return Err(RunnerError::Internal(format!(
                    "{workers_lost} worker processes died; giving up (see the errors above and `lifesweep status`)"
                )));
            }
            let live = workers.len() as u64;
            if counts.queued > 0 && live < config.workers as u64 {
                let wanted = (config.workers as u64 - live).min(counts.queued);
                for _ in 0..wanted {
                    workers.push(spawn_worker(config, &host, &mut next_index)?);
                }
                if live == 0 {
                    idle_restarts += 1;
                }
            } else if workers.is_empty() && counts.running > 0 {
                // Jobs held by workers we do not own (another host, a previous orchestrator):
                // once in a while start a worker to pick up any whose lease has run out.
                if last_sweeper.elapsed() >= config.heartbeat {
                    last_sweeper = Instant::now();
                    workers.push(spawn_worker(config, &host, &mut next_index)?);
                }
            } else if workers.is_empty() && counts.queued == 0 && counts.running == 0 {
                return Ok(SchedulerOutcome {
                    counts,
                    interrupted: false,
                    workers_lost,
                });
            }
            if idle_restarts > 1000 {
                return Err(RunnerError::Internal(
                    "workers keep exiting while jobs stay queued; check `lifesweep status`"
                        .to_string(),
                ));
            }
        }
        sleep_or_stop(config.poll_interval, &stop, stop_deadline.is_some()).await;
    }
}

/// Sleeps for `total`, waking early when a stop is requested (unless already stopping).
async fn sleep_or_stop(total: Duration, stop: &AtomicBool, stopping: bool) {
    let step = Duration::from_millis(50).min(total);
    let start = Instant::now();
    while start.elapsed() < total {
        if !stopping && stop.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(step).await;
    }
}

fn exited_cleanly(status: ExitStatus) -> bool {
    status.success()
}

fn signal(child: &Child, signal: libc::c_int) {
    if let Some(pid) = child.id() {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }
}

fn spawn_worker(
    config: &SchedulerConfig,
    host: &str,
    next_index: &mut usize,
) -> Result<Worker, RunnerError> {
    let index = *next_index;
    *next_index += 1;
    let id = format!("{host}:{}:w{index}", std::process::id());
    let mut command = Command::new(&config.exe);
    command
        .arg("work")
        .arg("--db")
        .arg(&config.db)
        .arg("--sweep")
        .arg(&config.sweep)
        .arg("--device")
        .arg(config.device.label())
        .arg("--worker-id")
        .arg(&id)
        .arg("--heartbeat")
        .arg(format!("{}", config.heartbeat.as_secs_f64()))
        .arg("--exit-when-idle")
        .arg("--fuse-seeds")
        .arg(config.fuse_seeds.to_string())
        .args(&config.worker_args)
        // One compute thread per worker process: several processes scale better than threads.
        .env("RAYON_NUM_THREADS", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false);
    // SAFETY: prctl is async-signal-safe; it asks the kernel to send SIGTERM to the worker when
    // the scheduler dies, so a killed scheduler's workers hand back their jobs and exit.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| RunnerError::Spawn {
        exe: config.exe.display().to_string(),
        source,
    })?;
    info!(worker = %id, pid = child.id(), "worker started");
    Ok(Worker { id, child })
}
