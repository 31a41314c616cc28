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
    /// Add a sweep's jobs to the database without running them.
    Submit(SubmitArgs),
    /// Be one worker: claim jobs, train them, write results, until the queue is empty.
    Work(WorkArgs),
    /// Success probability per grid point (or one row per run).
    Results(ResultsArgs),
    /// Print the boards the training generator makes and their targets.
    Boards(BoardsArgs),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// The database: a SQLite file path (created if missing for run/submit/work).
    #[arg(long, env = "LIFESWEEP_DB", default_value = "lifesweep.db")]
    pub db: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sweep config (TOML).
    pub config: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
    /// Worker processes (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,
    /// Device for the workers: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seconds between lease renewals of a job in hand; a lease lasts three of these.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat: f64,
    /// Attempts per job before it is marked failed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// How the final table is printed.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
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
    /// This worker's id (default: host:pid).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Seconds between lease renewals; a lease lasts three of these.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat: f64,
    /// Exit when no job is queued instead of waiting for more.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Stop after this many jobs.
    #[arg(long)]
    pub max_jobs: Option<u64>,
    /// Compute threads for this worker (one per worker process scales best).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
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
    /// Group by these parameters (comma separated; default: every axis but seed).
    #[arg(long, value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// Keep only runs whose parameter has this value, e.g. --where steps=2 (repeatable).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BoardsArgs {
    #[arg(long, default_value = "von-neumann")]
    pub rule: String,
    #[arg(long, default_value_t = 1)]
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
