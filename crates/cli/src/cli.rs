//! The command line: every subcommand and flag, with help text and validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lifesweep",
    version,
    about = "Hyperparameter sweeps of the Game of Life experiments: run, resume, query",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a sweep and run it to the end with worker processes on this machine.
    Run(RunArgs),
    /// Continue an interrupted sweep: re-queue the jobs of dead workers, run what is missing.
    Resume(ResumeArgs),
    /// Re-queue a sweep's failed jobs (with fresh attempts).
    Retry(RetryArgs),
    /// Cancel a sweep's queued jobs (running ones finish; `retry --cancelled` undoes it).
    Cancel(CancelArgs),
    /// Add a sweep's jobs to the database without running them.
    Submit(SubmitArgs),
    /// Be one worker: claim jobs, train them, write results, until the queue is empty.
    Work(WorkArgs),
    /// Success probability per grid point (or one row per run).
    Results(ResultsArgs),
    /// Draw the sweep's figures (SVG and PNG) into a directory.
    Plot(PlotArgs),
    /// Write report.html (self-contained) and report.md with tables and figures.
    Report(ReportArgs),
    /// Jobs by state, recent runs per minute, time left, failures with their last error.
    Status(StatusArgs),
    /// One record per run with every parameter and metric (json adds the loss curve).
    Export(ExportArgs),
    /// Print the boards the training generator makes and their targets.
    Boards(BoardsArgs),
    /// Run a sweep on a Slurm cluster: one job array of workers, a PostgreSQL database.
    Slurm(SlurmArgs),
    /// Loss walks: the training loss on the line from a trained run to the exact solution
    /// (or along a random direction), for one run or a sweep's runs.
    Walk(WalkArgs),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// The database: an SQLite file path, or a postgres:// URL (created if missing for
    /// run/submit/work).
    #[arg(long, env = "LIFESWEEP_DB", default_value = "lifesweep.db")]
    pub db: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep config (TOML).
    pub config: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Attempts per job before it is marked failed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// How the final table is printed.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// How `run` and `resume` run workers on this machine.
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// Worker processes (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,
    /// Device for the workers: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// GPUs for the workers, comma separated (e.g. cuda:0,cuda:1): --workers-per-device
    /// workers on each, each worker seeing only its GPU (CUDA_VISIBLE_DEVICES).
    #[arg(
        long,
        value_name = "cuda:N,...",
        conflicts_with_all = ["device", "workers"]
    )]
    pub devices: Option<String>,
    /// Worker processes per GPU of --devices.
    #[arg(
        long,
        value_name = "K",
        requires = "devices",
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub workers_per_device: Option<u32>,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Seconds between lease renewals of a job in hand; a lease lasts three of these.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat: f64,
    /// After Ctrl-C or SIGTERM, seconds workers get to hand back their jobs before SIGKILL.
    #[arg(long, default_value_t = 30.0)]
    pub grace: f64,
    /// Seeds of one grid point each worker trains as one fused computation (default: the
    /// sweep file's `[sweep] fuse_seeds`, else 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fuse_seeds: Option<u32>,
}

/// Where the workers write the weights of `save_weights` runs.
#[derive(Debug, Args)]
pub struct WeightsArgs {
    /// Directory for the weights of `save_weights` runs (default for an SQLite database:
    /// DB_STEM.weights/ beside it; a PostgreSQL database needs this when a job saves weights).
    #[arg(long, env = "LIFESWEEP_WEIGHTS_DIR", value_name = "DIR")]
    pub weights_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// How the final table is printed.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Re-queue failed jobs.
    #[arg(long)]
    pub failed: bool,
    /// Re-queue cancelled jobs.
    #[arg(long)]
    pub cancelled: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The sweep config (TOML).
    pub config: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
    /// Attempts per job before it is marked failed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Check the config and count its jobs; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only work on this sweep (default: any).
    #[arg(long)]
    pub sweep: Option<String>,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The device recorded with each run, when it differs from --device: a scheduler that
    /// shows a worker only its GPU (CUDA_VISIBLE_DEVICES) passes --device cuda:0 and the GPU's
    /// own name here.
    #[arg(long, hide = true)]
    pub device_label: Option<String>,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// This worker's id (default: host:pid).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Seconds between lease renewals; a lease lasts three of these.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat: f64,
    /// Exit when no job is queued or running instead of waiting for more (while other workers'
    /// jobs run, keep polling: a killed worker's job is claimed when its lease runs out).
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Stop after this many jobs.
    #[arg(long)]
    pub max_jobs: Option<u64>,
    /// Claim up to this many seeds of one grid point and train them as one fused computation
    /// (default: the `[sweep] fuse_seeds` of the --sweep, or of the database's only sweep,
    /// else 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fuse_seeds: Option<u32>,
    /// Compute threads for this worker (one per worker process scales best).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
}

