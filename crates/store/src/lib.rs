//! The sweep database: sweeps, their jobs, the leases workers hold on them, workers, and one
//! result row per finished run, in SQLite or PostgreSQL through sqlx. This is the only crate
//! that contains SQL; the schema comes from the top-level `migrations/sqlite/` and
//! `migrations/postgres/` directories, embedded at build time, and is described in
//! `docs/schema.md`.
//!
//! One API, two backends: [`Store::open`] picks PostgreSQL for a `postgres://` URL and SQLite
//! for anything else. Most statements are written once (with `$N` parameters, which both
//! speak) and run on either; where the engines differ (claiming, bulk inserts, locking) each
//! has its own text. On SQLite, every write that other processes may race with is one
//! statement or one `BEGIN IMMEDIATE` transaction, on a WAL database with a long busy timeout,
//! so that many worker processes can claim and finish jobs on one file without "database is
//! locked" reaching a caller. On PostgreSQL, claims take rows with `FOR UPDATE SKIP LOCKED`, so
//! workers on many hosts never wait on each other. Lease times come from the database clock.
//! The store does not train, schedule, read config files or decide whether a process is
//! alive: it records what the runner and the CLI tell it. Queries are runtime queries
//! (`sqlx::query`), so building needs no database.

mod jobs;
mod open;
mod postgres;
mod runs;
mod sweeps;
mod walks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifesweep_spec::{JobKey, RunMetrics, TrainParams, WalkSpec};
use sqlx::{PgPool, SqlitePool};

pub use open::{schema_version, APPLICATION_ID};
pub use walks::{StoredWalk, WalkPointRecord, WalkRequest};

/// What went wrong in the store. Each variant is something a caller can act on; messages say
/// what, where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not a lifesweep database. Nothing was written to it.
    #[error("{path}: not a lifesweep database ({reason}); nothing was changed, choose another database path")]
    NotOurs { path: String, reason: String },
    /// The database was written by a newer lifesweep. Nothing was changed.
    #[error(
        "{path}: the database schema is at version {db_version} but this lifesweep knows versions up to \
         {binary_version}; nothing was changed, use a newer lifesweep"
    )]
    NewerSchema {
        path: String,
        db_version: i64,
        binary_version: i64,
    },
    /// A migration applied to the database differs from the binary's copy of it.
    #[error(
        "{path}: schema migration {version} applied to this database differs from this lifesweep's; \
         nothing was changed, use the lifesweep build that created the database"
    )]
    SchemaMismatch { path: String, version: i64 },
    /// The database (or its directory) cannot be created or written.
    #[error("{path}: cannot create or write the database ({reason}); check that the directory exists and that it and the file are writable")]
    NotWritable { path: String, reason: String },
    /// `open_existing` found no database at the path.
    #[error("{path}: no lifesweep database there; pass the file that `lifesweep run` or `lifesweep submit` wrote")]
    NotFound { path: String },
    /// The target cannot hold a shared lifesweep database (in-memory, or no WAL support).
    #[error("{path}: {reason}")]
    Unsupported { path: String, reason: String },
    /// A sweep of this name exists with different fixed parameters. Nothing was written.
    #[error(
        "sweep {name:?} already exists with different fixed parameters ({}); submit under a new [sweep].name \
         or put the old values back",
        changes.join(", ")
    )]
    SweepConflict { name: String, changes: Vec<String> },
    /// No sweep has this name.
    #[error("no sweep named {name:?} in the database; {}", known_sweeps(known))]
    UnknownSweep { name: String, known: Vec<String> },
    /// No sweep was named and the database holds several.
    #[error("the database holds several sweeps ({}); name the one you mean", names.join(", "))]
    AmbiguousSweep { names: Vec<String> },
    /// No sweep was named and the database holds none.
    #[error("the database holds no sweep yet; submit one with `lifesweep submit CONFIG` or `lifesweep run CONFIG`")]
    NoSweep,
    /// A stored value cannot be read back (edited by hand, or written by an incompatible build).
    #[error("{what}: stored value cannot be read ({message}); the database was changed outside lifesweep")]
    Corrupt { what: String, message: String },
    /// The PostgreSQL server cannot be reached, or refused the connection.
    #[error(
        "{path}: cannot connect to the database server ({reason}); check that it is running and that \
         the host, port, user and password are right"
    )]
    Unreachable { path: String, reason: String },
    /// Applying the schema failed.
    #[error("{path}: applying the schema failed: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    /// Any other database error. Shown once: the sqlx error already carries the server's
    /// message, so it is not also given as a source (which printed it three times).
    #[error("database error: {}", db_message(.0))]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        StoreError::Db(error)
    }
}

