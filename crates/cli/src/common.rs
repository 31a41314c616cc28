//! What several commands share: reading configs, opening the store, logging, signals.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lifesweep_spec::SweepSpec;
use lifesweep_store::Store;
use tracing_subscriber::EnvFilter;

pub const EXIT_FAILED_JOBS: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// The reader of stdout went away (`lifesweep results | head`): the command ends quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes the command's output to stdout. A closed pipe is [`StdoutClosed`]; any other failure
/// (a full disk) is an error that says so, instead of the panic of `print!`.
pub fn write_stdout(args: std::fmt::Arguments) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::anyhow!("cannot write the output to stdout: {e}")),
    }
}

/// `print!` that returns the write's failure from the calling function (see [`write_stdout`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::common::write_stdout(format_args!($($arg)*))?
    };
}

/// `println!` that returns the write's failure from the calling function.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::common::write_stdout(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::common::write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `eprintln!` that never panics: a message that cannot reach stderr is dropped.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colour codes only on a terminal: not in Slurm task logs, files or pipes
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// What submitting `spec` changes in the settings of its sweep, if it exists already (the
/// description and `fuse_seeds`, which the jobs do not depend on; changed training parameters
/// are refused by the store instead), as `key old -> new`.
pub async fn changed_settings(store: &Store, spec: &SweepSpec) -> Result<Vec<String>> {
    let Some(existing) = store
        .sweeps()
        .await?
        .into_iter()
        .find(|s| s.name == spec.name)
    else {
        return Ok(Vec::new());
    };
    let mut changes = Vec::new();
    if existing.description != spec.description {
        changes.push(format!(
            "description {:?} -> {:?}",
            existing.description, spec.description
        ));
    }
    let fuse_seeds = store.fuse_seeds(&spec.name).await?;
    if fuse_seeds != spec.fuse_seeds {
        changes.push(format!("fuse_seeds {fuse_seeds} -> {}", spec.fuse_seeds));
    }
    Ok(changes)
}

/// Reads and validates a sweep config; nothing is written anywhere if this fails.
pub fn load_spec(path: &Path) -> Result<(SweepSpec, String)> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{origin}: cannot read the sweep config"))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("sweep");
    let default_name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let spec = SweepSpec::parse(&text, &origin, &default_name)?;
    Ok((spec, text))
}

/// Opens (creating if needed) the database for commands that write.
pub async fn open_store(db: &str) -> Result<Store> {
    Ok(Store::open(db).await?)
}

/// Opens an existing database for commands that only read.
pub async fn open_existing_store(db: &str) -> Result<Store> {
    Ok(Store::open_existing(db).await?)
}

/// Whether `db` names a PostgreSQL database rather than an SQLite file.
pub fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Where the workers put the weights of `save_weights` runs, as an absolute path (workers may
/// run in another directory): `--weights-dir` (or `LIFESWEEP_WEIGHTS_DIR`), else for an
/// SQLite database `<dir of db>/<db stem>.weights/`. A PostgreSQL database has no directory of
/// its own: without `--weights-dir` this is `None` when no job that may still run saves weights
/// (`saves_weights`), and an error naming the flag when one does, rather than a relative
/// folder on whichever host a worker runs.
pub fn weights_dir(
    db: &str,
    given: Option<&Path>,
    saves_weights: bool,
    sweep: Option<&str>,
) -> Result<Option<PathBuf>> {
    let dir = match given {
        Some(dir) if dir.as_os_str().is_empty() => {
            bail!("--weights-dir: expected a directory, got an empty path")
        }
        Some(dir) => dir.to_path_buf(),
        None if is_postgres(db) => {
            if saves_weights {
                let what = match sweep {
                    Some(sweep) => format!("sweep {sweep} has jobs that save"),
                    None => "a sweep in the database has jobs that save".to_string(),
                };
                bail!(
                    "--weights-dir: {what} their weights (save_weights = true), and a PostgreSQL \
                     database has no directory beside it to put them in; pass --weights-dir DIR \
                     (or set LIFESWEEP_WEIGHTS_DIR), a directory every worker can reach"
                );
            }
            return Ok(None);
        }
        None => sqlite_weights_dir(db),
    };
    let absolute = std::path::absolute(&dir).with_context(|| {
        format!(
            "--weights-dir {}: cannot make the path absolute",
            dir.display()
        )
    })?;
    Ok(Some(absolute))
}

/// `<dir of db>/<db stem>.weights`, for an SQLite path or `sqlite://` URL.
fn sqlite_weights_dir(db: &str) -> PathBuf {
    let path = db.strip_prefix("sqlite://").unwrap_or(db);
    let path = Path::new(path.split('?').next().unwrap_or("lifesweep.db"));
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("lifesweep");
    path.parent()
        .unwrap_or(Path::new("."))
        .join(format!("{stem}.weights"))
}

pub fn heartbeat(seconds: f64) -> Result<Duration> {
    if !(seconds.is_finite() && (0.05..=3600.0).contains(&seconds)) {
        bail!("--heartbeat: expected seconds between 0.05 and 3600, got {seconds}");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A flag set by the first SIGINT or SIGTERM.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = Arc::new(AtomicBool::new(false));
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        flag.store(true, Ordering::SeqCst);
    });
    Ok(stop)
}

/// A current-thread runtime: the scheduler forks workers from this thread, which must outlive
/// them for their parent-death signal to mean what it says.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_weights_go_beside_the_database_as_an_absolute_path() {
        let cwd = std::env::current_dir().unwrap();
        let dir = weights_dir("runs/grid.db", None, true, Some("grid")).unwrap();
        assert_eq!(dir, Some(cwd.join("runs/grid.weights")));
        let dir = weights_dir("sqlite://grid.db?mode=rwc", None, false, None).unwrap();
        assert_eq!(dir, Some(cwd.join("grid.weights")));
        let dir = weights_dir("/data/x.db", None, false, None).unwrap();
        assert_eq!(dir, Some(PathBuf::from("/data/x.weights")));
    }

    #[test]
    fn a_given_directory_wins_and_is_made_absolute() {
        let cwd = std::env::current_dir().unwrap();
        for db in ["grid.db", "postgres://me@db/sweeps"] {
            let dir = weights_dir(db, Some(Path::new("w")), true, Some("grid")).unwrap();
            assert_eq!(dir, Some(cwd.join("w")), "{db}");
        }
        let err = weights_dir("grid.db", Some(Path::new("")), false, None).unwrap_err();
        assert!(err.to_string().contains("--weights-dir"), "{err}");
    }

    #[test]
    fn postgres_needs_a_directory_only_for_jobs_that_save_weights() {
        let db = "postgresql://me@db/sweeps";
        assert_eq!(weights_dir(db, None, false, Some("grid")).unwrap(), None);
        let err = weights_dir(db, None, true, Some("grid"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--weights-dir")
                && err.contains("sweep grid")
                && err.contains("save_weights = true")
                && err.contains("LIFESWEEP_WEIGHTS_DIR"),
            "{err}"
        );
    }
}
