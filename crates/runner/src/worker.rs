//! The worker loop: claim a job, train it while renewing the lease, write the result.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lifesweep_store::{ClaimedJob, RunRecord, Store, WalkPointRecord, WorkerInfo};
use lifesweep_train::{
    train_and_evaluate, train_and_evaluate_many, TrainControl, TrainError, TrainOutcome,
};
use tracing::{info, warn};

use crate::{DeviceSpec, RunnerError};

/// How one worker process behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique among all workers of the database, e.g. `host:pid:n`.
    pub worker_id: String,
    /// Only claim jobs of this sweep (all sweeps when `None`).
    pub sweep: Option<String>,
    /// The device the worker opens.
    pub device: DeviceSpec,
    /// The device recorded with each run: `device`'s label, or the GPU's own name when the
    /// worker sees only that GPU (`CUDA_VISIBLE_DEVICES=1` and `cuda:0` inside: `cuda:1`).
    pub device_label: String,
    /// How often the lease of the job in hand is renewed.
    pub heartbeat: Duration,
    /// How long a lease lasts without renewal (a multiple of `heartbeat`).
    pub lease: Duration,
    /// Exit when no job is queued or running, instead of waiting for new ones. While jobs of
    /// other workers are running, the worker keeps polling (every `poll_interval` or
    /// `heartbeat`, whichever is shorter): a job whose worker died without handing it back is
    /// claimable once its lease runs out.
    pub exit_when_idle: bool,
    /// How long to wait between polls for new jobs.
    pub poll_interval: Duration,
    /// Where `save_weights` runs write their safetensors files; `None` refuses such jobs
    /// (they go back to the queue and the worker stops with [`RunnerError::NoWeightsDir`]).
    pub weights_dir: Option<PathBuf>,
    /// Stop after this many jobs (`None`: no limit).
    pub max_jobs: Option<u64>,
    /// Claim up to this many jobs of one grid point (differing only in seed) at once and train
    /// them as one fused computation; 1 trains one job at a time.
    pub fuse_seeds: usize,
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    pub completed: u64,
    pub failed: u64,
    /// Results thrown away because the lease had been lost.
    pub discarded: u64,
    /// Jobs handed back to the queue because the worker was asked to stop.
    pub released: u64,
    /// Whether the worker stopped because it was asked to.
    pub stopped: bool,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the worker loop until the queue is empty (with `exit_when_idle`), `stop` is set, or
/// `max_jobs` jobs were handled. Training failures are stored on their jobs, never returned.
pub async fn run_worker(
    store: &Store,
    config: &WorkerConfig,
    stop: Arc<AtomicBool>,
) -> Result<WorkerSummary, RunnerError> {
    let device = config.device.open()?;
    let label = config.device_label.clone();
    store
        .register_worker(&WorkerInfo {
            id: config.worker_id.clone(),
            host: crate::hostname(),
            pid: std::process::id(),
            device: label.clone(),
        })
        .await?;
    info!(worker = %config.worker_id, device = %label, "worker started");

    let mut summary = WorkerSummary::default();
    // Whether the last claim found nothing while other workers' jobs were running.
    let mut waiting = false;
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            summary.stopped = true;
            break Ok(());
        }
        if config
            .max_jobs
            .is_some_and(|max| summary.completed + summary.failed >= max)
        {
            break Ok(());
        }
        let mut k = config.fuse_seeds.max(1);
        if let Some(max) = config.max_jobs {
            let left = max.saturating_sub(summary.completed + summary.failed);
            k = k.min(usize::try_from(left).unwrap_or(usize::MAX)).max(1);
        }
        let jobs = match store
            .claim_jobs(&config.worker_id, config.sweep.as_deref(), config.lease, k)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => break Err(RunnerError::from(e)),
        };
        if jobs.is_empty() {
            if config.exit_when_idle {
                // Nothing claimable, but a running job may still come back: its worker may
                // have died without handing it back (SIGKILL, a lost node), and then it is
                // claimable once its lease runs out. So exit only when nothing is queued or
                // running, and poll at least once a heartbeat meanwhile (a lease lasts three).
                let counts = match store.job_counts(config.sweep.as_deref()).await {
                    Ok(counts) => counts,
                    Err(e) => break Err(RunnerError::from(e)),
                };
                if counts.queued == 0 && counts.running == 0 {
                    break Ok(());
                }
                if !waiting {
                    info!(
                        worker = %config.worker_id,
                        running = counts.running,
                        queued = counts.queued,
                        "no job to claim; waiting while other workers' jobs run (a dead worker's job is claimed when its lease runs out)"
                    );
                    waiting = true;
                }
                sleep_unless_stopped(config.poll_interval.min(config.heartbeat), &stop).await;
                continue;
            }
            sleep_unless_stopped(config.poll_interval, &stop).await;
            continue;
        }
        waiting = false;
        if config.weights_dir.is_none() {
            if let Some(job) = jobs
                .iter()
                .find(|j| j.walk.is_none() && j.params.save_weights)
            {
                let error = RunnerError::NoWeightsDir {
                    sweep: job.sweep.clone(),
                    key: job.key.to_string(),
                };
                for job in &jobs {
                    if let Err(e) = store
                        .release_job(job.job_id, &config.worker_id, job.attempt)
                        .await
                    {
                        warn!(job = job.job_id, "could not hand the job back: {e}");
                    }
                }
                break Err(error);
            }
        }
        if let Err(e) = run_jobs(store, config, &device, &label, jobs, &stop, &mut summary).await {
            break Err(e);
        }
    };
    if let Err(e) = store.worker_stopped(&config.worker_id).await {
        warn!(worker = %config.worker_id, "could not record the worker's stop: {e}");
    }
    info!(worker = %config.worker_id, ?summary, "worker stopped");
    result.map(|()| summary)
}

async fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < total && !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(step).await;
        waited += step;
    }
}

enum Finished {
    Trained(Box<TrainOutcome>),
    Walked(Vec<WalkPointRecord>),
    Failed(TrainError),
    /// A walk that could not be computed (its weights unreadable or not this network's).
    WalkFailed(String),
    Panicked(String),
}

/// Trains a group of claimed jobs (one job, or several seeds of one grid point fused), renewing
/// every lease of the group while training, then writes each job's outcome.
async fn run_jobs(
    store: &Store,
    config: &WorkerConfig,
    device: &candle_core::Device,
    label: &str,
    jobs: Vec<ClaimedJob>,
    stop: &Arc<AtomicBool>,
    summary: &mut WorkerSummary,
) -> Result<(), RunnerError> {
    for job in &jobs {
        info!(job = job.job_id, key = %job.key, attempt = job.attempt, fused = jobs.len(), "claimed");
    }
    let started_at = now_secs();
    // Set when a lease of the group is lost: training stops early and the lost jobs' results
    // are discarded (the others are handed back).
    let lease_lost = Arc::new(AtomicBool::new(false));
    let mut lost = vec![false; jobs.len()];

    let mut training = {
        let params: Vec<_> = jobs.iter().map(|j| j.params.clone()).collect();
        // a walk is claimed alone (its point_key is its own)
        let walk = jobs.first().and_then(|j| j.walk.clone());
        let device = device.clone();
        let label = label.to_string();
        let stop = Arc::clone(stop);
        let lease_lost = Arc::clone(&lease_lost);
        tokio::task::spawn_blocking(move || {
            let should_stop =
                move || stop.load(Ordering::SeqCst) || lease_lost.load(Ordering::SeqCst);
            let on_progress = |_batch: u32| {};
            let control = TrainControl {
                should_stop: &should_stop,
                on_progress: &on_progress,
            };
            let n = params.len();
            if let Some(spec) = walk {
                let walked = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    crate::walk::walk_run(&params[0], &spec)
                }));
                return vec![match walked {
                    Ok(Ok(walk)) => Finished::Walked(crate::walk::point_records(&walk)),
                    Ok(Err(e)) => Finished::WalkFailed(e.to_string()),
                    Err(panic) => Finished::Panicked(panic_message(&panic)),
                }];
            }
            match std::panic::catch_unwind(AssertUnwindSafe(|| {
                if n == 1 {
                    vec![train_and_evaluate(&params[0], &device, &label, &control)]
                } else {
                    train_and_evaluate_many(&params, &device, &label, &control)
                }
            })) {
                Ok(results) => results
                    .into_iter()
                    .map(|r| match r {
                        Ok(outcome) => Finished::Trained(Box::new(outcome)),
                        Err(e) => Finished::Failed(e),
                    })
                    .collect::<Vec<_>>(),
                Err(panic) => {
                    let message = panic_message(&panic);
                    (0..n)
                        .map(|_| Finished::Panicked(message.clone()))
                        .collect()
                }
            }
        })
    };

    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.tick().await; // the first tick is immediate
    let finished = loop {
        tokio::select! {
            joined = &mut training => {
                break joined.unwrap_or_else(|e| jobs.iter().map(|_| Finished::Panicked(e.to_string())).collect());
            }
            _ = heartbeat.tick() => {
                for (i, job) in jobs.iter().enumerate() {
                    if lost[i] {
                        continue;
                    }
                    match store.renew_lease(job.job_id, &config.worker_id, config.lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(job = job.job_id, key = %job.key, "lease lost (the job was given to another worker); stopping this run and discarding its result");
                            lost[i] = true;
                            lease_lost.store(true, Ordering::SeqCst);
                        }
                        // A slow or busy database is not a lost lease: keep training, retry next beat.
                        Err(e) => warn!(job = job.job_id, "could not renew the lease: {e}"),
                    }
                }
            }
        }
    };
    let finished_at = now_secs();

    for ((job, finished), lost) in jobs.iter().zip(finished).zip(lost) {
        if lost {
            summary.discarded += 1;
            continue;
        }
        finish_job(
            store,
            config,
            job,
            finished,
            started_at,
            finished_at,
            summary,
        )
        .await?;
    }
    Ok(())
}

