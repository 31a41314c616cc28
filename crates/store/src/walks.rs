//! Loss walks: jobs of kind `walk` (claimed, leased and released like training jobs) and
//! their points. See `migrations/*/0002_walks.sql`.

use lifesweep_spec::{TrainParams, WalkSpec};

use crate::jobs::{parse_params, real};
use crate::sweeps::sweep_condition;
use crate::{finite, in_transaction, on_pool, Store, StoreError};

/// A walk to queue: of which run (its job id), and how.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkRequest {
    pub run_job_id: i64,
    pub spec: WalkSpec,
}

/// One point of a walk as stored. Non-finite numbers come back as NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkPointRecord {
    pub point: u32,
    pub fraction: Option<f64>,
    pub distance: f64,
    pub loss: f64,
    pub success_rate: f64,
    pub cell_accuracy: f64,
}

/// A walk job with its points (none until it is done) and what the walked run achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWalk {
    pub job_id: i64,
    pub sweep: String,
    pub run_job_id: i64,
    pub spec: WalkSpec,
    /// The walked run's parameters.
    pub params: TrainParams,
    pub state: String,
    pub error: Option<String>,
    /// Whether the walked run was a training success, and its success rate.
    pub run_success: Option<bool>,
    pub run_success_rate: Option<f64>,
    pub points: Vec<WalkPointRecord>,
}

pub(crate) fn parse_walk(text: &str, job_id: i64) -> Result<WalkSpec, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: format!("job {job_id} walk_json"),
        message: e.to_string(),
    })
}

#[derive(sqlx::FromRow)]
struct WalkRow {
    id: i64,
    sweep: String,
    walk_of: Option<i64>,
    walk_json: Option<String>,
    params_json: String,
    state: String,
    error: Option<String>,
    training_success: Option<i64>,
    success_rate: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct PointRow {
    job_id: i64,
    point: i64,
    fraction: Option<f64>,
    distance: f64,
    loss: Option<f64>,
    success_rate: Option<f64>,
    cell_accuracy: Option<f64>,
}

/// Inserts a walk job of the run `$1` (copying its sweep and parameters) unless the sweep has
/// it: `$2` key, `$3` max attempts, `$4` walk JSON, `$5` state, `$6` attempts, `$7` worker.
const INSERT_WALK: &str =
    "INSERT INTO jobs (sweep_id, job_key, point_key, params_json, max_attempts, kind, walk_json,
                       walk_of, state, attempts, worker_id)
     SELECT sweep_id, $2, $2, params_json, $3, 'walk', $4, id, $5, $6, $7
     FROM jobs WHERE id = $1 AND kind = 'train'
     ON CONFLICT (sweep_id, job_key) DO NOTHING";

const INSERT_POINT: &str =
    "INSERT INTO walk_points (job_id, point, fraction, distance, loss, success_rate, cell_accuracy)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Inserts one point of walk job `$job_id` inside transaction `$tx`.
macro_rules! insert_point {
    ($tx:ident, $job_id:expr, $p:expr) => {
        sqlx::query(INSERT_POINT)
            .bind($job_id)
            .bind(i64::from($p.point))
            .bind($p.fraction.and_then(finite))
            .bind(finite($p.distance).unwrap_or(0.0))
            .bind(finite($p.loss))
            .bind(finite($p.success_rate))
            .bind(finite($p.cell_accuracy))
            .execute(&mut *$tx)
            .await?
    };
}

/// Replaces the points of walk job `$job_id` inside transaction `$tx`.
macro_rules! replace_points {
    ($tx:ident, $job_id:expr, $points:expr) => {
        sqlx::query("DELETE FROM walk_points WHERE job_id = $1")
            .bind($job_id)
            .execute(&mut *$tx)
            .await?;
        for p in $points {
            insert_point!($tx, $job_id, p);
        }
    };
}

