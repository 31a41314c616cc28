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

/// `--devices` and `--workers-per-device` misused, for `run` and `resume`: exit 2, the flag and
/// value named (messages pinned in snapshots/bad-devices.txt), no database written.
#[test]
fn bad_device_lists_exit_2_naming_the_flag_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    let db = dir.path().join("out.db");
    fs::write(&config, GOOD).unwrap();
    let cases: &[&[&str]] = &[
        &["--devices", "cuda:0", "--device", "cuda:1"],
        &["--devices", "cuda:0", "--workers", "2"],
        &["--workers-per-device", "2"],
        &["--devices", "cuda:0", "--workers-per-device", "0"],
        &["--devices", "cuda:0,cuda:0"],
        &["--devices", "cuda,cuda:0"],
        &["--devices", "cuda:0,,cuda:1"],
        &["--devices", ""],
        &["--devices", "cpu"],
        &["--devices", "cuda:0,gpu1"],
    ];
    let mut transcript = String::new();
    for flags in cases {
        for command in ["run", "resume"] {
            let mut lifesweep = lifesweep();
            lifesweep.arg(command);
            if command == "run" {
                lifesweep.arg(&config);
            }
            let output = expect_code(lifesweep.arg("--db").arg(&db).args(*flags), 2);
            assert!(!db.exists(), "{command} {flags:?} created the database");
            transcript.push_str(&format!(
                "$ lifesweep {command}{} --db out.db {}\n{}\n",
                if command == "run" { " ok.toml" } else { "" },
                flags.join(" "),
                stderr(&output).trim_end()
            ));
        }
    }
    crate::fixture::assert_snapshot("bad-devices.txt", &transcript);
}

/// A GPU asked of a build without the `cuda` feature is an error at start, with `--device` as
/// with `--devices`, before the database exists.
#[test]
fn a_gpu_without_cuda_is_refused_at_start() {
    if cfg!(feature = "cuda") {
        eprintln!(
            "skipped: this build has the cuda feature (the refusal is for builds without it)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    let db = dir.path().join("out.db");
    fs::write(&config, GOOD).unwrap();
    for flags in [
        &["--device", "cuda:0"][..],
        &["--devices", "cuda:0,cuda:1", "--workers-per-device", "2"][..],
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
        let err = stderr(&output);
        assert!(
            err.contains("\"cuda:0\"") && err.contains("built without CUDA"),
            "{flags:?}: {err}"
        );
        if flags[0] == "--devices" {
            assert!(err.contains("--devices \"cuda:0,cuda:1\""), "{err}");
        }
        assert!(!db.exists(), "{flags:?} created the database");
    }
}

/// A PostgreSQL database has no directory for weights: a sweep that saves them needs
/// `--weights-dir`, refused (before any connection) without it; with it, workers get it as an
/// absolute path.
#[test]
fn postgres_needs_weights_dir_when_a_job_saves_weights() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("saving.toml");
    fs::write(&config, format!("{GOOD}save_weights = true\n")).unwrap();
    // Nothing listens on port 9: reaching the database at all would be a different error.
    let db = "postgres://nobody@127.0.0.1:9/lifesweep";
    for command in [
        &["run"][..],
        &["slurm", "submit", "--workers", "2", "--dry-run"][..],
    ] {
        let output = expect_code(
            lifesweep()
                .args(command)
                .arg(&config)
                .args(["--db", db])
                .current_dir(dir.path()),
            2,
        );
        let err = stderr(&output);
        assert!(
            err.contains("--weights-dir")
                && err.contains("sweep saving")
                && err.contains("save_weights = true")
                && err.contains("LIFESWEEP_WEIGHTS_DIR"),
            "{command:?}: {err}"
        );
    }
    let script = expect_code(
        lifesweep()
            .args(["slurm", "submit", "--workers", "2", "--dry-run"])
            .arg(&config)
            .args(["--db", db])
            .env("LIFESWEEP_WEIGHTS_DIR", "shared/weights")
            .current_dir(dir.path()),
        0,
    );
    let expected = std::path::absolute(dir.path().join("shared/weights")).unwrap();
    assert!(
        stdout(&script).contains(&format!("--weights-dir {}", expected.display())),
        "{}",
        stdout(&script)
    );
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing written beside the config");
}

/// Makes a file read-only for the test's lifetime: `chattr +i` as root (whom file modes do
/// not stop), mode 0444 otherwise; undone on drop.
struct ReadOnly(std::path::PathBuf);

impl ReadOnly {
    fn new(path: &std::path::Path) -> Option<ReadOnly> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let made = if unsafe { libc::geteuid() } == 0 {
            std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success())
        } else {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(0o444)).is_ok()
        };
        made.then(|| ReadOnly(path.to_path_buf()))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o644));
    }
}

/// A lifesweep database that cannot be written: every writing command exits 2 naming the file
/// (once, not the driver's message three times), and the file is left as it was.
#[test]
fn a_read_only_database_is_named_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ok.toml");
    let db = dir.path().join("ro.db");
    fs::write(&config, GOOD).unwrap();
    expect_code(
        lifesweep().arg("submit").arg(&config).arg("--db").arg(&db),
        0,
    );
    let before = fs::read(&db).unwrap();
    let Some(_read_only) = ReadOnly::new(&db) else {
        eprintln!("skipped: cannot make {} read-only here", db.display());
        return;
    };
    let extended = dir.path().join("more.toml");
    fs::write(&extended, GOOD.replace("seed = [1, 2]", "seed = [1, 2, 3]")).unwrap();
    let commands: [Vec<&std::ffi::OsStr>; 3] = [
        vec!["submit".as_ref(), extended.as_os_str()],
        vec!["cancel".as_ref()],
        vec!["work".as_ref(), "--exit-when-idle".as_ref()],
    ];
    for args in commands {
        let output = expect_code(lifesweep().args(&args).arg("--db").arg(&db), 2);
        let err = stderr(&output);
        assert!(
            err.contains(&format!(
                "{}: cannot create or write the database",
                db.display()
            )),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("readonly").count(), 1, "{args:?}: {err}");
    }
    assert_eq!(fs::read(&db).unwrap(), before);
}
