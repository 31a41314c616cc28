//! The `lifesweep` binary: reads files and the environment, prints, and chooses exit codes.
//! Exit codes: 0 success, 1 the sweep finished with failed jobs, 2 bad input or
//! infrastructure, 130 interrupted by a signal.

mod cli;
mod commands;
mod common;

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;

/// glibc malloc page-faults on the large temporaries of training; mimalloc reuses them.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    common::init_tracing(cli.verbose, cli.quiet);
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(error) if error.is::<common::StdoutClosed>() => ExitCode::SUCCESS,
        Err(error) => {
            crate::say!("error: {error:#}");
            ExitCode::from(common::EXIT_BAD_INPUT)
        }
    }
}
