//! Runs a sweep's jobs: the worker loop (claim a job, train it, write the result, repeat,
//! holding a lease while it trains) and the scheduler that starts, watches and replaces worker
//! processes on one host.
//!
//! The runner is the only crate that knows both the store and the trainer. It does not parse
//! configs, choose exit codes or print for users: the CLI does, through the outcomes returned
//! here. Workers are separate OS processes (the `lifesweep work` command) so that a crash, an
//! out-of-memory kill or a stuck kernel in one run never takes down the others.

mod device;
mod host;
mod scheduler;
mod walk;
mod worker;

pub use device::{gpu_placements, parse_device, parse_device_list, DeviceSpec, Placement};
pub use host::{hostname, pid_alive, requeue_dead_local_workers};
pub use scheduler::{run_scheduler, SchedulerConfig, SchedulerOutcome};
pub use walk::{load_weights, point_records, walk_options, walk_run};
pub use worker::{run_worker, WorkerConfig, WorkerSummary};

/// What can stop the runner. Failed training runs are not errors here: they are stored as
/// failed jobs and counted in the outcomes.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] lifesweep_store::StoreError),
    #[error("device {spec:?}: {message}")]
    Device { spec: String, message: String },
    #[error("could not start worker process {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error(
        "job {key} of sweep {sweep} saves its weights (save_weights = true) but this worker has \
         no weights directory (--weights-dir); the job went back to the queue"
    )]
    NoWeightsDir { sweep: String, key: String },
    #[error("writing weights to {path}: {source}")]
    Weights {
        path: String,
        source: std::io::Error,
    },
    #[error("walking from the weights in {path}: {message}")]
    Walk { path: String, message: String },
    #[error("{0}")]
    Internal(String),
}
