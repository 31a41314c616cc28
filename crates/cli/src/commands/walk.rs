//! `lifesweep walk`: loss walks from trained runs, to the presolved weights or along a random
//! direction. One run is walked here and now; a sweep's runs are queued as walk jobs and run by
//! workers like training jobs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use lifesweep_results::walks::{summarise, walk_points_table, walks_table};
use lifesweep_runner::{point_records, walk_run};
use lifesweep_spec::{WalkKind, WalkSpec};
use lifesweep_store::{RunRow, Store, StoredWalk, WalkRequest};

use crate::cli::{WalkArgs, WalkTo};
use crate::commands::results::{parse_filters, passes};
use crate::commands::run::{exit_code, placements, run_pool, scheduler_config, worker_log_args};
use crate::common;

/// Attempts of a walk job before it is marked failed.
const WALK_ATTEMPTS: u32 = 3;

pub fn walk(args: WalkArgs, quiet: bool, verbose: u8) -> Result<ExitCode> {
    // Every flag is checked before the database is touched.
    let template = WalkSpec {
        run_key: String::new(),
        kind: match args.to {
            WalkTo::Presolve => WalkKind::Presolve,
            WalkTo::Random => WalkKind::Random,
        },
        points: args.points,
        batches: args.batches,
        align: args.align,
        seed: args.seed,
        max_distance: args.max_distance,
        weights_path: String::new(),
    };
    if let Err(message) = template.validate() {
        bail!(message);
    }
    let filters = parse_filters(&args.filters)?;
    let pool = if args.sweep.is_some() && !args.queue_only {
        Some(placements(&args.pool)?)
    } else {
        None
    };
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        match (&args.run, &args.sweep) {
            (Some(run), None) => walk_one(&store, &args, run, template).await,
            (None, Some(sweep)) => {
                walk_sweep(
                    &store, &args, sweep, template, &filters, pool, quiet, verbose,
                )
                .await
            }
            // clap makes exactly one of them present
            _ => bail!("give a RUN or --sweep NAME"),
        }
    })
}

/// The spec of a walk of `row`, with its weights file found.
fn spec_for(row: &RunRow, template: &WalkSpec, db: &str) -> Result<WalkSpec> {
    let Some(stored) = &row.weights_path else {
        bail!(
            "run {} of sweep {:?} has no saved weights: a walk starts from them; set save_weights = true \
             in the sweep's [train] and run it again",
            row.key,
            row.sweep
        );
    };
    Ok(WalkSpec {
        run_key: row.key.0.clone(),
        weights_path: find_weights(stored, db)?.display().to_string(),
        ..template.clone()
    })
}

/// A run's weights file: the stored path, or (for a relative path written by an older
/// lifesweep) that path from the database's directory. Absolute in the result.
fn find_weights(stored: &str, db: &str) -> Result<PathBuf> {
    let path = Path::new(stored);
    let beside_db = Path::new(db)
        .parent()
        .map(|dir| dir.join(path))
        .filter(|_| path.is_relative() && !db.starts_with("postgres"));
    for candidate in std::iter::once(path.to_path_buf()).chain(beside_db) {
        if candidate.is_file() {
            return Ok(std::path::absolute(&candidate)?);
        }
    }
    bail!("{stored}: the run's weights file is missing (it was written when the run finished)")
}

/// The done run `run` names: a job id, or a job key or a unique prefix of one.
fn find_run<'a>(rows: &'a [RunRow], run: &str) -> Result<&'a RunRow> {
    if let Ok(id) = run.parse::<i64>() {
        if let Some(row) = rows.iter().find(|r| r.job_id == id) {
            return Ok(row);
        }
    }
    let matches: Vec<&RunRow> = rows.iter().filter(|r| r.key.0.starts_with(run)).collect();
    let row = match matches.as_slice() {
        [row] if run.len() >= 4 => *row,
        [] | [_] => bail!(
            "no run {run:?} in the database: give a job key (at least 4 characters of it) as the \
             job_key column of `lifesweep results --runs` lists them, or a job id"
        ),
        _ => bail!(
            "{run:?} names {} runs; give more of the job key",
            matches.len()
        ),
    };
    if row.state != "done" {
        bail!(
            "run {} of sweep {:?} is {}, not done: only a finished run can be walked",
            row.key,
            row.sweep,
            row.state
        );
    }
    Ok(row)
}

