//! Sweeps: submitting (and extending) a sweep's jobs, listing sweeps, counting jobs, and the
//! bulk state changes a user asks for (retry, cancel).

use std::collections::{HashMap, HashSet};

use lifesweep_spec::{canonical_json, job_key, SweepSpec, TrainParams, TRAIN_KEYS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::Row;

use crate::{
    in_transaction, on_pool, to_json, JobCounts, Store, StoreError, SubmitOutcome, SweepInfo,
};

/// Jobs per INSERT statement of a submission (one JSON array parameter each).
const SUBMIT_BATCH: usize = 5_000;

/// The INSERT of one batch of a submission's jobs on SQLite: `$3` is a JSON array of
/// `[job_key, point_key, params_json]`, inserted in array order so that job ids follow it.
const INSERT_JOBS_SQLITE: &str =
    "INSERT INTO jobs (sweep_id, job_key, point_key, params_json, max_attempts)
     SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), $2
     FROM json_each($3) WHERE true ORDER BY key
     ON CONFLICT (sweep_id, job_key) DO NOTHING";

/// The same on PostgreSQL.
const INSERT_JOBS_POSTGRES: &str =
    "INSERT INTO jobs (sweep_id, job_key, point_key, params_json, max_attempts)
     SELECT $1, e.value ->> 0, e.value ->> 1, e.value ->> 2, $2
     FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS e (value, n) ORDER BY e.n
     ON CONFLICT (sweep_id, job_key) DO NOTHING";

/// A sweep as listed.
#[derive(sqlx::FromRow)]
struct SweepRow {
    id: i64,
    name: String,
    description: String,
    created_at: f64,
    axes_json: String,
}

/// One entry of `sweeps.axes_json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AxisRecord {
    key: String,
    values: Vec<Value>,
}

/// The parameters as a JSON object, every field present.
fn params_object(params: &TrainParams) -> Map<String, Value> {
    match serde_json::to_value(params) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("TrainParams serialises to a JSON object"),
    }
}

/// Hash of a job's parameters with the seed zeroed: the same for every seed of a grid point.
pub(crate) fn point_key(params: &TrainParams) -> String {
    job_key(&TrainParams {
        seed: 0,
        ..params.clone()
    })
    .0
}

/// An axis value in the form it takes in the parameters' canonical JSON (so that `1` and `1.0`
/// of a float parameter compare equal).
fn normalise_value(base: &Map<String, Value>, key: &str, value: Value) -> Value {
    let mut params = base.clone();
    params.insert(key.to_string(), value.clone());
    serde_json::from_value::<TrainParams>(Value::Object(params))
        .ok()
        .and_then(|p| params_object(&p).remove(key))
        .unwrap_or(value)
}

fn spec_axes(spec: &SweepSpec, base: &Map<String, Value>) -> Vec<AxisRecord> {
    spec.axes
        .iter()
        .map(|axis| AxisRecord {
            key: axis.key.clone(),
            values: axis
                .values
                .iter()
                .map(|v| {
                    normalise_value(
                        base,
                        &axis.key,
                        serde_json::to_value(v).unwrap_or(Value::Null),
                    )
                })
                .collect(),
        })
        .collect()
}

/// Parameter order, seed last (as the spec orders axes).
fn axis_order(key: &str) -> (bool, usize) {
    (
        key == "seed",
        TRAIN_KEYS
            .iter()
            .position(|k| *k == key)
            .unwrap_or(usize::MAX),
    )
}

fn push_new(values: &mut Vec<Value>, value: &Value) {
    if !values.contains(value) {
        values.push(value.clone());
    }
}