#[derive(Debug, Args)]
pub struct WalkArgs {
    /// The run to walk from: its job key or a unique prefix of it of at least 4 characters
    /// (the job_key column of `lifesweep results --runs`), or its job id. It must have saved
    /// its weights (save_weights = true).
    #[arg(required_unless_present = "sweep", conflicts_with = "sweep")]
    pub run: Option<String>,
    /// Walk the finished runs of this sweep instead, as jobs that workers run.
    #[arg(long)]
    pub sweep: Option<String>,
    /// With --sweep: the runs that failed (training_success = 0).
    #[arg(long, requires = "sweep")]
    pub failed: bool,
    /// With --sweep: the runs that succeeded (both flags, or neither: every finished run).
    #[arg(long, requires = "sweep")]
    pub succeeded: bool,
    /// With --sweep: keep only runs whose parameter has this value, e.g. --where steps=1.
    #[arg(long = "where", value_name = "KEY=VALUE", requires = "sweep")]
    pub filters: Vec<String>,
    /// Where to walk: the presolved weights, or a random direction of unit L1 norm.
    #[arg(long, value_enum, default_value_t = WalkTo::Presolve)]
    pub to: WalkTo,
    /// --to presolve: evenly spaced points, both ends included.
    #[arg(long, default_value_t = 50)]
    pub points: u32,
    /// Batches of training boards (of the run's batch size) each point's loss averages over.
    #[arg(long, default_value_t = 100)]
    pub batches: u32,
    /// Permute the trained hidden channels to best match the solution before walking.
    #[arg(long)]
    pub align: bool,
    /// --to random: the seed of the direction.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// --to random: the farthest distance (0, 0.1, ..., 1, 2, ..., this).
    #[arg(long, default_value_t = 30)]
    pub max_distance: u32,
    /// With --sweep: queue the walk jobs and start no workers.
    #[arg(long, requires = "sweep")]
    pub queue_only: bool,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// How the points (one run) or the walks (a sweep) are printed.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WalkTo {
    Presolve,
    Random,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// One row per run instead of one per grid point.
    #[arg(long)]
    pub runs: bool,
    /// One row per loss walk of the sweep's runs (`lifesweep walk`): its kind, state, and the
    /// loss at the run, highest on the way and at the end.
    #[arg(long, conflicts_with_all = ["runs", "group_by", "wide"])]
    pub walks: bool,
    /// In the terminal table, also show min/max success_rate, final loss and wall time.
    #[arg(long)]
    pub wide: bool,
    /// Group by these parameters (comma separated; default: every axis but seed).
    #[arg(long, value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// Keep only runs whose parameter has this value, e.g. --where steps=2 (repeatable).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Order rows by these columns, e.g. --sort success_probability:desc,steps (comma
    /// separated; ascending unless :desc; empty cells last).
    #[arg(long, value_delimiter = ',', value_name = "COLUMN[:desc]")]
    pub sort: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Directory for the figures (created if missing; files of the same name are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Keep only runs whose parameter has this value, e.g. --where d_factor=1 (repeatable).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Draw the sweep's loss walks (`lifesweep walk`) instead: loss against distance, one line
    /// per walked run, log scale on the loss.
    #[arg(long)]
    pub walks: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Directory for report.html, report.md and the figures (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Keep only runs whose parameter has this value, e.g. --where d_factor=1 (repeatable).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Minutes over which the rate of finished runs (and so the ETA) is measured.
    #[arg(long, default_value_t = 5.0, value_name = "MINUTES")]
    pub window: f64,
    /// table: a summary for people; json: one object; csv: the failed jobs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Keep only runs whose parameter has this value, e.g. --where steps=2 (repeatable).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Every point of the sweep's finished loss walks instead (`lifesweep walk`): one record
    /// per point with its walk and run.
    #[arg(long)]
    pub walks: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One line per run; the loss curve is left out (see json).
    Csv,
    /// An array of objects, one per run, each with its loss curve.
    Json,
}

#[derive(Debug, Args)]
pub struct BoardsArgs {
    #[arg(long, default_value = "von-neumann")]
    pub rule: String,
    /// Steps of the rule from each board to its target (as a sweep's `steps`: at least 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub steps: u32,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub size: u32,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub count: u32,
    /// The run seed: the boards are the start of that run's training data stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 0.5)]
    pub density: f64,
    #[arg(long, value_enum, default_value_t = BoardsFormat::Text)]
    pub format: BoardsFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

impl From<OutputFormat> for lifesweep_results::Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Table => lifesweep_results::Format::Table,
            OutputFormat::Csv => lifesweep_results::Format::Csv,
            OutputFormat::Json => lifesweep_results::Format::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BoardsFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct SlurmArgs {
    #[command(subcommand)]
    pub command: SlurmCommand,
}

#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// Add the sweep's jobs to the database and submit one sbatch job array of N workers.
    Submit(SlurmSubmitArgs),
    /// The sweep's array tasks (squeue) next to its jobs by state.
    Status(SlurmStatusArgs),
}

#[derive(Debug, Args)]
pub struct SlurmSubmitArgs {
    /// The sweep config (TOML).
    pub config: PathBuf,
    /// The database every worker reaches: a postgres:// URL (keep the password in ~/.pgpass or
    /// PGPASSWORD rather than in the URL).
    #[arg(long, env = "LIFESWEEP_DB")]
    pub db: String,
    /// Array tasks, one worker each (fewer when fewer jobs are queued).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub workers: u32,
    /// GPUs per worker (0 or 1): asks Slurm for gres gpu:1 and trains on cuda:0, the GPU Slurm
    /// hands the task.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1))]
    pub gpus_per_worker: u32,
    /// CPU threads per worker (sbatch --cpus-per-task).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per task in Slurm's format (MINUTES, HH:MM:SS, D-HH:MM...). Before it runs
    /// out, the worker hands its job back and the task requeues itself.
    #[arg(long)]
    pub time: Option<String>,
    /// Another #SBATCH option for every task, e.g. --sbatch-option=--account=lab (repeatable).
    #[arg(long = "sbatch-option", value_name = "OPTION")]
    pub sbatch_options: Vec<String>,
    /// The lifesweep executable on the compute nodes (default: this one, by absolute path).
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,
    /// Seconds between the workers' lease renewals; a lease lasts three of these.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat: f64,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Attempts per job before it is marked failed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Print the batch script; write nothing, submit nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SlurmStatusArgs {
    /// The sweep (default: the only one in the database).
    pub sweep: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    /// table: for people; json: one object with the counts and the tasks.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}
