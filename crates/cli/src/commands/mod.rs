//! One module per subcommand.

mod boards;
mod cancel;
mod export;
mod plot;
mod report;
mod results;
mod resume;
mod retry;
mod run;
mod slurm;
mod status;
mod submit;
mod walk;
mod work;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    let quiet = cli.quiet;
    match cli.command {
        Command::Run(args) => run::run(args, quiet, cli.verbose),
        Command::Resume(args) => resume::resume(args, quiet, cli.verbose),
        Command::Retry(args) => retry::retry(args, quiet),
        Command::Cancel(args) => cancel::cancel(args, quiet),
        Command::Submit(args) => submit::submit(args, quiet),
        Command::Work(args) => work::work(args),
        Command::Results(args) => results::results(args),
        Command::Plot(args) => plot::plot(args, quiet),
        Command::Report(args) => report::report(args, quiet),
        Command::Status(args) => status::status(args),
        Command::Export(args) => export::export(args),
        Command::Boards(args) => boards::boards(args),
        Command::Slurm(args) => slurm::slurm(args, quiet),
        Command::Walk(args) => walk::walk(args, quiet, cli.verbose),
    }
}
