//! Opening a PostgreSQL database (a `postgres://` URL): create the database if it is missing,
//! refuse a schema that is not ours or is newer than us without writing to it, then apply the
//! schema under an advisory lock, so that any number of processes on any number of hosts may
//! open a brand-new database at the same moment.
//!
//! The tables live in the connection's current schema (the first existing schema of
//! `search_path`, normally `public`; `?options=-csearch_path%3Dname` in the URL picks
//! another). A marker table, `lifesweep_database`, plays the part of SQLite's
//! `PRAGMA application_id`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::{Backend, Store, StoreError, APPLICATION_ID};

/// The PostgreSQL migrations, embedded from the top-level `migrations/postgres/` directory.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// The database clock in PostgreSQL's SQL: unix epoch seconds (microsecond resolution) at the
/// start of the current transaction, so constant within one statement as SQLite's is.
pub(crate) const DB_NOW: &str = "(extract(epoch FROM now())::double precision)";

/// Taken first by every write transaction of the store (see `in_transaction!`): the store's
/// transactions on one schema run one at a time, as they do on SQLite.
pub(crate) const WRITE_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('lifesweep write ' || current_schema(), 0))";

/// Taken while the schema is inspected and applied.
const SCHEMA_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('lifesweep schema ' || current_schema(), 0))";

/// The marker table: one row holding [`APPLICATION_ID`].
const MARKER_TABLE: &str = "lifesweep_database";

/// Connections per store. Each worker process holds a pool, so this stays small: a server
/// allows 100 connections by default.
const POOL_SIZE: u32 = 4;

/// Whether a `--db` target names a PostgreSQL database.
pub(crate) fn is_postgres_url(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

/// The URL with its password (in the user part or a `password=` parameter) replaced by `***`,
/// for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let mut shown = url.to_string();
    if let Some(scheme_end) = shown.find("://") {
        let rest = scheme_end + 3;
        let authority_end = shown[rest..]
            .find(['/', '?'])
            .map_or(shown.len(), |i| rest + i);
        if let Some(at) = shown[rest..authority_end].rfind('@') {
            let user_info = &shown[rest..rest + at];
            if let Some(colon) = user_info.find(':') {
                shown.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(query) = shown.find('?') {
        let (head, params) = shown.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => p.to_string(),
            })
            .collect();
        shown = format!("{head}{}", params.join("&"));
    }
    shown
}

/// What the schema holds, as far as opening is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbState {
    /// A schema without tables, views or sequences: ours to initialise.
    Fresh,
    /// A lifesweep schema with every migration this build knows.
    Current,
    /// A lifesweep schema that lacks some of this build's migrations.
    Behind,
}

pub(crate) async fn open(target: &str, create: bool) -> Result<Store, StoreError> {
    let shown = redact(target);
    let options = PgConnectOptions::from_str(target)
        .map_err(|e| StoreError::Unsupported {
            path: shown.clone(),
            reason: format!(
                "not a valid PostgreSQL URL ({e}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ),
        })?
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(
            tracing::log::LevelFilter::Debug,
            std::time::Duration::from_secs(1),
        );

    let mut conn = match PgConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(e) if is_missing_database(&e) => {
            if !create {
                return Err(StoreError::NotFound { path: shown });
            }
            create_database(&options, &shown).await?;
            PgConnection::connect_with(&options)
                .await
                .map_err(|e| connect_error(e, &shown))?
        }
        Err(e) => return Err(connect_error(e, &shown)),
    };
    let prepared = prepare(&mut conn, &shown, create).await;
    // Closing only fails if the connection is already broken; nothing to do about it.
    let _ = conn.close().await;
    prepared?;

    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(120))
        .idle_timeout(Duration::from_secs(60))
        .connect_lazy_with(options);
    Ok(Store {
        backend: Backend::Postgres(pool),
        path: shown,
        sweep_names: Arc::new(Mutex::new(HashMap::new())),
    })
}

/// `3D000 invalid_catalog_name`: the database in the URL does not exist.
fn is_missing_database(error: &sqlx::Error) -> bool {
    crate::postgres_code(error).as_deref() == Some("3D000")
}

fn connect_error(error: sqlx::Error, shown: &str) -> StoreError {
    let reason = match &error {
        sqlx::Error::Database(e) => e.message().to_string(),
        other => other.to_string(),
    };
    StoreError::Unreachable {
        path: shown.to_string(),
        reason,
    }
}

