//! A tiny sweep run for real: worker processes, a temp SQLite file, results read back.

use std::collections::HashSet;
use std::fs;

use serde_json::Value;

use crate::{expect_code, json_rows, lifesweep, stdout};

const TINY: &str = r#"
[sweep]
name = "tiny"
[grid]
m_factor = [1, 2]
steps = [1, 2]
seed = { from = 1, to = 2 }
[train]
batches = 20
batch_size = 8
use_sigmoid = true
activation = "LeakyReLU"
[eval]
boards = 50
"#;

fn runs_json(db: &std::path::Path) -> Vec<Value> {
    json_rows(
        lifesweep()
            .args(["results", "--runs", "--format", "json", "--db"])
            .arg(db),
    )
}

#[test]
fn tiny_sweep_with_two_workers_lands_one_result_per_job() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    let db = dir.path().join("sweep.db");
    fs::write(&config, TINY).unwrap();

    let output = expect_code(
        lifesweep()
            .arg("run")
            .arg(&config)
            .arg("--db")
            .arg(&db)
            .args(["--workers", "2"]),
        0,
    );
    let table = stdout(&output);
    assert!(table.contains("success_probability"), "{table}");

    let runs = runs_json(&db);
    assert_eq!(runs.len(), 8, "one row per job");
    let keys: HashSet<&str> = runs
        .iter()
        .map(|r| r["job_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 8, "no duplicate jobs");
    for run in &runs {
        assert_eq!(run["state"], "done", "{run}");
        assert_eq!(run["attempts"], 1, "each job trained once: {run}");
        let rate = run["success_rate"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&rate));
        assert_eq!(run["training_success"].as_bool().unwrap(), rate == 1.0);
        assert!(run["final_loss"].as_f64().unwrap().is_finite());
        assert!(run["wall_seconds"].as_f64().unwrap() > 0.0);
        assert_eq!(run["device"], "cpu");
    }
    let points: HashSet<(u64, u64, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["steps"].as_u64().unwrap(),
                r["m_factor"].as_u64().unwrap(),
                r["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(points.len(), 8);

    let csv = stdout(&expect_code(
        lifesweep()
            .args(["results", "--format", "csv", "--db"])
            .arg(&db),
        0,
    ));
    let header = csv.lines().next().unwrap();
    assert!(
        header.starts_with("steps,m_factor,d_factor,activation,runs,successes,success_probability,mean_success_rate"),
        "{header}"
    );
    assert_eq!(csv.lines().count(), 1 + 4, "one row per grid point:\n{csv}");
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[4], "2", "two seeds per point: {line}");
    }

    // Submitting and running the same config again trains nothing new.
    let again = expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    assert!(
        stdout(&again).contains("0 jobs added"),
        "{}",
        stdout(&again)
    );
    expect_code(
        lifesweep()
            .arg("run")
            .arg(&config)
            .arg("--db")
            .arg(&db)
            .args(["--workers", "2"]),
        0,
    );
    let runs_after = runs_json(&db);
    assert_eq!(runs_after.len(), 8);
    assert!(runs_after.iter().all(|r| r["attempts"] == 1));
}

#[test]
fn submit_then_work_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    let db = dir.path().join("manual.db");
    fs::write(&config, TINY).unwrap();
    let out = expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    assert!(stdout(&out).contains("8 jobs added"), "{}", stdout(&out));
    // LIFESWEEP_DB selects the database as --db does.
    expect_code(
        lifesweep()
            .args(["work", "--exit-when-idle", "--max-jobs", "3"])
            .env("LIFESWEEP_DB", &db),
        0,
    );
    let runs = runs_json(&db);
    assert_eq!(runs.iter().filter(|r| r["state"] == "done").count(), 3);
    expect_code(
        lifesweep()
            .args(["work", "--exit-when-idle", "--db"])
            .arg(&db),
        0,
    );
    assert!(runs_json(&db).iter().all(|r| r["state"] == "done"));
}

#[test]
fn a_diverging_run_is_a_recorded_failure_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("diverge.toml");
    let db = dir.path().join("diverge.db");
    fs::write(
        &config,
        "[grid]\nlearning_rate = [0.001, 1e30]\nseed = [1, 2]\n[train]\nbatches = 30\nbatch_size = 8\n\
         m_factor = 2\n[eval]\nboards = 20\n",
    )
    .unwrap();
    let output = expect_code(
        lifesweep()
            .arg("run")
            .arg(&config)
            .arg("--db")
            .arg(&db)
            .args(["--workers", "1"]),
        1,
    );
    assert!(
        crate::stderr(&output).contains("2 job(s) failed"),
        "{}",
        crate::stderr(&output)
    );
    let runs = runs_json(&db);
    for run in &runs {
        let huge = run["learning_rate"].as_f64().unwrap() > 1.0;
        if huge {
            assert_eq!(run["state"], "failed", "{run}");
            assert_eq!(
                run["attempts"], 1,
                "a diverged run is a result, not retried: {run}"
            );
            assert!(run["error"].as_str().unwrap().contains("diverged"), "{run}");
        } else {
            assert_eq!(run["state"], "done", "{run}");
        }
    }
}

