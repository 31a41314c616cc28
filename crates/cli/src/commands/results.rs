use std::process::ExitCode;

use anyhow::Result;
use lifesweep_results::{
    group_runs, groups_table, params_map, runs_table, Filter, SortKey, Table, WIDE_ONLY_COLUMNS,
};
use lifesweep_store::RunRow;

use crate::cli::{OutputFormat, ResultsArgs};
use crate::common;

/// The grid-point table of `rows`, grouped by `group_by`.
pub fn grid_table(rows: &[RunRow], group_by: &[String]) -> Result<Table> {
    let groups = group_runs(rows, group_by)?;
    Ok(groups_table(&groups, group_by))
}

/// Parses `--where` filters (`steps=2`, `seed<=10`, ...), checking keys and values.
pub(crate) fn parse_filters(filters: &[String]) -> Result<Vec<Filter>> {
    Ok(filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Whether a run passes every filter.
pub(crate) fn passes(row: &RunRow, filters: &[Filter]) -> bool {
    let params = params_map(&row.params);
    filters.iter().all(|f| f.matches(&params))
}

pub fn results(args: ResultsArgs) -> Result<ExitCode> {
    let filters = parse_filters(&args.filters)?;
    let sort = args
        .sort
        .iter()
        .map(|k| SortKey::parse(k))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        let sweep = store.resolve_sweep(args.sweep.as_deref()).await?;
        let mut table = if args.walks {
            let mut walks = store.walks(Some(&sweep)).await?;
            walks.retain(|w| filters.iter().all(|f| f.matches(&params_map(&w.params))));
            lifesweep_results::walks::walks_table(&walks)
        } else if args.runs {
            let mut rows = store.runs(Some(&sweep)).await?;
            rows.retain(|row| passes(row, &filters));
            runs_table(&rows)
        } else {
            let mut rows = store.runs(Some(&sweep)).await?;
            rows.retain(|row| passes(row, &filters));
            let group_by = if args.group_by.is_empty() {
                let info = store.sweeps().await?.into_iter().find(|s| s.name == sweep);
                lifesweep_spec::group_keys_for(&info.map(|s| s.axes).unwrap_or_default())
            } else {
                args.group_by.clone()
            };
            grid_table(&rows, &group_by)?
        };
        table.sort(&sort)?;
        if args.format == OutputFormat::Table && !args.runs && !args.walks && !args.wide {
            table = table.select(|c| !WIDE_ONLY_COLUMNS.contains(&c));
        }
        crate::out!("{}", table.render(args.format.into())?);
        Ok(ExitCode::SUCCESS)
    })
}
