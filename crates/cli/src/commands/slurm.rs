//! `lifesweep slurm`: a sweep on a Slurm cluster. `submit` adds the sweep's jobs to a
//! PostgreSQL database and submits one sbatch job array whose tasks each run one pull-based
//! worker (`lifesweep work --exit-when-idle`); `status` shows the array's tasks beside the
//! sweep's jobs by state.
//!
//! Slurm decides where and when workers run; the database decides which worker runs which job
//! (claims under leases, as on one machine). So a task that is cancelled, preempted, requeued
//! or killed never loses or repeats a job: a worker told to stop hands its job back, and a job
//! whose worker vanished is claimed again when its lease runs out. SQLite is refused: the
//! array's tasks run on several hosts, and an SQLite file is only safe for processes on one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cli::{OutputFormat, SlurmArgs, SlurmCommand, SlurmStatusArgs, SlurmSubmitArgs};
use crate::common;

/// How long before the time limit Slurm warns the batch script (with SIGUSR1), at most: time
/// for the worker to notice, hand its job back and exit.
const WARNING_SECONDS: u64 = 120;

pub fn slurm(args: SlurmArgs, quiet: bool) -> Result<ExitCode> {
    match args.command {
        SlurmCommand::Submit(args) => submit(args, quiet),
        SlurmCommand::Status(args) => status(args),
    }
}

