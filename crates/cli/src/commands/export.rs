//! `lifesweep export`: one record per run with every parameter and metric, or (`--walks`)
//! one per point of the sweep's loss walks.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use lifesweep_results::walks::walk_points_export;
use lifesweep_results::{export_table, params_map, Format};

use crate::cli::{ExportArgs, ExportFormat};
use crate::commands::plot::{load_runs, write_file};
use crate::commands::results::parse_filters;
use crate::common;

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let filters = parse_filters(&args.filters)?;
    let runtime = common::runtime()?;
    if args.walks {
        let walks = runtime.block_on(async {
            let store = common::open_existing_store(&args.db.db).await?;
            let sweep = store.resolve_sweep(args.sweep.as_deref()).await?;
            let mut walks = store.walks(Some(&sweep)).await?;
            walks.retain(|w| filters.iter().all(|f| f.matches(&params_map(&w.params))));
            anyhow::Ok(walks)
        })?;
        let format = match args.format {
            ExportFormat::Csv => Format::Csv,
            ExportFormat::Json => Format::Json,
        };
        let text = walk_points_export(&walks).render(format)?;
        return write_or_print(args.out.as_deref(), &text);
    }
    let runs = runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        load_runs(&store, args.sweep.as_deref(), &filters).await
    })?;
    let (format, loss_curve) = match args.format {
        ExportFormat::Csv => (Format::Csv, false),
        ExportFormat::Json => (Format::Json, true),
    };
    let text = export_table(&runs.rows, loss_curve).render(format)?;
    write_or_print(args.out.as_deref(), &text)
}

fn write_or_print(out: Option<&Path>, text: &str) -> Result<ExitCode> {
    match out {
        Some(path) => write_file(path, text.as_bytes())?,
        None => crate::out!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
