//! Claiming, leases and the end of a job: done, failed, released, re-queued.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifesweep_spec::LossPoint;
use lifesweep_store::{ClaimedJob, RunRecord, Store, WorkerInfo};

use crate::{metrics, record, seeds_spec, spec, TestDb};

const LEASE: Duration = Duration::from_secs(60);

/// Polls `claim` until it yields a job (a lease has to run out on the database clock first).
async fn claim_when_expired(store: &Store, worker: &str, lease: Duration) -> ClaimedJob {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(job) = store.claim_next_job(worker, None, lease).await.unwrap() {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "the expired lease never made the job claimable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

crate::on_both_backends!(jobs_are_claimed_in_grid_order_once_each);
async fn jobs_are_claimed_in_grid_order_once_each(db: TestDb) {
    let store = db.open().await;
    let sweep = seeds_spec("a", 3);
    store.submit_sweep(&sweep, "", 3).await.unwrap();
    for expected in sweep.jobs() {
        let job = crate::claimed(&store, "w1", None, LEASE).await;
        assert_eq!(
            (&job.key, &job.params, job.attempt, job.sweep.as_str()),
            (&expected.key, &expected.params, 1, "a")
        );
    }
    assert_eq!(store.claim_next_job("w1", None, LEASE).await.unwrap(), None);
    assert_eq!(store.job_counts(None).await.unwrap().running, 3);
}

crate::on_both_backends!(a_claim_names_a_sweep_or_takes_from_any);
async fn a_claim_names_a_sweep_or_takes_from_any(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 1), "", 3)
        .await
        .unwrap();
    store
        .submit_sweep(&seeds_spec("b", 1), "", 3)
        .await
        .unwrap();
    assert_eq!(
        crate::claimed(&store, "w", Some("b"), LEASE).await.sweep,
        "b"
    );
    assert_eq!(
        store.claim_next_job("w", Some("b"), LEASE).await.unwrap(),
        None
    );
    assert_eq!(crate::claimed(&store, "w", None, LEASE).await.sweep, "a");
}

crate::on_both_backends!(
    eight_stores_on_one_file_claim_every_job_exactly_once,
    flavor = "multi_thread",
    worker_threads = 4
);
async fn eight_stores_on_one_file_claim_every_job_exactly_once(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("many", 300), "", 3)
        .await
        .unwrap();
    let target: Arc<String> = Arc::new(db.target.clone());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let target = Arc::clone(&target);
            tokio::spawn(async move {
                let store = Store::open(&target).await.unwrap();
                let worker = format!("w{w}");
                let mut done = Vec::new();
                while let Some(job) = store.claim_next_job(&worker, None, LEASE).await.unwrap() {
                    assert!(store
                        .complete_job(job.job_id, &worker, job.attempt, &record(0.5))
                        .await
                        .unwrap());
                    done.push(job.job_id);
                }
                done
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (300, 300));
    let runs = store.runs(None).await.unwrap();
    assert!(runs
        .iter()
        .all(|r| r.state == "done" && r.attempts == 1 && r.metrics.is_some()));
}

crate::on_both_backends!(an_expired_lease_passes_the_job_on_and_the_old_worker_can_write_nothing);
async fn an_expired_lease_passes_the_job_on_and_the_old_worker_can_write_nothing(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 1), "", 3)
        .await
        .unwrap();
    let old = crate::claimed(&store, "w1", None, Duration::ZERO).await;
    let new = claim_when_expired(&store, "w2", LEASE).await;
    assert_eq!((new.job_id, new.attempt), (old.job_id, 2));

    assert!(!store.renew_lease(old.job_id, "w1", LEASE).await.unwrap());
    assert!(!store
        .complete_job(old.job_id, "w1", old.attempt, &record(1.0))
        .await
        .unwrap());
    assert!(!store
        .fail_job(old.job_id, "w1", old.attempt, "late", true)
        .await
        .unwrap());
    assert!(!store
        .release_job(old.job_id, "w1", old.attempt)
        .await
        .unwrap());
    assert!(store.renew_lease(new.job_id, "w2", LEASE).await.unwrap());
    assert!(store
        .complete_job(new.job_id, "w2", new.attempt, &record(0.25))
        .await
        .unwrap());

    let run = &store.runs(None).await.unwrap()[0];
    assert_eq!(
        (run.state.as_str(), run.attempts, run.worker_id.as_deref()),
        ("done", 2, Some("w2"))
    );
    assert_eq!(run.metrics.as_ref().unwrap().success_rate, 0.25);
}

