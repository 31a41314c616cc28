//! Opening: creating, reopening, and refusing what is not ours without touching it.

use std::sync::Arc;

use lifesweep_store::{schema_version, Store, StoreError, APPLICATION_ID};

use crate::{dir_listing, open, path_str, raw_connection, seeds_spec, temp_db, Backend, TestDb};

crate::on_both_backends!(creates_a_database_marked_as_ours_and_reopens_it);
async fn creates_a_database_marked_as_ours_and_reopens_it(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 3), "", 3)
        .await
        .unwrap();
    store.close().await;

    let application_id = db
        .integer(db.pick(
            "PRAGMA application_id",
            "SELECT application_id::bigint FROM lifesweep_database",
        ))
        .await;
    assert_eq!(application_id, i64::from(APPLICATION_ID));
    if db.backend == Backend::Sqlite {
        assert_eq!(db.strings("PRAGMA journal_mode").await, ["wal"]);
    }
    let newest = db
        .integer("SELECT max(version) FROM _sqlx_migrations")
        .await;
    assert_eq!(newest, schema_version());

    for store in [
        db.open().await,
        Store::open_existing(&db.target).await.unwrap(),
    ] {
        assert_eq!(store.job_counts(Some("a")).await.unwrap().queued, 3);
        assert_eq!(store.resolve_sweep(None).await.unwrap(), "a");
    }
}

#[tokio::test]
async fn accepts_a_sqlite_url() {
    let (_dir, path) = temp_db();
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store
        .submit_sweep(&seeds_spec("a", 1), "", 3)
        .await
        .unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn open_existing_refuses_a_missing_or_empty_file_and_creates_nothing() {
    let (dir, path) = temp_db();
    let err = Store::open_existing(path_str(&path)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(path_str(&path)), "{err}");
    assert!(dir_listing(dir.path()).is_empty());

    std::fs::write(&path, b"").unwrap();
    let err = Store::open_existing(path_str(&path)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[tokio::test]
async fn an_empty_file_becomes_a_database() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, b"").unwrap();
    let store = open(&path).await;
    assert_eq!(
        store
            .submit_sweep(&seeds_spec("a", 2), "", 3)
            .await
            .unwrap()
            .added,
        2
    );
}

#[tokio::test]
async fn refuses_a_path_in_a_missing_directory() {
    let (dir, _) = temp_db();
    let path = dir.path().join("no-such-dir").join("lifesweep.db");
    let err = Store::open(path_str(&path)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(path_str(&path)) && message.contains("does not exist"),
        "{message}"
    );
}

/// Deterministic bytes that are not an SQLite file.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn refuses_a_file_that_is_not_sqlite_without_touching_it() {
    let (dir, path) = temp_db();
    // Random bytes, and random bytes behind a real SQLite header.
    let mut fake_header = b"SQLite format 3\0".to_vec();
    fake_header.extend(noise(8192));
    for bytes in [noise(8192), b"steps = 1\n".to_vec(), fake_header] {
        std::fs::write(&path, &bytes).unwrap();
        for result in [
            Store::open(path_str(&path)).await,
            Store::open_existing(path_str(&path)).await,
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, StoreError::NotOurs { .. }), "{err:?}");
            assert!(
                err.to_string().contains("not a lifesweep database"),
                "{err}"
            );
        }
        assert!(
            std::fs::read(&path).unwrap() == bytes,
            "the file was changed"
        );
        assert_eq!(dir_listing(dir.path()), ["lifesweep.db"]);
    }
}

