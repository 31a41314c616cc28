//! Submitting sweeps: idempotence, extension, refused changes, listing.

use lifesweep_store::{JobCounts, StoreError};

use crate::{seeds_spec, spec, TestDb};

const GRID: &str = r#"
[sweep]
name = "grid"
description = "first"
[grid]
m_factor = [1, 2]
seed = { from = 1, to = 3 }
[train]
batches = 10
"#;

crate::on_both_backends!(submitting_the_same_config_twice_adds_nothing);
async fn submitting_the_same_config_twice_adds_nothing(db: TestDb) {
    let store = db.open().await;
    let first = store.submit_sweep(&spec(GRID), GRID, 3).await.unwrap();
    assert_eq!((first.added, first.existing), (6, 0));
    let again = store.submit_sweep(&spec(GRID), GRID, 3).await.unwrap();
    assert_eq!(
        (again.sweep_id, again.added, again.existing),
        (first.sweep_id, 0, 6)
    );
    assert_eq!(
        store.job_counts(None).await.unwrap(),
        JobCounts {
            queued: 6,
            ..JobCounts::default()
        }
    );
}

crate::on_both_backends!(extending_adds_only_new_points_and_removing_values_deletes_nothing);
async fn extending_adds_only_new_points_and_removing_values_deletes_nothing(db: TestDb) {
    let store = db.open().await;
    store.submit_sweep(&spec(GRID), GRID, 3).await.unwrap();
    let job = crate::claimed(&store, "w1", None, std::time::Duration::from_secs(60)).await;
    assert!(store
        .complete_job(job.job_id, "w1", job.attempt, &crate::record(1.0))
        .await
        .unwrap());

    let wider = GRID.replace("m_factor = [1, 2]", "m_factor = [1, 2, 5]");
    let outcome = store.submit_sweep(&spec(&wider), &wider, 3).await.unwrap();
    assert_eq!((outcome.added, outcome.existing), (3, 6));

    // A new axis over a parameter that was fixed at its default (steps = 1).
    let deeper = wider.replace("[train]", "steps = [1, 2]\n[train]");
    let outcome = store
        .submit_sweep(&spec(&deeper), &deeper, 3)
        .await
        .unwrap();
    assert_eq!((outcome.added, outcome.existing), (9, 9));

    let narrower = GRID.replace("m_factor = [1, 2]", "m_factor = [2]");
    let outcome = store
        .submit_sweep(&spec(&narrower), &narrower, 3)
        .await
        .unwrap();
    assert_eq!((outcome.added, outcome.existing), (0, 3));

    let counts = store.job_counts(Some("grid")).await.unwrap();
    assert_eq!(
        (counts.total(), counts.done),
        (18, 1),
        "nothing was deleted and the result is kept"
    );
    let runs = store.runs(Some("grid")).await.unwrap();
    assert_eq!(runs[0].metrics, Some(crate::metrics(1.0)));
    // New jobs come after the old ones in claim order.
    let m_factors: Vec<u32> = runs.iter().map(|r| r.params.m_factor).collect();
    assert_eq!(&m_factors[..9], [1, 1, 1, 2, 2, 2, 5, 5, 5]);

    let info = store.sweeps().await.unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].axes, ["steps", "m_factor", "seed"]);
    assert_eq!(info[0].description, "first");
}

crate::on_both_backends!(changing_a_fixed_parameter_is_refused_with_what_changed);
async fn changing_a_fixed_parameter_is_refused_with_what_changed(db: TestDb) {
    let store = db.open().await;
    store.submit_sweep(&spec(GRID), GRID, 3).await.unwrap();
    let changed = GRID
        .replace("batches = 10", "batches = 20\nuse_sigmoid = true")
        .replace("m_factor = [1, 2]", "m_factor = [1, 2, 3]");
    let err = store
        .submit_sweep(&spec(&changed), &changed, 3)
        .await
        .unwrap_err();
    match &err {
        StoreError::SweepConflict { name, changes } => {
            assert_eq!(name, "grid");
            assert_eq!(
                changes,
                &["batches: 10 -> 20", "use_sigmoid: false -> true"]
            );
        }
        other => panic!("expected SweepConflict, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("\"grid\"") && message.contains("batches: 10 -> 20"),
        "{message}"
    );
    assert_eq!(
        store.job_counts(None).await.unwrap().total(),
        6,
        "nothing was written"
    );
}

