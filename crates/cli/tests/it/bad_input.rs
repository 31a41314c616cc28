//! Bad configs and flags: a non-zero exit, a message naming the file and key, nothing written.

use std::fs;

use crate::{expect_code, lifesweep, repo_root, stderr, stdout};

const GOOD: &str =
    "[grid]\nm_factor = [1, 2]\nseed = [1, 2]\n[train]\nbatches = 2\nbatch_size = 4\n";

/// Each case: config text, the key the message must name.
const CASES: &[(&str, &str)] = &[
    ("[train]\nbatches = 2\nbogus = 1\n", "[train].bogus"),
    ("[grid]\nm_factor = []\n", "[grid].m_factor"),
    ("[grid]\nm_factor = [1, 0]\n", "[grid].m_factor"),
    ("[train]\nm_factor = -1\n", "[train].m_factor"),
    ("[train]\nsteps = 0\n", "[train].steps"),
    ("[train]\nbatches = 0\n", "[train].batches"),
    ("[train]\nbatch_size = 0\n", "[train].batch_size"),
    (
        "[grid]\nactivation = [\"ReLU\", \"Swish\"]\n",
        "[grid].activation",
    ),
    ("[eval]\nboardz = 10\n", "[eval].boardz"),
];

#[test]
fn bad_configs_exit_2_naming_file_and_key_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    let db = dir.path().join("out.db");
    for (text, key) in CASES {
        fs::write(&config, text).unwrap();
        for command in ["run", "submit"] {
            let output = expect_code(
                lifesweep().arg(command).arg(&config).arg("--db").arg(&db),
                2,
            );
            let err = stderr(&output);
            assert!(
                err.contains("bad.toml") && err.contains(key),
                "{command} on {text:?}: {err}"
            );
            assert!(!db.exists(), "{command} on {text:?} created the database");
        }
    }
}

#[test]
fn toml_syntax_error_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    let db = dir.path().join("out.db");
    fs::write(&config, "[train]\nbatches = \n").unwrap();
    let output = expect_code(lifesweep().arg("run").arg(&config).arg("--db").arg(&db), 2);
    let err = stderr(&output);
    assert!(
        err.contains("broken.toml") && err.contains("line 2"),
        "{err}"
    );
    assert!(!db.exists());
}

#[test]
fn missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let output = expect_code(
        lifesweep()
            .arg("run")
            .arg(dir.path().join("nope.toml"))
            .arg("--db")
            .arg(&db),
        2,
    );
    assert!(stderr(&output).contains("nope.toml"), "{}", stderr(&output));
    assert!(!db.exists());
}

#[test]
fn bad_flags_exit_2_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    let db = dir.path().join("out.db");
    fs::write(&config, GOOD).unwrap();
    for flags in [
        &["--workers", "0"][..],
        &["--device", "tpu"][..],
        &["--heartbeat", "-1"][..],
        &["--max-attempts", "0"][..],
    ] {
        let output = expect_code(
            lifesweep()
                .arg("run")
                .arg(&config)
                .arg("--db")
                .arg(&db)
                .args(flags),
            2,
        );
        assert!(!stderr(&output).is_empty());
        assert!(!db.exists(), "flags {flags:?} created the database");
    }
}

#[test]
fn results_on_a_missing_database_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("absent.db");
    let output = expect_code(lifesweep().arg("results").arg("--db").arg(&db), 2);
    assert!(stderr(&output).contains("absent.db"), "{}", stderr(&output));
    assert!(!db.exists(), "results created the database");
}

#[test]
fn every_shipped_config_is_valid() {
    let mut checked = 0;
    for entry in fs::read_dir(repo_root().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = expect_code(lifesweep().arg("submit").arg("--dry-run").arg(&path), 0);
            assert!(stdout(&output).contains("jobs"), "{}", stdout(&output));
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected the smoke and seed-sweep configs");
}

#[test]
fn a_file_that_is_not_ours_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    fs::write(&config, GOOD).unwrap();
    let foreign = dir.path().join("notes.db");
    let bytes = b"these are someone's notes, not a database\n".repeat(100);
    fs::write(&foreign, &bytes).unwrap();
    for command in [&["run"][..], &["submit"][..]] {
        let output = expect_code(
            lifesweep()
                .args(command)
                .arg(&config)
                .arg("--db")
                .arg(&foreign),
            2,
        );
        let err = stderr(&output);
        assert!(
            err.contains("notes.db") && err.contains("not a lifesweep database"),
            "{err}"
        );
    }
    for command in [
        &["results"][..],
        &["resume"][..],
        &["work", "--exit-when-idle"][..],
    ] {
        let output = expect_code(lifesweep().args(command).arg("--db").arg(&foreign), 2);
        assert!(stderr(&output).contains("notes.db"), "{}", stderr(&output));
    }
    assert_eq!(
        fs::read(&foreign).unwrap(),
        bytes,
        "the foreign file was changed"
    );
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no side files were created: {names:?}");
}

#[test]
fn a_database_in_a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    fs::write(&config, GOOD).unwrap();
    let db = dir.path().join("no/such/dir/x.db");
    let output = expect_code(lifesweep().arg("run").arg(&config).arg("--db").arg(&db), 2);
    assert!(
        stderr(&output).contains("no/such/dir"),
        "{}",
        stderr(&output)
    );
}