impl Store {
    /// Queues walk jobs (one write transaction); a walk the sweep already has (same run and
    /// options) is kept as it is. Each request's run must be a training job of the database.
    /// Returns (added, already there).
    pub async fn submit_walks(
        &self,
        walks: &[WalkRequest],
        max_attempts: u32,
    ) -> Result<(u64, u64), StoreError> {
        let max_attempts = i64::from(max_attempts.max(1));
        let added = in_transaction!(self, |tx| {
            let mut added = 0;
            for walk in walks {
                let key = walk.spec.key().0;
                added += sqlx::query(INSERT_WALK)
                    .bind(walk.run_job_id)
                    .bind(&key)
                    .bind(max_attempts)
                    .bind(walk.spec.to_json())
                    .bind("queued")
                    .bind(0i64)
                    .bind(None::<String>)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            added
        });
        Ok((added, walks.len() as u64 - added))
    }

    /// Records a walk computed outside the queue (`lifesweep walk RUN`) as a done job with its
    /// points, in one transaction. A queued, failed or cancelled job of the same walk is taken
    /// over; a done one is left as it is (false, nothing written).
    pub async fn record_walk(
        &self,
        walk: &WalkRequest,
        worker_id: &str,
        points: &[WalkPointRecord],
    ) -> Result<bool, StoreError> {
        let key = walk.spec.key().0;
        let now = self.now();
        let take_over = format!(
            "UPDATE jobs SET state = 'done', attempts = attempts + 1, worker_id = $3,
                 lease_expires_at = NULL, error = NULL, updated_at = {now}
             WHERE sweep_id = (SELECT sweep_id FROM jobs WHERE id = $1) AND job_key = $2
               AND state IN ('queued', 'failed', 'cancelled')
             RETURNING id"
        );
        let written = in_transaction!(self, |tx| {
            let inserted = sqlx::query(INSERT_WALK)
                .bind(walk.run_job_id)
                .bind(&key)
                .bind(1i64)
                .bind(walk.spec.to_json())
                .bind("done")
                .bind(1i64)
                .bind(worker_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let job_id: Option<i64> = if inserted == 1 {
                Some(
                    sqlx::query_scalar(
                        "SELECT id FROM jobs
                         WHERE sweep_id = (SELECT sweep_id FROM jobs WHERE id = $1) AND job_key = $2",
                    )
                    .bind(walk.run_job_id)
                    .bind(&key)
                    .fetch_one(&mut *tx)
                    .await?,
                )
            } else {
                sqlx::query_scalar(&take_over)
                    .bind(walk.run_job_id)
                    .bind(&key)
                    .bind(worker_id)
                    .fetch_optional(&mut *tx)
                    .await?
            };
            match job_id {
                Some(job_id) => {
                    replace_points!(tx, job_id, points);
                    tx.commit().await?;
                    true
                }
                None => false,
            }
        });
        Ok(written)
    }

    /// Writes the points of a walk job this worker holds in this attempt and marks it done, in
    /// one transaction. False, writing nothing, when it no longer holds the job.
    pub async fn complete_walk(
        &self,
        job_id: i64,
        worker_id: &str,
        attempt: u32,
        points: &[WalkPointRecord],
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let finish = format!(
            "UPDATE jobs SET state = 'done', lease_expires_at = NULL, error = NULL, updated_at = {now}
             WHERE id = $1 AND worker_id = $2 AND attempts = $3 AND state = 'running'
               AND kind = 'walk'"
        );
        let written = in_transaction!(self, |tx| {
            let held = sqlx::query(&finish)
                .bind(job_id)
                .bind(worker_id)
                .bind(i64::from(attempt))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if held == 1 {
                replace_points!(tx, job_id, points);
                tx.commit().await?;
            }
            held == 1
        });
        Ok(written)
    }

    /// Every walk job of one sweep (or of all), in job id order, with its points.
    pub async fn walks(&self, sweep: Option<&str>) -> Result<Vec<StoredWalk>, StoreError> {
        let sweep_id = self.sweep_filter(sweep).await?;
        let sql = format!(
            "SELECT w.id, s.name AS sweep, w.walk_of, w.walk_json, w.params_json, w.state, w.error,
                    r.training_success, r.success_rate
             FROM jobs AS w
             JOIN sweeps AS s ON s.id = w.sweep_id
             LEFT JOIN results AS r ON r.job_id = w.walk_of
             WHERE w.kind = 'walk' AND {}
             ORDER BY w.id",
            sweep_condition("w.sweep_id", sweep_id)
        );
        let rows: Vec<WalkRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(sweep_id)
            .fetch_all(pool)
            .await)?;
        let sql = format!(
            "SELECT p.job_id, p.point, p.fraction, p.distance, p.loss, p.success_rate, p.cell_accuracy
             FROM walk_points AS p JOIN jobs AS w ON w.id = p.job_id
             WHERE {}
             ORDER BY p.job_id, p.point",
            sweep_condition("w.sweep_id", sweep_id)
        );
        let point_rows: Vec<PointRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(sweep_id)
            .fetch_all(pool)
            .await)?;
        let mut points: std::collections::HashMap<i64, Vec<WalkPointRecord>> =
            std::collections::HashMap::new();
        for p in point_rows {
            points.entry(p.job_id).or_default().push(WalkPointRecord {
                point: u32::try_from(p.point).unwrap_or(u32::MAX),
                fraction: p.fraction,
                distance: p.distance,
                loss: real(p.loss),
                success_rate: real(p.success_rate),
                cell_accuracy: real(p.cell_accuracy),
            });
        }
        rows.into_iter()
            .map(|row| {
                let missing = |column: &str| StoreError::Corrupt {
                    what: format!("walk job {} {column}", row.id),
                    message: "is NULL".into(),
                };
                Ok(StoredWalk {
                    job_id: row.id,
                    run_job_id: row.walk_of.ok_or_else(|| missing("walk_of"))?,
                    spec: parse_walk(
                        row.walk_json
                            .as_deref()
                            .ok_or_else(|| missing("walk_json"))?,
                        row.id,
                    )?,
                    params: parse_params(&row.params_json, row.id)?,
                    state: row.state,
                    error: row.error,
                    run_success: row.training_success.map(|s| s == 1),
                    run_success_rate: row.success_rate,
                    points: points.remove(&row.id).unwrap_or_default(),
                    sweep: row.sweep,
                })
            })
            .collect()
    }
}
