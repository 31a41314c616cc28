//! A small database with known results, written through the store API without training, and
//! pinned-output ("snapshot") comparison for the commands that read it.
//!
//! The sweep: steps {1, 2} x m_factor {1, 2} x seeds 1..3 = 12 jobs, with these success rates
//! (`-` failed, `q` queued, `r` running):
//!
//! | steps | m_factor | seed 1 | seed 2 | seed 3 |
//! |-------|----------|--------|--------|--------|
//! | 1     | 1        | 1.0    | 0.5    | 0.25   |
//! | 1     | 2        | 1.0    | 1.0    | 1.0    |
//! | 2     | 1        | 0.0    | 0.125  | -      |
//! | 2     | 2        | 1.0    | q      | r      |

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifesweep_spec::{LossPoint, RunMetrics, SweepSpec, TrainParams};
use lifesweep_store::{RunRecord, Store};

pub const FIXTURE_TOML: &str = r#"
[sweep]
name = "fixture"
description = "known results for output tests"
[grid]
steps = [1, 2]
m_factor = [1, 2]
seed = { from = 1, to = 3 }
[train]
use_sigmoid = true
activation = "LeakyReLU"
batches = 20
loss_every = 10
"#;

/// What happens to the job of these parameters.
enum Outcome {
    Done(f64),
    Failed(&'static str),
    Queued,
    Running,
}

fn outcome(p: &TrainParams) -> Outcome {
    match (p.steps, p.m_factor, p.seed) {
        (1, 1, 1) => Outcome::Done(1.0),
        (1, 1, 2) => Outcome::Done(0.5),
        (1, 1, _) => Outcome::Done(0.25),
        (1, 2, _) => Outcome::Done(1.0),
        (2, 1, 1) => Outcome::Done(0.0),
        (2, 1, 2) => Outcome::Done(0.125),
        (2, 1, _) => Outcome::Failed("training diverged: loss is NaN at batch 10"),
        (2, 2, 1) => Outcome::Done(1.0),
        (2, 2, 2) => Outcome::Queued,
        _ => Outcome::Running,
    }
}

fn metrics(p: &TrainParams, rate: f64) -> RunMetrics {
    let final_loss = 0.5 * (1.0 - rate) + 0.001;
    RunMetrics {
        success_rate: rate,
        training_success: rate == 1.0,
        cell_accuracy: 0.9 + 0.1 * rate,
        final_loss,
        loss_curve: vec![
            LossPoint {
                batch: 10,
                loss: 0.7,
            },
            LossPoint {
                batch: 20,
                loss: final_loss,
            },
        ],
        param_count: 100 * u64::from(p.m_factor) * u64::from(p.steps),
        wall_seconds: 10.0 * f64::from(p.steps) + f64::from(p.m_factor) + p.seed as f64 / 10.0,
        device: "cpu".into(),
    }
}

/// Writes the fixture database into `dir` and returns its path.
pub fn fixture_db(dir: &Path) -> PathBuf {
    let db = dir.join("fixture.db");
    let path = db.to_str().expect("temp paths are UTF-8").to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let spec =
            SweepSpec::parse(FIXTURE_TOML, "fixture.toml", "fixture").expect("fixture config");
        let store = Store::open(&path).await.expect("open fixture db");
        store
            .submit_sweep(&spec, FIXTURE_TOML, 1)
            .await
            .expect("submit");
        let lease = Duration::from_secs(3600);
        // claim_jobs takes the seeds of one grid point at a time.
        let mut jobs = Vec::new();
        loop {
            let more = store
                .claim_jobs("fixture-worker", Some("fixture"), lease, 100)
                .await
                .expect("claim");
            if more.is_empty() {
                break;
            }
            jobs.extend(more);
        }
        assert_eq!(jobs.len(), 12);
        for job in jobs {
            let (id, attempt) = (job.job_id, job.attempt);
            match outcome(&job.params) {
                Outcome::Done(rate) => {
                    let m = metrics(&job.params, rate);
                    let record = RunRecord {
                        started_at: 1000.0,
                        finished_at: 1000.0 + m.wall_seconds,
                        metrics: m,
                        weights_path: None,
                    };
                    assert!(store
                        .complete_job(id, "fixture-worker", attempt, &record)
                        .await
                        .expect("complete"));
                }
                Outcome::Failed(error) => {
                    assert!(store
                        .fail_job(id, "fixture-worker", attempt, error, false)
                        .await
                        .expect("fail"));
                }
                Outcome::Queued => {
                    assert!(store
                        .release_job(id, "fixture-worker", attempt)
                        .await
                        .expect("release"));
                }
                Outcome::Running => {}
            }
        }
        store.close().await;
    });
    db
}

/// Compares `actual` with the pinned file `tests/it/snapshots/{name}`. With
/// `UPDATE_SNAPSHOTS=1` in the environment it rewrites the file instead: review the diff.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{}: no snapshot; run with UPDATE_SNAPSHOTS=1 to write it, then review it",
            path.display()
        )
    });
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or(actual.lines().count().min(expected.lines().count()));
        panic!(
            "output differs from {} at line {}:\n  got:  {:?}\n  want: {:?}\nwhole output:\n{actual}\n\
             if the change is intended, rerun with UPDATE_SNAPSHOTS=1 and review the diff",
            path.display(),
            first + 1,
            actual.lines().nth(first),
            expected.lines().nth(first),
        );
    }
}
