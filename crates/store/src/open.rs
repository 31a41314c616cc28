//! Opening a database: refuse what is not ours or is newer than us without writing a byte, then
//! switch to WAL and apply the schema under an exclusive write lock, so that any number of
//! processes may open a brand-new file at the same moment. A `postgres://` URL goes to
//! `crate::postgres` instead.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use crate::{retry_busy, Backend, Backoff, Store, StoreError, BUSY_TIMEOUT};

/// `PRAGMA application_id` of a lifesweep database: "LSWP" in ASCII.
pub const APPLICATION_ID: i32 = 0x4C53_5750;

/// The SQLite migrations, embedded from the top-level `migrations/sqlite/` directory.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Connections per store. Claims and writes serialise on SQLite's one write lock anyway; a few
/// connections let reads (progress, results) proceed beside a write.
const POOL_SIZE: u32 = 4;

/// The newest schema version this build knows (the same for SQLite and PostgreSQL: the two
/// migration directories mirror each other version for version).
pub fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What the file holds, as far as opening is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbState {
    /// An empty SQLite database (or an empty file): ours to initialise.
    Fresh,
    /// A lifesweep database with every migration this build knows.
    Current,
    /// A lifesweep database that lacks some of this build's migrations.
    Behind,
}

impl Store {
    /// Opens the database at `target`, creating it and the schema if needed: a file path or a
    /// `sqlite://` URL (SQLite), or a `postgres://` URL (PostgreSQL; a missing database is
    /// created when the user may). Refuses, without writing anything, a file or schema that is
    /// not a lifesweep database and a database with a newer schema than this build.
    pub async fn open(target: &str) -> Result<Store, StoreError> {
        open(target, true).await
    }

    /// Like [`Store::open`], but never creates a database: for commands that only read.
    /// A missing or empty file (or PostgreSQL database or schema) is [`StoreError::NotFound`].
    pub async fn open_existing(target: &str) -> Result<Store, StoreError> {
        open(target, false).await
    }
}

async fn open(target: &str, create: bool) -> Result<Store, StoreError> {
    if crate::postgres::is_postgres_url(target) {
        return crate::postgres::open(target, create).await;
    }
    let (options, path) = parse_target(target)?;
    let shown = path.display().to_string();
    check_file(&path, &shown, create)?;
    let options = options
        .create_if_missing(create)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .synchronous(SqliteSynchronous::Normal)
        // a statement slowed by a busy machine or a waiting writer is not the user's concern
        .log_slow_statements(
            tracing::log::LevelFilter::Debug,
            std::time::Duration::from_secs(1),
        );

    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| open_error(e, &shown))?;
    let prepared = prepare(&mut conn, &shown, create).await;
    // Closing a connection only fails if its worker thread is gone; nothing to do about it.
    let _ = conn.close().await;
    prepared?;

    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(600))
        .test_before_acquire(false)
        .connect_lazy_with(options.create_if_missing(false));
    Ok(Store {
        backend: Backend::Sqlite(pool),
        path: shown,
        sweep_names: Arc::new(Mutex::new(HashMap::new())),
    })
}

/// Connect options and the file path (for messages and checks) of a target.
fn parse_target(target: &str) -> Result<(SqliteConnectOptions, PathBuf), StoreError> {
    let unsupported = |reason: String| StoreError::Unsupported {
        path: target.to_string(),
        reason,
    };
    if target.trim().is_empty() {
        return Err(unsupported(
            "no database path given; pass a file path such as lifesweep.db".into(),
        ));
    }
    if target.contains(":memory:") || target.contains("mode=memory") {
        return Err(unsupported(
            "in-memory databases are not supported (worker processes must share one file); pass a file path"
                .into(),
        ));
    }
    if target.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(target).map_err(|e| {
            unsupported(format!(
                "not a valid sqlite:// URL ({e}); pass a file path instead"
            ))
        })?;
        let path = options.get_filename().to_path_buf();
        Ok((options, path))
    } else {
        Ok((
            SqliteConnectOptions::new().filename(target),
            PathBuf::from(target),
        ))
    }
}

