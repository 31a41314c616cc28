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