/// Writes one job's outcome, conditional on still holding it.
async fn finish_job(
    store: &Store,
    config: &WorkerConfig,
    job: &ClaimedJob,
    finished: Finished,
    started_at: f64,
    finished_at: f64,
    summary: &mut WorkerSummary,
) -> Result<(), RunnerError> {
    match finished {
        Finished::Trained(outcome) => {
            let weights_path = if job.params.save_weights {
                Some(save_weights(config, job, &outcome)?)
            } else {
                None
            };
            let record = RunRecord {
                metrics: outcome.metrics.clone(),
                started_at,
                finished_at,
                weights_path,
            };
            if store
                .complete_job(job.job_id, &config.worker_id, job.attempt, &record)
                .await?
            {
                info!(
                    job = job.job_id,
                    key = %job.key,
                    success_rate = outcome.metrics.success_rate,
                    seconds = outcome.metrics.wall_seconds,
                    "done"
                );
                summary.completed += 1;
            } else {
                warn!(job = job.job_id, key = %job.key, "lease lost before the result was written; result discarded");
                summary.discarded += 1;
            }
        }
        Finished::Walked(points) => {
            if store
                .complete_walk(job.job_id, &config.worker_id, job.attempt, &points)
                .await?
            {
                info!(job = job.job_id, key = %job.key, points = points.len(), "walk done");
                summary.completed += 1;
            } else {
                warn!(job = job.job_id, key = %job.key, "lease lost before the walk was written; discarded");
                summary.discarded += 1;
            }
        }
        Finished::WalkFailed(message) => {
            warn!(job = job.job_id, key = %job.key, "walk failed: {message}");
            store
                .fail_job(job.job_id, &config.worker_id, job.attempt, &message, false)
                .await?;
            summary.failed += 1;
        }
        Finished::Failed(TrainError::Interrupted) => {
            store
                .release_job(job.job_id, &config.worker_id, job.attempt)
                .await?;
            info!(job = job.job_id, key = %job.key, "interrupted; job handed back to the queue");
            summary.released += 1;
        }
        Finished::Failed(error) => {
            let retryable = !error.is_run_failure();
            warn!(job = job.job_id, key = %job.key, retryable, "run failed: {error}");
            store
                .fail_job(
                    job.job_id,
                    &config.worker_id,
                    job.attempt,
                    &error.to_string(),
                    retryable,
                )
                .await?;
            summary.failed += 1;
        }
        Finished::Panicked(message) => {
            warn!(job = job.job_id, key = %job.key, "training panicked: {message}");
            store
                .fail_job(
                    job.job_id,
                    &config.worker_id,
                    job.attempt,
                    &format!("training panicked: {message}"),
                    true,
                )
                .await?;
            summary.failed += 1;
        }
    }
    Ok(())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Writes the run's weights as `<weights_dir>/<sweep>/<key>.safetensors` (atomically, through
/// a temporary file) and returns the path.
fn save_weights(
    config: &WorkerConfig,
    job: &ClaimedJob,
    outcome: &TrainOutcome,
) -> Result<String, RunnerError> {
    let Some(weights_dir) = &config.weights_dir else {
        return Err(RunnerError::NoWeightsDir {
            sweep: job.sweep.clone(),
            key: job.key.to_string(),
        });
    };
    let dir = weights_dir.join(&job.sweep);
    let name = format!("{}.safetensors", job.key);
    let io_err = |source| RunnerError::Weights {
        path: dir.join(&name).display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io_err)?;
    // The stored path is absolute, so that readers in another directory find the file.
    let dir = dir.canonicalize().map_err(io_err)?;
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{}.{}.tmp", job.key, std::process::id()));
    let tensors: HashMap<String, candle_core::Tensor> = outcome.weights.iter().cloned().collect();
    candle_core::safetensors::save(&tensors, &tmp)
        .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
    std::fs::rename(&tmp, &path).map_err(io_err)?;
    Ok(path.display().to_string())
}