crate::on_both_backends!(sweeps_are_listed_and_resolved_by_name);
async fn sweeps_are_listed_and_resolved_by_name(db: TestDb) {
    let store = db.open().await;
    assert!(matches!(
        store.resolve_sweep(None).await.unwrap_err(),
        StoreError::NoSweep
    ));
    store
        .submit_sweep(&seeds_spec("first", 2), "", 3)
        .await
        .unwrap();
    assert_eq!(store.resolve_sweep(None).await.unwrap(), "first");
    store
        .submit_sweep(&seeds_spec("second", 3), "", 3)
        .await
        .unwrap();

    match store.resolve_sweep(None).await.unwrap_err() {
        StoreError::AmbiguousSweep { names } => assert_eq!(names, ["first", "second"]),
        other => panic!("expected AmbiguousSweep, got {other:?}"),
    }
    assert_eq!(store.resolve_sweep(Some("second")).await.unwrap(), "second");
    let err = store.resolve_sweep(Some("third")).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownSweep { .. }), "{err:?}");
    assert!(err.to_string().contains("first, second"), "{err}");
    assert!(matches!(
        store.job_counts(Some("third")).await.unwrap_err(),
        StoreError::UnknownSweep { .. }
    ));

    let sweeps = store.sweeps().await.unwrap();
    let summary: Vec<(&str, u64, Vec<String>)> = sweeps
        .iter()
        .map(|s| (s.name.as_str(), s.counts.queued, s.axes.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("first", 2, vec!["seed".to_string()]),
            ("second", 3, vec!["seed".to_string()])
        ]
    );
    assert_eq!(store.job_counts(None).await.unwrap().queued, 5);
}

crate::on_both_backends!(a_large_sweep_is_submitted_in_batches_in_grid_order);
async fn a_large_sweep_is_submitted_in_batches_in_grid_order(db: TestDb) {
    let store = db.open().await;
    let big = seeds_spec("big", 12_345);
    let outcome = store.submit_sweep(&big, "", 3).await.unwrap();
    assert_eq!((outcome.added, outcome.existing), (12_345, 0));
    assert_eq!(store.submit_sweep(&big, "", 3).await.unwrap().added, 0);
    let runs = store.runs(Some("big")).await.unwrap();
    assert_eq!(runs.len(), 12_345);
    assert!(runs
        .iter()
        .enumerate()
        .all(|(i, r)| r.params.seed == i as u64 + 1 && r.key == big.jobs()[i].key));
}

crate::on_both_backends!(saves_weights_looks_at_the_jobs_that_may_still_run);
async fn saves_weights_looks_at_the_jobs_that_may_still_run(db: TestDb) {
    let store = db.open().await;
    store
        .submit_sweep(&crate::seeds_spec("plain", 2), "", 3)
        .await
        .unwrap();
    let saving = "[sweep]\nname = \"saving\"\n[grid]\nseed = [1, 2]\n[train]\nbatches = 1\nsave_weights = true\n";
    store.submit_sweep(&spec(saving), saving, 3).await.unwrap();
    assert!(!store.saves_weights(Some("plain")).await.unwrap());
    assert!(store.saves_weights(Some("saving")).await.unwrap());
    assert!(store.saves_weights(None).await.unwrap(), "any sweep");

    // Claimed (running) jobs still count; finished ones do not.
    let lease = std::time::Duration::from_secs(60);
    let jobs = store
        .claim_jobs("w", Some("saving"), lease, 2)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(store.saves_weights(Some("saving")).await.unwrap());
    for job in &jobs {
        assert!(store
            .complete_job(job.job_id, "w", job.attempt, &crate::record(1.0))
            .await
            .unwrap());
    }
    assert!(!store.saves_weights(Some("saving")).await.unwrap());
    assert!(!store.saves_weights(None).await.unwrap());
}

crate::on_both_backends!(fuse_seeds_is_read_from_the_latest_config);
async fn fuse_seeds_is_read_from_the_latest_config(db: TestDb) {
    let store = db.open().await;
    store.submit_sweep(&spec(GRID), GRID, 3).await.unwrap();
    assert_eq!(store.fuse_seeds("grid").await.unwrap(), 1);
    let fused = GRID.replace("description = \"first\"", "fuse_seeds = 4");
    store.submit_sweep(&spec(&fused), &fused, 3).await.unwrap();
    assert_eq!(store.fuse_seeds("grid").await.unwrap(), 4);
    // submitted through the API without its text: unfused
    store
        .submit_sweep(&seeds_spec("bare", 2), "", 3)
        .await
        .unwrap();
    assert_eq!(store.fuse_seeds("bare").await.unwrap(), 1);
    assert!(matches!(
        store.fuse_seeds("nope").await,
        Err(StoreError::UnknownSweep { .. })
    ));
}