/// The axes of a sweep after another submission: every key that was ever an axis, with every
/// value a job of the sweep has (a key that was fixed before, or becomes fixed now, contributes
/// its fixed value).
fn merge_axes(
    old_axes: &[AxisRecord],
    old_base: &Map<String, Value>,
    new_axes: &[AxisRecord],
    new_base: &Map<String, Value>,
) -> Vec<AxisRecord> {
    let mut merged = old_axes.to_vec();
    for axis in new_axes {
        if let Some(existing) = merged.iter_mut().find(|a| a.key == axis.key) {
            axis.values
                .iter()
                .for_each(|v| push_new(&mut existing.values, v));
        } else {
            let mut values = Vec::new();
            if let Some(old) = old_base.get(&axis.key) {
                values.push(old.clone());
            }
            axis.values.iter().for_each(|v| push_new(&mut values, v));
            merged.push(AxisRecord {
                key: axis.key.clone(),
                values,
            });
        }
    }
    for axis in merged.iter_mut() {
        if !new_axes.iter().any(|a| a.key == axis.key) {
            if let Some(fixed) = new_base.get(&axis.key) {
                push_new(&mut axis.values, fixed);
            }
        }
    }
    merged.sort_by_key(|a| axis_order(&a.key));
    merged
}

/// The fixed parameters (on no axis, old or new) whose value differs: "key: old -> new".
fn fixed_changes(
    old_axes: &[AxisRecord],
    old_base: &Map<String, Value>,
    new_axes: &[AxisRecord],
    new_base: &Map<String, Value>,
) -> Vec<String> {
    let on_axis: HashSet<&str> = old_axes
        .iter()
        .chain(new_axes)
        .map(|a| a.key.as_str())
        .collect();
    let mut changes: Vec<String> = new_base
        .iter()
        .filter(|(key, _)| !on_axis.contains(key.as_str()))
        .filter_map(|(key, new)| {
            let old = old_base.get(key).unwrap_or(&Value::Null);
            (old != new).then(|| format!("{key}: {old} -> {new}"))
        })
        .collect();
    changes.sort();
    changes
}