#[test]
fn changing_a_fixed_parameter_under_the_same_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    let db = dir.path().join("conflict.db");
    fs::write(&config, TINY).unwrap();
    expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    fs::write(&config, TINY.replace("batches = 20", "batches = 21")).unwrap();
    let output = expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        2,
    );
    let err = crate::stderr(&output);
    assert!(
        err.contains("batches") && err.contains("20") && err.contains("21"),
        "{err}"
    );
    // Extending an axis under the same name adds only the new points.
    fs::write(
        &config,
        TINY.replace("m_factor = [1, 2]", "m_factor = [1, 2, 3]"),
    )
    .unwrap();
    let output = expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    assert!(
        stdout(&output).contains("4 jobs added, 8 already present"),
        "{}",
        stdout(&output)
    );
}

/// The weights of a sweep's runs as `results` lists them, from another directory: each path
/// absolute, its file present.
fn weights_paths(db: &std::path::Path, sweep: &str) -> Vec<std::path::PathBuf> {
    let runs = json_rows(
        lifesweep()
            .args(["results", sweep, "--runs", "--format", "json", "--db"])
            .arg(db),
    );
    assert_eq!(runs.len(), 2, "{runs:#?}");
    runs.iter()
        .map(|r| {
            let path = std::path::PathBuf::from(
                r["weights_path"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no weights_path: {r}")),
            );
            assert!(path.is_absolute(), "{}", path.display());
            assert!(path.is_file(), "{}", path.display());
            path
        })
        .collect()
}

#[test]
fn weights_go_beside_the_database_or_to_weights_dir_by_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    fs::create_dir(root.join("runs")).unwrap();
    let sweep = |name: &str| {
        format!(
            "[sweep]\nname = \"{name}\"\n[grid]\nseed = [1, 2]\n[train]\nbatches = 4\nbatch_size = 4\n\
             save_weights = true\n[eval]\nboards = 10\n"
        )
    };
    fs::write(root.join("kept.toml"), sweep("kept")).unwrap();
    fs::write(root.join("moved.toml"), sweep("moved")).unwrap();
    fs::write(root.join("by-env.toml"), sweep("by-env")).unwrap();
    // Relative paths, resolved in the command's directory; read back from another one.
    let run = |config: &str, extra: &[&str], env: Option<&str>| {
        let mut command = lifesweep();
        command
            .args(["run", config, "--db", "runs/sweep.db", "--workers", "2"])
            .args(extra)
            .current_dir(&root);
        if let Some(value) = env {
            command.env("LIFESWEEP_WEIGHTS_DIR", value);
        }
        expect_code(&mut command, 0);
    };
    run("kept.toml", &[], None);
    run("moved.toml", &["--weights-dir", "elsewhere"], None);
    run("by-env.toml", &[], Some("from-env"));
    let db = root.join("runs/sweep.db");

    for (sweep, dir) in [
        ("kept", "runs/sweep.weights"),
        ("moved", "elsewhere"),
        ("by-env", "from-env"),
    ] {
        for path in weights_paths(&db, sweep) {
            assert_eq!(path.parent().unwrap(), root.join(dir).join(sweep));
        }
    }
}

/// A scheduler that shows a worker only its GPU tells it `--device cuda:0` and the GPU's own
/// name (`--device-label`): the run records the name. (Checked on the CPU: the label is only
/// passed through.)
#[test]
fn a_worker_records_the_device_label_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    let db = dir.path().join("label.db");
    fs::write(&config, TINY.replace("to = 2", "to = 1")).unwrap();
    expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    expect_code(
        lifesweep()
            .args(["work", "--exit-when-idle", "--max-jobs", "1"])
            .args(["--device", "cpu", "--device-label", "cuda:3", "--db"])
            .arg(&db),
        0,
    );
    expect_code(
        lifesweep()
            .args(["work", "--exit-when-idle", "--device", "cpu", "--db"])
            .arg(&db),
        0,
    );
    let mut devices: Vec<String> = runs_json(&db)
        .iter()
        .filter(|r| r["state"] == "done")
        .map(|r| r["device"].as_str().unwrap().to_string())
        .collect();
    devices.sort();
    assert_eq!(devices, ["cpu", "cpu", "cpu", "cuda:3"]);
    let refused = expect_code(
        lifesweep()
            .args(["work", "--exit-when-idle", "--device-label", "gpu", "--db"])
            .arg(&db),
        2,
    );
    assert!(
        crate::stderr(&refused).contains("--device-label \"gpu\""),
        "{}",
        crate::stderr(&refused)
    );
}