crate::on_both_backends!(a_renewed_lease_keeps_the_job);
async fn a_renewed_lease_keeps_the_job(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 1), "", 3)
        .await
        .unwrap();
    let job = crate::claimed(&store, "w1", None, Duration::ZERO).await;
    // Expired but not yet taken over: the holder may still renew it and finish.
    assert!(store.renew_lease(job.job_id, "w1", LEASE).await.unwrap());
    assert_eq!(store.claim_next_job("w2", None, LEASE).await.unwrap(), None);
    assert!(store
        .complete_job(job.job_id, "w1", job.attempt, &record(1.0))
        .await
        .unwrap());
}

crate::on_both_backends!(a_job_whose_last_lease_expires_fails_with_the_reason);
async fn a_job_whose_last_lease_expires_fails_with_the_reason(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 1), "", 2)
        .await
        .unwrap();
    crate::claimed(&store, "w1", None, Duration::ZERO).await;
    let second = claim_when_expired(&store, "w2", Duration::ZERO).await;
    assert_eq!(second.attempt, 2);

    let deadline = Instant::now() + Duration::from_secs(10);
    while store.job_counts(None).await.unwrap().failed == 0 {
        assert_eq!(store.claim_next_job("w3", None, LEASE).await.unwrap(), None);
        assert!(Instant::now() < deadline, "the job was never failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let failures = store.failures(Some("a")).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].attempts, 2);
    assert_eq!(
        failures[0].error,
        "lease expired after 2 attempts; last worker w2"
    );
}

crate::on_both_backends!(failures_are_retried_until_attempts_run_out);
async fn failures_are_retried_until_attempts_run_out(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 2), "", 2)
        .await
        .unwrap();

    let job = crate::claimed(&store, "w1", None, LEASE).await;
    assert!(store
        .fail_job(job.job_id, "w1", 1, "out of memory", true)
        .await
        .unwrap());
    let run = &store.runs(None).await.unwrap()[0];
    assert_eq!(
        (run.state.as_str(), run.error.as_deref()),
        ("queued", Some("out of memory"))
    );

    let job = crate::claimed(&store, "w1", None, LEASE).await;
    assert_eq!(job.attempt, 2);
    assert!(store
        .fail_job(job.job_id, "w1", 2, "non-finite loss", true)
        .await
        .unwrap());

    // Not retryable: failed at once, attempts left or not.
    let other = crate::claimed(&store, "w1", None, LEASE).await;
    assert_eq!(other.attempt, 1);
    assert!(store
        .fail_job(other.job_id, "w1", 1, "bad parameters", false)
        .await
        .unwrap());

    let failures: Vec<(u32, String)> = store
        .failures(None)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.attempts, f.error))
        .collect();
    assert_eq!(
        failures,
        [
            (2, "non-finite loss".to_string()),
            (1, "bad parameters".to_string())
        ]
    );
    assert_eq!(store.claim_next_job("w1", None, LEASE).await.unwrap(), None);

    assert_eq!(store.retry_failed(Some("a")).await.unwrap(), 2);
    let again = crate::claimed(&store, "w1", None, LEASE).await;
    assert_eq!((again.job_id, again.attempt), (job.job_id, 1));
}

