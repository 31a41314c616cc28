//! The life of a job under a worker: claim (with a lease on the database clock), renew, and
//! finish it as done, failed or handed back; and the worker records that resume relies on.
//!
//! Every write here is one statement, or one write transaction, and every write a worker makes
//! about a job is conditional on the worker still holding it (same worker, same attempt, still
//! running), so a worker that lost its lease can change nothing. On PostgreSQL, where writers
//! do not queue on one lock, the conditions are checked on the locked row (an UPDATE's WHERE,
//! or `FOR UPDATE`), so they hold at the moment of the write.

use std::time::Duration;

use lifesweep_spec::{JobKey, LossPoint, RunMetrics, TrainParams};
use serde::{Deserialize, Serialize};

use crate::sweeps::sweep_condition;
use crate::{
    finite, in_transaction, on_pool, to_json, ClaimedJob, RunRecord, Store, StoreError, WorkerInfo,
    WorkerRecord,
};

/// A loss curve point as stored: a non-finite loss is null (JSON has no NaN).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredLossPoint {
    batch: u32,
    loss: Option<f64>,
}

pub(crate) fn loss_curve_json(curve: &[LossPoint]) -> String {
    let stored: Vec<StoredLossPoint> = curve
        .iter()
        .map(|p| StoredLossPoint {
            batch: p.batch,
            loss: p.loss.is_finite().then_some(p.loss),
        })
        .collect();
    to_json(&stored)
}

pub(crate) fn parse_loss_curve(text: &str, job_id: i64) -> Result<Vec<LossPoint>, StoreError> {
    let stored: Vec<StoredLossPoint> =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
            what: format!("job {job_id} loss_curve_json"),
            message: e.to_string(),
        })?;
    Ok(stored
        .into_iter()
        .map(|p| LossPoint {
            batch: p.batch,
            loss: p.loss.unwrap_or(f64::NAN),
        })
        .collect())
}

pub(crate) fn parse_params(text: &str, job_id: i64) -> Result<TrainParams, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: format!("job {job_id} params_json"),
        message: e.to_string(),
    })
}

/// A metric column that may be NULL because the value was not finite.
pub(crate) fn real(value: Option<f64>) -> f64 {
    value.unwrap_or(f64::NAN)
}

/// A row the claim returns.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    sweep_id: i64,
    job_key: String,
    params_json: String,
    attempts: i64,
    walk_json: Option<String>,
}

/// A row of `workers`.
#[derive(sqlx::FromRow)]
struct WorkerRow {
    id: String,
    host: String,
    pid: i64,
    device: String,
    started_at: f64,
    last_seen: f64,
    stopped_at: Option<f64>,
}

/// The claim on SQLite: the lowest-id claimable job (queued, or running with an expired lease,
/// and with attempts left), of one sweep (`$4`) or any, and up to `$3` claimable jobs of its
/// grid point (the same parameters but the seed), in one UPDATE. `$1` worker, `$2` lease
/// seconds. No claimable job has a lower id than the first, so the grid point's jobs are
/// searched from it on: the done seeds before it are not scanned again at every claim. SQLite
/// has one writer at a time, so the statement needs no row locks.
fn claim_sql_sqlite(one_sweep: bool) -> String {
    let sweep = if one_sweep {
        "sweep_id = $4"
    } else {
        "$4 IS NULL"
    };
    let now = crate::DB_NOW;
    format!(
        "WITH now (t) AS (SELECT {now}),
         first (id, sweep_id, point_key) AS (
             SELECT id, sweep_id, point_key FROM jobs WHERE id = (
                 SELECT min(id) FROM (
                     SELECT id FROM (
                         SELECT id FROM jobs
                         WHERE state = 'queued' AND attempts < max_attempts AND {sweep}
                         ORDER BY id LIMIT 1)
                     UNION ALL
                     SELECT id FROM (
                         SELECT id FROM jobs
                         WHERE state = 'running' AND lease_expires_at < (SELECT t FROM now)
                           AND attempts < max_attempts AND {sweep}
                         ORDER BY id LIMIT 1))))
         UPDATE jobs SET
             state = 'running',
             worker_id = $1,
             attempts = attempts + 1,
             lease_expires_at = (SELECT t FROM now) + $2,
             heartbeat_at = (SELECT t FROM now),
             claimed_at = (SELECT t FROM now),
             updated_at = (SELECT t FROM now)
         WHERE id IN (
             SELECT j.id FROM jobs AS j, first
             WHERE j.sweep_id = first.sweep_id AND j.point_key = first.point_key AND j.id >= first.id
               AND (j.state = 'queued' OR (j.state = 'running' AND j.lease_expires_at < (SELECT t FROM now)))
               AND j.attempts < j.max_attempts
             ORDER BY j.id LIMIT $3)
         RETURNING id, sweep_id, job_key, params_json, attempts, walk_json"
    )
}