impl Store {
    /// Creates the sweep `spec.name` with its jobs, or, when a sweep of that name exists, adds
    /// the jobs it does not have yet (new axis values, new axes). Jobs the sweep has are left
    /// as they are, whatever their state; jobs no longer in the config are kept. Refuses, and
    /// writes nothing, when a fixed parameter differs from the stored sweep. New jobs get
    /// `max_attempts` (at least 1); existing jobs keep theirs. One write transaction (on
    /// PostgreSQL, submissions to one schema take turns on an advisory lock).
    pub async fn submit_sweep(
        &self,
        spec: &SweepSpec,
        config_toml: &str,
        max_attempts: u32,
    ) -> Result<SubmitOutcome, StoreError> {
        let max_attempts = i64::from(max_attempts.max(1));
        let base = params_object(&spec.base);
        let axes = spec_axes(spec, &base);

        // The rows, as JSON arrays of [job_key, point_key, params_json], built before the lock.
        let batches: Vec<String> = spec
            .jobs()
            .chunks(SUBMIT_BATCH)
            .map(|chunk| {
                let rows: Vec<[String; 3]> = chunk
                    .iter()
                    .map(|job| {
                        [
                            job.key.0.clone(),
                            point_key(&job.params),
                            canonical_json(&job.params),
                        ]
                    })
                    .collect();
                to_json(&rows)
            })
            .collect();

        let now = self.now();
        let insert_jobs = self.dialect(INSERT_JOBS_SQLITE, INSERT_JOBS_POSTGRES);
        let added = in_transaction!(self, |tx| {
            let existing =
                sqlx::query("SELECT id, base_params_json, axes_json FROM sweeps WHERE name = $1")
                    .bind(&spec.name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let sweep_id: i64 = match existing {
            Some(row) => {
                let sweep_id: i64 = row.try_get("id")?;
                let what = format!("sweep {:?}", spec.name);
                let old_base: TrainParams = serde_json::from_str(row.try_get("base_params_json")?)
                    .map_err(|e| StoreError::Corrupt {
                        what: format!("{what} base_params_json"),
                        message: e.to_string(),
                    })?;
                let old_base = params_object(&old_base);
                let old_axes: Vec<AxisRecord> = serde_json::from_str(row.try_get("axes_json")?)
                    .map_err(|e| StoreError::Corrupt {
                        what: format!("{what} axes_json"),
                        message: e.to_string(),
                    })?;
                let changes = fixed_changes(&old_axes, &old_base, &axes, &base);
                if !changes.is_empty() {
                    tx.rollback().await?;
                    return Err(StoreError::SweepConflict {
                        name: spec.name.clone(),
                        changes,
                    });
                }
                let merged = merge_axes(&old_axes, &old_base, &axes, &base);
                sqlx::query(&format!(
                    "UPDATE sweeps SET description = $1, config_toml = $2, axes_json = $3, updated_at = {now}
                     WHERE id = $4"
                ))
                .bind(&spec.description)
                .bind(config_toml)
                .bind(to_json(&merged))
                .bind(sweep_id)
                .execute(&mut *tx)
                .await?;
                sweep_id
            }
            None => sqlx::query_scalar(
                "INSERT INTO sweeps (name, description, config_toml, base_params_json, axes_json)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(&spec.name)
            .bind(&spec.description)
            .bind(config_toml)
            .bind(canonical_json(&spec.base))
            .bind(to_json(&axes))
            .fetch_one(&mut *tx)
            .await?,
        };

            // Rows in array order, so job ids follow the grid order (a grid point's seeds together).
            let mut added = 0;
            for batch in &batches {
                added += sqlx::query(insert_jobs)
                    .bind(sweep_id)
                    .bind(max_attempts)
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            (sweep_id, added)
        });
        let (sweep_id, added) = added;
        self.remember_sweep(sweep_id, &spec.name);
        let total = spec.jobs().len() as u64;
        tracing::info!(sweep = %spec.name, added, existing = total - added, "submitted sweep");
        Ok(SubmitOutcome {
            sweep_id,
            added,
            existing: total - added,
        })
    }

    /// Every sweep with its job counts, oldest first.
    pub async fn sweeps(&self) -> Result<Vec<SweepInfo>, StoreError> {
        let rows: Vec<SweepRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, name, description, created_at, axes_json FROM sweeps ORDER BY id"
        )
        .fetch_all(pool)
        .await)?;
        let counted: Vec<(i64, String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT sweep_id, state, count(*) FROM jobs GROUP BY sweep_id, state"
        )
        .fetch_all(pool)
        .await)?;
        let mut counts: HashMap<i64, JobCounts> = HashMap::new();
        for (sweep_id, state, count) in counted {
            counts
                .entry(sweep_id)
                .or_default()
                .add(&state, count as u64);
        }
        rows.into_iter()
            .map(|row| {
                let axes: Vec<AxisRecord> =
                    serde_json::from_str(&row.axes_json).map_err(|e| StoreError::Corrupt {
                        what: format!("sweep {:?} axes_json", row.name),
                        message: e.to_string(),
                    })?;
                Ok(SweepInfo {
                    description: row.description,
                    created_at: row.created_at,
                    axes: axes.into_iter().map(|a| a.key).collect(),
                    counts: counts.get(&row.id).copied().unwrap_or_default(),
                    name: row.name,
                })
            })
            .collect()
    }

    /// The sweep a command is about: the one named (which must exist), or, when none is named,
    /// the database's only sweep.
    pub async fn resolve_sweep(&self, sweep: Option<&str>) -> Result<String, StoreError> {
        if let Some(name) = sweep {
            self.sweep_id(name).await?;
            return Ok(name.to_string());
        }
        let mut names = self.sweep_names().await?;
        match names.len() {
            0 => Err(StoreError::NoSweep),
            1 => Ok(names.remove(0)),
            _ => Err(StoreError::AmbiguousSweep { names }),
        }
    }

