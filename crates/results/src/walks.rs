//! Loss walks as tables and figures: one row per point of a walk, one summary row per walk
//! (loss at the start, highest on the way, at the end, and the barrier between), and loss
//! against distance with one line per run, on a log scale.

use std::collections::BTreeMap;

use lifesweep_spec::WalkKind;
use lifesweep_store::StoredWalk;
use serde_json::Value;

use crate::plot::{draw_figures, short_number, Chart, Figure, Series};
use crate::{ResultsError, Table};

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The columns that name a walk and the run it starts from, first in both walk tables.
const WALK_ID_COLUMNS: [&str; 9] = [
    "walk_job_id",
    "run_job_id",
    "run_key",
    "steps",
    "m_factor",
    "seed",
    "run_success_rate",
    "kind",
    "aligned",
];

/// The values of [`WALK_ID_COLUMNS`] for one walk.
fn walk_id_values(w: &StoredWalk) -> Vec<Value> {
    vec![
        Value::from(w.job_id),
        Value::from(w.run_job_id),
        Value::from(w.spec.run_key.clone()),
        Value::from(w.params.steps),
        Value::from(w.params.m_factor),
        Value::from(w.params.seed),
        w.run_success_rate.map_or(Value::Null, number),
        Value::from(w.spec.kind.as_str()),
        Value::from(w.spec.align),
    ]
}

/// [`WALK_ID_COLUMNS`] followed by `more`.
fn walk_columns(more: &[&str]) -> Vec<String> {
    WALK_ID_COLUMNS
        .iter()
        .chain(more)
        .map(|c| c.to_string())
        .collect()
}

/// Every point of one walk.
pub fn walk_points_table(walk: &StoredWalk) -> Table {
    Table {
        columns: [
            "point",
            "fraction",
            "distance",
            "loss",
            "success_rate",
            "cell_accuracy",
        ]
        .map(String::from)
        .to_vec(),
        rows: walk
            .points
            .iter()
            .map(|p| {
                vec![
                    Value::from(p.point),
                    p.fraction.map_or(Value::Null, number),
                    number(p.distance),
                    number(p.loss),
                    number(p.success_rate),
                    number(p.cell_accuracy),
                ]
            })
            .collect(),
    }
}

/// Every point of every walk, with the walk and the run it starts from: what
/// `lifesweep export --walks` writes.
pub fn walk_points_export(walks: &[StoredWalk]) -> Table {
    let columns = walk_columns(&[
        "point",
        "fraction",
        "distance",
        "loss",
        "success_rate",
        "cell_accuracy",
    ]);
    let mut rows = Vec::new();
    for w in walks {
        let points = walk_points_table(w);
        for point in points.rows {
            let mut row = walk_id_values(w);
            row.extend(point);
            rows.push(row);
        }
    }
    Table { columns, rows }
}

/// What a walk found, in numbers: the loss where it starts, the highest loss on the way, where
/// it ends, and the barrier (highest minus start; 0 when the loss only falls).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalkSummary {
    pub loss_start: f64,
    pub loss_max: f64,
    pub loss_end: f64,
    pub barrier: f64,
    pub success_end: f64,
}

pub fn summarise(walk: &StoredWalk) -> Option<WalkSummary> {
    let first = walk.points.first()?;
    let last = walk.points.last()?;
    let loss_max = walk
        .points
        .iter()
        .map(|p| p.loss)
        .fold(f64::NEG_INFINITY, f64::max);
    Some(WalkSummary {
        loss_start: first.loss,
        loss_max,
        loss_end: last.loss,
        barrier: (loss_max - first.loss).max(0.0),
        success_end: last.success_rate,
    })
}

/// One row per walk.
pub fn walks_table(walks: &[StoredWalk]) -> Table {
    let columns = walk_columns(&[
        "state",
        "points",
        "loss_start",
        "loss_max",
        "loss_end",
        "barrier",
        "success_rate_end",
    ]);
    let rows = walks
        .iter()
        .map(|w| {
            let s = summarise(w);
            let metric =
                |f: fn(&WalkSummary) -> f64| s.as_ref().map_or(Value::Null, |s| number(f(s)));
            let mut row = walk_id_values(w);
            row.extend([
                Value::from(w.state.clone()),
                Value::from(w.points.len()),
                metric(|s| s.loss_start),
                metric(|s| s.loss_max),
                metric(|s| s.loss_end),
                metric(|s| s.barrier),
                metric(|s| s.success_end),
            ]);
            row
        })
        .collect();
    Table { columns, rows }
}

/// Beyond this many walks in one chart, lines are labelled by outcome, not by seed.
const LABEL_EACH_UP_TO: usize = 8;

fn outcome(walk: &StoredWalk) -> &'static str {
    match walk.run_success {
        Some(true) => "successful run",
        Some(false) => "failed run",
        None => "run without result",
    }
}