/// On PostgreSQL a worker needs `--weights-dir` for jobs that save weights: refused at start
/// when such a job is queued; a worker started before such a sweep was submitted hands the job
/// back and stops, rather than write to a relative folder; with the flag the weights land
/// there, by absolute path.
#[test]
fn postgres_workers_need_a_weights_dir_for_jobs_that_save_weights() {
    let Some(postgres) = lifesweep_testkit::postgres() else {
        return; // testkit said why
    };
    let db = postgres.fresh_url();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    // One job of a few seconds, then one that saves its weights.
    fs::write(
        root.join("plain.toml"),
        "[sweep]\nname = \"plain\"\n[grid]\nseed = [1]\n[train]\nm_factor = 8\nbatch_size = 128\n\
         batches = 4000\n[eval]\nboards = 10\n",
    )
    .unwrap();
    fs::write(
        root.join("saving.toml"),
        "[sweep]\nname = \"saving\"\n[grid]\nseed = [1]\n[train]\nbatches = 4\nbatch_size = 4\n\
         save_weights = true\n[eval]\nboards = 10\n",
    )
    .unwrap();
    let submit = |config: &str| {
        expect_code(
            lifesweep()
                .args(["submit", config, "--db", &db])
                .current_dir(&root),
            0,
        );
    };
    let state = |sweep: &str| -> Value {
        let output = expect_code(
            lifesweep().args(["results", sweep, "--runs", "--format", "json", "--db", &db]),
            0,
        );
        serde_json::from_str::<Value>(&stdout(&output)).unwrap()[0].clone()
    };

    submit("plain.toml");
    let worker = lifesweep()
        .args(["work", "--exit-when-idle", "--db", &db])
        .current_dir(&root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while state("plain")["state"] != "running" {
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    submit("saving.toml");
    let output = worker.wait_with_output().unwrap();
    let err = crate::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("saving")
            && err.contains("--weights-dir")
            && err.contains("back to the queue"),
        "{err}"
    );
    assert_eq!(state("plain")["state"], "done");
    let saving = state("saving");
    assert_eq!(
        (&saving["state"], &saving["attempts"]),
        (&Value::from("queued"), &Value::from(0)),
        "handed back as if never claimed: {saving}"
    );
    assert!(
        !root.join("saving").exists() && fs::read_dir(&root).unwrap().count() == 2,
        "nothing written beside the configs"
    );

    let refused = expect_code(
        lifesweep()
            .args(["work", "--exit-when-idle", "--db", &db])
            .current_dir(&root),
        2,
    );
    let err = crate::stderr(&refused);
    assert!(
        err.contains("--weights-dir") && err.contains("save_weights = true"),
        "{err}"
    );

    expect_code(
        lifesweep()
            .args([
                "work",
                "--exit-when-idle",
                "--weights-dir",
                "w",
                "--db",
                &db,
            ])
            .current_dir(&root),
        0,
    );
    let saving = state("saving");
    assert_eq!(saving["state"], "done", "{saving}");
    let path = std::path::PathBuf::from(saving["weights_path"].as_str().unwrap());
    assert_eq!(path.parent().unwrap(), root.join("w/saving"));
    assert!(path.is_file());
}

/// A worker started without `--fuse-seeds` (as `resume` and Slurm array tasks start them)
/// trains the seeds fused as the sweep file asks; `--fuse-seeds` overrides it.
#[test]
fn a_worker_without_fuse_seeds_follows_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fused.toml");
    let db = dir.path().join("fused.db");
    fs::write(
        &config,
        TINY.replace("name = \"tiny\"", "name = \"fused\"\nfuse_seeds = 2"),
    )
    .unwrap();
    expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );

    let claims = |extra: &[&str]| -> Vec<String> {
        let output = expect_code(
            lifesweep()
                .args(["-v", "work", "--exit-when-idle", "--max-jobs", "2", "--db"])
                .arg(&db)
                .args(extra),
            0,
        );
        crate::stderr(&output)
            .lines()
            .filter(|l| l.contains("claimed") && l.contains("fused="))
            .map(String::from)
            .collect()
    };
    let fused = claims(&[]);
    assert_eq!(fused.len(), 2, "{fused:?}");
    assert!(fused.iter().all(|l| l.contains("fused=2")), "{fused:?}");
    let single = claims(&["--fuse-seeds", "1"]);
    assert_eq!(single.len(), 2, "{single:?}");
    assert!(single.iter().all(|l| l.contains("fused=1")), "{single:?}");
}

/// Submitting a sweep again with other settings (not training parameters) says what changed.
#[test]
fn resubmitting_with_other_settings_says_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    let db = dir.path().join("settings.db");
    let named = TINY.replace("name = \"tiny\"", "name = \"settings\"\nfuse_seeds = 2");
    fs::write(&config, &named).unwrap();
    let first = expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    assert!(
        !stdout(&first).contains("settings updated"),
        "{}",
        stdout(&first)
    );
    fs::write(
        &config,
        named.replace("fuse_seeds = 2", "fuse_seeds = 1\ndescription = \"narrow\""),
    )
    .unwrap();
    let again = expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    assert!(
        stdout(&again).contains(
            "sweep settings: settings updated: description \"\" -> \"narrow\", fuse_seeds 2 -> 1"
        ),
        "{}",
        stdout(&again)
    );
}
