//! Many processes on one database that does not exist yet (an SQLite file, or a PostgreSQL
//! database): the database and its schema are created once, no "database is locked" reaches
//! anyone, and every job is run exactly once.
//!
//! The worker processes are this test binary itself, running the ignored test
//! `processes::worker_process`, which the parent starts with its directory and the database in
//! the environment.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifesweep_store::{schema_version, Store};

use crate::{record, seeds_spec, Backend, TestDb};

const DIR_VAR: &str = "LIFESWEEP_STORE_TEST_DIR";
const TARGET_VAR: &str = "LIFESWEEP_STORE_TEST_TARGET";
const INDEX_VAR: &str = "LIFESWEEP_STORE_TEST_INDEX";
const PROCESSES: usize = 32;
const JOBS: u32 = 600;
const PATIENCE: Duration = Duration::from_secs(120);

fn touch(path: &Path) {
    std::fs::write(path, b"").expect("write a marker file");
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + PATIENCE;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `count` marker files named `prefix-N` exist, failing early if a child died.
async fn wait_for_markers(dir: &Path, prefix: &str, children: &mut [Child]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let present = (0..children.len())
            .filter(|i| dir.join(format!("{prefix}-{i}")).exists())
            .count();
        if present == children.len() {
            return;
        }
        for (i, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait().expect("poll a child") {
                if !status.success() {
                    panic!(
                        "worker process {i} failed ({status}):\n{}",
                        child_stderr(dir, i)
                    );
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "only {present} of {} processes reached {prefix}",
            children.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn child_stderr(dir: &Path, index: usize) -> String {
    std::fs::read_to_string(dir.join(format!("stderr-{index}"))).unwrap_or_default()
}

crate::on_both_backends!(
    thirty_two_processes_open_a_new_database_at_once_and_run_each_job_once,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn thirty_two_processes_open_a_new_database_at_once_and_run_each_job_once(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|i| {
            let stderr = std::fs::File::create(dir.path().join(format!("stderr-{i}"))).unwrap();
            Command::new(&exe)
                .args([
                    "processes::worker_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(DIR_VAR, dir.path())
                .env(TARGET_VAR, &db.target)
                .env(INDEX_VAR, i.to_string())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start a worker process")
        })
        .collect();

    wait_for_markers(dir.path(), "ready", &mut children).await;
    if db.backend == Backend::Sqlite {
        assert!(!Path::new(&db.target).exists());
    }
    touch(&dir.path().join("go"));
    wait_for_markers(dir.path(), "opened", &mut children).await;

    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("crowd", JOBS), "", 3)
        .await
        .unwrap();
    touch(&dir.path().join("jobs"));

    let mut claimed = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        let status = child.wait().expect("wait for a worker process");
        assert!(
            status.success(),
            "worker process {i} failed ({status}):\n{}",
            child_stderr(dir.path(), i)
        );
        let ids = std::fs::read_to_string(dir.path().join(format!("claimed-{i}"))).unwrap();
        claimed.extend(ids.lines().map(|line| line.parse::<i64>().unwrap()));
    }
    let distinct: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(
        (claimed.len(), distinct.len()),
        (JOBS as usize, JOBS as usize)
    );

    let runs = store.runs(None).await.unwrap();
    assert_eq!(runs.len(), JOBS as usize);
    assert!(runs
        .iter()
        .all(|r| r.state == "done" && r.attempts == 1 && r.metrics.is_some()));
    let workers: HashSet<&str> = runs.iter().filter_map(|r| r.worker_id.as_deref()).collect();
    assert!(workers.len() > 1, "the jobs were shared between processes");
    let migrations = db.integer("SELECT count(*) FROM _sqlx_migrations").await;
    assert_eq!(migrations, schema_version());
}

/// One worker process of the test above; does nothing useful on its own.
#[tokio::test]
#[ignore = "a child process of thirty_two_processes_open_a_new_database_at_once_and_run_each_job_once"]
async fn worker_process() {
    let dir = PathBuf::from(
        std::env::var(DIR_VAR).expect("run by the parent test, which sets the directory"),
    );
    let index = std::env::var(INDEX_VAR).expect("run by the parent test, which sets the index");
    let target =
        std::env::var(TARGET_VAR).expect("run by the parent test, which sets the database");
    touch(&dir.join(format!("ready-{index}")));
    wait_for_file(&dir.join("go")).await;
    let store = Store::open(&target).await.expect("open the new database");
    touch(&dir.join(format!("opened-{index}")));

    wait_for_file(&dir.join("jobs")).await;
    let worker = format!("worker-{index}");
    let mut claimed = String::new();
    while let Some(job) = store
        .claim_next_job(&worker, None, Duration::from_secs(60))
        .await
        .expect("claim")
    {
        assert!(store
            .complete_job(job.job_id, &worker, job.attempt, &record(1.0))
            .await
            .expect("complete"));
        claimed.push_str(&format!("{}\n", job.job_id));
    }
    std::fs::write(dir.join(format!("claimed-{index}")), claimed).unwrap();
}
