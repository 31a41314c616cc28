//! CLI tests: the real `lifesweep` binary on real files in a temp dir.

mod bad_input;
mod boards;
mod concurrency;
mod crash;
mod determinism;
mod end_to_end;
mod fixture;
mod reading;
mod slurm;
mod walk;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn lifesweep() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifesweep"));
    command.env_remove("LIFESWEEP_DB").env_remove("RUST_LOG");
    command
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Six jobs of a second or so each, long enough to be caught mid-run (killed, cancelled).
pub fn slow_sweep(name: &str) -> String {
    format!(
        r#"
[sweep]
name = "{name}"
[grid]
seed = {{ from = 1, to = 6 }}
[train]
m_factor = 8
batch_size = 128
batches = 1500
loss_every = 100
[eval]
boards = 100
"#
    )
}

/// What a command printed as JSON; fails the test with its output if it is not JSON.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output)).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\nstdout:\n{}\nstderr:\n{}",
            stdout(output),
            stderr(output)
        )
    })
}

/// The rows of the JSON array a command printed after exiting 0 (`--format json` listings).
pub fn json_rows(command: &mut Command) -> Vec<serde_json::Value> {
    match json(&expect_code(command, 0)) {
        serde_json::Value::Array(rows) => rows,
        other => panic!("not a JSON array: {other}"),
    }
}

/// Runs a command and fails the test with its output if the exit code is not `code`.
pub fn expect_code(command: &mut Command, code: i32) -> Output {
    let output = command.output().expect("run lifesweep");
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}
