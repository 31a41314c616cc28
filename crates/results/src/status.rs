//! Where a sweep stands: jobs by state, the recent rate of finished runs, the time left, and
//! the failed jobs with their last error.

use lifesweep_store::{FailedJob, JobCounts};
use serde_json::{json, Map, Value};

use crate::{num, params_map, Format, ResultsError, Table};

/// Failed jobs listed in the terminal rendering; JSON lists every one.
const FAILURES_SHOWN: usize = 20;

/// A sweep's progress, computed from what the store reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub sweep: String,
    pub counts: JobCounts,
    /// The window over which the rate is measured, in seconds.
    pub window_seconds: f64,
    /// Results written in that window.
    pub finished_in_window: u64,
    pub runs_per_minute: f64,
    /// Seconds until every queued and running job is finished at the recent rate: 0 when none
    /// is left, None when jobs are left but none finished in the window.
    pub eta_seconds: Option<f64>,
    pub failures: Vec<FailedJob>,
}

/// Computes the rate and the time left from the counts and the results of the last
/// `window_seconds`.
pub fn progress(
    sweep: &str,
    counts: JobCounts,
    finished_in_window: u64,
    window_seconds: f64,
    failures: Vec<FailedJob>,
) -> Progress {
    let runs_per_minute = if window_seconds > 0.0 {
        finished_in_window as f64 * 60.0 / window_seconds
    } else {
        0.0
    };
    let left = counts.unfinished();
    let eta_seconds = if left == 0 {
        Some(0.0)
    } else if runs_per_minute > 0.0 {
        Some(left as f64 * 60.0 / runs_per_minute)
    } else {
        None
    };
    Progress {
        sweep: sweep.to_string(),
        counts,
        window_seconds,
        finished_in_window,
        runs_per_minute,
        eta_seconds,
        failures,
    }
}

