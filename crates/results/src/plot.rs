//! The seed's figures, drawn with plotters: success probability against width with Wilson
//! intervals, mean success rate against width, and mean loss curves, one figure per
//! combination of the sweep's other axes ("panel").
//!
//! Building a figure is split in two: [`sweep_charts`] turns runs into [`Chart`]s (plain data:
//! series of points, `None` where a value is absent), and [`render_svg`] / [`render_png`] draw
//! a chart. Nothing here touches the file system: the caller writes the bytes. PNG text is
//! drawn with a font compiled into the binary, so no system font library is needed.

use std::collections::BTreeMap;
use std::sync::Once;

use lifesweep_store::RunRow;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use crate::{group_runs, params_map, GroupStats, ResultsError};

/// DejaVu Sans cut down to Latin-1 (see `fonts/LICENSE-DejaVu.txt`), registered as plotters'
/// "sans-serif" so that the bitmap backend can draw text. SVG files name the family and leave
/// the glyphs to the viewer.
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans-LatinSubset.ttf");
const FAMILY: &str = "sans-serif";

/// Pixel size of a figure with one plot; a figure of facets grows by [`FACET_HEIGHT`] a row.
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 620;
const FACET_HEIGHT: u32 = 330;
/// Facets per row, at most.
const FACET_COLUMNS: usize = 3;

/// Columns of a grid of `n` facets.
fn facet_columns(n: usize) -> usize {
    n.clamp(1, FACET_COLUMNS)
}
/// The strip on the right that holds the legend.
const LEGEND_WIDTH: u32 = 210;
const LEGEND_ROW: i32 = 22;

/// Tableau 10: distinct, colour-blind-friendlier than plotters' default palette.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    if i < COLOURS.len() {
        COLOURS[i]
    } else {
        let c = Palette99::pick(i).to_rgba();
        RGBColor(c.0, c.1, c.2)
    }
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The small plot the line is drawn in (e.g. `steps = 2`); empty when the chart has one.
    pub facet: String,
    /// The legend entry; lines of one label have one colour in every facet.
    pub label: String,
    /// In x order. `None` is an absent value (no finished run, or not a finite number): it is
    /// not drawn, and the line breaks there.
    pub points: Vec<(f64, Option<f64>)>,
    /// Vertical error bars `(x, low, centre, high)`.
    pub error_bars: Vec<(f64, f64, f64, f64)>,
}

impl Series {
    /// The runs of consecutive present points, each drawn as one line.
    fn segments(&self) -> Vec<Vec<(f64, f64)>> {
        let mut segments = vec![Vec::new()];
        for &(x, y) in &self.points {
            match y {
                Some(y) => segments.last_mut().map_or((), |s| s.push((x, y))),
                None => segments.push(Vec::new()),
            }
        }
        segments.retain(|s| !s.is_empty());
        segments
    }

    fn present(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points.iter().filter_map(|&(x, y)| y.map(|y| (x, y)))
    }
}

/// What a chart shows: data, labels and scales; drawn by [`render_svg`] and [`render_png`].
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// File stem, e.g. `success_probability` or `success_probability-d_factor-1.5`.
    pub name: String,
    pub title: String,
    /// The panel's fixed parameters, e.g. `d_factor = 1.5, activation = LeakyReLU`.
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub legend_title: String,
    pub x_log: bool,
    pub y_log: bool,
    /// A fixed y range; otherwise it is fitted to the data.
    pub y_range: Option<(f64, f64)>,
    /// Shift the series sideways a little so that error bars at one x do not hide each other.
    pub dodge: bool,
    /// Where a log x axis is labelled (e.g. the grid's widths); empty: chosen by plotters.
    pub x_ticks: Vec<f64>,
    pub series: Vec<Series>,
}

/// A chart drawn both ways.
#[derive(Debug, Clone)]
pub struct Figure {
    pub chart: Chart,
    pub svg: String,
    pub png: Vec<u8>,
}

