//! Many processes at once on one new database file.

use std::fs;
use std::process::Stdio;

use crate::{json_rows, lifesweep, stderr};

#[test]
fn thirty_two_processes_on_a_new_file_run_600_jobs_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quick.toml");
    let db = dir.path().join("fresh.db");
    fs::write(
        &config,
        "[sweep]\nname = \"quick\"\n[grid]\nm_factor = [1, 2, 3]\nsteps = [1, 2]\nseed = { from = 1, to = 100 }\n\
         [train]\nbatches = 1\nbatch_size = 2\n[eval]\nboards = 5\n",
    )
    .unwrap();
    assert!(!db.exists());
    let exe = env!("CARGO_BIN_EXE_lifesweep");
    // Each process submits the same sweep (idempotent) and then works until the queue is empty.
    let script = format!(
        "\"{exe}\" --quiet submit \"{c}\" --db \"{d}\" && exec \"{exe}\" work --exit-when-idle --db \"{d}\"",
        c = config.display(),
        d = db.display()
    );
    let children: Vec<_> = (0..32)
        .map(|_| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env_remove("LIFESWEEP_DB")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let err = stderr(&output);
        assert!(output.status.success(), "a process failed: {err}");
        assert!(
            !err.to_lowercase().contains("locked"),
            "a user saw a lock error: {err}"
        );
    }
    let runs = json_rows(
        lifesweep()
            .args(["results", "--runs", "--format", "json", "--db"])
            .arg(&db),
    );
    assert_eq!(runs.len(), 600);
    assert!(
        runs.iter()
            .all(|r| r["state"] == "done" && r["attempts"] == 1),
        "every job ran exactly once"
    );
}