/// The claim on PostgreSQL: the same choice as on SQLite, but many claims run at once, so each
/// takes its rows with `FOR UPDATE SKIP LOCKED`: a row another claim is taking is skipped, not
/// waited for, and a row that changed meanwhile is checked again under the lock (a job another
/// worker just claimed is no longer claimable and is passed over). `jobs_claimable` and
/// `jobs_claimable_by_sweep` (partial indexes on queued and running jobs) keep the scan off
/// the done ones.
fn claim_sql_postgres(one_sweep: bool) -> String {
    let sweep = if one_sweep {
        "sweep_id = $4"
    } else {
        "$4::bigint IS NULL"
    };
    let now = crate::postgres::DB_NOW;
    format!(
        "WITH first AS (
             SELECT id, sweep_id, point_key FROM jobs
             WHERE state IN ('queued', 'running')
               AND (state = 'queued' OR lease_expires_at < {now})
               AND attempts < max_attempts AND {sweep}
             ORDER BY id LIMIT 1
             FOR UPDATE SKIP LOCKED),
         picked AS (
             SELECT j.id FROM jobs AS j, first
             WHERE j.sweep_id = first.sweep_id AND j.point_key = first.point_key AND j.id >= first.id
               AND j.state IN ('queued', 'running')
               AND (j.state = 'queued' OR j.lease_expires_at < {now})
               AND j.attempts < j.max_attempts
             ORDER BY j.id LIMIT $3
             FOR UPDATE OF j SKIP LOCKED)
         UPDATE jobs SET
             state = 'running',
             worker_id = $1,
             attempts = jobs.attempts + 1,
             lease_expires_at = {now} + $2,
             heartbeat_at = {now},
             claimed_at = {now},
             updated_at = {now}
         FROM picked WHERE jobs.id = picked.id
         RETURNING jobs.id, jobs.sweep_id, jobs.job_key, jobs.params_json, jobs.attempts,
                   jobs.walk_json"
    )
}

impl Store {
    /// Claims the next job (lowest id first) for `worker_id`, of sweep `sweep` or of any sweep,
    /// with a lease of `lease` on the database clock. A running job whose lease expired is
    /// claimable again while it has attempts left; one without attempts left is marked failed
    /// ("lease expired after N attempts; last worker W") first. None when nothing is claimable.
    pub async fn claim_next_job(
        &self,
        worker_id: &str,
        sweep: Option<&str>,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        Ok(self.claim_jobs(worker_id, sweep, lease, 1).await?.pop())
    }

