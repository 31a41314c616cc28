//! Turns a sweep's runs into what a researcher reads: one row per grid point with the success
//! probability over seeds and its 95% Wilson interval, or one row per run, rendered as an
//! aligned table, CSV or JSON; the seed's figures (SVG and PNG, via plotters); a report page
//! (HTML and Markdown); exports with every parameter and metric; a sweep's progress.
//!
//! This crate computes and formats; it does not query the database (the caller passes the
//! rows) and does not write files (the caller writes the strings and bytes it returns).

mod export;
mod filter;
pub mod plot;
pub mod report;
mod sort;
mod stats;
mod status;
mod table;
pub mod walks;

pub use export::export_table;
pub use filter::{Filter, Op};
pub use sort::SortKey;
pub use stats::{wilson_interval, Z_95};
pub use status::{human_duration, progress, Progress};
pub use table::{Format, Table};

use std::collections::BTreeMap;

use lifesweep_spec::TrainParams;
use lifesweep_store::RunRow;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResultsError {
    #[error("unknown column {key:?} in --group-by; parameters are {known}")]
    UnknownGroupKey { key: String, known: String },
    #[error("could not render {format}: {message}")]
    Render {
        format: &'static str,
        message: String,
    },
    #[error("--sort {key:?}: {message}; expected COLUMN or COLUMN:desc")]
    BadSortKey { key: String, message: String },
    #[error("unknown column {column:?} in --sort; columns are {known}")]
    UnknownSortColumn { column: String, known: String },
    #[error("--where {filter:?}: {message}")]
    BadFilter { filter: String, message: String },
}

/// A run's parameters as a JSON object keyed by parameter name.
pub fn params_map(params: &TrainParams) -> Map<String, Value> {
    match serde_json::to_value(params) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The parameter names a run can be grouped or listed by, in declaration order.
pub fn param_names() -> Vec<String> {
    let mut names: Vec<String> = lifesweep_spec::TRAIN_KEYS
        .iter()
        .map(|s| s.to_string())
        .collect();
    for extra in ["eval_boards", "eval_board_size"] {
        names.push(extra.to_string());
    }
    names
}

/// Statistics of one grid point over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    pub key: Vec<Value>,
    /// Finished runs (with a result).
    pub runs: u64,
    pub successes: u64,
    pub success_probability: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub mean_success_rate: Option<f64>,
    pub min_success_rate: Option<f64>,
    pub max_success_rate: Option<f64>,
    pub mean_cell_accuracy: Option<f64>,
    pub mean_final_loss: Option<f64>,
    pub mean_wall_seconds: Option<f64>,
    /// Jobs that failed (no result).
    pub failed: u64,
    /// Jobs still queued or running.
    pub pending: u64,
}

/// Groups runs by the values of `group_by` and computes each group's statistics, in order of
/// first appearance (job order, i.e. grid order).
pub fn group_runs(rows: &[RunRow], group_by: &[String]) -> Result<Vec<GroupStats>, ResultsError> {
    let known = param_names();
    for key in group_by {
        if !known.contains(key) {
            return Err(ResultsError::UnknownGroupKey {
                key: key.clone(),
                known: known.join(", "),
            });
        }
    }
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<&RunRow>)> = BTreeMap::new();
    for row in rows {
        let params = params_map(&row.params);
        let key: Vec<Value> = group_by
            .iter()
            .map(|k| params.get(k).cloned().unwrap_or(Value::Null))
            .collect();
        let id = serde_json::to_string(&key).unwrap_or_default();
        groups
            .entry(id.clone())
            .or_insert_with(|| {
                order.push(id);
                (key, Vec::new())
            })
            .1
            .push(row);
    }
    Ok(order
        .into_iter()
        .filter_map(|id| groups.remove(&id))
        .map(|(key, rows)| group_stats(key, &rows))
        .collect())
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn group_stats(key: Vec<Value>, rows: &[&RunRow]) -> GroupStats {
    let metrics: Vec<_> = rows.iter().filter_map(|r| r.metrics.as_ref()).collect();
    let runs = metrics.len() as u64;
    let successes = metrics.iter().filter(|m| m.training_success).count() as u64;
    let rates: Vec<f64> = metrics.iter().map(|m| m.success_rate).collect();
    let (ci_low, ci_high) = match wilson_interval(successes, runs, Z_95) {
        Some((lo, hi)) => (Some(lo), Some(hi)),
        None => (None, None),
    };
    let failed = rows
        .iter()
        .filter(|r| r.metrics.is_none() && r.state == "failed")
        .count() as u64;
    let pending = rows
        .iter()
        .filter(|r| r.metrics.is_none() && (r.state == "queued" || r.state == "running"))
        .count() as u64;
    GroupStats {
        key,
        runs,
        successes,
        success_probability: (runs > 0).then(|| successes as f64 / runs as f64),
        ci_low,
        ci_high,
        mean_success_rate: mean(&rates),
        min_success_rate: rates.iter().copied().reduce(f64::min),
        max_success_rate: rates.iter().copied().reduce(f64::max),
        mean_cell_accuracy: mean(&metrics.iter().map(|m| m.cell_accuracy).collect::<Vec<_>>()),
        mean_final_loss: mean(&metrics.iter().map(|m| m.final_loss).collect::<Vec<_>>()),
        mean_wall_seconds: mean(&metrics.iter().map(|m| m.wall_seconds).collect::<Vec<_>>()),
        failed,
        pending,
    }
}

