//! The scheduler of one host: starts worker processes, watches them, replaces those that die,
//! and stops them on request.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifesweep_store::{JobCounts, Store};
use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::{Placement, RunnerError};

/// How the scheduler runs a sweep.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The `lifesweep` executable whose `work` command runs a worker.
    pub exe: PathBuf,
    /// The database, as given to the workers' `--db`.
    pub db: String,
    pub sweep: String,
    /// The worker processes to keep running, one placement each (its device and environment).
    pub placements: Vec<Placement>,
    /// Where the workers write the weights of `save_weights` runs (`None`: they refuse such
    /// jobs).
    pub weights_dir: Option<PathBuf>,
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
    /// Its index in `SchedulerConfig::placements`.
    slot: usize,
    child: Child,
}

impl SchedulerConfig {
    /// Worker processes to keep running.
    pub fn workers(&self) -> usize {
        self.placements.len()
    }
}

/// The placement slot for the next worker: the slot of a worker that died (its replacement
/// keeps its device), else the first slot no live worker holds. `None` when all are held.
fn free_slot(slots: usize, live: &[usize], vacated: &mut Vec<usize>) -> Option<usize> {
    while let Some(slot) = vacated.pop() {
        if slot < slots && !live.contains(&slot) {
            return Some(slot);
        }
    }
    (0..slots).find(|slot| !live.contains(slot))
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
    // Slots of workers that died, whose replacements take them first.
    let mut vacated: Vec<usize> = Vec::new();
    let mut workers_lost = 0u32;
    let mut idle_restarts = 0u32;
    let max_lost = 3 * config.workers() as u32 + 5;
    let mut stop_deadline: Option<Instant> = None;
    let mut last_sweeper = Instant::now();
    let host = crate::hostname();

    let counts = store.job_counts(Some(&config.sweep)).await?;
    on_progress(&counts);
    let initial = counts.queued.min(config.workers() as u64) as usize;
    for _ in 0..initial.max(1) {
        spawn_into(config, &host, &mut next_index, &mut workers, &mut vacated)?;
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
                        vacated.push(worker.slot);
                    }
                }
                Err(e) => {
                    warn!(worker = %worker.id, "could not wait for worker: {e}");
                    dead_ids.push(worker.id.clone());
                    vacated.push(worker.slot);
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
            if counts.queued > 0 && live < config.workers() as u64 {
                let wanted = (config.workers() as u64 - live).min(counts.queued);
                for _ in 0..wanted {
                    spawn_into(config, &host, &mut next_index, &mut workers, &mut vacated)?;
                }
                if live == 0 {
                    idle_restarts += 1;
                }
            } else if workers.is_empty() && counts.running > 0 {
                // Jobs held by workers we do not own (another host, a previous orchestrator):
                // once in a while start a worker to pick up any whose lease has run out.
                if last_sweeper.elapsed() >= config.heartbeat {
                    last_sweeper = Instant::now();
                    spawn_into(config, &host, &mut next_index, &mut workers, &mut vacated)?;
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

/// Starts a worker in a free placement slot and adds it to `workers` (nothing when every slot
/// is held).
fn spawn_into(
    config: &SchedulerConfig,
    host: &str,
    next_index: &mut usize,
    workers: &mut Vec<Worker>,
    vacated: &mut Vec<usize>,
) -> Result<(), RunnerError> {
    let live: Vec<usize> = workers.iter().map(|w| w.slot).collect();
    let Some(slot) = free_slot(config.workers(), &live, vacated) else {
        return Ok(());
    };
    let index = *next_index;
    *next_index += 1;
    let id = format!("{host}:{}:w{index}", std::process::id());
    let mut command = worker_command(config, &config.placements[slot], &id);
    // SAFETY: prctl is async-signal-safe; it asks the kernel to send SIGTERM to the worker when
    // the scheduler dies, so a killed scheduler's workers hand back their jobs and exit.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = Command::from(command)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| RunnerError::Spawn {
            exe: config.exe.display().to_string(),
            source,
        })?;
    info!(worker = %id, pid = child.id(), device = %config.placements[slot].device.label(), "worker started");
    workers.push(Worker { id, slot, child });
    Ok(())
}

/// The `lifesweep work` command of one worker: its device (and `CUDA_VISIBLE_DEVICES` when it
/// sees only its GPU), the sweep, its id and the scheduler's settings.
fn worker_command(
    config: &SchedulerConfig,
    placement: &Placement,
    id: &str,
) -> std::process::Command {
    let mut command = std::process::Command::new(&config.exe);
    command
        .arg("work")
        .arg("--db")
        .arg(&config.db)
        .arg("--sweep")
        .arg(&config.sweep)
        .arg("--device")
        .arg(placement.worker_device.label())
        .arg("--device-label")
        .arg(placement.device.label())
        .arg("--worker-id")
        .arg(id)
        .arg("--heartbeat")
        .arg(format!("{}", config.heartbeat.as_secs_f64()))
        .arg("--exit-when-idle")
        .arg("--fuse-seeds")
        .arg(config.fuse_seeds.to_string());
    if let Some(dir) = &config.weights_dir {
        command.arg("--weights-dir").arg(dir);
    }
    command
        .args(&config.worker_args)
        // One compute thread per worker process: several processes scale better than threads.
        .env("RAYON_NUM_THREADS", "1")
        .stdin(std::process::Stdio::null());
    if let Some(visible) = &placement.visible_devices {
        command.env("CUDA_VISIBLE_DEVICES", visible);
    }
    command
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ffi::OsStr;

    use super::*;
    use crate::{gpu_placements, DeviceSpec};

    fn config(placements: Vec<Placement>) -> SchedulerConfig {
        SchedulerConfig {
            exe: PathBuf::from("/bin/lifesweep"),
            db: "sweeps.db".into(),
            sweep: "grid".into(),
            placements,
            weights_dir: Some(PathBuf::from("/data/weights")),
            heartbeat: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            grace: Duration::from_secs(30),
            fuse_seeds: 1,
            worker_args: vec!["-v".into()],
        }
    }

    fn args(command: &std::process::Command) -> Vec<String> {
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The value after `flag` in `args`.
    fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).map(String::as_str)
    }

    fn env(command: &std::process::Command) -> BTreeMap<String, Option<String>> {
        command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn a_gpu_worker_sees_only_its_gpu_and_records_its_real_name() {
        let placements =
            gpu_placements(&[DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)], 2, None).unwrap();
        let config = config(placements);
        let command = worker_command(&config, &config.placements[1], "host:1:w1");
        let args = args(&command);
        assert_eq!(command.get_program(), OsStr::new("/bin/lifesweep"));
        assert_eq!(args[0], "work");
        assert_eq!(flag(&args, "--device"), Some("cuda:0"), "{args:?}");
        assert_eq!(flag(&args, "--device-label"), Some("cuda:1"), "{args:?}");
        assert_eq!(flag(&args, "--worker-id"), Some("host:1:w1"));
        assert_eq!(flag(&args, "--weights-dir"), Some("/data/weights"));
        assert_eq!(flag(&args, "--sweep"), Some("grid"));
        assert!(args.contains(&"--exit-when-idle".to_string()));
        assert!(args.contains(&"-v".to_string()));
        let env = env(&command);
        assert_eq!(env["CUDA_VISIBLE_DEVICES"].as_deref(), Some("1"));
        assert_eq!(env["RAYON_NUM_THREADS"].as_deref(), Some("1"));
    }

    #[test]
    fn a_worker_of_device_and_workers_keeps_the_environment() {
        let config = config(vec![Placement::shared(DeviceSpec::Cpu)]);
        let command = worker_command(&config, &config.placements[0], "host:1:w0");
        let cpu_args = args(&command);
        assert_eq!(flag(&cpu_args, "--device"), Some("cpu"));
        assert_eq!(flag(&cpu_args, "--device-label"), Some("cpu"));
        assert!(!env(&command).contains_key("CUDA_VISIBLE_DEVICES"));

        let mut config = config;
        config.weights_dir = None;
        let command = worker_command(&config, &config.placements[0], "host:1:w0");
        assert_eq!(flag(&args(&command), "--weights-dir"), None);
    }

    #[test]
    fn a_replacement_takes_the_slot_and_so_the_gpu_of_the_worker_that_died() {
        // Two GPUs, two workers each: slots 0 and 2 are cuda:0, slots 1 and 3 cuda:1.
        let placements =
            gpu_placements(&[DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)], 2, None).unwrap();
        let mut vacated = Vec::new();
        let mut live = Vec::new();
        for _ in 0..4 {
            live.push(free_slot(4, &live, &mut vacated).unwrap());
        }
        assert_eq!(live, [0, 1, 2, 3]);
        assert_eq!(free_slot(4, &live, &mut vacated), None, "all slots held");

        // Slot 0 ended cleanly (queue empty for a while), then the worker of slot 3 died.
        live.retain(|&s| s != 0 && s != 3);
        vacated.push(3);
        let slot = free_slot(4, &live, &mut vacated).unwrap();
        assert_eq!(slot, 3, "the replacement keeps the dead worker's slot");
        assert_eq!(placements[slot].device, DeviceSpec::Cuda(1));
        assert_eq!(placements[slot].visible_devices.as_deref(), Some("1"));
        live.push(slot);
        assert_eq!(free_slot(4, &live, &mut vacated), Some(0));
    }
}