    /// Claims up to `k` jobs of one grid point (the same parameters but the seed), in one
    /// statement: the next job as [`Store::claim_next_job`] picks it, and the lowest-id
    /// claimable jobs of its grid point with it. Fewer than `k` when the point has fewer left;
    /// empty when nothing is claimable. Sorted by job id.
    pub async fn claim_jobs(
        &self,
        worker_id: &str,
        sweep: Option<&str>,
        lease: Duration,
        k: usize,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let sweep_id = self.sweep_filter(sweep).await?;
        self.fail_expired_jobs().await?;
        let sql = self
            .dialect(
                &claim_sql_sqlite(sweep_id.is_some()),
                &claim_sql_postgres(sweep_id.is_some()),
            )
            .to_string();
        let rows: Vec<ClaimRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(worker_id)
            .bind(lease.as_secs_f64())
            .bind(i64::try_from(k).unwrap_or(i64::MAX))
            .bind(sweep_id)
            .fetch_all(pool)
            .await)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            claimed.push(ClaimedJob {
                job_id: row.id,
                sweep: self.sweep_name(row.sweep_id).await?,
                key: JobKey(row.job_key),
                params: parse_params(&row.params_json, row.id)?,
                attempt: row.attempts as u32,
                walk: row
                    .walk_json
                    .as_deref()
                    .map(|json| crate::walks::parse_walk(json, row.id))
                    .transpose()?,
            });
        }
        claimed.sort_by_key(|job| job.job_id);
        if let Some(first) = claimed.first() {
            tracing::debug!(
                worker = worker_id,
                job = first.job_id,
                jobs = claimed.len(),
                "claimed"
            );
        }
        Ok(claimed)
    }

    /// Marks failed the running jobs whose lease expired and that have no attempt left. Reads
    /// first, so the common case takes no write lock.
    async fn fail_expired_jobs(&self) -> Result<(), StoreError> {
        let now = self.now();
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'running' AND lease_expires_at < {now}
                            AND attempts >= max_attempts)"
        );
        let expired: bool = on_pool!(self, |pool| sqlx::query_scalar(&sql).fetch_one(pool).await)?;
        if !expired {
            return Ok(());
        }
        let sql = format!(
            "UPDATE jobs SET
                 state = 'failed',
                 error = 'lease expired after ' || attempts
                         || CASE attempts WHEN 1 THEN ' attempt' ELSE ' attempts' END
                         || '; last worker ' || coalesce(worker_id, 'unknown'),
                 lease_expires_at = NULL,
                 updated_at = {now}
             WHERE state = 'running' AND lease_expires_at < {now} AND attempts >= max_attempts"
        );
        let failed = on_pool!(self, |pool| sqlx::query(&sql)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if failed > 0 {
            tracing::warn!(
                failed,
                "jobs failed: their lease expired and they had no attempt left"
            );
        }
        Ok(())
    }

    /// Extends the lease of a job this worker holds to `lease` from now (database clock).
    /// False when the worker no longer holds the job: stop working on it. A lease that ran out
    /// but that nobody took over is still renewed.
    pub async fn renew_lease(
        &self,
        job_id: i64,
        worker_id: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let sql = format!(
            "UPDATE jobs SET lease_expires_at = {now} + $3, heartbeat_at = {now}
             WHERE id = $1 AND worker_id = $2 AND state = 'running'"
        );
        let renewed = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(job_id)
            .bind(worker_id)
            .bind(lease.as_secs_f64())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(renewed == 1)
    }

    /// Writes a finished run's result and marks the job done, if this worker still holds the
    /// job in this attempt. False, writing nothing, when it does not (the lease was lost and
    /// the job given to another worker, or it was failed or released). One statement: the
    /// INSERT selects the job only while it is held (on PostgreSQL, locking its row, so that a
    /// claim cannot take it in between), and a trigger (`results_mark_job_done`) marks it done.
    /// Non-finite metrics are stored as NULL.
    pub async fn complete_job(
        &self,
        job_id: i64,
        worker_id: &str,
        attempt: u32,
        result: &RunRecord,
    ) -> Result<bool, StoreError> {
        let metrics: &RunMetrics = &result.metrics;
        let curve = loss_curve_json(&metrics.loss_curve);
        let param_count = i64::try_from(metrics.param_count).unwrap_or(i64::MAX);
        let sql = format!(
            "INSERT INTO results (job_id, worker_id, attempt, success_rate, training_success, cell_accuracy,
                                  final_loss, loss_curve_json, param_count, wall_seconds, device,
                                  started_at, finished_at, weights_path)
             SELECT id, worker_id, attempts, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
             FROM jobs WHERE id = $1 AND worker_id = $2 AND attempts = $3 AND state = 'running'{}",
            self.dialect("", " FOR UPDATE")
        );
        let written = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(job_id)
            .bind(worker_id)
            .bind(i64::from(attempt))
            .bind(finite(metrics.success_rate))
            .bind(i64::from(metrics.training_success))
            .bind(finite(metrics.cell_accuracy))
            .bind(finite(metrics.final_loss))
            .bind(&curve)
            .bind(param_count)
            .bind(finite(metrics.wall_seconds))
            .bind(&metrics.device)
            .bind(result.started_at)
            .bind(result.finished_at)
            .bind(&result.weights_path)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        if written == 0 {
            tracing::debug!(
                job = job_id,
                worker = worker_id,
                attempt,
                "result refused: the job is no longer held"
            );
        }
        Ok(written == 1)
    }

    /// Records a failed attempt of a job this worker holds. A `retryable` failure with attempts
    /// left goes back to the queue; otherwise the job is failed. The error is kept either way.
    /// False when the worker no longer holds the job (nothing written).
    pub async fn fail_job(
        &self,
        job_id: i64,
        worker_id: &str,
        attempt: u32,
        error: &str,
        retryable: bool,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let sql = format!(
            "UPDATE jobs SET
                 state = CASE WHEN $4 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                 error = $5, lease_expires_at = NULL, updated_at = {now}
             WHERE id = $1 AND worker_id = $2 AND attempts = $3 AND state = 'running'"
        );
        let held = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(job_id)
            .bind(worker_id)
            .bind(i64::from(attempt))
            .bind(retryable)
            .bind(error)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(held == 1)
    }

    /// Hands a job this worker holds back to the queue, as if this attempt had not happened
    /// (interrupted, not failed). False when the worker no longer holds the job.
    pub async fn release_job(
        &self,
        job_id: i64,
        worker_id: &str,
        attempt: u32,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let sql = format!(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_expires_at = NULL,
                 updated_at = {now}
             WHERE id = $1 AND worker_id = $2 AND attempts = $3 AND state = 'running'"
        );
        let held = on_pool!(self, |pool| sqlx::query(&sql)
            .bind(job_id)
            .bind(worker_id)
            .bind(i64::from(attempt))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(held == 1)
    }

    /// Takes the running jobs of workers the caller knows are dead (their process is gone) away
    /// from them at once, rather than when their leases run out: each job goes back to the
    /// queue, or is failed when it has no attempt left (the dead worker's attempt counts, so a
    /// job that kills its worker every time ends failed). Marks the workers stopped. Returns
    /// how many jobs were taken away.
    pub async fn requeue_jobs_of_dead_workers(
        &self,
        worker_ids: &[String],
    ) -> Result<u64, StoreError> {
        if worker_ids.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let requeue = format!(
            "UPDATE jobs SET
                 state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                 error = 'worker ' || worker_id || ' died during attempt ' || attempts,
                 lease_expires_at = NULL, updated_at = {now}
             WHERE worker_id = $1 AND state = 'running'"
        );
        let stopped =
            format!("UPDATE workers SET stopped_at = coalesce(stopped_at, {now}) WHERE id = $1");
        let moved = in_transaction!(self, |tx| {
            let mut moved = 0;
            for worker_id in worker_ids {
                moved += sqlx::query(&requeue)
                    .bind(worker_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(&stopped)
                    .bind(worker_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            moved
        });
        if moved > 0 {
            tracing::info!(
                jobs = moved,
                workers = worker_ids.len(),
                "took the jobs of dead workers back"
            );
        }
        Ok(moved)
    }

    /// Records a worker process starting (again, if the id is reused).
    pub async fn register_worker(&self, info: &WorkerInfo) -> Result<(), StoreError> {
        let now = self.now();
        let sql = format!(
            "INSERT INTO workers (id, host, pid, device) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, device = excluded.device,
                 started_at = {now}, last_seen = {now}, stopped_at = NULL"
        );
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(&info.id)
            .bind(&info.host)
            .bind(i64::from(info.pid))
            .bind(&info.device)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Records that a worker is alive now.
    pub async fn worker_heartbeat(&self, worker_id: &str) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE workers SET last_seen = {} WHERE id = $1",
            self.now()
        );
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(worker_id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Records that a worker stopped cleanly.
    pub async fn worker_stopped(&self, worker_id: &str) -> Result<(), StoreError> {
        let now = self.now();
        let sql = format!("UPDATE workers SET stopped_at = {now}, last_seen = {now} WHERE id = $1");
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(worker_id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The workers registered from `host`, stopped or not, oldest first. The caller decides
    /// which are dead (e.g. their pid is gone) and passes those to
    /// [`Store::requeue_jobs_of_dead_workers`].
    pub async fn workers_on_host(&self, host: &str) -> Result<Vec<WorkerRecord>, StoreError> {
        let rows: Vec<WorkerRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, host, pid, device, started_at, last_seen, stopped_at FROM workers
             WHERE host = $1 ORDER BY started_at, id",
        )
        .bind(host)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|row| WorkerRecord {
                info: WorkerInfo {
                    id: row.id,
                    host: row.host,
                    pid: u32::try_from(row.pid).unwrap_or(0),
                    device: row.device,
                },
                started_at: row.started_at,
                last_seen: row.last_seen,
                stopped_at: row.stopped_at,
            })
            .collect())
    }

    /// Results written in the last `since_secs` seconds (database clock), of one sweep or all.
    pub async fn recent_completions(
        &self,
        sweep: Option<&str>,
        since_secs: f64,
    ) -> Result<u64, StoreError> {
        let sweep_id = self.sweep_filter(sweep).await?;
        let sql = format!(
            "SELECT count(*) FROM results AS r JOIN jobs AS j ON j.id = r.job_id
             WHERE r.recorded_at >= {} - $2 AND {}",
            self.now(),
            sweep_condition("j.sweep_id", sweep_id)
        );
        let count: i64 = on_pool!(self, |pool| sqlx::query_scalar(&sql)
            .bind(sweep_id)
            .bind(since_secs)
            .fetch_one(pool)
            .await)?;
        Ok(count as u64)
    }
}