/// Creates the database named in the URL, through the server's `postgres` database. Another
/// process creating it at the same moment is not an error.
async fn create_database(options: &PgConnectOptions, shown: &str) -> Result<(), StoreError> {
    let name = options.get_database().unwrap_or_default().to_string();
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .map_err(|e| connect_error(e, shown))?;
    let created = sqlx::query(&format!(
        "CREATE DATABASE \"{}\"",
        name.replace('"', "\"\"")
    ))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    match created {
        Ok(_) => {
            tracing::info!(database = %name, "created the database");
            Ok(())
        }
        // 42P04 duplicate_database; 23505: two CREATE DATABASE of one name racing.
        Err(e) if matches!(crate::postgres_code(&e).as_deref(), Some("42P04" | "23505")) => Ok(()),
        Err(e) => Err(StoreError::Unsupported {
            path: shown.to_string(),
            reason: format!(
                "the database {name:?} does not exist and cannot be created ({}); create it with \
                 `createdb {name}` or ask its administrator",
                message(&e)
            ),
        }),
    }
}

fn message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => e.message().to_string(),
        other => other.to_string(),
    }
}

/// Brings the schema to this build's, or refuses it. Writes nothing before the schema is known
/// to be ours (or empty) and not newer than us. With `create` false, a current schema is not
/// written at all.
async fn prepare(conn: &mut PgConnection, shown: &str, create: bool) -> Result<(), StoreError> {
    let state = {
        let mut tx = conn.begin().await?;
        let state = inspect(&mut tx, shown).await?;
        tx.rollback().await?;
        state
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

    // Decide again under the lock: another process may have created the schema since. DDL is
    // transactional here, so the marker and every migration commit together or not at all.
    let mut tx = conn.begin().await?;
    sqlx::query(SCHEMA_LOCK).execute(&mut *tx).await?;
    let state = inspect(&mut tx, shown).await?;
    if state != DbState::Current {
        let applied = async {
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (application_id integer NOT NULL)"
            ))
            .execute(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "INSERT INTO {MARKER_TABLE} (application_id)
                 SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM {MARKER_TABLE})"
            ))
            .bind(APPLICATION_ID)
            .execute(&mut *tx)
            .await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if let Err(e) = applied {
            return Err(schema_error(e, shown));
        }
        MIGRATOR
            .run_direct(&mut *tx)
            .await
            .map_err(|source| StoreError::Migrate {
                path: shown.to_string(),
                source,
            })?;
        tracing::info!(path = shown, version = crate::schema_version(), from = ?state, "applied the database schema");
    }
    tx.commit().await?;
    Ok(())
}

/// A failure to create the schema: most often a user without CREATE on the schema.
fn schema_error(error: sqlx::Error, shown: &str) -> StoreError {
    if crate::postgres_code(&error).as_deref() == Some("42501") {
        StoreError::Unsupported {
            path: shown.to_string(),
            reason: format!(
                "this user may not create tables in the schema ({}); grant it CREATE on the schema \
                 or pick another one with ?options=-csearch_path%3DNAME",
                message(&error)
            ),
        }
    } else {
        StoreError::Db(error)
    }
}

/// Reads (never writes) what the current schema holds.
async fn inspect(conn: &mut PgConnection, shown: &str) -> Result<DbState, StoreError> {
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut *conn)
        .await?;
    let Some(schema) = schema else {
        return Err(StoreError::Unsupported {
            path: shown.to_string(),
            reason: "no schema to hold the tables: none of the search_path exists; create the \
                     schema or name an existing one with ?options=-csearch_path%3DNAME"
                .to_string(),
        });
    };
    let objects: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
    )
    .bind(&schema)
    .fetch_one(&mut *conn)
    .await?;
    let has = |table: &'static str| {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
                            WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
        )
        .bind(schema.clone())
        .bind(table)
    };
    let marked = has(MARKER_TABLE).fetch_one(&mut *conn).await?;
    if !marked {
        if objects == 0 {
            return Ok(DbState::Fresh);
        }
        return Err(StoreError::NotOurs {
            path: shown.to_string(),
            reason: format!(
                "its schema {schema:?} holds {objects} tables, views or sequences of another application"
            ),
        });
    }
    let ids: Vec<i32> = sqlx::query_scalar(&format!("SELECT application_id FROM {MARKER_TABLE}"))
        .fetch_all(&mut *conn)
        .await?;
    if ids != [APPLICATION_ID] {
        return Err(StoreError::NotOurs {
            path: shown.to_string(),
            reason: format!("its table {schema}.{MARKER_TABLE} does not hold lifesweep's mark"),
        });
    }

    if !has("_sqlx_migrations").fetch_one(&mut *conn).await? {
        return Ok(DbState::Behind);
    }
    let applied: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    if crate::open::check_applied(&MIGRATOR, &applied, shown)? {
        Ok(DbState::Current)
    } else {
        Ok(DbState::Behind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://me:secret@db.example:5432/sweeps"),
            "postgres://me:***@db.example:5432/sweeps"
        );
        assert_eq!(
            redact("postgresql://me@host/db?sslmode=require&password=x"),
            "postgresql://me@host/db?sslmode=require&password=***"
        );
        assert_eq!(redact("postgres://host/db"), "postgres://host/db");
    }

    #[test]
    fn both_engines_have_the_same_schema_versions() {
        let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(&MIGRATOR), versions(&crate::open::MIGRATOR));
    }
}
