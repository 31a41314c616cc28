//! `lifesweep walk` and `plot --walks` on a tiny sweep that saved its weights: one run walked
//! in-process, a sweep's runs walked as jobs, the figures, and bad input.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::{expect_code, json, lifesweep, stderr, stdout};

const SAVING: &str = r#"
[sweep]
name = "walked"
[grid]
steps = [1]
m_factor = [1, 2]
seed = { from = 1, to = 2 }
[train]
batches = 30
batch_size = 8
use_sigmoid = true
activation = "LeakyReLU"
save_weights = true
[eval]
boards = 20
"#;

fn run_sweep(dir: &Path, toml: &str) -> std::path::PathBuf {
    let config = dir.join("sweep.toml");
    let db = dir.join("sweep.db");
    fs::write(&config, toml).unwrap();
    expect_code(
        lifesweep()
            .arg("run")
            .arg(&config)
            .arg("--db")
            .arg(&db)
            .args(["--workers", "1", "--quiet"]),
        0,
    );
    db
}

fn runs(db: &Path) -> Vec<Value> {
    let output = expect_code(
        lifesweep()
            .args(["results", "--runs", "--format", "json", "--db"])
            .arg(db),
        0,
    );
    json(&output).as_array().unwrap().clone()
}

fn walks(db: &Path) -> Vec<Value> {
    let output = expect_code(
        lifesweep()
            .args(["results", "--walks", "--format", "json", "--db"])
            .arg(db),
        0,
    );
    json(&output).as_array().unwrap().clone()
}

fn walk_count(db: &Path) -> usize {
    walks(db).len()
}

fn f(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

#[test]
fn walk_one_run_to_the_solution_is_stored_and_ends_at_the_solution() {
    let dir = tempfile::tempdir().unwrap();
    let db = run_sweep(dir.path(), SAVING);
    let all = runs(&db);
    assert_eq!(all.len(), 4);
    let run = all
        .iter()
        .find(|r| r["m_factor"] == 2 && r["seed"] == 1)
        .expect("the m_factor 2 seed 1 run");
    let key = run["job_key"].as_str().unwrap().to_owned();

    let walk = |extra: &[&str]| {
        let mut command = lifesweep();
        command
            .arg("walk")
            .arg(&key[..8])
            .args([
                "--points",
                "5",
                "--batches",
                "2",
                "--format",
                "json",
                "--db",
            ])
            .arg(&db)
            .args(extra);
        expect_code(&mut command, 0)
    };
    let first = walk(&[]);
    let points = json(&first);
    let points = points.as_array().unwrap();
    assert_eq!(points.len(), 5, "{points:?}");
    let fractions: Vec<f64> = points.iter().map(|p| f(p, "fraction")).collect();
    assert_eq!(fractions, [0.0, 0.25, 0.5, 0.75, 1.0]);
    assert_eq!(f(&points[0], "distance"), 0.0);
    let distances: Vec<f64> = points.iter().map(|p| f(p, "distance")).collect();
    assert!(
        distances.windows(2).all(|w| w[1] > w[0]),
        "distance grows along the line: {distances:?}"
    );
    // the far end is the presolved network: every board right, loss two orders below the start
    let end = &points[4];
    assert_eq!(f(end, "success_rate"), 1.0, "{end}");
    assert!(
        f(end, "loss") < 1e-2 && f(end, "loss") < f(&points[0], "loss") / 10.0,
        "{points:?}"
    );

    // asked again: the stored walk, not a new one
    let second = walk(&[]);
    assert!(
        stderr(&second).contains("already in the database"),
        "{}",
        stderr(&second)
    );
    assert_eq!(stdout(&second), stdout(&first));

    // aligned, a different walk: the same end, its own row
    let aligned = json(&walk(&["--align"]));
    assert_eq!(f(&aligned[4], "success_rate"), 1.0);
    assert!(
        f(&aligned[4], "distance") <= f(end, "distance") + 1e-9,
        "alignment never lengthens the line: {} vs {}",
        aligned[4],
        end
    );

    // a random walk: distances 0, 0.1, .., 1, 2 for --max-distance 2, deterministic per seed
    let random = |seed: &str| {
        let mut command = lifesweep();
        command
            .arg("walk")
            .arg(&key)
            .args(["--to", "random", "--max-distance", "2", "--batches", "1"])
            .args(["--seed", seed, "--format", "json", "--db"])
            .arg(&db);
        json(&expect_code(&mut command, 0))
    };
    let r3 = random("3");
    let distances: Vec<f64> = r3
        .as_array()
        .unwrap()
        .iter()
        .map(|p| f(p, "distance"))
        .collect();
    assert_eq!(distances.len(), 12, "{distances:?}");
    assert!((distances[1] - 0.1).abs() < 1e-9 && distances[11] == 2.0);
    assert!(r3[0]["fraction"].is_null());
    let r4 = random("4");
    assert_eq!(r3[0]["loss"], r4[0]["loss"], "both start at the run");
    assert_ne!(r3[11]["loss"], r4[11]["loss"], "different directions");

    let stored = walks(&db);
    let mut kinds: Vec<(String, bool)> = stored
        .iter()
        .map(|w| (w["kind"].as_str().unwrap().to_owned(), w["aligned"] == true))
        .collect();
    kinds.sort();
    let expected = [
        ("presolve", false),
        ("presolve", true),
        ("random", false),
        ("random", false),
    ];
    assert_eq!(
        kinds,
        expected.map(|(k, a)| (k.to_owned(), a)),
        "four distinct walks stored: {stored:?}"
    );
    assert!(stored
        .iter()
        .all(|w| w["state"] == "done" && w["run_key"] == run["job_key"]));
}

#[test]
fn walk_a_sweep_as_jobs_then_plot_the_walks() {
    let dir = tempfile::tempdir().unwrap();
    let db = run_sweep(dir.path(), SAVING);
    let failed = runs(&db)
        .iter()
        .filter(|r| r["training_success"] != Value::Bool(true))
        .count();
    assert!(failed > 0, "30 batches solve nothing");

    let output = expect_code(
        lifesweep()
            .args(["walk", "--sweep", "walked", "--failed", "--points", "3"])
            .args([
                "--batches",
                "1",
                "--workers",
                "2",
                "--format",
                "json",
                "--db",
            ])
            .arg(&db),
        0,
    );
    let walks = json(&output);
    let walks = walks.as_array().unwrap();
    assert_eq!(walks.len(), failed, "{walks:?}");
    for walk in walks {
        assert_eq!(walk["state"], "done", "{walk}");
        assert_eq!(f(walk, "success_rate_end"), 1.0, "{walk}");
    }

    // again: nothing new to run, the same walks
    let again = expect_code(
        lifesweep()
            .args(["walk", "--sweep", "walked", "--failed", "--points", "3"])
            .args(["--batches", "1", "--workers", "1", "--db"])
            .arg(&db),
        0,
    );
    assert!(
        stderr(&again).contains(&format!("(0 new, {failed} already there)")),
        "{}",
        stderr(&again)
    );

    // walks never show up as training runs
    assert_eq!(runs(&db).len(), 4);

    // every point of every walk, in csv and json
    let csv = stdout(&expect_code(
        lifesweep().args(["export", "--walks", "--db"]).arg(&db),
        0,
    ));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("walk_job_id,run_job_id,run_key,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 1 + 3 * failed, "{csv}");
    let points = json(&expect_code(
        lifesweep()
            .args([
                "export",
                "--walks",
                "--format",
                "json",
                "--where",
                "m_factor=2",
                "--db",
            ])
            .arg(&db),
        0,
    ));
    let points = points.as_array().unwrap();
    assert!(points
        .iter()
        .all(|p| p["m_factor"] == 2 && p["kind"] == "presolve"));
    let ends: Vec<&Value> = points.iter().filter(|p| p["point"] == 2).collect();
    assert!(
        !ends.is_empty()
            && ends
                .iter()
                .all(|p| f(p, "fraction") == 1.0 && f(p, "success_rate") == 1.0)
    );

    let out = dir.path().join("figures");
    let output = expect_code(
        lifesweep()
            .args(["plot", "--walks", "--db"])
            .arg(&db)
            .arg("--out")
            .arg(&out),
        0,
    );
    let files: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with(".svg")) && files.iter().any(|f| f.ends_with(".png")),
        "{files:?}\n{}",
        stdout(&output)
    );
    for file in &files {
        assert!(fs::metadata(out.join(file)).unwrap().len() > 1000, "{file}");
    }
}

