//! `lifesweep plot`: the sweep's figures as SVG and PNG files in a directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use lifesweep_results::plot::{figures, Figure};
use lifesweep_results::Filter;
use lifesweep_store::{RunRow, Store};

use crate::cli::PlotArgs;
use crate::commands::results::{parse_filters, passes};
use crate::common;

/// A sweep's runs, kept by `--where`, with what names its grid points.
pub(crate) struct SweepRuns {
    pub sweep: String,
    pub description: String,
    /// The sweep's axes (parameter order, seed last).
    pub axes: Vec<String>,
    /// The parameters that name a grid point (every axis but seed, and steps, m_factor,
    /// d_factor, activation always).
    pub group_keys: Vec<String>,
    pub rows: Vec<RunRow>,
}

impl SweepRuns {
    /// The parameters that split the figures into one file each: the grid-point keys but
    /// steps and m_factor, which are drawn.
    pub fn panel_keys(&self) -> Vec<String> {
        self.group_keys
            .iter()
            .filter(|k| *k != "steps" && *k != "m_factor")
            .cloned()
            .collect()
    }
}

/// Reads the runs of `sweep` (or of the only sweep) that pass `filters`; an error when
/// filters leave none.
pub(crate) async fn load_runs(
    store: &Store,
    sweep: Option<&str>,
    filters: &[Filter],
) -> Result<SweepRuns> {
    let sweep = store.resolve_sweep(sweep).await?;
    let info = store.sweeps().await?.into_iter().find(|s| s.name == sweep);
    let (description, axes) = info.map(|s| (s.description, s.axes)).unwrap_or_default();
    let mut rows = store.runs(Some(&sweep)).await?;
    let total = rows.len();
    rows.retain(|row| passes(row, filters));
    if rows.is_empty() && total > 0 {
        let wanted: Vec<String> = filters.iter().map(ToString::to_string).collect();
        bail!(
            "no job of sweep {sweep:?} matches --where {}; `lifesweep results --runs` lists its parameters",
            wanted.join(" --where ")
        );
    }
    Ok(SweepRuns {
        group_keys: lifesweep_spec::group_keys_for(&axes),
        sweep,
        description,
        axes,
        rows,
    })
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .with_context(|| format!("{}: cannot write the file", path.display()))
}

pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the output directory", dir.display()))
}

/// Writes `{name}.svg` and `{name}.png` of each figure into `dir`; returns the paths.
pub(crate) fn write_figures(dir: &Path, figures: &[Figure]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::with_capacity(figures.len() * 2);
    for figure in figures {
        let svg = dir.join(format!("{}.svg", figure.chart.name));
        write_file(&svg, figure.svg.as_bytes())?;
        let png = dir.join(format!("{}.png", figure.chart.name));
        write_file(&png, &figure.png)?;
        written.extend([svg, png]);
    }
    Ok(written)
}

pub fn plot(args: PlotArgs, quiet: bool) -> Result<ExitCode> {
    let filters = parse_filters(&args.filters)?;
    let runtime = common::runtime()?;
    if args.walks {
        return plot_walks(&args, &filters, &runtime, quiet);
    }
    let runs = runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        load_runs(&store, args.sweep.as_deref(), &filters).await
    })?;
    let figures = figures(&runs.rows, &runs.panel_keys())?;
    write_and_list(
        &args.out,
        &figures,
        &format!("sweep {}:", runs.sweep),
        quiet,
    )
}

/// Writes the figures into `out` (created) and, unless quiet, lists the files under a line
/// that starts with `what`.
fn write_and_list(out: &Path, figures: &[Figure], what: &str, quiet: bool) -> Result<ExitCode> {
    create_dir(out)?;
    let written = write_figures(out, figures)?;
    if !quiet {
        crate::outln!(
            "{what} {} figures ({} files) in {}",
            figures.len(),
            written.len(),
            out.display()
        );
        for path in &written {
            crate::outln!("  {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `plot --walks`: the finished walks of the sweep (of runs that pass `--where`).
fn plot_walks(
    args: &PlotArgs,
    filters: &[lifesweep_results::Filter],
    runtime: &tokio::runtime::Runtime,
    quiet: bool,
) -> Result<ExitCode> {
    let (sweep, walks) = runtime.block_on(async {
        let store = common::open_existing_store(&args.db.db).await?;
        let sweep = store.resolve_sweep(args.sweep.as_deref()).await?;
        let walks = store.walks(Some(&sweep)).await?;
        anyhow::Ok((sweep, walks))
    })?;
    let walks: Vec<_> = walks
        .into_iter()
        .filter(|w| !w.points.is_empty())
        .filter(|w| {
            let params = lifesweep_results::params_map(&w.params);
            filters.iter().all(|f| f.matches(&params))
        })
        .collect();
    if walks.is_empty() {
        bail!(
            "sweep {sweep:?} has no finished loss walk{} to draw; `lifesweep walk RUN` or \
             `lifesweep walk --sweep {sweep}` makes them",
            if filters.is_empty() {
                ""
            } else {
                " matching --where"
            }
        );
    }
    let figures = lifesweep_results::walks::walk_figures(&walks)?;
    let what = format!("sweep {sweep}: {} walk(s) in", walks.len());
    write_and_list(&args.out, &figures, &what, quiet)
}
