//! One record per run with every parameter and metric, for `lifesweep export`.

use lifesweep_store::RunRow;
use serde_json::{Map, Value};

use crate::{num, param_names, params_map, Table};

/// The metric and bookkeeping columns of an export, after the parameters.
const RUN_COLUMNS: [&str; 14] = [
    "state",
    "attempts",
    "error",
    "success_rate",
    "training_success",
    "cell_accuracy",
    "final_loss",
    "param_count",
    "wall_seconds",
    "device",
    "worker_id",
    "started_at",
    "finished_at",
    "weights_path",
];

/// One row per job: `job_id, sweep, job_key`, every parameter, the state and every metric;
/// with `loss_curve`, a last column holding the loss curve as a list of `{batch, loss}`
/// (non-finite losses as null). Metrics are null until the job is done.
pub fn export_table(rows: &[RunRow], loss_curve: bool) -> Table {
    let names = param_names();
    let mut columns: Vec<String> = vec!["job_id".into(), "sweep".into(), "job_key".into()];
    columns.extend(names.iter().cloned());
    columns.extend(RUN_COLUMNS.map(String::from));
    if loss_curve {
        columns.push("loss_curve".into());
    }
    let table_rows = rows
        .iter()
        .map(|r| {
            let params = params_map(&r.params);
            let m = r.metrics.as_ref();
            let mut row: Vec<Value> = vec![
                Value::from(r.job_id),
                Value::from(r.sweep.clone()),
                Value::from(r.key.0.clone()),
            ];
            row.extend(
                names
                    .iter()
                    .map(|n| params.get(n).cloned().unwrap_or(Value::Null)),
            );
            row.extend([
                Value::from(r.state.clone()),
                Value::from(r.attempts),
                r.error.clone().map_or(Value::Null, Value::from),
                num(m.map(|m| m.success_rate)),
                m.map_or(Value::Null, |m| Value::from(m.training_success)),
                num(m.map(|m| m.cell_accuracy)),
                num(m.map(|m| m.final_loss)),
                m.map_or(Value::Null, |m| Value::from(m.param_count)),
                num(m.map(|m| m.wall_seconds)),
                m.map_or(Value::Null, |m| Value::from(m.device.clone())),
                r.worker_id.clone().map_or(Value::Null, Value::from),
                num(r.started_at),
                num(r.finished_at),
                r.weights_path.clone().map_or(Value::Null, Value::from),
            ]);
            if loss_curve {
                row.push(m.map_or(Value::Null, |m| {
                    Value::Array(
                        m.loss_curve
                            .iter()
                            .map(|p| {
                                let mut point = Map::new();
                                point.insert("batch".into(), Value::from(p.batch));
                                point.insert("loss".into(), num(Some(p.loss)));
                                Value::Object(point)
                            })
                            .collect(),
                    )
                }));
            }
            row
        })
        .collect();
    Table {
        columns,
        rows: table_rows,
    }
}