pub(crate) fn db_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => e.message().to_string(),
        other => other.to_string(),
    }
}

fn known_sweeps(known: &[String]) -> String {
    if known.is_empty() {
        "it holds none yet".to_string()
    } else {
        format!("known sweeps: {}", known.join(", "))
    }
}

/// A handle on one database (an SQLite file or a PostgreSQL database): a small pool of
/// connections. Cheap to clone; every clone shares the pool.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// The database as given, with any password hidden (for messages).
    path: String,
    /// Sweep names by id: a sweep is never renamed or deleted, so this only grows.
    sweep_names: Arc<Mutex<HashMap<i64, String>>>,
}

/// What [`Store::submit_sweep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitOutcome {
    pub sweep_id: i64,
    /// Jobs created by this submission.
    pub added: u64,
    /// Jobs of the config that the sweep already had (in any state).
    pub existing: u64,
}

/// A worker process, as it registers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Unique across hosts and time, e.g. "host-pid-start".
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// Where it trains, e.g. "cpu" or "cuda:0".
    pub device: String,
}

/// A registered worker and what the database knows of its life (database clock).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    pub info: WorkerInfo,
    pub started_at: f64,
    pub last_seen: f64,
    /// Set when the worker said it stopped, or when its jobs were re-queued as dead.
    pub stopped_at: Option<f64>,
}

/// A job a worker now holds, under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub job_id: i64,
    pub sweep: String,
    pub key: JobKey,
    pub params: TrainParams,
    /// 1 for the first claim; pass it back to `complete_job`, `fail_job` and `release_job`.
    pub attempt: u32,
    /// A loss walk of a finished run (finish it with [`Store::complete_walk`]); `None` for a
    /// training run. `params` are then the walked run's.
    pub walk: Option<WalkSpec>,
}

/// What a finished run hands to [`Store::complete_job`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub metrics: RunMetrics,
    /// Unix seconds on the worker's clock.
    pub started_at: f64,
    pub finished_at: f64,
    pub weights_path: Option<String>,
}

/// A job's state as stored in `jobs.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Jobs by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl JobCounts {
    pub fn total(&self) -> u64 {
        self.queued + self.running + self.done + self.failed + self.cancelled
    }

    /// Jobs that may still produce a result: queued or running.
    pub fn unfinished(&self) -> u64 {
        self.queued + self.running
    }

    fn add(&mut self, state: &str, count: u64) {
        match JobState::from_name(state) {
            Some(JobState::Queued) => self.queued += count,
            Some(JobState::Running) => self.running += count,
            Some(JobState::Done) => self.done += count,
            Some(JobState::Failed) => self.failed += count,
            Some(JobState::Cancelled) => self.cancelled += count,
            // The CHECK constraint keeps other values out.
            None => {}
        }
    }
}

/// A sweep as listed by [`Store::sweeps`].
#[derive(Debug, Clone, PartialEq)]
pub struct SweepInfo {
    pub name: String,
    pub description: String,
    /// Database clock, unix seconds.
    pub created_at: f64,
    /// Names of every axis the sweep was ever submitted with (parameter order, seed last).
    pub axes: Vec<String>,
    pub counts: JobCounts,
}

