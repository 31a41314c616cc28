//! Sweeps that survive crashes: real processes, really killed. Every wait polls a condition
//! with a bound; nothing sleeps to synchronise.

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{expect_code, lifesweep, slow_sweep, stderr, stdout};

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("slow.toml");
    fs::write(&config, slow_sweep("slow")).unwrap();
    config
}

fn runs(db: &Path) -> Vec<Value> {
    let output = lifesweep()
        .args(["results", "--runs", "--format", "json", "--db"])
        .arg(db)
        .output()
        .unwrap();
    if !output.status.success() {
        return Vec::new(); // not created yet
    }
    serde_json::from_str::<Value>(&stdout(&output))
        .map(|v| v.as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn count_state(runs: &[Value], state: &str) -> usize {
    runs.iter().filter(|r| r["state"] == state).count()
}

/// Polls `condition` every 50 ms until it holds; panics after `limit`.
fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pids of the direct children of `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) && fields[0] != "Z" {
            pids.push(pid);
        }
    }
    pids
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn kill(pid: u32, signal: libc::c_int) {
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

fn start_run(config: &Path, db: &Path, extra: &[&str]) -> Child {
    lifesweep()
        .arg("run")
        .arg(config)
        .arg("--db")
        .arg(db)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let start = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            kill(pid, libc::SIGKILL);
            panic!("lifesweep run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_all_done_once(db: &Path, jobs: usize) -> Vec<Value> {
    let runs = runs(db);
    assert_eq!(runs.len(), jobs);
    assert_eq!(count_state(&runs, "done"), jobs, "{runs:#?}");
    assert!(
        runs.iter().all(|r| r["success_rate"].is_number()),
        "every job has its one result"
    );
    runs
}

#[test]
fn a_worker_killed_mid_job_is_replaced_and_its_job_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let db = dir.path().join("kill-worker.db");
    let run = start_run(&config, &db, &["--workers", "1"]);
    let orchestrator = run.id();

    wait_until("a running job", Duration::from_secs(60), || {
        count_state(&runs(&db), "running") == 1
    });
    let workers = children_of(orchestrator);
    assert_eq!(workers.len(), 1, "one worker process");
    kill(workers[0], libc::SIGKILL);

    let output = finish(run, Duration::from_secs(180));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("died"),
        "the scheduler says a worker died: {}",
        stderr(&output)
    );
    let runs = assert_all_done_once(&db, 6);
    let attempts: Vec<u64> = runs
        .iter()
        .map(|r| r["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(
        attempts.iter().filter(|&&a| a == 2).count(),
        1,
        "the killed job ran a second time: {attempts:?}"
    );
    assert_eq!(
        attempts.iter().filter(|&&a| a == 1).count(),
        5,
        "{attempts:?}"
    );
}

#[test]
fn sigterm_hands_jobs_back_and_resume_runs_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let db = dir.path().join("sigterm.db");
    let run = start_run(&config, &db, &["--workers", "2"]);

    wait_until(
        "a finished and a running job",
        Duration::from_secs(90),
        || {
            let r = runs(&db);
            count_state(&r, "done") >= 1 && count_state(&r, "running") >= 1
        },
    );
    kill(run.id(), libc::SIGTERM);
    let output = finish(run, Duration::from_secs(60));
    assert_eq!(
        output.status.code(),
        Some(130),
        "interrupted: {}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("lifesweep resume"),
        "{}",
        stderr(&output)
    );

    let after_stop = runs(&db);
    assert_eq!(
        count_state(&after_stop, "running"),
        0,
        "no job left running: {after_stop:#?}"
    );
    let done_before = count_state(&after_stop, "done");
    assert!(done_before < 6);

    let resumed = expect_code(lifesweep().args(["resume", "--db"]).arg(&db), 0);
    let runs = assert_all_done_once(&db, 6);
    assert!(
        runs.iter().all(|r| r["attempts"] == 1),
        "handed-back jobs do not count an attempt: {runs:#?}"
    );
    assert!(stdout(&resumed).contains("success_probability"));
}

#[test]
fn orchestrator_killed_workers_hand_back_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let db = dir.path().join("kill-orchestrator.db");
    let run = start_run(&config, &db, &["--workers", "2"]);
    let orchestrator = run.id();

    wait_until("two running jobs", Duration::from_secs(90), || {
        count_state(&runs(&db), "running") == 2
    });
    let workers = children_of(orchestrator);
    assert_eq!(workers.len(), 2);
    kill(orchestrator, libc::SIGKILL);
    let _ = finish(run, Duration::from_secs(10));
    // The workers learn of their parent's death and hand their jobs back.
    wait_until(
        "the orphaned workers to exit",
        Duration::from_secs(60),
        || workers.iter().all(|&p| !alive(p)),
    );
    let r = runs(&db);
    assert_eq!(count_state(&r, "running"), 0, "{r:#?}");

    expect_code(lifesweep().args(["resume", "slow", "--db"]).arg(&db), 0);
    let runs = assert_all_done_once(&db, 6);
    assert!(runs.iter().all(|r| r["attempts"] == 1), "{runs:#?}");
}

#[test]
fn everything_killed_at_once_is_requeued_by_resume_without_waiting_for_leases() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let db = dir.path().join("reboot.db");
    // A 30-minute lease: only resume's dead-worker check can free the jobs within the bound.
    let run = start_run(&config, &db, &["--workers", "2", "--heartbeat", "600"]);
    let orchestrator = run.id();
    wait_until("two running jobs", Duration::from_secs(90), || {
        count_state(&runs(&db), "running") == 2
    });
    let workers = children_of(orchestrator);
    // Like a power cut: workers first (no chance to hand back), then the orchestrator.
    for &w in &workers {
        kill(w, libc::SIGKILL);
    }
    kill(orchestrator, libc::SIGKILL);
    let _ = finish(run, Duration::from_secs(10));
    wait_until("the workers to be gone", Duration::from_secs(10), || {
        workers.iter().all(|&p| !alive(p))
    });
    assert_eq!(
        count_state(&runs(&db), "running"),
        2,
        "the killed jobs still look running"
    );

    let mut resume = lifesweep()
        .args(["resume", "--heartbeat", "600", "--db"])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while resume.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(240) {
            let _ = resume.kill();
            panic!("resume waited for the leases instead of re-queuing the dead workers' jobs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = resume.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("re-queued 2 job(s)"),
        "{}",
        stderr(&output)
    );
    let runs = assert_all_done_once(&db, 6);
    let twice = runs.iter().filter(|r| r["attempts"] == 2).count();
    assert_eq!(twice, 2, "the two killed attempts count: {runs:#?}");
}

#[test]
fn a_database_locked_for_seconds_does_not_make_live_jobs_look_dead() {
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        eprintln!("skipped: python3 with sqlite3 is needed to hold the database's write lock");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("long.toml");
    let db = dir.path().join("locked.db");
    fs::write(
        &config,
        slow_sweep("slow")
            .replace("batches = 1500", "batches = 6000")
            .replace("to = 6", "to = 2"),
    )
    .unwrap();
    // Heartbeat 2 s, lease 6 s: the lock below (3 s) plus one heartbeat stays inside a lease.
    let run = start_run(&config, &db, &["--workers", "2", "--heartbeat", "2"]);
    wait_until("two running jobs", Duration::from_secs(60), || {
        count_state(&runs(&db), "running") == 2
    });
    let hold = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\ntime.sleep(3)\nc.execute('COMMIT')")
        .arg(&db)
        .output()
        .unwrap();
    assert!(hold.status.success(), "{}", stderr(&hold));
    let output = finish(run, Duration::from_secs(120));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("lease lost"),
        "{}",
        stderr(&output)
    );
    let runs = assert_all_done_once(&db, 2);
    assert!(
        runs.iter().all(|r| r["attempts"] == 1),
        "no job was taken from a live worker: {runs:#?}"
    );
}

/// A worker killed outright (SIGKILL: no hand-back) leaves its job `running` until the lease
/// runs out. A worker with --exit-when-idle that finds nothing to claim meanwhile must not
/// exit: it waits, claims the job once the lease has expired, and runs it to the end.
#[test]
fn an_idle_worker_waits_out_a_killed_workers_lease_and_runs_its_job() {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("one.toml");
    let db = dir.path().join("orphan.db");
    // One job of several seconds: long enough to be killed mid-run.
    fs::write(
        &config,
        slow_sweep("slow")
            .replace("batches = 1500", "batches = 6000")
            .replace("to = 6", "to = 1"),
    )
    .unwrap();
    expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    // Lease 1.5 s (three heartbeats of 0.5 s).
    let mut doomed = lifesweep()
        .args(["work", "--exit-when-idle", "--worker-id", "doomed"])
        .args(["--heartbeat", "0.5", "--db"])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the job to run", Duration::from_secs(60), || {
        count_state(&runs(&db), "running") == 1
    });

    let mut survivor = lifesweep()
        .args(["-v", "work", "--exit-when-idle", "--worker-id", "survivor"])
        .args(["--heartbeat", "0.2", "--db"])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let log = Arc::clone(&log);
        let stderr = survivor.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        })
    };
    wait_until(
        "the idle worker to wait for the running job",
        Duration::from_secs(30),
        || {
            assert!(
                survivor.try_wait().unwrap().is_none(),
                "the idle worker exited while a job was running:\n{}",
                log.lock().unwrap()
            );
            log.lock()
                .unwrap()
                .contains("waiting while other workers' jobs run")
        },
    );
    let before = runs(&db);
    assert_eq!(
        (
            count_state(&before, "running"),
            before[0]["attempts"].as_u64()
        ),
        (1, Some(1)),
        "the job must still be in its first attempt when its worker is killed: {before:#?}"
    );
    kill(doomed.id(), libc::SIGKILL);
    let _ = doomed.wait();

    let start = Instant::now();
    let status = loop {
        if let Some(status) = survivor.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(180) {
            kill(survivor.id(), libc::SIGKILL);
            panic!(
                "the idle worker did not finish the orphaned job:\n{}",
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "{status}:\n{log}");
    let runs = assert_all_done_once(&db, 1);
    assert_eq!(
        runs[0]["attempts"], 2,
        "the killed attempt counts: {runs:#?}"
    );
    assert!(log.contains("claimed"), "the survivor ran the job:\n{log}");
}
