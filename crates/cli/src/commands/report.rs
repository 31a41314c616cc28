//! `lifesweep report`: a sweep's tables and figures as report.html (one self-contained file)
//! and report.md (with the figures written beside it).

use std::process::ExitCode;

use anyhow::Result;
use lifesweep_results::plot::figures;
use lifesweep_results::report::{Block, Report};
use lifesweep_results::{group_runs, groups_table, progress, Filter};
use lifesweep_store::{FailedJob, JobCounts};

use crate::cli::ReportArgs;
use crate::commands::plot::{create_dir, load_runs, write_figures, write_file, SweepRuns};
use crate::commands::results::parse_filters;
use crate::common;

const DEFINITIONS: &str = "A run succeeds when its network gets every cell of every evaluation board right \
(success_rate = 1). success_probability is the share of a grid point's runs (seeds) that succeeded, with \
its 95% Wilson score interval [ci_low, ci_high]; mean/min/max_success_rate are over the same runs. \
Runs without a result (failed, queued, running) are counted in the failed and pending columns and left \
out of every statistic and figure.";

fn counts(runs: &SweepRuns) -> JobCounts {
    let mut counts = JobCounts::default();
    for row in &runs.rows {
        match row.state.as_str() {
            "queued" => counts.queued += 1,
            "running" => counts.running += 1,
            "done" => counts.done += 1,
            "failed" => counts.failed += 1,
            _ => counts.cancelled += 1,
        }
    }
    counts
}

fn build(
    runs: &SweepRuns,
    filters: &[Filter],
) -> Result<(Report, Vec<lifesweep_results::plot::Figure>)> {
    let c = counts(runs);
    let mut blocks = Vec::new();
    if !runs.description.is_empty() {
        blocks.push(Block::Paragraph(runs.description.clone()));
    }
    let mut summary = format!(
        "{} jobs: {} done, {} failed, {} running, {} queued, {} cancelled.",
        c.total(),
        c.done,
        c.failed,
        c.running,
        c.queued,
        c.cancelled
    );
    if !filters.is_empty() {
        let wanted: Vec<String> = filters.iter().map(ToString::to_string).collect();
        summary.push_str(&format!(" Only runs with {}.", wanted.join(", ")));
    }
    blocks.push(Block::Paragraph(summary));
    blocks.push(Block::Heading("Success by grid point".into()));
    blocks.push(Block::Paragraph(DEFINITIONS.into()));
    let groups = group_runs(&runs.rows, &runs.group_keys)?;
    blocks.push(Block::Table(groups_table(&groups, &runs.group_keys)));

    let figures = figures(&runs.rows, &runs.panel_keys())?;
    blocks.push(Block::Heading("Figures".into()));
    for figure in &figures {
        let chart = &figure.chart;
        let caption = if chart.subtitle.is_empty() {
            chart.title.clone()
        } else {
            format!("{} ({})", chart.title, chart.subtitle)
        };
        blocks.push(Block::Figure {
            name: chart.name.clone(),
            caption,
            svg: figure.svg.clone(),
        });
    }

    let failures: Vec<FailedJob> = runs
        .rows
        .iter()
        .filter(|r| r.state == "failed")
        .map(|r| FailedJob {
            job_id: r.job_id,
            sweep: r.sweep.clone(),
            key: r.key.clone(),
            params: r.params.clone(),
            attempts: r.attempts,
            error: r.error.clone().unwrap_or_default(),
        })
        .collect();
    if !failures.is_empty() {
        blocks.push(Block::Heading(format!("Failed jobs ({})", failures.len())));
        let p = progress(&runs.sweep, c, 0, 1.0, failures);
        blocks.push(Block::Table(p.failures_table(&runs.axes, None)));
    }
    blocks.push(Block::Paragraph(format!(
        "Written by lifesweep {} (`lifesweep report`).",
        env!("CARGO_PKG_VERSION")
    )));
    Ok((
        Report {
            title: format!("Sweep {}", runs.sweep),
            blocks,
        },
        figures,
    ))
}

pub fn report(args: ReportArgs, quiet: bool) -> Result<ExitCode> {
    let filters = parse_filters(&args.filters)?;
    let runtime = common::runtime()?;
    let runs = runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        load_runs(&store, args.sweep.as_deref(), &filters).await
    })?;
    let (report, figures) = build(&runs, &filters)?;
    create_dir(&args.out)?;
    let written = write_figures(&args.out, &figures)?;
    let html = args.out.join("report.html");
    write_file(&html, report.render_html().as_bytes())?;
    let markdown = args.out.join("report.md");
    write_file(&markdown, report.render_markdown().as_bytes())?;
    if !quiet {
        crate::outln!(
            "sweep {}: {} and {} (with {} figure files) in {}",
            runs.sweep,
            html.display(),
            markdown.display(),
            written.len(),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
