//! One module per subcommand.

mod boards;
mod results;
mod run;
mod submit;
mod work;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Run(args) => run::run(args, quiet, cli.verbose),
        Command::Submit(args) => submit::submit(args, quiet),
        Command::Work(args) => work::work(args),
        Command::Results(args) => results::results(args),
        Command::Boards(args) => boards::boards(args),
    }
}