/// Formats an axis value briefly: `5`, `0.25`, `1.5e-4`.
pub fn short_number(x: f64) -> String {
    if !x.is_finite() {
        return String::new();
    }
    if x == x.round() && x.abs() < 1e9 {
        return format!("{}", x as i64);
    }
    if x.abs() >= 1e-3 && x.abs() < 1e6 {
        let s = format!("{x:.3}");
        return s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let s = format!("{x:.1e}");
    s.replace(".0e", "e")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), short_number),
        other => other.to_string(),
    }
}

/// A file-name-safe rendering of a value.
fn file_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The runs sharing one combination of the panel keys' values.
struct Panel<'a> {
    values: Vec<Value>,
    rows: Vec<&'a RunRow>,
}

fn panels<'a>(rows: &'a [RunRow], keys: &[String]) -> Vec<Panel<'a>> {
    let mut panels: Vec<Panel<'a>> = Vec::new();
    for row in rows {
        let params = params_map(&row.params);
        let values: Vec<Value> = keys
            .iter()
            .map(|k| params.get(k).cloned().unwrap_or(Value::Null))
            .collect();
        match panels.iter_mut().find(|p| p.values == values) {
            Some(panel) => panel.rows.push(row),
            None => panels.push(Panel {
                values,
                rows: vec![row],
            }),
        }
    }
    panels
}

