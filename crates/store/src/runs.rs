//! Reading runs back: every job with its result, and the failed ones with their errors.

use lifesweep_spec::{JobKey, RunMetrics};
use sqlx::Row;

use crate::jobs::{parse_loss_curve, parse_params, real};
use crate::sweeps::sweep_condition;
use crate::{retry_busy, FailedJob, RunRow, Store, StoreError};

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
             WHERE {}
             ORDER BY j.id",
            sweep_condition("j.sweep_id", sweep_id)
        );
        let rows = retry_busy!(sqlx::query(&sql).bind(sweep_id).fetch_all(&self.pool).await)?;

        rows.iter()
            .map(|row| {
                let job_id: i64 = row.try_get("id")?;
                let has_result = row.try_get::<Option<i64>, _>("result_job_id")?.is_some();
                let metrics = if has_result {
                    Some(RunMetrics {
                        success_rate: real(row, "success_rate")?,
                        training_success: row.try_get::<i64, _>("training_success")? != 0,
                        cell_accuracy: real(row, "cell_accuracy")?,
                        final_loss: real(row, "final_loss")?,
                        loss_curve: parse_loss_curve(row.try_get("loss_curve_json")?, job_id)?,
                        param_count: u64::try_from(row.try_get::<i64, _>("param_count")?)
                            .unwrap_or(0),
                        wall_seconds: real(row, "wall_seconds")?,
                        device: row.try_get("device")?,
                    })
                } else {
                    None
                };
                Ok(RunRow {
                    job_id,
                    sweep: row.try_get("sweep")?,
                    key: JobKey(row.try_get("job_key")?),
                    params: parse_params(row.try_get("params_json")?, job_id)?,
                    state: row.try_get("state")?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                    error: row.try_get("error")?,
                    metrics,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                    worker_id: row.try_get("worker_id")?,
                    weights_path: row.try_get("weights_path")?,
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
        let rows = retry_busy!(sqlx::query(&sql).bind(sweep_id).fetch_all(&self.pool).await)?;
        rows.iter()
            .map(|row| {
                let job_id: i64 = row.try_get("id")?;
                Ok(FailedJob {
                    job_id,
                    sweep: row.try_get("sweep")?,
                    key: JobKey(row.try_get("job_key")?),
                    params: parse_params(row.try_get("params_json")?, job_id)?,
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
                    error: row
                        .try_get::<Option<String>, _>("error")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}