    /// Jobs by state, of one sweep or of all.
    pub async fn job_counts(&self, sweep: Option<&str>) -> Result<JobCounts, StoreError> {
        let sweep_id = self.sweep_filter(sweep).await?;
        let sql = format!(
            "SELECT state, count(*) FROM jobs WHERE {} GROUP BY state",
            sweep_condition("sweep_id", sweep_id)
        );
        let rows: Vec<(String, i64)> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(sweep_id)
            .fetch_all(pool)
            .await)?;
        let mut counts = JobCounts::default();
        for (state, count) in rows {
            counts.add(&state, count as u64);
        }
        Ok(counts)
    }

    /// Whether a job of the sweep (or of any sweep) that may still run, queued or running,
    /// saves its weights (`save_weights`): the workers then need a directory for them.
    pub async fn saves_weights(&self, sweep: Option<&str>) -> Result<bool, StoreError> {
        let sweep_id = self.sweep_filter(sweep).await?;
        let saves = self.dialect(
            "json_extract(params_json, '$.save_weights') = 1",
            "(params_json::jsonb ->> 'save_weights') = 'true'",
        );
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM jobs
                            WHERE state IN ('queued', 'running') AND {saves} AND {})",
            sweep_condition("sweep_id", sweep_id)
        );
        let saves: bool = on_pool!(self, |pool| sqlx::query_scalar(&sql)
            .bind(sweep_id)
            .fetch_one(pool)
            .await)?;
        Ok(saves)
    }

    /// The sweep's `[sweep] fuse_seeds`, read from the config it was last submitted with, so
    /// that a worker started without `--fuse-seeds` (by `resume`, by a Slurm array task, by
    /// hand) trains the seeds as the sweep asks.
    pub async fn fuse_seeds(&self, sweep: &str) -> Result<usize, StoreError> {
        let sweep_id = self.sweep_id(sweep).await?;
        let text: String = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT config_toml FROM sweeps WHERE id = $1"
        )
        .bind(sweep_id)
        .fetch_one(pool)
        .await)?;
        if text.trim().is_empty() {
            return Ok(1); // submitted through the API without its file
        }
        let spec = SweepSpec::parse(&text, &format!("sweep {sweep:?} config_toml"), sweep)
            .map_err(|e| StoreError::Corrupt {
                what: format!("sweep {sweep:?} config_toml"),
                message: e.to_string(),
            })?;
        Ok(spec.fuse_seeds)
    }

    /// Puts failed jobs back in the queue with a fresh set of attempts (their last error stays
    /// until they run again). Returns how many.
    pub async fn retry_failed(&self, sweep: Option<&str>) -> Result<u64, StoreError> {
        self.move_jobs(sweep, "failed", "queued", ", attempts = 0")
            .await
    }

    /// Cancels queued jobs: no worker will claim them. Running jobs finish. Returns how many.
    /// Cancelled jobs stay cancelled through `resume` and a new submission; [`Store::uncancel`]
    /// queues them again.
    pub async fn cancel(&self, sweep: Option<&str>) -> Result<u64, StoreError> {
        self.move_jobs(sweep, "queued", "cancelled", "").await
    }

    /// Queues cancelled jobs again. Returns how many.
    pub async fn uncancel(&self, sweep: Option<&str>) -> Result<u64, StoreError> {
        self.move_jobs(sweep, "cancelled", "queued", "").await
    }

    async fn move_jobs(
        &self,
        sweep: Option<&str>,
        from: &str,
        to: &str,
        also_set: &str,
    ) -> Result<u64, StoreError> {
        let sweep_id = self.sweep_filter(sweep).await?;
        let sql = format!(
            "UPDATE jobs SET state = $2, lease_expires_at = NULL, updated_at = {}{also_set}
             WHERE state = $3 AND {}",
            self.now(),
            sweep_condition("sweep_id", sweep_id)
        );
        let moved = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(sweep_id)
            .bind(to)
            .bind(from)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        tracing::info!(
            sweep = sweep.unwrap_or("(all)"),
            from,
            to,
            moved,
            "moved jobs"
        );
        Ok(moved)
    }

    /// Every sweep name, oldest first.
    async fn sweep_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT name FROM sweeps ORDER BY id"
        )
        .fetch_all(pool)
        .await)?)
    }

    pub(crate) fn remember_sweep(&self, id: i64, name: &str) {
        if let Ok(mut names) = self.sweep_names.lock() {
            names.insert(id, name.to_string());
        }
    }

    /// The id of the sweep named `name`.
    pub(crate) async fn sweep_id(&self, name: &str) -> Result<i64, StoreError> {
        let cached = self
            .sweep_names
            .lock()
            .ok()
            .and_then(|names| names.iter().find(|(_, n)| *n == name).map(|(id, _)| *id));
        if let Some(id) = cached {
            return Ok(id);
        }
        let id: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT id FROM sweeps WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(pool)
        .await)?;
        match id {
            Some(id) => {
                self.remember_sweep(id, name);
                Ok(id)
            }
            None => Err(StoreError::UnknownSweep {
                name: name.to_string(),
                known: self.sweep_names().await?,
            }),
        }
    }

    /// The name of the sweep with this id.
    pub(crate) async fn sweep_name(&self, id: i64) -> Result<String, StoreError> {
        let cached = self
            .sweep_names
            .lock()
            .ok()
            .and_then(|names| names.get(&id).cloned());
        if let Some(name) = cached {
            return Ok(name);
        }
        let name: String = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT name FROM sweeps WHERE id = $1"
        )
        .bind(id)
        .fetch_one(pool)
        .await)?;
        self.remember_sweep(id, &name);
        Ok(name)
    }

    /// The sweep id an optional name filters on (None: every sweep).
    pub(crate) async fn sweep_filter(
        &self,
        sweep: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        match sweep {
            Some(name) => Ok(Some(self.sweep_id(name).await?)),
            None => Ok(None),
        }
    }
}

