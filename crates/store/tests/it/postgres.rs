//! What only PostgreSQL has: databases created on demand, schemas shared with other
//! applications, servers that are not there, passwords in URLs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lifesweep_store::{Store, StoreError};

use crate::{record, seeds_spec, spec, TestDb};

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn open_existing_refuses_a_missing_database_and_creates_nothing() {
    let Some(db) = TestDb::postgres() else { return };
    let err = Store::open_existing(&db.target).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&db.target), "{err}");
    // The database still does not exist: opening it to look fails the same way.
    let err = Store::open_existing(&db.target).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    // An empty database is no lifesweep database either, and stays empty.
    db.open().await.close().await;
    db.execute("DROP VIEW runs, walks; DROP TABLE walk_points, results, workers, jobs, sweeps, _sqlx_migrations, lifesweep_database; DROP FUNCTION results_mark_job_done")
        .await;
    let err = Store::open_existing(&db.target).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert!(db.snapshot().await.is_empty());
}

#[tokio::test]
async fn refuses_a_database_of_another_application_without_touching_it() {
    let Some(db) = TestDb::postgres() else { return };
    // Create the database through the store, then make it someone else's.
    db.open().await.close().await;
    db.execute(
        "DROP VIEW runs, walks; DROP TABLE walk_points, results, workers, jobs, sweeps, _sqlx_migrations, lifesweep_database;
         DROP FUNCTION results_mark_job_done;
         CREATE TABLE notes (text text); INSERT INTO notes VALUES ('keep me')",
    )
    .await;
    let before = db.snapshot().await;
    for result in [
        Store::open(&db.target).await,
        Store::open_existing(&db.target).await,
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::NotOurs { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("not a lifesweep database") && message.contains("\"public\""),
            "{message}"
        );
    }
    assert_eq!(db.snapshot().await, before, "the database was changed");

    // A marker table with another mark is refused too.
    db.execute("CREATE TABLE lifesweep_database (application_id integer); INSERT INTO lifesweep_database VALUES (42)")
        .await;
    let err = Store::open(&db.target).await.unwrap_err();
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err:?}");
}

#[tokio::test]
async fn a_schema_named_in_the_url_holds_its_own_sweeps() {
    let Some(db) = TestDb::postgres() else { return };
    db.open().await.close().await;
    db.execute("CREATE SCHEMA other").await;
    let other = format!("{}?options=-csearch_path%3Dother", db.target);
    let public = db.open().await;
    let private = Store::open(&other).await.unwrap();
    public
        .submit_sweep(&seeds_spec("a", 2), "", 3)
        .await
        .unwrap();
    private
        .submit_sweep(&seeds_spec("b", 3), "", 3)
        .await
        .unwrap();
    assert_eq!(public.resolve_sweep(None).await.unwrap(), "a");
    assert_eq!(private.resolve_sweep(None).await.unwrap(), "b");
    assert_eq!(private.job_counts(None).await.unwrap().queued, 3);

    let missing = format!("{}?options=-csearch_path%3Dnowhere", db.target);
    let err = Store::open(&missing).await.unwrap_err();
    assert!(
        err.to_string().contains("no schema to hold the tables"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_there_is_named_without_the_password() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://me:hunter2@127.0.0.1:{port}/sweeps");
    let err = Store::open(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("postgres://me:***@127.0.0.1:{port}/sweeps"))
            && message.contains("cannot connect")
            && !message.contains("hunter2"),
        "{message}"
    );

    let err = Store::open("postgres://[not a url").await.unwrap_err();
    assert!(matches!(err, StoreError::Unsupported { .. }), "{err:?}");
}

#[tokio::test]
async fn times_come_from_the_database_clock() {
    let Some(db) = TestDb::postgres() else { return };
    let store = db.open().await;
    let before = db_clock(&db).await;
    let now = store.db_now().await.unwrap();
    let after = db_clock(&db).await;
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    store
        .submit_sweep(&seeds_spec("a", 1), "", 3)
        .await
        .unwrap();
    crate::claimed(&store, "w", None, LEASE).await;
    let lease = db
        .strings("SELECT (lease_expires_at - claimed_at)::text FROM jobs")
        .await;
    assert_eq!(lease, ["60"]);
}

async fn db_clock(db: &TestDb) -> f64 {
    db.strings("SELECT extract(epoch FROM clock_timestamp())::text")
        .await[0]
        .parse()
        .unwrap()
}

/// Many workers taking whole grid points at once: `FOR UPDATE SKIP LOCKED` hands each job to one
/// of them, and no claim waits for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batch_claims_take_disjoint_jobs() {
    let Some(db) = TestDb::postgres() else { return };
    let store = db.open().await;
    let text = "[sweep]\nname = \"g\"\n[grid]\nm_factor = [1, 2, 3, 4, 5, 6]\nseed = { from = 1, to = 40 }";
    store.submit_sweep(&spec(text), text, 3).await.unwrap();
    let target = Arc::new(db.target.clone());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let target = Arc::clone(&target);
            tokio::spawn(async move {
                let store = Store::open(&target).await.unwrap();
                let worker = format!("w{w}");
                let mut done = Vec::new();
                loop {
                    let jobs = store
                        .claim_jobs(&worker, Some("g"), LEASE, 4)
                        .await
                        .unwrap();
                    if jobs.is_empty() {
                        break done;
                    }
                    let m_factors: HashSet<u32> = jobs.iter().map(|j| j.params.m_factor).collect();
                    assert_eq!(m_factors.len(), 1, "a batch is one grid point");
                    for job in jobs {
                        assert!(store
                            .complete_job(job.job_id, &worker, job.attempt, &record(1.0))
                            .await
                            .unwrap());
                        done.push(job.job_id);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (240, 240));
    assert_eq!(store.job_counts(None).await.unwrap().done, 240);
}
