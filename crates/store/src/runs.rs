//! Reading runs back: every job with its result, and the failed ones with their errors.

use lifesweep_spec::{JobKey, RunMetrics};

use crate::jobs::{parse_loss_curve, parse_params, real};
use crate::sweeps::sweep_condition;
use crate::{on_pool, FailedJob, RunRow, Store, StoreError};

/// A job joined with its sweep and its result (the result's columns NULL until done).
#[derive(sqlx::FromRow)]
struct RunDbRow {
    id: i64,
    sweep: String,
    job_key: String,
    params_json: String,
    state: String,
    attempts: i64,
    error: Option<String>,
    worker_id: Option<String>,
    result_job_id: Option<i64>,
    success_rate: Option<f64>,
    training_success: Option<i64>,
    cell_accuracy: Option<f64>,
    final_loss: Option<f64>,
    loss_curve_json: Option<String>,
    param_count: Option<i64>,
    wall_seconds: Option<f64>,
    device: Option<String>,
    started_at: Option<f64>,
    finished_at: Option<f64>,
    weights_path: Option<String>,
}

/// A failed job with its sweep.
#[derive(sqlx::FromRow)]
struct FailedDbRow {
    id: i64,
    sweep: String,
    job_key: String,
    params_json: String,
    attempts: i64,
    error: Option<String>,
}

impl Store {
    /// Every job of one sweep (or of all) with its result when it has one, in job id order
    /// (grid order). One query, whatever the number of jobs.
    pub async fn runs(&self, sweep: Option<&str>) -> Result<Vec<RunRow>, StoreError> {
        let sweep_id = self.sweep_filter(sweep).await?;
        let sql = format!(
            "SELECT j.id, s.name AS sweep, j.job_key, j.params_json, j.state, j.attempts, j.error,
                    coalesce(r.worker_id, j.worker_id) AS worker_id,
                    r.job_id AS result_job_id, r.success_rate, r.training_success, r.cell_accuracy,
                    r.final_loss, r.loss_curve_json, r.param_count, r.wall_seconds, r.device,
                    r.started_at, r.finished_at, r.weights_path
             FROM jobs AS j
             JOIN sweeps AS s ON s.id = j.sweep_id
             LEFT JOIN results AS r ON r.job_id = j.id
             WHERE j.kind = 'train' AND {}
             ORDER BY j.id",
            sweep_condition("j.sweep_id", sweep_id)
        );
        let rows: Vec<RunDbRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(sweep_id)
            .fetch_all(pool)
            .await)?;

        rows.into_iter()
            .map(|row| {
                let job_id = row.id;
                let metrics = match row.result_job_id {
                    Some(_) => Some(RunMetrics {
                        success_rate: real(row.success_rate),
                        training_success: row.training_success.unwrap_or(0) != 0,
                        cell_accuracy: real(row.cell_accuracy),
                        final_loss: real(row.final_loss),
                        loss_curve: parse_loss_curve(
                            row.loss_curve_json.as_deref().unwrap_or("[]"),
                            job_id,
                        )?,
                        param_count: u64::try_from(row.param_count.unwrap_or(0)).unwrap_or(0),
                        wall_seconds: real(row.wall_seconds),
                        device: row.device.unwrap_or_default(),
                    }),
                    None => None,
                };
                Ok(RunRow {
                    job_id,
                    sweep: row.sweep,
                    key: JobKey(row.job_key),
                    params: parse_params(&row.params_json, job_id)?,
                    state: row.state,
                    attempts: u32::try_from(row.attempts).unwrap_or(0),
                    error: row.error,
                    metrics,
                    started_at: row.started_at,
                    finished_at: row.finished_at,
                    worker_id: row.worker_id,
                    weights_path: row.weights_path,
                })
            })
            .collect()
    }

    /// The failed jobs of one sweep (or of all) with their last error, in job id order.
    pub async fn failures(&self, sweep: Option<&str>) -> Result<Vec<FailedJob>, StoreError> {
        let sweep_id = self.sweep_filter(sweep).await?;
        let sql = format!(
            "SELECT j.id, s.name AS sweep, j.job_key, j.params_json, j.attempts, j.error
             FROM jobs AS j JOIN sweeps AS s ON s.id = j.sweep_id
             WHERE j.state = 'failed' AND {}
             ORDER BY j.id",
            sweep_condition("j.sweep_id", sweep_id)
        );
        let rows: Vec<FailedDbRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(sweep_id)
            .fetch_all(pool)
            .await)?;
        rows.into_iter()
            .map(|row| {
                Ok(FailedJob {
                    job_id: row.id,
                    sweep: row.sweep,
                    key: JobKey(row.job_key),
                    params: parse_params(&row.params_json, row.id)?,
                    attempts: u32::try_from(row.attempts).unwrap_or(0),
                    error: row.error.unwrap_or_default(),
                })
            })
            .collect()
    }
}