/// The SQL condition for an optional sweep filter bound as `$1`: `column = $1`, or, for every
/// sweep, `$1 IS NULL`, a constant the query planner drops (so indexes on the column stay
/// usable in the first case and are not needed in the second).
pub(crate) fn sweep_condition(column: &str, sweep_id: Option<i64>) -> String {
    match sweep_id {
        Some(_) => format!("{column} = $1"),
        None => "$1 IS NULL".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn axis(key: &str, values: Vec<Value>) -> AxisRecord {
        AxisRecord {
            key: key.into(),
            values,
        }
    }

    fn base(pairs: &[(&str, Value)]) -> Map<String, Value> {
        let mut map = params_object(&TrainParams::default());
        for (k, v) in pairs {
            map.insert(k.to_string(), v.clone());
        }
        map
    }

    #[test]
    fn a_changed_fixed_parameter_is_reported_and_axes_are_not() {
        let old_axes = [axis("m_factor", vec![json!(1), json!(5)])];
        let new_axes = [
            axis("m_factor", vec![json!(1), json!(5), json!(10)]),
            axis("steps", vec![json!(1), json!(2)]),
        ];
        let old = base(&[("batches", json!(100)), ("m_factor", json!(1))]);
        let new = base(&[("batches", json!(200)), ("steps", json!(2))]);
        assert_eq!(
            fixed_changes(&old_axes, &old, &new_axes, &new),
            ["batches: 100 -> 200"]
        );
        assert!(fixed_changes(&old_axes, &old, &old_axes, &old).is_empty());
    }

    #[test]
    fn merged_axes_hold_every_value_a_job_has() {
        let old_axes = [
            axis("m_factor", vec![json!(1), json!(5)]),
            axis("seed", vec![json!(1)]),
        ];
        let new_axes = [
            axis("steps", vec![json!(2), json!(3)]),
            axis("seed", vec![json!(1), json!(2)]),
        ];
        let old = base(&[]);
        let new = base(&[("m_factor", json!(5))]);
        let merged = merge_axes(&old_axes, &old, &new_axes, &new);
        assert_eq!(
            merged,
            [
                // steps was fixed at its default 1 before.
                axis("steps", vec![json!(1), json!(2), json!(3)]),
                axis("m_factor", vec![json!(1), json!(5)]),
                axis("seed", vec![json!(1), json!(2)]),
            ]
        );
    }

    #[test]
    fn axis_values_take_their_canonical_form() {
        let b = params_object(&TrainParams::default());
        assert_eq!(normalise_value(&b, "d_factor", json!(1)), json!(1.0));
        assert_eq!(
            normalise_value(&b, "activation", json!("GELU")),
            json!("GELU")
        );
    }
}
