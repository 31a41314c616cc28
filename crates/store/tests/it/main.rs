//! Integration tests of the store on real database files in temporary directories.

mod claims;
mod open;
mod processes;
mod submit;

use std::path::{Path, PathBuf};

use lifesweep_spec::{LossPoint, RunMetrics, SweepSpec};
use lifesweep_store::{RunRecord, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use tempfile::TempDir;

/// A temporary directory and the path of a database file in it (not created).
pub fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("lifesweep.db");
    (dir, path)
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

pub async fn open(path: &Path) -> Store {
    Store::open(path_str(path))
        .await
        .expect("open the database")
}

/// A sweep from config text (name "test" unless the text names it).
pub fn spec(text: &str) -> SweepSpec {
    SweepSpec::parse(text, "test.toml", "test").expect("test config parses")
}

/// A sweep of `seeds` jobs of one grid point, finishing instantly if trained.
pub fn seeds_spec(name: &str, seeds: u32) -> SweepSpec {
    spec(&format!("[sweep]\nname = \"{name}\"\n[grid]\nseed = {{ from = 1, to = {seeds} }}\n[train]\nbatches = 1"))
}

pub fn metrics(success_rate: f64) -> RunMetrics {
    RunMetrics {
        success_rate,
        training_success: success_rate == 1.0,
        cell_accuracy: 0.5 + success_rate / 2.0,
        final_loss: 0.125,
        loss_curve: vec![
            LossPoint {
                batch: 1000,
                loss: 0.5,
            },
            LossPoint {
                batch: 2000,
                loss: 0.125,
            },
        ],
        param_count: 23,
        wall_seconds: 1.5,
        device: "cpu".into(),
    }
}

pub fn record(success_rate: f64) -> RunRecord {
    RunRecord {
        metrics: metrics(success_rate),
        started_at: 1_700_000_000.0,
        finished_at: 1_700_000_001.5,
        weights_path: None,
    }
}

/// A plain connection to a database file, beside the store (to look at or tamper with it).
pub async fn raw_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true),
    )
    .await
    .expect("open a raw connection")
}

/// The file names in a directory, sorted.
pub fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the temporary directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