fn submit(args: SlurmSubmitArgs, quiet: bool) -> Result<ExitCode> {
    // Everything is checked before anything is written or submitted.
    let (spec, text) = common::load_spec(&args.config)?;
    check_database(&args.db)?;
    let time_limit = args.time.as_deref().map(parse_time_limit).transpose()?;
    if let Some(partition) = &args.partition {
        check_word("--partition", partition)?;
    }
    for option in &args.sbatch_options {
        check_sbatch_option(option)?;
    }
    if args.gpus_per_worker > 0 && !cfg!(feature = "cuda") {
        bail!(
            "--gpus-per-worker: this lifesweep was built without CUDA, so its workers cannot use a GPU; \
             rebuild with `cargo build --release --features cuda`"
        );
    }
    let heartbeat = common::heartbeat(args.heartbeat)?;
    // The workers run on other hosts, in other directories: an absolute path, and none at all
    // (rather than a relative one) when no job saves weights.
    let weights_dir = common::weights_dir(
        &args.db,
        args.weights.weights_dir.as_deref(),
        spec.jobs().iter().any(|job| job.params.save_weights),
        Some(&spec.name),
    )?;
    let exe = match &args.exe {
        Some(exe) => std::path::absolute(exe)
            .with_context(|| format!("--exe {}: cannot make the path absolute", exe.display()))?,
        None => std::env::current_exe().context("finding this lifesweep executable")?,
    };

    let mut script = BatchScript {
        sweep: spec.name.clone(),
        db: args.db.clone(),
        tasks: args.workers,
        threads: args.threads,
        gpus: args.gpus_per_worker,
        partition: args.partition.clone(),
        time: args.time.clone(),
        warning_seconds: warning_seconds(time_limit.flatten()),
        sbatch_options: args.sbatch_options.clone(),
        exe,
        heartbeat_seconds: heartbeat.as_secs_f64(),
        weights_dir,
    };
    if args.dry_run {
        crate::out!("{}", script.render());
        if !quiet {
            crate::say!(
                "dry run: sweep {} has {} jobs; nothing written, nothing submitted",
                spec.name,
                spec.jobs().len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let sbatch = find_program("sbatch").context(
        "sbatch is not on PATH: run `lifesweep slurm submit` on a Slurm login node (or use --dry-run \
         to see the batch script)",
    )?;

    let runtime = common::runtime()?;
    runtime.block_on(async {
        let store = common::open_store(&args.db).await?;
        let outcome = store
            .submit_sweep(&spec, &text, args.max_attempts)
            .await?;
        let counts = store.job_counts(Some(&spec.name)).await?;
        let shown = store.path().to_string();
        store.close().await;
        if !quiet {
            crate::outln!(
                "sweep {}: {} jobs added, {} already present ({shown})",
                spec.name, outcome.added, outcome.existing
            );
        }
        // Running jobs count too: one whose worker vanished (a task killed outright) is claimed
        // again once its lease runs out, so submitting again picks up what such a task left.
        let unfinished = counts.unfinished();
        if unfinished == 0 {
            if !quiet {
                crate::outln!(
                    "nothing left to run ({} done, {} failed, {} cancelled); no job array submitted",
                    counts.done, counts.failed, counts.cancelled
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        // No more workers than unfinished jobs: the others would only start and exit.
        script.tasks = script
            .tasks
            .min(u32::try_from(unfinished).unwrap_or(u32::MAX));
        let job_id = run_sbatch(&sbatch, &script.render())?;
        if !quiet {
            crate::outln!(
                "submitted job array {job_id}: {} workers for {unfinished} unfinished jobs ({})",
                script.tasks,
                script.job_name()
            );
            crate::outln!("watch it with: lifesweep slurm status {} --db '{shown}'", spec.name);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Refuses anything but a PostgreSQL URL, saying why.
fn check_database(db: &str) -> Result<()> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        return Ok(());
    }
    bail!(
        "--db {db}: slurm submit needs a PostgreSQL database (--db postgres://USER@HOST/DATABASE): \
         the array's workers run on several hosts, and an SQLite file is only safe for processes on \
         one; on one machine use `lifesweep run` instead"
    )
}

/// A Slurm time limit in seconds; `None` for UNLIMITED. Accepts Slurm's forms: MINUTES,
/// MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES and
/// DAYS-HOURS:MINUTES:SECONDS.
fn parse_time_limit(text: &str) -> Result<Option<u64>> {
    let bad = || {
        anyhow::anyhow!(
            "--time {text:?}: expected a Slurm time limit such as 90 (minutes), 2:00:00 or 1-12:00:00"
        )
    };
    let text_lower = text.trim().to_ascii_lowercase();
    if text_lower == "unlimited" || text_lower == "infinite" {
        return Ok(None);
    }
    let number = |s: &str| -> Result<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (days, rest) = match text.trim().split_once('-') {
        Some((days, rest)) => (Some(number(days)?), rest),
        None => (None, text.trim()),
    };
    let parts = rest.split(':').map(number).collect::<Result<Vec<u64>>>()?;
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86_400 + h * 3600,
        (Some(d), [h, m]) => d * 86_400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86_400 + h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    if seconds == 0 {
        bail!("--time {text:?}: a time limit of zero leaves no time to work");
    }
    Ok(Some(seconds))
}

/// The warning before the time limit: two minutes, or a quarter of a shorter limit.
fn warning_seconds(limit: Option<u64>) -> u64 {
    match limit {
        Some(limit) => (limit / 4).clamp(1, WARNING_SECONDS),
        None => WARNING_SECONDS,
    }
}

/// A value that goes into an #SBATCH line as one word.
fn check_word(flag: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.,-".contains(c))
    {
        bail!("{flag} {value:?}: expected a name of letters, digits, '_', '.', ',' or '-'");
    }
    Ok(())
}

fn check_sbatch_option(option: &str) -> Result<()> {
    if !option.starts_with('-') || option.chars().any(|c| c.is_control()) {
        bail!(
            "--sbatch-option {option:?}: expected one sbatch option on one line, e.g. --account=lab or --mem=4G"
        );
    }
    Ok(())
}

/// The batch script of the job array: one worker per task.
#[derive(Debug, Clone)]
struct BatchScript {
    sweep: String,
    db: String,
    tasks: u32,
    threads: u32,
    gpus: u32,
    partition: Option<String>,
    time: Option<String>,
    warning_seconds: u64,
    sbatch_options: Vec<String>,
    exe: PathBuf,
    heartbeat_seconds: f64,
    /// Where the workers write weights (absolute); `None`: no job saves them.
    weights_dir: Option<PathBuf>,
}

impl BatchScript {
    /// `lifesweep-SWEEP`, with any character Slurm or a file name would mind replaced by '-':
    /// the name `slurm status` finds the array by.
    fn job_name(&self) -> String {
        job_name(&self.sweep)
    }

    fn render(&self) -> String {
        let mut sbatch = vec![
            format!("--job-name={}", self.job_name()),
            format!("--array=0-{}", self.tasks.saturating_sub(1)),
            "--ntasks=1".to_string(),
            format!("--cpus-per-task={}", self.threads),
            // Requeue the task (not fail it) when its node fails or it is preempted.
            "--requeue".to_string(),
            // SIGUSR1 to the batch shell only, before the time limit: the worker hands its job
            // back and the task requeues itself. (TERM means cancelled: no requeue.)
            format!("--signal=B:USR1@{}", self.warning_seconds),
            "--output=%x-%A_%a.out".to_string(),
        ];
        if let Some(partition) = &self.partition {
            sbatch.push(format!("--partition={partition}"));
        }
        if let Some(time) = &self.time {
            sbatch.push(format!("--time={time}"));
        }
        if self.gpus > 0 {
            sbatch.push(format!("--gres=gpu:{}", self.gpus));
        }
        sbatch.extend(self.sbatch_options.iter().cloned());
        let device = if self.gpus > 0 { "cuda:0" } else { "cpu" };
        let weights = match &self.weights_dir {
            Some(dir) => format!(
                " \\\n    --weights-dir {}",
                shell_quote(&dir.to_string_lossy())
            ),
            None => String::new(),
        };

        let mut script = String::new();
        script.push_str("#!/bin/bash\n");
        script.push_str(&format!(
            "# lifesweep workers for sweep {}, written by `lifesweep slurm submit`.\n",
            self.sweep
        ));
        script.push_str(
            "# Each array task runs one worker, which claims jobs from the database until none is\n\
             # queued. Before the time limit (SIGUSR1) the worker hands its job back and the task\n\
             # requeues itself; when cancelled (SIGTERM) it hands its job back and stops.\n",
        );
        for option in &sbatch {
            script.push_str(&format!("#SBATCH {option}\n"));
        }
        script.push_str(&format!(
            r#"
set -u
export NO_COLOR=1 # plain log lines in the .out files
lifesweep={exe}
db={db}
sweep={sweep}
task="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"

"$lifesweep" -v work --db "$db" --sweep "$sweep" --exit-when-idle \
    --device {device} --threads {threads} --heartbeat {heartbeat}{weights} \
    --worker-id "${{SLURM_CLUSTER_NAME:-slurm}}:$task.${{SLURM_RESTART_COUNT:-0}}" &
worker=$!
stop=
trap 'stop=cancelled; kill -TERM "$worker" 2>/dev/null' TERM INT
trap 'stop=time-limit; kill -TERM "$worker" 2>/dev/null' USR1
# A trapped signal interrupts `wait`; wait again until the worker has exited.
while :; do
    wait "$worker"
    status=$?
    kill -0 "$worker" 2>/dev/null || break
done
if [ "$stop" = time-limit ]; then
    # This task only: the plain job id would requeue every task of the array.
    scontrol requeue "$task"
fi
exit "$status"
"#,
            exe = shell_quote(&self.exe.to_string_lossy()),
            db = shell_quote(&self.db),
            sweep = shell_quote(&self.sweep),
            device = device,
            threads = self.threads,
            heartbeat = self.heartbeat_seconds,
            weights = weights,
        ));
        script
    }
}

fn job_name(sweep: &str) -> String {
    let safe: String = sweep
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("lifesweep-{safe}")
}

/// `value` as one shell word.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

/// The first executable file named `name` on PATH.
fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Submits the script (on standard input) and returns the array's job id.
fn run_sbatch(sbatch: &Path, script: &str) -> Result<String> {
    let mut child = Command::new(sbatch)
        .arg("--parsable")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", sbatch.display()))?;
    child
        .stdin
        .take()
        .context("sbatch's standard input")?
        .write_all(script.as_bytes())
        .context("writing the batch script to sbatch")?;
    let output = child.wait_with_output().context("waiting for sbatch")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // --parsable prints "JOBID" or "JOBID;CLUSTER".
    let job_id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if !output.status.success() || job_id.is_empty() {
        bail!(
            "sbatch refused the job array ({}): {}; the sweep's jobs are in the database, so after \
             fixing this run the same command again (it adds no job twice)",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(job_id)
}

/// One array task as squeue lists it.
#[derive(Debug, Clone, Serialize)]
struct Task {
    task: String,
    state: String,
    time: String,
    time_limit: String,
    node_or_reason: String,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    sweep: String,
    job_name: String,
    queued: u64,
    running: u64,
    done: u64,
    failed: u64,
    cancelled: u64,
    tasks: Vec<Task>,
    /// Why the tasks could not be listed, if they could not.
    squeue_error: Option<String>,
}

fn status(args: SlurmStatusArgs) -> Result<ExitCode> {
    let runtime = common::runtime()?;
    let report = runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        let sweep = store.resolve_sweep(args.sweep.as_deref()).await?;
        let counts = store.job_counts(Some(&sweep)).await?;
        store.close().await;
        let job_name = job_name(&sweep);
        let (tasks, squeue_error) = match squeue(&job_name) {
            Ok(tasks) => (tasks, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        Ok::<_, anyhow::Error>(StatusReport {
            sweep,
            job_name,
            queued: counts.queued,
            running: counts.running,
            done: counts.done,
            failed: counts.failed,
            cancelled: counts.cancelled,
            tasks,
            squeue_error,
        })
    })?;
    match args.format {
        OutputFormat::Json => {
            crate::outln!("{}", serde_json::to_string_pretty(&report)?);
        }
        OutputFormat::Table | OutputFormat::Csv => crate::out!("{}", render_status(&report)),
    }
    Ok(if report.squeue_error.is_some() {
        ExitCode::from(common::EXIT_BAD_INPUT)
    } else {
        ExitCode::SUCCESS
    })
}

/// The array tasks of the job named `job_name` that are pending or running (one line per task,
/// `--array`), of this user.
fn squeue(job_name: &str) -> Result<Vec<Task>> {
    let squeue = find_program("squeue").context("squeue is not on PATH (not a Slurm host?)")?;
    let output = Command::new(&squeue)
        .args(["--noheader", "--array", "--me", "--format=%i|%T|%M|%l|%R"])
        .arg(format!("--name={job_name}"))
        .output()
        .with_context(|| format!("running {}", squeue.display()))?;
    if !output.status.success() {
        bail!(
            "squeue failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.trim().splitn(5, '|').collect();
            match fields.as_slice() {
                [task, state, time, limit, node] => Some(Task {
                    task: task.to_string(),
                    state: state.to_string(),
                    time: time.to_string(),
                    time_limit: limit.to_string(),
                    node_or_reason: node.to_string(),
                }),
                _ => None,
            }
        })
        .collect())
}

fn render_status(report: &StatusReport) -> String {
    let total = report.queued + report.running + report.done + report.failed + report.cancelled;
    let mut out = format!(
        "sweep {}: {total} jobs: {} queued, {} running, {} done, {} failed, {} cancelled\n",
        report.sweep, report.queued, report.running, report.done, report.failed, report.cancelled
    );
    if let Some(error) = &report.squeue_error {
        out.push_str(&format!("slurm: cannot list the array tasks: {error}\n"));
        return out;
    }
    if report.tasks.is_empty() {
        out.push_str(&format!(
            "slurm: no task of {} is pending or running (finished tasks leave squeue; sacct lists them)\n",
            report.job_name
        ));
        return out;
    }
    out.push_str(&format!(
        "slurm: {} tasks of {}\n",
        report.tasks.len(),
        report.job_name
    ));
    let header = ["TASK", "STATE", "TIME", "LIMIT", "NODE (REASON)"];
    let rows: Vec<[&str; 5]> = report
        .tasks
        .iter()
        .map(|t| {
            [
                t.task.as_str(),
                t.state.as_str(),
                t.time.as_str(),
                t.time_limit.as_str(),
                t.node_or_reason.as_str(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> BatchScript {
        BatchScript {
            sweep: "grid's".into(),
            db: "postgres://me@db/sweeps".into(),
            tasks: 4,
            threads: 2,
            gpus: 1,
            partition: Some("gpu".into()),
            time: Some("2:00:00".into()),
            warning_seconds: 120,
            sbatch_options: vec!["--account=lab".into()],
            exe: PathBuf::from("/opt/lifesweep/bin/lifesweep"),
            heartbeat_seconds: 10.0,
            weights_dir: Some(PathBuf::from("/shared/lab's weights")),
        }
    }

    #[test]
    fn the_batch_script_asks_slurm_for_an_array_of_requeueable_workers() {
        let text = script().render();
        for line in [
            "#SBATCH --job-name=lifesweep-grid-s\n",
            "#SBATCH --array=0-3\n",
            "#SBATCH --cpus-per-task=2\n",
            "#SBATCH --requeue\n",
            "#SBATCH --signal=B:USR1@120\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --time=2:00:00\n",
            "#SBATCH --gres=gpu:1\n",
            "#SBATCH --account=lab\n",
            "sweep='grid'\\''s'\n",
            "db=postgres://me@db/sweeps\n",
            "--device cuda:0 --threads 2 --heartbeat 10 \\\n    --weights-dir '/shared/lab'\\''s weights' \\\n",
            "trap 'stop=time-limit; kill -TERM \"$worker\" 2>/dev/null' USR1\n",
            "scontrol requeue \"$task\"\n",
            "task=\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // Every #SBATCH line comes before the first command, or sbatch ignores it.
        let first_command = text.find("\nset -u").unwrap();
        assert!(text.rfind("#SBATCH").unwrap() < first_command);
        assert!(!text.contains("scontrol requeue $SLURM_JOB_ID"));
        assert!(!text.contains("SLURM_ARRAY_JOB_ID\"\n"));
    }

    #[test]
    fn without_a_weights_dir_the_workers_get_none() {
        let text = BatchScript {
            weights_dir: None,
            ..script()
        }
        .render();
        assert!(!text.contains("--weights-dir"), "{text}");
        assert!(
            text.contains("--heartbeat 10 \\\n    --worker-id"),
            "{text}"
        );
    }

    #[test]
    fn time_limits_are_read_in_slurms_forms() {
        assert_eq!(parse_time_limit("90").unwrap(), Some(5400));
        assert_eq!(parse_time_limit("1:30").unwrap(), Some(90));
        assert_eq!(parse_time_limit("2:00:00").unwrap(), Some(7200));
        assert_eq!(parse_time_limit("1-12").unwrap(), Some(129_600));
        assert_eq!(parse_time_limit("1-0:30").unwrap(), Some(88_200));
        assert_eq!(parse_time_limit("UNLIMITED").unwrap(), None);
        for bad in ["", "1h", "1:2:3:4", "-5", "0", "1-"] {
            assert!(parse_time_limit(bad).is_err(), "{bad:?}");
        }
        assert_eq!(warning_seconds(Some(7200)), 120);
        assert_eq!(warning_seconds(Some(60)), 15);
        assert_eq!(warning_seconds(None), 120);
    }

    #[test]
    fn only_postgres_is_accepted() {
        assert!(check_database("postgres://h/db").is_ok());
        let err = check_database("lifesweep.db").unwrap_err().to_string();
        assert!(
            err.contains("needs a PostgreSQL database") && err.contains("lifesweep run"),
            "{err}"
        );
    }
}
