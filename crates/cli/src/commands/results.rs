use std::process::ExitCode;

use anyhow::{bail, Result};
use lifesweep_results::{
    group_runs, groups_table, param_names, params_map, runs_table, SortKey, Table,
};
use lifesweep_store::RunRow;
use serde_json::Value;

use crate::cli::ResultsArgs;
use crate::common;

/// The grid-point table of `rows`, grouped by `group_by`.
pub fn grid_table(rows: &[RunRow], group_by: &[String]) -> Result<Table> {
    let groups = group_runs(rows, group_by)?;
    Ok(groups_table(&groups, group_by))
}

/// Parses `--where KEY=VALUE` filters, checking the key.
pub(crate) fn parse_filters(filters: &[String]) -> Result<Vec<(String, String)>> {
    let known = param_names();
    filters
        .iter()
        .map(|f| {
            let Some((key, value)) = f.split_once('=') else {
                bail!("--where {f:?}: expected KEY=VALUE, e.g. --where steps=2");
            };
            let key = key.trim();
            if !known.iter().any(|k| k == key) {
                bail!(
                    "--where {f:?}: unknown parameter {key:?}; parameters are {}",
                    known.join(", ")
                );
            }
            Ok((key.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Whether a parameter value matches a filter's text (numbers compare as numbers).
pub(crate) fn matches(value: Option<&Value>, wanted: &str) -> bool {
    match value {
        Some(Value::String(s)) => s.eq_ignore_ascii_case(wanted),
        Some(Value::Number(n)) => match (n.as_f64(), wanted.parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        },
        Some(other) => other.to_string() == wanted,
        None => false,
    }
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
        let mut rows = store.runs(Some(&sweep)).await?;
        rows.retain(|row| {
            let params = params_map(&row.params);
            filters.iter().all(|(k, v)| matches(params.get(k), v))
        });
        let mut table = if args.runs {
            runs_table(&rows)
        } else {
            let group_by = if args.group_by.is_empty() {
                let info = store.sweeps().await?.into_iter().find(|s| s.name == sweep);
                lifesweep_spec::group_keys_for(&info.map(|s| s.axes).unwrap_or_default())
            } else {
                args.group_by.clone()
            };
            grid_table(&rows, &group_by)?
        };
        table.sort(&sort)?;
        print!("{}", table.render(args.format.into())?);
        Ok(ExitCode::SUCCESS)
    })
}