async fn walk_one(
    store: &Store,
    args: &WalkArgs,
    run: &str,
    template: WalkSpec,
) -> Result<ExitCode> {
    let rows = store.runs(None).await?;
    let row = find_run(&rows, run)?;
    let spec = spec_for(row, &template, &args.db.db)?;
    let existing = stored_walk(store, &row.sweep, &spec).await?;
    let walk = match existing {
        Some(walk) => {
            crate::say!(
                "this walk of run {} is already in the database (walk job {}); showing it",
                row.key,
                walk.job_id
            );
            walk
        }
        None => {
            let walked = walk_run(&row.params, &spec)?;
            let worker_id = format!(
                "{}:{}:walk",
                lifesweep_runner::hostname(),
                std::process::id()
            );
            let request = WalkRequest {
                run_job_id: row.job_id,
                spec: spec.clone(),
            };
            store
                .record_walk(&request, &worker_id, &point_records(&walked))
                .await?;
            if walked.aligned {
                crate::say!(
                    "aligned the hidden channels: L1 distance to the solution {:.4} -> {:.4}",
                    walked.distance_to_solution.0,
                    walked.distance_to_solution.1
                );
            }
            match stored_walk(store, &row.sweep, &spec).await? {
                Some(walk) => walk,
                None => bail!("the walk was computed but not found in the database afterwards"),
            }
        }
    };
    crate::out!("{}", walk_points_table(&walk).render(args.format.into())?);
    if let Some(s) = summarise(&walk) {
        crate::say!(
            "loss {:.4e} at the run, highest {:.4e} on the way (barrier {:.4e}), {:.4e} at the end; success rate at the end {}",
            s.loss_start, s.loss_max, s.barrier, s.loss_end, s.success_end
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn stored_walk(store: &Store, sweep: &str, spec: &WalkSpec) -> Result<Option<StoredWalk>> {
    let key = spec.key();
    Ok(store
        .walks(Some(sweep))
        .await?
        .into_iter()
        .find(|w| w.spec.key() == key && w.state == "done"))
}

#[allow(clippy::too_many_arguments)]
async fn walk_sweep(
    store: &Store,
    args: &WalkArgs,
    sweep: &str,
    template: WalkSpec,
    filters: &[lifesweep_results::Filter],
    pool: Option<Vec<lifesweep_runner::Placement>>,
    quiet: bool,
    verbose: u8,
) -> Result<ExitCode> {
    let sweep = store.resolve_sweep(Some(sweep)).await?;
    let rows = store.runs(Some(&sweep)).await?;
    let (want_failed, want_succeeded) = match (args.failed, args.succeeded) {
        (false, false) => (true, true),
        flags => flags,
    };
    let chosen: Vec<&RunRow> = rows
        .iter()
        .filter(|r| r.state == "done" && passes(r, filters))
        .filter(|r| {
            let success = r.metrics.as_ref().is_some_and(|m| m.training_success);
            (success && want_succeeded) || (!success && want_failed)
        })
        .collect();
    if chosen.is_empty() {
        bail!(
            "sweep {sweep:?} has no finished run{} to walk{}",
            match (want_failed, want_succeeded) {
                (true, false) => " that failed",
                (false, true) => " that succeeded",
                _ => "",
            },
            if filters.is_empty() {
                ""
            } else {
                " matching --where"
            }
        );
    }
    let unsaved = chosen.iter().filter(|r| r.weights_path.is_none()).count();
    if unsaved == chosen.len() {
        bail!(
            "none of the {} chosen runs of sweep {sweep:?} saved its weights: set save_weights = true in \
             the sweep's [train] and run it again",
            chosen.len()
        );
    }
    let mut requests = Vec::with_capacity(chosen.len());
    for row in chosen.iter().filter(|r| r.weights_path.is_some()) {
        requests.push(WalkRequest {
            run_job_id: row.job_id,
            spec: spec_for(row, &template, &args.db.db)?,
        });
    }
    let (added, existing) = store.submit_walks(&requests, WALK_ATTEMPTS).await?;
    if !quiet {
        crate::say!(
            "sweep {sweep}: {} walk job(s) ({added} new, {existing} already there){}",
            requests.len(),
            if unsaved > 0 {
                format!("; {unsaved} chosen run(s) saved no weights and are left out")
            } else {
                String::new()
            }
        );
    }
    let Some(placements) = pool else {
        if !quiet {
            crate::say!(
                "queued; workers run them (`lifesweep resume {sweep} --db {}`, `lifesweep work`, or a Slurm array)",
                args.db.db
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let config = scheduler_config(
        &args.pool,
        placements,
        None,
        &args.db.db,
        &sweep,
        1,
        worker_log_args(quiet, verbose),
    )?;
    let stop = common::stop_on_signals()?;
    let outcome = run_pool(store, &config, quiet, stop).await?;
    let keys: Vec<_> = requests.iter().map(|r| r.spec.key()).collect();
    let walks: Vec<StoredWalk> = store
        .walks(Some(&sweep))
        .await?
        .into_iter()
        .filter(|w| keys.contains(&w.spec.key()))
        .collect();
    crate::out!("{}", walks_table(&walks).render(args.format.into())?);
    let hint = format!(
        "lifesweep walk --sweep {sweep} --db {} (walks already done are kept)",
        args.db.db
    );
    Ok(exit_code(&outcome, &hint))
}