crate::on_both_backends!(a_released_job_goes_back_without_using_an_attempt);
async fn a_released_job_goes_back_without_using_an_attempt(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 1), "", 1)
        .await
        .unwrap();
    let job = crate::claimed(&store, "w1", None, LEASE).await;
    assert!(store
        .release_job(job.job_id, "w1", job.attempt)
        .await
        .unwrap());
    assert!(!store
        .release_job(job.job_id, "w1", job.attempt)
        .await
        .unwrap());
    let counts = store.job_counts(None).await.unwrap();
    assert_eq!((counts.queued, counts.running), (1, 0));
    let again = crate::claimed(&store, "w2", None, LEASE).await;
    assert_eq!((again.job_id, again.attempt), (job.job_id, 1));
}

crate::on_both_backends!(cancel_stops_queued_jobs_and_uncancel_brings_them_back);
async fn cancel_stops_queued_jobs_and_uncancel_brings_them_back(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 3), "", 3)
        .await
        .unwrap();
    store
        .submit_sweep(&seeds_spec("b", 1), "", 3)
        .await
        .unwrap();
    let running = crate::claimed(&store, "w1", Some("a"), LEASE).await;
    assert_eq!(store.cancel(Some("a")).await.unwrap(), 2);
    assert_eq!(
        store.claim_next_job("w1", Some("a"), LEASE).await.unwrap(),
        None
    );
    // The running job finishes normally.
    assert!(store
        .complete_job(running.job_id, "w1", 1, &record(1.0))
        .await
        .unwrap());
    let counts = store.job_counts(Some("a")).await.unwrap();
    assert_eq!(
        (counts.cancelled, counts.done, counts.unfinished()),
        (2, 1, 0)
    );
    assert_eq!(store.job_counts(Some("b")).await.unwrap().queued, 1);

    // Submitting again does not revive them; uncancel does.
    assert_eq!(
        store
            .submit_sweep(&seeds_spec("a", 3), "", 3)
            .await
            .unwrap()
            .added,
        0
    );
    assert_eq!(store.job_counts(Some("a")).await.unwrap().cancelled, 2);
    assert_eq!(store.uncancel(None).await.unwrap(), 2);
    assert_eq!(store.job_counts(Some("a")).await.unwrap().queued, 2);
}

crate::on_both_backends!(claim_jobs_takes_the_seeds_of_one_grid_point);
async fn claim_jobs_takes_the_seeds_of_one_grid_point(db: TestDb) {
    let store = db.open().await;
    let text = "[sweep]\nname = \"g\"\n[grid]\nm_factor = [1, 2]\nseed = { from = 1, to = 4 }";
    store.submit_sweep(&spec(text), text, 3).await.unwrap();
    let points = |jobs: Vec<ClaimedJob>| -> Vec<(u32, u64)> {
        jobs.iter()
            .map(|j| (j.params.m_factor, j.params.seed))
            .collect()
    };
    assert_eq!(
        points(store.claim_jobs("w", None, LEASE, 3).await.unwrap()),
        [(1, 1), (1, 2), (1, 3)]
    );
    assert_eq!(
        points(store.claim_jobs("w", None, LEASE, 3).await.unwrap()),
        [(1, 4)]
    );
    assert_eq!(
        points(store.claim_jobs("w", None, LEASE, 10).await.unwrap()),
        [(2, 1), (2, 2), (2, 3), (2, 4)]
    );
    assert!(store
        .claim_jobs("w", None, LEASE, 3)
        .await
        .unwrap()
        .is_empty());
}