/// A number as JSON; null when absent or not finite.
pub(crate) fn num(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// One row per grid point: the group columns, then
/// `runs,successes,success_probability,mean_success_rate` and the further statistics.
pub fn groups_table(groups: &[GroupStats], group_by: &[String]) -> Table {
    let mut columns: Vec<String> = group_by.to_vec();
    columns.extend(
        [
            "runs",
            "successes",
            "success_probability",
            "mean_success_rate",
            "ci_low",
            "ci_high",
            "min_success_rate",
            "max_success_rate",
            "mean_cell_accuracy",
            "mean_final_loss",
            "mean_wall_seconds",
            "failed",
            "pending",
        ]
        .map(String::from),
    );
    let rows = groups
        .iter()
        .map(|g| {
            let mut row = g.key.clone();
            row.extend([
                Value::from(g.runs),
                Value::from(g.successes),
                num(g.success_probability),
                num(g.mean_success_rate),
                num(g.ci_low),
                num(g.ci_high),
                num(g.min_success_rate),
                num(g.max_success_rate),
                num(g.mean_cell_accuracy),
                num(g.mean_final_loss),
                num(g.mean_wall_seconds),
                Value::from(g.failed),
                Value::from(g.pending),
            ]);
            row
        })
        .collect();
    Table { columns, rows }
}

/// Grid-point columns left out of the terminal table unless asked for (`--wide`): the
/// terminal view keeps the success probability, its interval and the mean success rate.
pub const WIDE_ONLY_COLUMNS: &[&str] = &[
    "min_success_rate",
    "max_success_rate",
    "mean_final_loss",
    "mean_wall_seconds",
];

/// One row per job: every parameter, then the state and every metric.
pub fn runs_table(rows: &[RunRow]) -> Table {
    let names = param_names();
    let mut columns: Vec<String> = vec!["sweep".into(), "job_key".into()];
    columns.extend(names.iter().cloned());
    columns.extend(
        [
            "state",
            "attempts",
            "success_rate",
            "training_success",
            "cell_accuracy",
            "final_loss",
            "param_count",
            "wall_seconds",
            "device",
            "weights_path",
            "error",
        ]
        .map(String::from),
    );
    let table_rows = rows
        .iter()
        .map(|r| {
            let params = params_map(&r.params);
            let mut row: Vec<Value> =
                vec![Value::from(r.sweep.clone()), Value::from(r.key.0.clone())];
            row.extend(
                names
                    .iter()
                    .map(|n| params.get(n).cloned().unwrap_or(Value::Null)),
            );
            let m = r.metrics.as_ref();
            row.extend([
                Value::from(r.state.clone()),
                Value::from(r.attempts),
                num(m.map(|m| m.success_rate)),
                m.map_or(Value::Null, |m| Value::from(m.training_success)),
                num(m.map(|m| m.cell_accuracy)),
                num(m.map(|m| m.final_loss)),
                m.map_or(Value::Null, |m| Value::from(m.param_count)),
                num(m.map(|m| m.wall_seconds)),
                m.map_or(Value::Null, |m| Value::from(m.device.clone())),
                r.weights_path.clone().map_or(Value::Null, Value::from),
                r.error.clone().map_or(Value::Null, Value::from),
            ]);
            row
        })
        .collect();
    Table {
        columns,
        rows: table_rows,
    }
}
