//! What several commands share: reading configs, opening the store, logging, signals.

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
        .with_target(false)
        .init();
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

/// Where `save_weights` runs keep their weights: `<dir of db>/<db stem>.weights/`.
pub fn weights_dir(db: &str) -> PathBuf {
    let path = Path::new(db.strip_prefix("sqlite://").unwrap_or(db));
    let path = Path::new(
        path.to_str()
            .unwrap_or("lifesweep.db")
            .split('?')
            .next()
            .unwrap_or("lifesweep.db"),
    );
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