crate::on_both_backends!(the_jobs_of_dead_workers_go_back_at_once);
async fn the_jobs_of_dead_workers_go_back_at_once(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 3), "", 1)
        .await
        .unwrap();
    for (id, pid) in [("host-1", 1), ("host-2", 2)] {
        let info = WorkerInfo {
            id: id.into(),
            host: "host".into(),
            pid,
            device: "cpu".into(),
        };
        store.register_worker(&info).await.unwrap();
    }
    store
        .register_worker(&WorkerInfo {
            id: "elsewhere".into(),
            host: "other".into(),
            pid: 3,
            device: "cpu".into(),
        })
        .await
        .unwrap();
    let lost = crate::claimed(&store, "host-1", None, LEASE).await;
    let kept = crate::claimed(&store, "host-2", None, LEASE).await;
    store.worker_heartbeat("host-2").await.unwrap();

    let on_host = store.workers_on_host("host").await.unwrap();
    let ids: Vec<&str> = on_host.iter().map(|w| w.info.id.as_str()).collect();
    assert_eq!(ids, ["host-1", "host-2"]);
    assert!(on_host
        .iter()
        .all(|w| w.stopped_at.is_none() && w.info.device == "cpu"));

    assert_eq!(
        store
            .requeue_jobs_of_dead_workers(&["host-1".to_string()])
            .await
            .unwrap(),
        1
    );
    let runs = store.runs(None).await.unwrap();
    // max_attempts 1: the dead worker's attempt was the last one.
    assert_eq!(runs[0].state, "failed");
    assert_eq!(
        runs[0].error.as_deref(),
        Some("worker host-1 died during attempt 1")
    );
    assert_eq!(runs[1].state, "running");
    assert!(!store
        .complete_job(lost.job_id, "host-1", 1, &record(1.0))
        .await
        .unwrap());
    assert!(store
        .complete_job(kept.job_id, "host-2", 1, &record(1.0))
        .await
        .unwrap());
    store.worker_stopped("host-2").await.unwrap();
    let on_host = store.workers_on_host("host").await.unwrap();
    assert!(on_host.iter().all(|w| w.stopped_at.is_some()));
}

crate::on_both_backends!(runs_round_trip_metrics_loss_curves_and_non_finite_numbers);
async fn runs_round_trip_metrics_loss_curves_and_non_finite_numbers(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("a", 3), "", 3)
        .await
        .unwrap();
    let first = crate::claimed(&store, "w1", None, LEASE).await;
    let mut full = record(1.0);
    full.weights_path = Some("runs-weights/a/key.safetensors".into());
    assert!(store
        .complete_job(first.job_id, "w1", 1, &full)
        .await
        .unwrap());

    let second = crate::claimed(&store, "w1", None, LEASE).await;
    let mut diverged = metrics(0.0);
    diverged.final_loss = f64::NAN;
    diverged.loss_curve = vec![
        LossPoint {
            batch: 1,
            loss: 0.5,
        },
        LossPoint {
            batch: 2,
            loss: f64::INFINITY,
        },
    ];
    let diverged = RunRecord {
        metrics: diverged,
        started_at: 1.0,
        finished_at: 2.0,
        weights_path: None,
    };
    assert!(store
        .complete_job(second.job_id, "w1", 1, &diverged)
        .await
        .unwrap());

    let runs = store.runs(Some("a")).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].metrics.as_ref(), Some(&full.metrics));
    assert_eq!(
        (
            runs[0].started_at,
            runs[0].finished_at,
            runs[0].weights_path.as_deref()
        ),
        (
            Some(full.started_at),
            Some(full.finished_at),
            full.weights_path.as_deref()
        )
    );
    let back = runs[1].metrics.as_ref().unwrap();
    assert!(back.final_loss.is_nan() && back.loss_curve[1].loss.is_nan());
    assert_eq!(
        back.loss_curve[0],
        LossPoint {
            batch: 1,
            loss: 0.5
        }
    );
    assert_eq!(
        (runs[2].state.as_str(), runs[2].metrics.as_ref()),
        ("queued", None)
    );
    assert_eq!(store.recent_completions(Some("a"), 600.0).await.unwrap(), 2);
    assert_eq!(store.recent_completions(None, 600.0).await.unwrap(), 2);
}
