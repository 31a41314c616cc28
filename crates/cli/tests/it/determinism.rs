//! The same job gives bit-identical results whichever worker runs it and however many run.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::{expect_code, json_rows, lifesweep};

const SWEEP: &str = r#"
[sweep]
name = "same"
[grid]
m_factor = [1, 3]
activation = ["LeakyReLU", "RReLU"]
seed = [1, 2]
[train]
normalize = true
batches = 60
batch_size = 16
loss_every = 20
save_weights = true
[eval]
boards = 100
"#;

/// job key -> (success_rate, final_loss, weights file bytes, loss curve)
fn outcome(db: &Path) -> BTreeMap<String, (Value, Value, Vec<u8>, Value)> {
    let runs = json_rows(
        lifesweep()
            .args(["export", "--format", "json", "--db"])
            .arg(db),
    );
    assert_eq!(runs.len(), 8);
    runs.into_iter()
        .map(|r| {
            let path = r["weights_path"]
                .as_str()
                .expect("save_weights records the weights path");
            let weights = fs::read(path).unwrap();
            assert!(weights.len() > 8, "a safetensors file");
            let curve = r["loss_curve"].clone();
            assert_eq!(
                curve.as_array().map(Vec::len),
                Some(3),
                "loss every 20 of 60 batches: {curve}"
            );
            (
                r["job_key"].as_str().unwrap().to_string(),
                (
                    r["success_rate"].clone(),
                    r["final_loss"].clone(),
                    weights,
                    curve,
                ),
            )
        })
        .collect()
}

#[test]
fn one_worker_three_workers_and_fused_seeds_give_bit_identical_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("same.toml");
    fs::write(&config, SWEEP).unwrap();
    let one = dir.path().join("one.db");
    let three = dir.path().join("three.db");
    expect_code(
        lifesweep()
            .arg("run")
            .arg(&config)
            .arg("--db")
            .arg(&one)
            .args(["--workers", "1"]),
        0,
    );
    expect_code(
        lifesweep()
            .arg("run")
            .arg(&config)
            .arg("--db")
            .arg(&three)
            .args(["--workers", "3"]),
        0,
    );
    let fused = dir.path().join("fused.db");
    expect_code(
        lifesweep()
            .arg("run")
            .arg(&config)
            .arg("--db")
            .arg(&fused)
            .args(["--workers", "2", "--fuse-seeds", "2"]),
        0,
    );
    let a = outcome(&one);
    let b = outcome(&three);
    let c = outcome(&fused);
    for (key, run_a) in &a {
        assert!(
            run_a == &c[key],
            "job {key} differs when its seeds are trained fused"
        );
    }
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, run_a) in &a {
        assert!(run_a == &b[key], "job {key} differs between runs");
    }
    // Different seeds really differ (the comparison above can fail).
    let weights: std::collections::HashSet<&Vec<u8>> = a.values().map(|r| &r.2).collect();
    assert_eq!(weights.len(), 8);
}