/// A duration in words a person reads at a glance: `45s`, `12m 30s`, `3h 05m`, `2d 04h`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The parameters of a failed job that tell it apart: the sweep's axes, as `key=value`.
fn point_label(job: &FailedJob, axes: &[String]) -> String {
    let params = params_map(&job.params);
    axes.iter()
        .map(|k| {
            let value = params.get(k).cloned().unwrap_or(Value::Null);
            match value {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Progress {
    /// The failures as a table: job id, the axes' values, attempts and the last error (one
    /// line).
    pub fn failures_table(&self, axes: &[String], limit: Option<usize>) -> Table {
        let rows = self
            .failures
            .iter()
            .take(limit.unwrap_or(usize::MAX))
            .map(|f| {
                let error: Vec<&str> = f.error.split_whitespace().collect();
                vec![
                    Value::from(f.job_id),
                    Value::from(point_label(f, axes)),
                    Value::from(f.attempts),
                    Value::from(error.join(" ")),
                ]
            })
            .collect();
        Table {
            columns: ["job_id", "grid point", "attempts", "last error"]
                .map(String::from)
                .to_vec(),
            rows,
        }
    }

    /// Renders for a terminal (`Format::Table`) or as one JSON object (`Format::Json`); CSV
    /// lists the failed jobs.
    pub fn render(&self, format: Format, axes: &[String]) -> Result<String, ResultsError> {
        match format {
            Format::Table => Ok(self.render_text(axes)),
            Format::Csv => self.failures_table(axes, None).render(Format::Csv),
            Format::Json => {
                let mut out = serde_json::to_string_pretty(&self.to_json(axes)).map_err(|e| {
                    ResultsError::Render {
                        format: "json",
                        message: e.to_string(),
                    }
                })?;
                out.push('\n');
                Ok(out)
            }
        }
    }

    fn to_json(&self, axes: &[String]) -> Value {
        let c = &self.counts;
        let failures: Vec<Value> = self
            .failures
            .iter()
            .map(|f| {
                let params = params_map(&f.params);
                let point: Map<String, Value> = axes
                    .iter()
                    .map(|k| (k.clone(), params.get(k).cloned().unwrap_or(Value::Null)))
                    .collect();
                json!({
                    "job_id": f.job_id,
                    "job_key": f.key.0,
                    "params": point,
                    "attempts": f.attempts,
                    "error": f.error,
                })
            })
            .collect();
        json!({
            "sweep": self.sweep,
            "jobs": {
                "total": c.total(),
                "queued": c.queued,
                "running": c.running,
                "done": c.done,
                "failed": c.failed,
                "cancelled": c.cancelled,
            },
            "window_seconds": num(Some(self.window_seconds)),
            "finished_in_window": self.finished_in_window,
            "runs_per_minute": num(Some(self.runs_per_minute)),
            "eta_seconds": num(self.eta_seconds),
            "failures": failures,
        })
    }

    fn render_text(&self, axes: &[String]) -> String {
        let c = &self.counts;
        let total = c.total();
        let percent = |n: u64| {
            if total == 0 {
                0.0
            } else {
                n as f64 * 100.0 / total as f64
            }
        };
        let mut out = format!("sweep {}: {} jobs\n", self.sweep, total);
        for (name, n) in [
            ("done", c.done),
            ("running", c.running),
            ("queued", c.queued),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
        ] {
            out.push_str(&format!("  {name:<10}{n:>8}  {:>5.1}%\n", percent(n)));
        }
        let minutes = self.window_seconds / 60.0;
        out.push_str(&format!(
            "rate: {:.1} runs/min over the last {} min ({} finished)\n",
            self.runs_per_minute,
            crate::plot::short_number(minutes),
            self.finished_in_window
        ));
        let left = c.unfinished();
        match self.eta_seconds {
            Some(_) if left == 0 => out.push_str("eta: nothing left to run\n"),
            Some(eta) => out.push_str(&format!("eta: {} ({left} jobs left)\n", human_duration(eta))),
            None => out.push_str(&format!(
                "eta: unknown ({left} jobs left, none finished in the last {} min; are workers running?)\n",
                crate::plot::short_number(minutes)
            )),
        }
        if !self.failures.is_empty() {
            out.push_str(&format!("failures ({}):\n", self.failures.len()));
            let table = self.failures_table(axes, Some(FAILURES_SHOWN));
            out.push_str(&table.render(Format::Table).unwrap_or_default());
            if self.failures.len() > FAILURES_SHOWN {
                out.push_str(&format!(
                    "... and {} more (`lifesweep status --format csv` lists them all)\n",
                    self.failures.len() - FAILURES_SHOWN
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(queued: u64, running: u64, done: u64, failed: u64) -> JobCounts {
        JobCounts {
            queued,
            running,
            done,
            failed,
            cancelled: 0,
        }
    }

    #[test]
    fn eta_is_jobs_left_over_the_recent_rate() {
        let p = progress("s", counts(58, 2, 40, 0), 20, 300.0, Vec::new());
        assert_eq!(p.runs_per_minute, 4.0);
        assert_eq!(p.eta_seconds, Some(60.0 / 4.0 * 60.0));
        let text = p.render(Format::Table, &[]).unwrap();
        assert!(
            text.contains("rate: 4.0 runs/min over the last 5 min (20 finished)"),
            "{text}"
        );
        assert!(text.contains("eta: 15m 00s (60 jobs left)"), "{text}");
    }

    #[test]
    fn eta_unknown_without_recent_runs_and_zero_when_done() {
        let stalled = progress("s", counts(10, 0, 5, 0), 0, 300.0, Vec::new());
        assert_eq!(stalled.eta_seconds, None);
        assert!(stalled
            .render(Format::Table, &[])
            .unwrap()
            .contains("eta: unknown"));
        let finished = progress("s", counts(0, 0, 5, 1), 0, 300.0, Vec::new());
        assert_eq!(finished.eta_seconds, Some(0.0));
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human_duration(45.2), "45s");
        assert_eq!(human_duration(750.0), "12m 30s");
        assert_eq!(human_duration(3.0 * 3600.0 + 300.0), "3h 05m");
        assert_eq!(human_duration(2.0 * 86_400.0 + 4.0 * 3600.0), "2d 04h");
    }
}
