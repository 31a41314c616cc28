//! `lifesweep export`: one record per run with every parameter and metric.

use std::process::ExitCode;

use anyhow::Result;
use lifesweep_results::{export_table, Format};

use crate::cli::{ExportArgs, ExportFormat};
use crate::commands::plot::{load_runs, write_file};
use crate::commands::results::parse_filters;
use crate::common;

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let filters = parse_filters(&args.filters)?;
    let runtime = common::runtime()?;
    let runs = runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        load_runs(&store, args.sweep.as_deref(), &filters).await
    })?;
    let (format, loss_curve) = match args.format {
        ExportFormat::Csv => (Format::Csv, false),
        ExportFormat::Json => (Format::Json, true),
    };
    let text = export_table(&runs.rows, loss_curve).render(format)?;
    match &args.out {
        Some(path) => write_file(path, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