#[tokio::test]
async fn refuses_a_foreign_sqlite_database_without_touching_it() {
    use sqlx::Connection;
    let (dir, path) = temp_db();
    let mut conn = raw_connection(&path).await;
    sqlx::query("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('keep me')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let other = dir.path().join("other.db");
    let mut conn = raw_connection(&other).await;
    sqlx::query("PRAGMA application_id = 42; PRAGMA user_version = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    // Another application's database in WAL mode.
    let wal = dir.path().join("wal.db");
    let mut conn = raw_connection(&wal).await;
    sqlx::query("PRAGMA journal_mode = WAL; CREATE TABLE notes (text TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    for path in [&path, &other, &wal] {
        let before = std::fs::read(path).unwrap();
        for result in [
            Store::open(path_str(path)).await,
            Store::open_existing(path_str(path)).await,
        ] {
            let err = result.unwrap_err();
            assert!(matches!(err, StoreError::NotOurs { .. }), "{err:?}");
            assert!(err.to_string().contains(path_str(path)), "{err}");
        }
        assert!(
            std::fs::read(path).unwrap() == before,
            "{} was changed",
            path.display()
        );
    }
    assert_eq!(
        dir_listing(dir.path()),
        ["lifesweep.db", "other.db", "wal.db"]
    );
}

crate::on_both_backends!(refuses_a_newer_schema_and_changes_nothing);
async fn refuses_a_newer_schema_and_changes_nothing(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 2), "", 3)
        .await
        .unwrap();
    store.close().await;
    db.execute(db.pick(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101, 'from the future', 1, x'00', 0)",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101, 'from the future', true, '\\x00', 0)",
    ))
    .await;

    let before = db.snapshot().await;
    for result in [
        Store::open(&db.target).await,
        Store::open_existing(&db.target).await,
    ] {
        match result.unwrap_err() {
            StoreError::NewerSchema {
                db_version,
                binary_version,
                ..
            } => {
                assert_eq!((db_version, binary_version), (99990101, schema_version()));
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
    }
    assert!(db.snapshot().await == before, "the database was changed");
}

crate::on_both_backends!(refuses_a_database_whose_applied_migration_differs);
async fn refuses_a_database_whose_applied_migration_differs(db: TestDb) {
    db.open().await.close().await;
    db.execute(db.pick(
        "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1",
        "UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 1",
    ))
    .await;
    let err = Store::open(&db.target).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaMismatch { version: 1, .. }),
        "{err:?}"
    );
}

crate::on_both_backends!(
    concurrent_opens_of_a_new_database_create_the_schema_once,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn concurrent_opens_of_a_new_database_create_the_schema_once(db: TestDb) {
    let target = Arc::new(db.target.clone());
    let opens: Vec<_> = (0..32)
        .map(|_| {
            let target = Arc::clone(&target);
            tokio::spawn(async move { Store::open(&target).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().expect("every concurrent open succeeds");
    }
    let rows = db.integer("SELECT count(*) FROM _sqlx_migrations").await;
    assert_eq!(rows, schema_version());
}

crate::on_both_backends!(the_runs_view_has_a_column_per_parameter_and_metric);
async fn the_runs_view_has_a_column_per_parameter_and_metric(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 2), "", 3)
        .await
        .unwrap();
    let job = crate::claimed(&store, "w1", None, std::time::Duration::from_secs(60)).await;
    assert!(store
        .complete_job(job.job_id, "w1", job.attempt, &crate::record(1.0))
        .await
        .unwrap());

    let columns = db
        .strings(db.pick(
            "SELECT name FROM pragma_table_info('runs')",
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'runs'",
        ))
        .await;
    let params = serde_json::to_value(lifesweep_spec::TrainParams::default()).unwrap();
    let metrics = serde_json::to_value(crate::metrics(1.0)).unwrap();
    let expected = params
        .as_object()
        .unwrap()
        .keys()
        .chain(metrics.as_object().unwrap().keys());
    for key in expected.filter(|k| *k != "loss_curve") {
        assert!(
            columns.contains(key),
            "the runs view lacks a column {key:?}: {columns:?}"
        );
    }
    let rows = db
        .strings(
            "SELECT sweep || ' ' || seed || ' ' || state || ' ' || coalesce(training_success, -1)
             FROM runs ORDER BY job_id",
        )
        .await;
    assert_eq!(rows, ["a 1 done 1", "a 2 queued -1"]);
    let steps = db
        .integer("SELECT CAST(sum(steps) + sum(use_sigmoid) AS BIGINT) FROM runs")
        .await;
    assert_eq!(
        steps, 2,
        "integers and booleans (as 0/1) come out as numbers"
    );
}