/// One job with its result, as listed by [`Store::runs`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub job_id: i64,
    pub sweep: String,
    pub key: JobKey,
    pub params: TrainParams,
    /// "queued", "running", "done", "failed" or "cancelled" (see [`JobState`]).
    pub state: String,
    pub attempts: u32,
    /// The last error of a job that is not done.
    pub error: Option<String>,
    /// Present when the job is done. Non-finite numbers come back as NaN.
    pub metrics: Option<RunMetrics>,
    /// Worker clock, unix seconds; present when the job is done.
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// The worker that wrote the result, or the one holding or last holding the job.
    pub worker_id: Option<String>,
    pub weights_path: Option<String>,
}

/// A failed job and its last error, as listed by [`Store::failures`].
#[derive(Debug, Clone, PartialEq)]
pub struct FailedJob {
    pub job_id: i64,
    pub sweep: String,
    pub key: JobKey,
    pub params: TrainParams,
    pub attempts: u32,
    pub error: String,
}

/// The connection pool of one backend.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// The database this store uses, as given (a file path, or a URL with its password
    /// hidden), for messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// The database clock: unix seconds, the clock leases are measured on.
    pub async fn db_now(&self) -> Result<f64, StoreError> {
        let sql = format!("SELECT {}", self.now());
        let now: f64 = on_pool!(self, |pool| sqlx::query_scalar(&sql).fetch_one(pool).await)?;
        Ok(now)
    }

    /// The database clock in this backend's SQL.
    pub(crate) fn now(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => DB_NOW,
            Backend::Postgres(_) => postgres::DB_NOW,
        }
    }

    /// Picks the statement text for this backend, where the two differ.
    pub(crate) fn dialect<'a>(&self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self.backend {
            Backend::Sqlite(_) => sqlite,
            Backend::Postgres(_) => postgres,
        }
    }
}

/// The database clock in SQLite's SQL: unix epoch seconds with millisecond resolution, constant
/// within one statement. (`unixepoch('subsec')` needs SQLite 3.42; this works in any sqlite3
/// shell.)
pub(crate) const DB_NOW: &str = "((julianday('now') - 2440587.5) * 86400.0)";

/// How long one statement waits for another process's write lock before SQLite gives up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the store keeps retrying a statement that SQLite still answered with SQLITE_BUSY
/// (the cases its busy handler does not cover: switching to WAL, WAL recovery, and waits past
/// the busy timeout), or that PostgreSQL chose as a deadlock victim.
const BUSY_RETRY_LIMIT: Duration = Duration::from_secs(300);

impl Store {
    /// A database error as the user can act on it (see [`db_error_at`]).
    pub(crate) fn db_error(&self, error: sqlx::Error) -> StoreError {
        db_error_at(error, &self.path)
    }
}

/// A database error of the database shown as `path`: a file that cannot be written (read-only,
/// no permission) is [`StoreError::NotWritable`] naming it; anything else is
/// [`StoreError::Db`].
pub(crate) fn db_error_at(error: sqlx::Error, path: &str) -> StoreError {
    match sqlite_code(&error) {
        // SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN
        Some(3 | 8 | 14) => StoreError::NotWritable {
            path: path.to_string(),
            reason: db_message(&error),
        },
        _ => StoreError::Db(error),
    }
}

/// The primary SQLite result code of a database error (`SQLITE_BUSY` is 5); None for errors
/// that are not SQLite's.
pub(crate) fn sqlite_code(error: &sqlx::Error) -> Option<i32> {
    match error {
        sqlx::Error::Database(e) if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            e.code()?.parse::<i32>().ok().map(|code| code & 0xff)
        }
        _ => None,
    }
}

/// The SQLSTATE of a PostgreSQL error; None for errors that are not PostgreSQL's.
pub(crate) fn postgres_code(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(e) => e
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .map(|e| e.code().to_string()),
        _ => None,
    }
}

/// A statement that failed this way changed nothing and may simply be run again: SQLITE_BUSY,
/// or a PostgreSQL serialization failure or deadlock.
pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    sqlite_code(error) == Some(5)
        || matches!(postgres_code(error).as_deref(), Some("40001" | "40P01"))
}

