//! Walk jobs: queued once per run and options, claimed like training jobs, finished with their
//! points, invisible to the runs of a sweep.

use std::time::Duration;

use lifesweep_spec::{WalkKind, WalkSpec};
use lifesweep_store::{Store, WalkPointRecord, WalkRequest};

use crate::{record, seeds_spec, TestDb};

const LEASE: Duration = Duration::from_secs(60);

fn spec_for(run_key: &str, kind: WalkKind) -> WalkSpec {
    WalkSpec {
        run_key: run_key.into(),
        kind,
        points: 3,
        batches: 2,
        align: false,
        seed: 1,
        max_distance: 30,
        weights_path: "/weights/x.safetensors".into(),
    }
}

fn points(n: u32) -> Vec<WalkPointRecord> {
    (0..n)
        .map(|i| WalkPointRecord {
            point: i,
            fraction: Some(f64::from(i) / f64::from(n - 1)),
            distance: f64::from(i) * 0.5,
            loss: 0.5 / f64::from(i + 1),
            success_rate: if i + 1 == n { 1.0 } else { 0.25 },
            cell_accuracy: 0.9,
        })
        .collect()
}

/// A sweep of two seeds, both trained and done; returns the store and the runs' job ids.
async fn two_done_runs(db: &TestDb) -> (Store, Vec<(i64, String)>) {
    let store = db.open().await;
    store
        .submit_sweep(&seeds_spec("s", 2), "", 3)
        .await
        .unwrap();
    let mut runs = Vec::new();
    for rate in [0.5, 1.0] {
        let job = crate::claimed(&store, "w", None, LEASE).await;
        assert!(job.walk.is_none());
        store
            .complete_job(job.job_id, "w", job.attempt, &record(rate))
            .await
            .unwrap();
        runs.push((job.job_id, job.key.0));
    }
    (store, runs)
}

crate::on_both_backends!(walks_are_queued_once_claimed_and_finished_with_their_points);
async fn walks_are_queued_once_claimed_and_finished_with_their_points(db: TestDb) {
    let (store, runs) = two_done_runs(&db).await;
    let requests: Vec<WalkRequest> = runs
        .iter()
        .map(|(id, key)| WalkRequest {
            run_job_id: *id,
            spec: spec_for(key, WalkKind::Presolve),
        })
        .collect();
    assert_eq!(store.submit_walks(&requests, 3).await.unwrap(), (2, 0));
    assert_eq!(store.submit_walks(&requests, 3).await.unwrap(), (0, 2));
    // the runs of the sweep are still its two trainings
    assert_eq!(store.runs(Some("s")).await.unwrap().len(), 2);
    assert_eq!(db.integer("SELECT count(*) FROM runs").await, 2);

    let job = crate::claimed(&store, "w2", None, LEASE).await;
    assert_eq!(job.walk.as_ref(), Some(&requests[0].spec));
    assert_eq!(job.sweep, "s");
    // a fused claim never takes two walks, nor a walk and a run
    let next = store.claim_jobs("w3", None, LEASE, 8).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].walk.as_ref(), Some(&requests[1].spec));

    // only the holder in this attempt can finish it
    assert!(!store
        .complete_walk(job.job_id, "other", job.attempt, &points(3))
        .await
        .unwrap());
    assert!(store
        .complete_walk(job.job_id, "w2", job.attempt, &points(3))
        .await
        .unwrap());
    assert!(!store
        .complete_walk(job.job_id, "w2", job.attempt, &points(3))
        .await
        .unwrap());

    let walks = store.walks(Some("s")).await.unwrap();
    assert_eq!(walks.len(), 2);
    let done = &walks[0];
    assert_eq!((done.state.as_str(), done.run_job_id), ("done", runs[0].0));
    assert_eq!(done.points, points(3));
    assert_eq!(done.run_success, Some(false));
    assert_eq!(done.run_success_rate, Some(0.5));
    assert_eq!(walks[1].state, "running");
    assert!(walks[1].points.is_empty());
    assert_eq!(walks[1].run_success, Some(true));
    assert_eq!(
        db.integer("SELECT count(*) FROM walks WHERE state = 'done'")
            .await,
        3,
        "the walks view has one row per point"
    );
    assert_eq!(store.job_counts(Some("s")).await.unwrap().done, 3);
}

crate::on_both_backends!(a_recorded_walk_is_kept_once_and_takes_over_a_queued_one);
async fn a_recorded_walk_is_kept_once_and_takes_over_a_queued_one(db: TestDb) {
    let (store, runs) = two_done_runs(&db).await;
    let request = WalkRequest {
        run_job_id: runs[0].0,
        spec: spec_for(&runs[0].1, WalkKind::Random),
    };
    assert!(store
        .record_walk(&request, "cli", &points(4))
        .await
        .unwrap());
    // the same walk again is refused and changes nothing
    assert!(!store
        .record_walk(&request, "cli", &points(2))
        .await
        .unwrap());
    let walks = store.walks(None).await.unwrap();
    assert_eq!(walks.len(), 1);
    assert_eq!(walks[0].points.len(), 4);

    // a queued walk is taken over by a recorded one
    let other = WalkRequest {
        run_job_id: runs[1].0,
        spec: spec_for(&runs[1].1, WalkKind::Presolve),
    };
    assert_eq!(
        store.submit_walks(&[other.clone()], 3).await.unwrap(),
        (1, 0)
    );
    assert!(store.record_walk(&other, "cli", &points(3)).await.unwrap());
    let walks = store.walks(None).await.unwrap();
    assert_eq!(walks.len(), 2);
    assert!(walks.iter().all(|w| w.state == "done"));
    assert_eq!(store.claim_next_job("w", None, LEASE).await.unwrap(), None);
}

crate::on_both_backends!(a_walk_needs_a_training_run_of_the_database);
async fn a_walk_needs_a_training_run_of_the_database(db: TestDb) {
    let (store, runs) = two_done_runs(&db).await;
    let missing = WalkRequest {
        run_job_id: 9999,
        spec: spec_for("nope", WalkKind::Presolve),
    };
    assert_eq!(store.submit_walks(&[missing], 3).await.unwrap(), (0, 1));
    let request = WalkRequest {
        run_job_id: runs[0].0,
        spec: spec_for(&runs[0].1, WalkKind::Presolve),
    };
    store.submit_walks(&[request], 3).await.unwrap();
    let walk_id = store.walks(None).await.unwrap()[0].job_id;
    // a walk of a walk is not a thing
    let of_walk = WalkRequest {
        run_job_id: walk_id,
        spec: spec_for("w", WalkKind::Random),
    };
    assert_eq!(store.submit_walks(&[of_walk], 3).await.unwrap(), (0, 1));
    assert_eq!(store.walks(None).await.unwrap().len(), 1);
}
