//! Integration tests of the store on real databases: SQLite files in temporary directories, and
//! databases on a real PostgreSQL server that the tests start themselves (`lifesweep-testkit`).
//! Most tests run on both backends (`on_both_backends!`); a PostgreSQL variant passes without
//! running, after saying so once, where PostgreSQL is not installed.

mod claims;
mod open;
mod postgres;
mod processes;
mod submit;
mod walks;

use std::path::{Path, PathBuf};

use lifesweep_spec::{LossPoint, RunMetrics, SweepSpec};
use lifesweep_store::{ClaimedJob, RunRecord, Store};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use tempfile::TempDir;

/// A database for one test, not created yet: an SQLite file path in a temporary directory, or
/// a fresh database name on the test PostgreSQL server.
pub struct TestDb {
    pub target: String,
    pub backend: Backend,
    /// The SQLite file's directory, removed with the test.
    _dir: Option<TempDir>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let (dir, path) = temp_db();
        TestDb {
            target: path_str(&path).to_string(),
            backend: Backend::Sqlite,
            _dir: Some(dir),
        }
    }

    /// None when PostgreSQL is not installed (the test then passes without running).
    pub fn postgres() -> Option<TestDb> {
        let server = lifesweep_testkit::postgres()?;
        Some(TestDb {
            target: server.fresh_url(),
            backend: Backend::Postgres,
            _dir: None,
        })
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.target).await.expect("open the database")
    }

    /// The statement text for this backend, where the two differ.
    pub fn pick<'a>(&self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }

    /// Runs SQL (one or more statements) on a connection beside the store, to look at or
    /// tamper with the database.
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = raw_connection(Path::new(&self.target)).await;
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = self.postgres_connection().await;
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// The first column of a query's rows, as text (cast in the SQL where needed).
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = raw_connection(Path::new(&self.target)).await;
                let rows = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                rows
            }
            Backend::Postgres => {
                let mut conn = self.postgres_connection().await;
                let rows = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                rows
            }
        }
    }

    /// A query's single integer.
    pub async fn integer(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = raw_connection(Path::new(&self.target)).await;
                let value = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                value
            }
            Backend::Postgres => {
                let mut conn = self.postgres_connection().await;
                let value = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                value
            }
        }
    }

    /// Everything about the database that a refused open must leave as it was: the file's
    /// bytes, or the schema's objects and the rows of the store's tables.
    pub async fn snapshot(&self) -> Vec<String> {
        match self.backend {
            Backend::Sqlite => {
                let bytes = std::fs::read(&self.target).unwrap_or_default();
                vec![format!("{bytes:?}")]
            }
            Backend::Postgres => {
                let mut lines = self
                    .strings(
                        "SELECT c.relname::text || ' ' || c.relkind::text FROM pg_class AS c
                         JOIN pg_namespace AS n ON n.oid = c.relnamespace
                         WHERE n.nspname = current_schema() ORDER BY 1",
                    )
                    .await;
                let tables = self
                    .strings(
                        "SELECT c.relname::text FROM pg_class AS c
                         JOIN pg_namespace AS n ON n.oid = c.relnamespace
                         WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY 1",
                    )
                    .await;
                for table in tables {
                    let rows = self
                        .strings(&format!("SELECT t::text FROM \"{table}\" AS t ORDER BY 1"))
                        .await;
                    lines.push(format!("{table}: {rows:?}"));
                }
                lines
            }
        }
    }

    async fn postgres_connection(&self) -> PgConnection {
        PgConnection::connect(&self.target)
            .await
            .expect("open a raw PostgreSQL connection")
    }
}

/// Declares a test that runs on each backend: `on_both_backends!(name)` for an
/// `async fn name(db: TestDb)` beside it makes `name::sqlite` and `name::postgres`;
/// `on_both_backends!(name, flavor = "multi_thread", worker_threads = 4)` passes the runtime
/// options to `#[tokio::test]`.
#[macro_export]
macro_rules! on_both_backends {
    ($test:ident $(, $($option:tt)*)?) => {
        mod $test {
            #[tokio::test$(($($option)*))?]
            async fn sqlite() {
                super::$test($crate::TestDb::sqlite()).await;
            }

            #[tokio::test$(($($option)*))?]
            async fn postgres() {
                if let Some(db) = $crate::TestDb::postgres() {
                    super::$test(db).await;
                }
            }
        }
    };
}

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

/// Claims the next job, which the test knows is there.
pub async fn claimed(
    store: &Store,
    worker: &str,
    sweep: Option<&str>,
    lease: std::time::Duration,
) -> ClaimedJob {
    store
        .claim_next_job(worker, sweep, lease)
        .await
        .unwrap()
        .expect("a job to claim")
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