/// Checks on the file itself, before SQLite sees it: a file that does not start like an SQLite
/// database is refused without being opened; a missing file needs an existing directory.
fn check_file(path: &Path, shown: &str, create: bool) -> Result<(), StoreError> {
    let not_writable = |reason: String| StoreError::NotWritable {
        path: shown.to_string(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(StoreError::NotOurs {
            path: shown.to_string(),
            reason: "it is a directory".into(),
        }),
        Ok(meta) if meta.len() == 0 => Ok(()),
        Ok(_) => {
            let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
            std::fs::File::open(path)
                .and_then(|f| f.take(SQLITE_MAGIC.len() as u64).read_to_end(&mut head))
                .map_err(|e| not_writable(format!("cannot read it: {e}")))?;
            if head.as_slice() == SQLITE_MAGIC {
                Ok(())
            } else {
                Err(StoreError::NotOurs {
                    path: shown.to_string(),
                    reason: "the file is not an SQLite database".into(),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(StoreError::NotFound {
                    path: shown.to_string(),
                });
            }
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(not_writable(format!(
                    "{} is not a directory",
                    dir.display()
                ))),
                Err(_) => Err(not_writable(format!(
                    "directory {} does not exist",
                    dir.display()
                ))),
            }
        }
        Err(e) => Err(not_writable(e.to_string())),
    }
}

/// Maps the errors of opening and first touching a file to what the user can act on.
fn open_error(error: sqlx::Error, shown: &str) -> StoreError {
    match crate::sqlite_code(&error) {
        // SQLITE_NOTADB
        Some(26) => StoreError::NotOurs {
            path: shown.to_string(),
            reason: crate::db_message(&error),
        },
        _ => crate::db_error_at(error, shown),
    }
}

/// Brings the database to this build's schema, or refuses it. Writes nothing before the file
/// is known to be ours (or empty) and not newer than us. With `create` false, a current
/// database is not written at all.
async fn prepare(conn: &mut SqliteConnection, shown: &str, create: bool) -> Result<(), StoreError> {
    let state = {
        let mut backoff = Backoff::new();
        loop {
            // One read transaction, so that the mark, the tables and the migrations are seen
            // as of one moment (another process may be committing the schema meanwhile).
            let inspected = async {
                let mut tx = conn.begin().await.map_err(|e| open_error(e, shown))?;
                let state = inspect(&mut tx, shown).await?;
                tx.rollback().await?;
                Ok::<_, StoreError>(state)
            }
            .await;
            match inspected {
                Err(StoreError::Db(e)) if crate::is_busy(&e) && backoff.wait().await => continue,
                other => break other?,
            }
        }
    };
    match state {
        DbState::Current if !create => return Ok(()),
        DbState::Fresh if !create => {
            return Err(StoreError::NotFound {
                path: shown.to_string(),
            })
        }
        _ => {}
    }

    ensure_wal(conn, shown).await?;

    // Decide again under the write lock: another process may have created the schema since.
    // Taking the lock also proves the file is writable.
    let mut tx =
        retry_busy!(conn.begin_with("BEGIN IMMEDIATE").await).map_err(|e| open_error(e, shown))?;
    let state = inspect(&mut tx, shown).await?;
    if state != DbState::Current {
        sqlx::query(&format!("PRAGMA application_id = {APPLICATION_ID}"))
            .execute(&mut *tx)
            .await?;
        MIGRATOR
            .run_direct(&mut *tx)
            .await
            .map_err(|source| StoreError::Migrate {
                path: shown.to_string(),
                source,
            })?;
        tracing::info!(path = shown, version = schema_version(), from = ?state, "applied the database schema");
    }
    tx.commit().await.map_err(|e| open_error(e, shown))?;
    Ok(())
}

/// Reads (never writes) what the file holds.
async fn inspect(conn: &mut SqliteConnection, shown: &str) -> Result<DbState, StoreError> {
    let application_id: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| open_error(e, shown))?;
    let objects: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
        .fetch_one(&mut *conn)
        .await?;
    if application_id != i64::from(APPLICATION_ID) {
        if application_id == 0 && objects == 0 {
            return Ok(DbState::Fresh);
        }
        let reason = if application_id == 0 {
            format!("an SQLite database with {objects} tables, indexes or views of its own")
        } else {
            format!("an SQLite database of another application, application_id {application_id:#x}")
        };
        return Err(StoreError::NotOurs {
            path: shown.to_string(),
            reason,
        });
    }

    let has_migrations: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if has_migrations == 0 {
        return Ok(DbState::Behind);
    }
    let applied: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    if check_applied(&MIGRATOR, &applied, shown)? {
        Ok(DbState::Current)
    } else {
        Ok(DbState::Behind)
    }
}

/// Compares the migrations a database applied (version, checksum, success) with `migrator`'s:
/// true when it has every one, false when it lacks some; refuses one it does not know (newer
/// schema) or one that differs.
pub(crate) fn check_applied(
    migrator: &Migrator,
    applied: &[(i64, Vec<u8>, bool)],
    shown: &str,
) -> Result<bool, StoreError> {
    let newest_applied = applied
        .iter()
        .map(|(version, ..)| *version)
        .max()
        .unwrap_or(0);
    if applied
        .iter()
        .any(|(version, ..)| !migrator.version_exists(*version))
    {
        return Err(StoreError::NewerSchema {
            path: shown.to_string(),
            db_version: newest_applied,
            binary_version: schema_version(),
        });
    }
    for (version, checksum, success) in applied {
        let same = migrator
            .iter()
            .any(|m| m.version == *version && *m.checksum == **checksum);
        if !same || !success {
            return Err(StoreError::SchemaMismatch {
                path: shown.to_string(),
                version: *version,
            });
        }
    }
    Ok(applied.len() == migrator.iter().count())
}

/// Switches the file to WAL (a setting stored in the file). SQLite's busy handler does not
/// cover this switch, so contention is retried here.
async fn ensure_wal(conn: &mut SqliteConnection, shown: &str) -> Result<(), StoreError> {
    let mut backoff = Backoff::new();
    let mut refusals = 0;
    loop {
        let current: Result<String, sqlx::Error> = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await;
        let mode = match current {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => {
                sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
                    .fetch_one(&mut *conn)
                    .await
            }
            Err(e) => Err(e),
        };
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            // SQLite answers with the old mode when it could not switch; that may be a race
            // with another process, so try a few times before giving up.
            Ok(mode) => {
                refusals += 1;
                if refusals > 20 || !backoff.wait().await {
                    return Err(StoreError::Unsupported {
                        path: shown.to_string(),
                        reason: format!(
                            "SQLite cannot use write-ahead logging here (journal mode stays {mode:?}); \
                             put the database on a local file system"
                        ),
                    });
                }
            }
            Err(e) if crate::is_busy(&e) && backoff.wait().await => {}
            Err(e) => return Err(open_error(e, shown)),
        }
    }
}