/// Loss against distance, one chart per walk kind and alignment, one facet per grid point
/// (steps, m_factor), one line per walked run: coloured per run when a chart has few, else
/// by the run's outcome (failed or successful), so the two kinds of run can be compared.
pub fn walk_charts(walks: &[StoredWalk]) -> Vec<Chart> {
    let mut groups: BTreeMap<(&str, bool), Vec<&StoredWalk>> = BTreeMap::new();
    for walk in walks.iter().filter(|w| !w.points.is_empty()) {
        groups
            .entry((walk.spec.kind.as_str(), walk.spec.align))
            .or_default()
            .push(walk);
    }
    groups
        .into_iter()
        .map(|((kind, aligned), walks)| {
            let presolve = kind == WalkKind::Presolve.as_str();
            let each = walks.len() <= LABEL_EACH_UP_TO;
            let series: Vec<Series> = walks
                .iter()
                .map(|w| Series {
                    facet: format!(
                        "steps = {}, m_factor = {}",
                        w.params.steps, w.params.m_factor
                    ),
                    label: if each {
                        format!(
                            "run {} (seed {}, {})",
                            w.run_job_id,
                            w.params.seed,
                            w.run_success_rate.map_or("no result".into(), |r| format!(
                                "success rate {}",
                                short_number(r)
                            ))
                        )
                    } else {
                        outcome(w).to_string()
                    },
                    points: w
                        .points
                        .iter()
                        .map(|p| {
                            let x = if presolve {
                                p.fraction.unwrap_or(f64::NAN)
                            } else {
                                p.distance
                            };
                            // a log axis cannot show a loss of 0
                            (x, Some(p.loss).filter(|l| l.is_finite() && *l > 0.0))
                        })
                        .collect(),
                    error_bars: Vec::new(),
                })
                .collect();
            let suffix = if aligned { "-aligned" } else { "" };
            Chart {
                name: format!("walks-{kind}{suffix}"),
                title: if presolve {
                    "Training loss on the straight line from the trained weights to the solution"
                        .into()
                } else {
                    "Training loss along a random direction from the trained weights".into()
                },
                subtitle: format!(
                    "{} walk(s){}",
                    walks.len(),
                    if aligned {
                        ", hidden channels aligned to the solution first"
                    } else {
                        ""
                    }
                ),
                x_label: if presolve {
                    "fraction of the way to the solution".into()
                } else {
                    "L1 distance from the run".into()
                },
                y_label: "mean training loss (log)".into(),
                legend_title: if each { "walked run" } else { "walked runs" }.into(),
                x_log: false,
                y_log: true,
                y_range: None,
                dodge: false,
                x_ticks: Vec::new(),
                series,
            }
        })
        .collect()
}

/// Every chart of [`walk_charts`], drawn as SVG and PNG.
pub fn walk_figures(walks: &[StoredWalk]) -> Result<Vec<Figure>, ResultsError> {
    draw_figures(walk_charts(walks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifesweep_spec::{TrainParams, WalkSpec};
    use lifesweep_store::WalkPointRecord;

    fn walk(job_id: i64, seed: u64, success: bool, losses: &[f64]) -> StoredWalk {
        let n = losses.len();
        StoredWalk {
            job_id,
            sweep: "s".into(),
            run_job_id: job_id - 100,
            spec: WalkSpec {
                run_key: format!("k{job_id}"),
                kind: WalkKind::Presolve,
                points: n as u32,
                batches: 1,
                align: false,
                seed: 1,
                max_distance: 30,
                weights_path: String::new(),
            },
            params: TrainParams {
                seed,
                ..TrainParams::default()
            },
            state: "done".into(),
            error: None,
            run_success: Some(success),
            run_success_rate: Some(if success { 1.0 } else { 0.5 }),
            points: losses
                .iter()
                .enumerate()
                .map(|(i, &loss)| WalkPointRecord {
                    point: i as u32,
                    fraction: Some(i as f64 / (n - 1) as f64),
                    distance: i as f64,
                    loss,
                    success_rate: 0.5,
                    cell_accuracy: 0.9,
                })
                .collect(),
        }
    }

    #[test]
    fn the_summary_finds_the_barrier() {
        let ridge = summarise(&walk(101, 1, false, &[0.3, 0.9, 0.01])).unwrap();
        assert_eq!(
            (ridge.loss_start, ridge.loss_max, ridge.loss_end),
            (0.3, 0.9, 0.01)
        );
        assert!((ridge.barrier - 0.6).abs() < 1e-12);
        let downhill = summarise(&walk(102, 2, true, &[0.3, 0.1, 0.01])).unwrap();
        assert_eq!(downhill.barrier, 0.0);
        let table = walks_table(&[walk(101, 1, false, &[0.3, 0.9, 0.01])]);
        let barrier = table.columns.iter().position(|c| c == "barrier").unwrap();
        assert!((table.rows[0][barrier].as_f64().unwrap() - 0.6).abs() < 1e-12);
    }

    #[test]
    fn charts_label_few_runs_each_and_many_by_outcome() {
        let few: Vec<StoredWalk> = (0..3)
            .map(|i| walk(101 + i, i as u64, i == 0, &[0.5, 0.2, 0.0]))
            .collect();
        let charts = walk_charts(&few);
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].name, "walks-presolve");
        assert!(charts[0].y_log);
        assert_eq!(charts[0].legend().len(), 3);
        // the zero loss is absent on the log axis, not drawn at the bottom
        assert_eq!(charts[0].series[0].points[2], (1.0, None));
        let many: Vec<StoredWalk> = (0..12)
            .map(|i| walk(101 + i, i as u64, i % 3 == 0, &[0.5, 0.2]))
            .collect();
        let charts = walk_charts(&many);
        assert_eq!(charts[0].legend(), vec!["successful run", "failed run"]);
        assert_eq!(charts[0].series.len(), 12);
        let figures = walk_figures(&many).unwrap();
        assert!(figures[0].svg.contains("fraction of the way"));
        assert!(!figures[0].png.is_empty());
    }
}