/// Randomised exponential backoff for SQLITE_BUSY retries, so that many processes started
/// together do not retry in lockstep.
pub(crate) struct Backoff {
    deadline: Instant,
    delay: Duration,
    state: u64,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        Backoff {
            deadline: Instant::now() + BUSY_RETRY_LIMIT,
            delay: Duration::from_millis(2),
            state: (u64::from(std::process::id()) << 32) ^ nanos | 1,
        }
    }

    /// Sleeps before the next try; false (without sleeping) once the retry limit has passed.
    pub(crate) async fn wait(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        // xorshift64: jitter without a dependency.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let jitter = 0.5 + (self.state % 1000) as f64 / 1000.0;
        tracing::debug!(
            delay_ms = self.delay.as_millis() as u64,
            "database busy; retrying"
        );
        tokio::time::sleep(self.delay.mul_f64(jitter)).await;
        self.delay = (self.delay * 2).min(Duration::from_millis(250));
        true
    }
}

/// Evaluates a sqlx call (an expression ending in `.await`) again while it fails with
/// SQLITE_BUSY (or a PostgreSQL deadlock), with backoff, up to the retry limit. Only for single
/// statements and for `BEGIN`: a statement that failed so changed nothing.
macro_rules! retry_busy {
    ($call:expr) => {{
        let mut backoff = $crate::Backoff::new();
        loop {
            match $call {
                Err(e) if $crate::is_busy(&e) && backoff.wait().await => continue,
                other => break other,
            }
        }
    }};
}
pub(crate) use retry_busy;

/// Runs one sqlx call on the store's pool, whichever the backend, retried as [`retry_busy!`]
/// does: `$call` is written once and compiled for each backend, with `$pool` bound to that
/// backend's pool. Both expansions must have the same type, so calls end in backend-neutral
/// values (`rows_affected()`, scalars, `FromRow` structs).
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $call:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => {
                $crate::retry_busy!($call).map_err(|e| $store.db_error(e))
            }
            $crate::Backend::Postgres($pool) => {
                $crate::retry_busy!($call).map_err(|e| $store.db_error(e))
            }
        }
    };
}
pub(crate) use on_pool;

/// Runs `$body` in a write transaction, whichever the backend: `BEGIN IMMEDIATE` on SQLite (the
/// write lock taken at the start, so no statement inside can fail with SQLITE_BUSY); on
/// PostgreSQL a transaction that first takes the store's advisory lock, so that the store's
/// transactions (submissions, re-queueing) run one at a time there too. `$tx` is the
/// transaction; the body commits it (dropping it rolls back).
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:block) => {{
        // The body runs as an async block so that every error in it, `?` included, passes
        // through `db_error` (a read-only file is named) before the caller returns it.
        let result: Result<_, $crate::StoreError> = match &$store.backend {
            $crate::Backend::Sqlite(pool) => {
                match $crate::retry_busy!(pool.begin_with("BEGIN IMMEDIATE").await) {
                    Ok(mut $tx) => async { Ok($body) }.await,
                    Err(e) => Err(e.into()),
                }
            }
            $crate::Backend::Postgres(pool) => match pool.begin().await {
                Ok(mut $tx) => {
                    async {
                        sqlx::query($crate::postgres::WRITE_LOCK)
                            .execute(&mut *$tx)
                            .await?;
                        Ok($body)
                    }
                    .await
                }
                Err(e) => Err(e.into()),
            },
        };
        match result {
            Ok(value) => value,
            Err($crate::StoreError::Db(e)) => return Err($store.db_error(e)),
            Err(e) => return Err(e),
        }
    }};
}
pub(crate) use in_transaction;

/// A metric as stored: NULL for NaN and the infinities, on both backends (SQLite would store
/// NaN as NULL anyway; PostgreSQL would keep it, and pandas reads NULL better).
pub(crate) fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// Serialises plain data (structs of numbers and strings) to JSON, which cannot fail.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises to JSON")
}