#[test]
fn bad_walks_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let unsaved = SAVING.replace("save_weights = true", "save_weights = false");
    let db = run_sweep(dir.path(), &unsaved);
    let key = runs(&db)[0]["job_key"].as_str().unwrap().to_owned();
    let before = walk_count(&db);

    let cases: &[(&[&str], &str)] = &[
        (&[key.as_str()], "save_weights = true"),
        (
            &["--sweep", "walked", "--queue-only"],
            "save_weights = true",
        ),
        (&["no-such-run"], "no run \"no-such-run\""),
        (&["9999"], "no run \"9999\""),
        (&[key.as_str(), "--points", "1"], "points"),
        (&[key.as_str(), "--batches", "0"], "batches"),
        (&["--sweep", "nope"], "nope"),
    ];
    for (args, expected) in cases {
        let output = expect_code(lifesweep().arg("walk").args(*args).arg("--db").arg(&db), 2);
        assert!(
            stderr(&output).contains(expected),
            "walk {args:?}: {}",
            stderr(&output)
        );
    }
    assert_eq!(walk_count(&db), before, "no walk job written");

    let output = expect_code(
        lifesweep()
            .args(["plot", "--walks", "--db"])
            .arg(&db)
            .arg("--out")
            .arg(dir.path().join("figures")),
        2,
    );
    assert!(
        stderr(&output).contains("no finished loss walk"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("figures").exists());

    // a database that does not exist is not created by a walk
    let missing = dir.path().join("missing.db");
    expect_code(lifesweep().args(["walk", "abcd", "--db"]).arg(&missing), 2);
    assert!(!missing.exists());
}