fn as_number(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn sorted_distinct(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// Whether values spanning `min..max` read better on a log axis.
fn wants_log(values: &[f64]) -> bool {
    match (values.first(), values.last()) {
        (Some(&lo), Some(&hi)) => lo > 0.0 && hi / lo >= 8.0,
        _ => false,
    }
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn steps_label(steps: f64) -> String {
    format!("steps = {}", short_number(steps))
}

/// The charts of a sweep: for each combination of the `panel_keys` values present in `rows`
/// (e.g. `d_factor`, `activation`), success probability and mean success rate against
/// `m_factor` with one line per `steps` value, and the mean loss curve of each grid point.
/// A key whose value is the same in every run names no file: with one panel the files are
/// just `success_probability`, `success_rate`, `loss_curves`.
pub fn sweep_charts(rows: &[RunRow], panel_keys: &[String]) -> Result<Vec<Chart>, ResultsError> {
    let panel_keys: Vec<String> = panel_keys
        .iter()
        .filter(|k| *k != "steps" && *k != "m_factor" && *k != "seed")
        .cloned()
        .collect();
    let panels = panels(rows, &panel_keys);
    // Keys that differ between panels name the files.
    let varying: Vec<usize> = (0..panel_keys.len())
        .filter(|&i| {
            panels
                .iter()
                .any(|p| p.values.get(i) != panels[0].values.get(i))
        })
        .collect();
    let mut charts = Vec::new();
    for panel in &panels {
        let suffix: String = varying
            .iter()
            .map(|&i| {
                format!(
                    "-{}-{}",
                    panel_keys[i],
                    file_part(&value_text(&panel.values[i]))
                )
            })
            .collect();
        let subtitle = panel_keys
            .iter()
            .zip(&panel.values)
            .map(|(k, v)| format!("{k} = {}", value_text(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let owned: Vec<RunRow> = panel.rows.iter().map(|r| (*r).clone()).collect();
        let by_point = group_runs(&owned, &["steps".to_string(), "m_factor".to_string()])?;
        charts.push(success_probability_chart(&by_point, &suffix, &subtitle));
        charts.push(success_rate_chart(&by_point, &suffix, &subtitle));
        charts.push(loss_chart(&panel.rows, &suffix, &subtitle));
    }
    Ok(charts)
}

/// One series per steps value over the union of m_factor values; `value` picks the y.
fn per_steps_series(
    groups: &[GroupStats],
    value: impl Fn(&GroupStats) -> Option<f64>,
    with_intervals: bool,
) -> Vec<Series> {
    let key = |g: &GroupStats, i: usize| g.key.get(i).and_then(as_number);
    let steps = sorted_distinct(groups.iter().filter_map(|g| key(g, 0)));
    let widths = sorted_distinct(groups.iter().filter_map(|g| key(g, 1)));
    steps
        .iter()
        .map(|&s| {
            let mut points = Vec::with_capacity(widths.len());
            let mut error_bars = Vec::new();
            for &m in &widths {
                let group = groups
                    .iter()
                    .find(|g| key(g, 0) == Some(s) && key(g, 1) == Some(m));
                let y = group.and_then(|g| finite(value(g)));
                points.push((m, y));
                if let (true, Some(g), Some(y)) = (with_intervals, group, y) {
                    if let (Some(lo), Some(hi)) = (finite(g.ci_low), finite(g.ci_high)) {
                        error_bars.push((m, lo, y, hi));
                    }
                }
            }
            Series {
                facet: String::new(),
                label: steps_label(s),
                points,
                error_bars,
            }
        })
        .filter(|s| s.present().next().is_some())
        .collect()
}

/// The m_factor values of the grid points (key `[steps, m_factor]`), in order.
fn widths(groups: &[GroupStats]) -> Vec<f64> {
    sorted_distinct(
        groups
            .iter()
            .filter_map(|g| g.key.get(1).and_then(as_number)),
    )
}

fn widths_are_log(groups: &[GroupStats]) -> bool {
    wants_log(&widths(groups))
}

fn success_probability_chart(groups: &[GroupStats], suffix: &str, subtitle: &str) -> Chart {
    Chart {
        name: format!("success_probability{suffix}"),
        title: "Training success probability vs width".into(),
        subtitle: subtitle.to_string(),
        x_label: "m_factor (width multiplier)".into(),
        y_label: "P(success) with 95% Wilson interval".into(),
        legend_title: "Life steps".into(),
        x_log: widths_are_log(groups),
        y_log: false,
        y_range: Some((-0.03, 1.03)),
        dodge: true,
        x_ticks: widths(groups),
        series: per_steps_series(groups, |g| g.success_probability, true),
    }
}

fn success_rate_chart(groups: &[GroupStats], suffix: &str, subtitle: &str) -> Chart {
    Chart {
        name: format!("success_rate{suffix}"),
        title: "Mean success rate (boards right) vs width".into(),
        subtitle: subtitle.to_string(),
        x_label: "m_factor (width multiplier)".into(),
        y_label: "mean success rate over seeds".into(),
        legend_title: "Life steps".into(),
        x_log: widths_are_log(groups),
        y_log: false,
        y_range: Some((-0.03, 1.03)),
        dodge: false,
        x_ticks: widths(groups),
        series: per_steps_series(groups, |g| g.mean_success_rate, false),
    }
}

/// The mean over a grid point's runs of the loss at each recorded batch (finite losses only).
fn mean_curve(rows: &[&RunRow]) -> Vec<(f64, Option<f64>)> {
    let mut sums: BTreeMap<u32, (f64, u32)> = BTreeMap::new();
    let mut batches: Vec<u32> = Vec::new();
    for m in rows.iter().filter_map(|r| r.metrics.as_ref()) {
        for p in &m.loss_curve {
            batches.push(p.batch);
            if p.loss.is_finite() {
                let e = sums.entry(p.batch).or_insert((0.0, 0));
                e.0 += p.loss;
                e.1 += 1;
            }
        }
    }
    batches.sort_unstable();
    batches.dedup();
    batches
        .into_iter()
        .map(|b| {
            (
                f64::from(b),
                sums.get(&b).map(|&(sum, n)| sum / f64::from(n)),
            )
        })
        .collect()
}

fn loss_chart(rows: &[&RunRow], suffix: &str, subtitle: &str) -> Chart {
    // Grid points (steps, m_factor) in numeric order.
    let mut points: BTreeMap<(u64, u64), Vec<&RunRow>> = BTreeMap::new();
    for row in rows {
        let key = (
            f64::from(row.params.steps).to_bits(),
            f64::from(row.params.m_factor).to_bits(),
        );
        points.entry(key).or_default().push(row);
    }
    let mut series: Vec<Series> = points
        .iter()
        .map(|(&(s, m), runs)| Series {
            facet: steps_label(f64::from_bits(s)),
            label: format!("m_factor = {}", short_number(f64::from_bits(m))),
            points: mean_curve(runs),
            error_bars: Vec::new(),
        })
        .filter(|s| s.present().next().is_some())
        .collect();
    let losses: Vec<f64> = sorted_distinct(series.iter().flat_map(|s| s.present().map(|(_, y)| y)));
    let y_log = wants_log(&losses) && losses.first().is_some_and(|&lo| lo > 0.0);
    if y_log {
        // A log axis cannot show a loss of 0: such a point is absent there.
        for s in &mut series {
            for p in &mut s.points {
                p.1 = p.1.filter(|&y| y > 0.0);
            }
        }
    }
    Chart {
        name: format!("loss_curves{suffix}"),
        title: "Mean training loss per grid point, by Life steps".into(),
        subtitle: subtitle.to_string(),
        x_label: "batch".into(),
        y_label: "mean training loss over seeds".into(),
        legend_title: "width".into(),
        x_log: false,
        y_log,
        y_range: None,
        dodge: false,
        x_ticks: Vec::new(),
        series,
    }
}

/// A range around `values` with some room, on a linear or log axis.
fn fit_range(values: &[f64], log: bool, floor_at_zero: bool) -> (f64, f64) {
    let values: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .collect();
    let lo = values.iter().copied().reduce(f64::min);
    let hi = values.iter().copied().reduce(f64::max);
    match (lo, hi) {
        (Some(lo), Some(hi)) if log => (lo / 1.25, hi * 1.25),
        (Some(lo), Some(hi)) => {
            let pad = if hi > lo {
                (hi - lo) * 0.05
            } else {
                lo.abs().max(1.0) * 0.5
            };
            let low = if floor_at_zero && lo >= 0.0 && lo - pad < 0.0 {
                0.0
            } else {
                lo - pad
            };
            (low, hi + pad)
        }
        _ if log => (1.0, 10.0),
        _ => (0.0, 1.0),
    }
}

impl Chart {
    /// The facets in order of first appearance (one, unnamed, for a plain chart).
    pub fn facets(&self) -> Vec<&str> {
        let mut facets: Vec<&str> = Vec::new();
        for s in &self.series {
            if !facets.contains(&s.facet.as_str()) {
                facets.push(&s.facet);
            }
        }
        facets
    }

    /// The legend entries in order of first appearance.
    pub fn legend(&self) -> Vec<&str> {
        let mut labels: Vec<&str> = Vec::new();
        for s in &self.series {
            if !labels.contains(&s.label.as_str()) {
                labels.push(&s.label);
            }
        }
        labels
    }

    fn colour_of(&self, label: &str) -> RGBColor {
        colour(self.legend().iter().position(|l| *l == label).unwrap_or(0))
    }

    /// The figure's size in pixels.
    pub fn size(&self) -> (u32, u32) {
        let facets = self.facets().len();
        if facets <= 1 {
            (WIDTH, HEIGHT)
        } else {
            let rows = facets.div_ceil(facet_columns(facets)) as u32;
            (WIDTH, 90 + rows * FACET_HEIGHT)
        }
    }

    fn x_range(&self) -> (f64, f64) {
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        fit_range(&xs, self.x_log, false)
    }

    fn y_range(&self) -> (f64, f64) {
        self.y_range.unwrap_or_else(|| {
            let ys: Vec<f64> = self
                .series
                .iter()
                .flat_map(|s| {
                    s.present()
                        .map(|p| p.1)
                        .chain(s.error_bars.iter().flat_map(|e| [e.1, e.3]))
                })
                .collect();
            fit_range(&ys, self.y_log, true)
        })
    }

    /// The sideways shift of series `i` of `n` in a facet, as a function of x.
    fn dodge(&self, i: usize, n: usize, x_range: (f64, f64)) -> impl Fn(f64) -> f64 {
        let step = if self.dodge && n > 1 {
            0.007 * (i as f64 - (n as f64 - 1.0) / 2.0)
        } else {
            0.0
        };
        let log = self.x_log;
        let span = if log {
            (x_range.1 / x_range.0).log10()
        } else {
            x_range.1 - x_range.0
        };
        move |x| {
            if log {
                x * 10f64.powf(step * span)
            } else {
                x + step * span
            }
        }
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure shows up as a drawing error.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn draw_error(what: &'static str) -> impl Fn(String) -> ResultsError {
    move |message| ResultsError::Render {
        format: what,
        message,
    }
}

/// The chart as an SVG document.
pub fn render_svg(chart: &Chart) -> Result<String, ResultsError> {
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, chart.size()).into_drawing_area();
        draw(&root, chart).map_err(draw_error("svg"))?;
        root.present()
            .map_err(|e| draw_error("svg")(e.to_string()))?;
    }
    Ok(svg)
}

/// The chart as a PNG file's bytes (8-bit RGB).
pub fn render_png(chart: &Chart) -> Result<Vec<u8>, ResultsError> {
    register_font();
    let (width, height) = chart.size();
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root, chart).map_err(draw_error("png"))?;
        root.present()
            .map_err(|e| draw_error("png")(e.to_string()))?;
    }
    let png_error = |e: png::EncodingError| ResultsError::Render {
        format: "png",
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&pixels).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
    }
    Ok(bytes)
}

/// Every chart of [`sweep_charts`], drawn as SVG and PNG.
pub fn figures(rows: &[RunRow], panel_keys: &[String]) -> Result<Vec<Figure>, ResultsError> {
    draw_figures(sweep_charts(rows, panel_keys)?)
}

/// Charts drawn as SVG and PNG.
pub fn draw_figures(charts: Vec<Chart>) -> Result<Vec<Figure>, ResultsError> {
    charts
        .into_iter()
        .map(|chart| {
            Ok(Figure {
                svg: render_svg(&chart)?,
                png: render_png(&chart)?,
                chart,
            })
        })
        .collect()
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let title_font = (FAMILY, 24).into_font().style(FontStyle::Bold);
    let body = root.titled(&chart.title, title_font).map_err(e)?;
    let (width, _) = body.dim_in_pixel();
    let (plot, legend) = body.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let plot = if chart.subtitle.is_empty() {
        plot
    } else {
        plot.titled(&chart.subtitle, (FAMILY, 16)).map_err(e)?
    };
    let facets = chart.facets();
    let areas = if facets.len() <= 1 {
        vec![plot]
    } else {
        let columns = facet_columns(facets.len());
        plot.split_evenly((facets.len().div_ceil(columns), columns))
    };
    let (x0, x1) = chart.x_range();
    let (y0, y1) = chart.y_range();
    for (index, area) in areas.iter().enumerate() {
        let Some(facet) = facets
            .get(index)
            .copied()
            .or(if index == 0 { Some("") } else { None })
        else {
            break;
        };
        let plot = FacetPlot {
            chart,
            facet,
            // Axis titles once: x under the bottom plot of each column, y left of each row.
            x_desc: index + facet_columns(facets.len()) >= facets.len(),
            y_desc: index % facet_columns(facets.len()) == 0,
        };
        // Each scale is its own type in plotters: one call per combination.
        macro_rules! with_y {
            ($x:expr) => {
                if chart.y_log {
                    plot.draw(area, $x, (y0..y1).log_scale())
                } else {
                    plot.draw(area, $x, y0..y1)
                }
            };
        }
        // plotters' linear f64 axis cannot take given key points; it picks good ones itself.
        if !chart.x_log {
            with_y!(x0..x1)
        } else if chart.x_ticks.is_empty() {
            with_y!((x0..x1).log_scale())
        } else {
            with_y!((x0..x1).log_scale().with_key_points(chart.x_ticks.clone()))
        }?;
    }
    draw_legend(&legend, chart)
}

/// One plot of a chart: the series of one facet.
struct FacetPlot<'a> {
    chart: &'a Chart,
    facet: &'a str,
    x_desc: bool,
    y_desc: bool,
}

impl FacetPlot<'_> {
    fn draw<DB, XR, YR>(&self, area: &DrawingArea<DB, Shift>, x: XR, y: YR) -> Result<(), String>
    where
        DB: DrawingBackend,
        XR: AsRangedCoord<Value = f64>,
        YR: AsRangedCoord<Value = f64>,
        XR::CoordDescType: ValueFormatter<f64>,
        YR::CoordDescType: ValueFormatter<f64>,
    {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let chart = self.chart;
        let faceted = !self.facet.is_empty();
        let x_range = chart.x_range();
        let mut builder = ChartBuilder::on(area);
        builder
            .margin(10)
            .x_label_area_size(if self.x_desc { 52 } else { 30 })
            .y_label_area_size(if self.y_desc { 76 } else { 52 });
        if faceted {
            builder.caption(self.facet, (FAMILY, 15));
        }
        let mut ctx = builder.build_cartesian_2d(x, y).map_err(e)?;
        let format = |v: &f64| short_number(*v);
        let mut mesh = ctx.configure_mesh();
        mesh.label_style((FAMILY, if faceted { 13 } else { 15 }))
            // a facet's axis title has a third of the width: keep it to its plot
            .axis_desc_style((FAMILY, if faceted { 14 } else { 16 }))
            .x_labels(if faceted { 6 } else { 12 })
            .x_label_formatter(&format)
            .y_label_formatter(&format)
            .light_line_style(RGBColor(0, 0, 0).mix(0.04))
            .bold_line_style(RGBColor(0, 0, 0).mix(0.12));
        if self.x_desc {
            mesh.x_desc(chart.x_label.as_str());
        }
        if self.y_desc {
            mesh.y_desc(chart.y_label.as_str());
        }
        mesh.draw().map_err(e)?;
        let series: Vec<&Series> = chart
            .series
            .iter()
            .filter(|s| s.facet == self.facet)
            .collect();
        if series.is_empty() {
            let (w, h) = area.dim_in_pixel();
            let style = (FAMILY, 20)
                .into_font()
                .color(&RGBColor(120, 120, 120))
                .pos(Pos::new(HPos::Center, VPos::Center));
            area.draw(&Text::new(
                "no finished runs yet",
                (w as i32 / 2, h as i32 / 2),
                style,
            ))
            .map_err(e)?;
            return Ok(());
        }
        for (i, s) in series.iter().enumerate() {
            let c = chart.colour_of(&s.label);
            let shift = chart.dodge(i, series.len(), x_range);
            for segment in s.segments() {
                ctx.draw_series(LineSeries::new(
                    segment.iter().map(|&(x, y)| (shift(x), y)),
                    c.stroke_width(2),
                ))
                .map_err(e)?;
            }
            ctx.draw_series(s.error_bars.iter().map(|&(x, lo, mid, hi)| {
                ErrorBar::new_vertical(shift(x), lo, mid, hi, c.stroke_width(2), 10)
            }))
            .map_err(e)?;
            let marker = if s.points.len() > 40 {
                0
            } else if faceted {
                3
            } else {
                4
            };
            if marker > 0 {
                ctx.draw_series(
                    s.present()
                        .map(|(x, y)| Circle::new((shift(x), y), marker, c.filled())),
                )
                .map_err(e)?;
            }
        }
        Ok(())
    }
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (_, height) = area.dim_in_pixel();
    let left = Pos::new(HPos::Left, VPos::Center);
    let text = |size| (FAMILY, size).into_font().color(&BLACK).pos(left);
    let mut y = 70;
    let title_style = (FAMILY, 16)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK)
        .pos(left);
    area.draw(&Text::new(
        chart.legend_title.as_str(),
        (12, y),
        title_style,
    ))
    .map_err(e)?;
    let labels = chart.legend();
    let fits = ((height as i32 - y - 2 * LEGEND_ROW) / LEGEND_ROW).max(1) as usize;
    let shown = if labels.len() > fits {
        fits - 1
    } else {
        labels.len()
    };
    for (i, label) in labels.iter().enumerate().take(shown) {
        y += LEGEND_ROW;
        let c = colour(i);
        area.draw(&PathElement::new(vec![(12, y), (44, y)], c.stroke_width(2)))
            .map_err(e)?;
        area.draw(&Circle::new((28, y), 4, c.filled())).map_err(e)?;
        area.draw(&Text::new(*label, (52, y), text(14)))
            .map_err(e)?;
    }
    if shown < labels.len() {
        y += LEGEND_ROW;
        let more = format!("... and {} more", labels.len() - shown);
        area.draw(&Text::new(more, (12, y), text(14))).map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifesweep_spec::{JobKey, LossPoint, RunMetrics, TrainParams};

    pub(crate) fn run(steps: u32, m_factor: u32, seed: u64, rate: Option<f64>) -> RunRow {
        let params = TrainParams {
            steps,
            m_factor,
            seed,
            ..TrainParams::default()
        };
        RunRow {
            job_id: 0,
            sweep: "s".into(),
            key: JobKey(format!("{steps}-{m_factor}-{seed}")),
            params,
            state: if rate.is_some() { "done" } else { "queued" }.into(),
            attempts: u32::from(rate.is_some()),
            error: None,
            metrics: rate.map(|r| RunMetrics {
                success_rate: r,
                training_success: r == 1.0,
                cell_accuracy: 0.9,
                final_loss: 0.1,
                loss_curve: vec![
                    LossPoint {
                        batch: 10,
                        loss: 0.5,
                    },
                    LossPoint {
                        batch: 20,
                        loss: 0.05 * f64::from(m_factor),
                    },
                ],
                param_count: 10,
                wall_seconds: 1.0,
                device: "cpu".into(),
            }),
            started_at: None,
            finished_at: None,
            worker_id: None,
            weights_path: None,
        }
    }

    fn fixture() -> Vec<RunRow> {
        vec![
            run(1, 1, 1, Some(1.0)),
            run(1, 1, 2, Some(0.5)),
            run(1, 2, 1, Some(1.0)),
            run(1, 4, 1, Some(1.0)),
            // steps 2 at m_factor 2: not finished, so absent rather than 0.
            run(2, 1, 1, Some(0.0)),
            run(2, 2, 1, None),
            run(2, 4, 1, Some(1.0)),
        ]
    }

    #[test]
    fn absent_values_are_left_out_not_zero() {
        let charts = sweep_charts(&fixture(), &["d_factor".to_string()]).unwrap();
        let names: Vec<&str> = charts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["success_probability", "success_rate", "loss_curves"]
        );
        let p = &charts[0];
        assert_eq!(p.subtitle, "d_factor = 1");
        assert_eq!(p.series[0].label, "steps = 1");
        assert_eq!(
            p.series[0].points,
            vec![(1.0, Some(0.5)), (2.0, Some(1.0)), (4.0, Some(1.0))]
        );
        assert_eq!(
            p.series[1].points,
            vec![(1.0, Some(0.0)), (2.0, None), (4.0, Some(1.0))]
        );
        assert_eq!(
            p.series[1].segments(),
            vec![vec![(1.0, 0.0)], vec![(4.0, 1.0)]]
        );
        // Wilson interval of 1/2 around 0.5; of 0/1 and 1/1 at the ends.
        let (x, lo, mid, hi) = p.series[0].error_bars[0];
        assert_eq!((x, mid), (1.0, 0.5));
        assert!(
            (lo - 0.0945).abs() < 1e-3 && (hi - 0.9055).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(p.series[1].error_bars.len(), 2);
        let rate = &charts[1];
        assert_eq!(rate.series[0].points[0], (1.0, Some(0.75)));
        let loss = &charts[2];
        assert_eq!(loss.facets(), ["steps = 1", "steps = 2"]);
        assert_eq!(
            loss.legend(),
            ["m_factor = 1", "m_factor = 2", "m_factor = 4"]
        );
        assert_eq!(
            loss.series.len(),
            5,
            "one curve per grid point with a finished run"
        );
        assert_eq!(loss.series[0].label, "m_factor = 1");
        assert_eq!(
            loss.series[0].points,
            vec![(10.0, Some(0.5)), (20.0, Some(0.05))]
        );
    }

    #[test]
    fn one_file_per_value_of_a_varying_panel_key() {
        let mut rows = fixture();
        for r in rows.iter_mut().skip(4) {
            r.params.d_factor = 1.5;
        }
        let charts =
            sweep_charts(&rows, &["d_factor".to_string(), "activation".to_string()]).unwrap();
        let names: Vec<&str> = charts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "success_probability-d_factor-1",
                "success_rate-d_factor-1",
                "loss_curves-d_factor-1",
                "success_probability-d_factor-1.5",
                "success_rate-d_factor-1.5",
                "loss_curves-d_factor-1.5",
            ]
        );
        assert_eq!(charts[3].subtitle, "d_factor = 1.5, activation = ReLU");
    }

    #[test]
    fn svg_is_an_svg_document_with_labels() {
        let charts = sweep_charts(&fixture(), &[]).unwrap();
        for chart in &charts {
            let svg = render_svg(chart).unwrap();
            let doc = roxmltree::Document::parse(&svg).unwrap();
            assert_eq!(doc.root_element().tag_name().name(), "svg");
            let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
            assert!(
                texts.iter().any(|t| t.contains(&chart.x_label)),
                "{} lacks its x label",
                chart.name
            );
            assert!(
                texts.iter().any(|t| t.contains(&chart.series[0].label)),
                "{} lacks its legend",
                chart.name
            );
        }
    }

    #[test]
    fn png_decodes_to_the_figure_size_and_has_text() {
        let charts = sweep_charts(&fixture(), &[]).unwrap();
        let bytes = render_png(&charts[0]).unwrap();
        let mut reader = png::Decoder::new(bytes.as_slice()).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        // The title is drawn: some dark pixels in the top band (it would be blank without a font).
        let row = (info.width * 3) as usize;
        let dark = pixels[..row * 30]
            .chunks(3)
            .filter(|p| p.iter().all(|&c| c < 80))
            .count();
        assert!(dark > 100, "title band has {dark} dark pixels");
    }

    #[test]
    fn an_empty_panel_still_draws() {
        let rows = vec![run(1, 1, 1, None)];
        let charts = sweep_charts(&rows, &[]).unwrap();
        assert!(charts.iter().all(|c| c.series.is_empty()));
        let svg = render_svg(&charts[0]).unwrap();
        assert!(svg.contains("no finished runs yet"));
        assert!(!render_png(&charts[2]).unwrap().is_empty());
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short_number(5.0), "5");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(1.5), "1.5");
        assert_eq!(short_number(0.00015), "1.5e-4");
        assert_eq!(short_number(0.1234567), "0.123");
    }
}
