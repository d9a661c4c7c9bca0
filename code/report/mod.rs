//! Experiment results: a [`Report`] is written as deterministic JSON, and every table and
//! figure in the book is rendered **from that JSON only**.
//!
//! The split matters. Running an experiment is slow and its last bits depend on the
//! machine (BLAS kernels, thread counts); rendering is fast and exact. So `dlbook regen`
//! runs experiments and writes `chapters/generated/chNN/<experiment>.json`, then renders
//! `<experiment>.md` (tables and inline facts, each between `ANCHOR` comments so a chapter
//! can include one of them) and `<experiment>-<figure>.svg`. The integrity test and
//! `dlbook regen --check` re-render from the JSON and compare bytes, so a number edited
//! by hand in a generated file is caught.
//!
//! Determinism: object keys are sorted, floats are rounded to
//! [`SIGNIFICANT_DIGITS`] significant digits before they are stored, there are no
//! timestamps, host names or paths, and figures are SVG with integer coordinates.
//!
//! A metric measured over several seeds is stored with all its values; tables show it as
//! mean ± sample standard deviation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub mod contour;
pub mod graph;

/// Floats are rounded to this many significant digits before they are stored, which
/// keeps the JSON readable and its diffs free of last-bit noise.
pub const SIGNIFICANT_DIGITS: i32 = 6;

/// The result of one experiment: everything the book shows about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// File stem and identifier, `snake_case` (e.g. `pca_mnist`).
    pub experiment: String,
    /// The chapter whose `generated/` folder holds it (e.g. `ch01`).
    pub chapter: String,
    /// One line saying what was measured.
    pub title: String,
    /// The configuration that produced it, as serialised by the experiment.
    pub config: serde_json::Value,
    /// The seeds the metrics were measured over (empty for deterministic experiments).
    pub seeds: Vec<u64>,
    /// The data files read, with the sha256 they were verified against.
    pub data: Vec<DataRef>,
    /// Single numbers quoted inline in the prose, by name.
    pub facts: BTreeMap<String, Fact>,
    /// Tables, in the order the chapter shows them.
    pub tables: Vec<Table>,
    /// Figures, in the order the chapter shows them.
    pub figures: Vec<Figure>,
    /// For a committed full run: the fingerprint of the quick preset's outcome on the
    /// code that made it (see [`crate::experiments::check_fresh`]). Absent from quick
    /// runs and timing reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_fingerprint: Option<String>,
}

/// A data file an experiment read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataRef {
    /// Path relative to the data directory.
    pub file: String,
    /// Its sha256, as recorded in the data catalog.
    pub sha256: String,
}

/// How a number is printed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Fixed number of decimals.
    Fixed(u8),
    /// Multiplied by 100, fixed decimals, followed by ` %`.
    Percent(u8),
    /// Scientific notation with this many decimals in the mantissa (`1.23e-4`).
    Sci(u8),
    /// An integer (rounded).
    Int,
}

impl Format {
    /// Prints `x` in this format. Non-finite values print as `∞`, `-∞` or `NaN`.
    pub fn show(self, x: f64) -> String {
        if x.is_nan() {
            return "NaN".into();
        }
        if x.is_infinite() {
            return if x > 0.0 { "∞".into() } else { "-∞".into() };
        }
        let s = match self {
            Format::Fixed(d) => format!("{:.*}", d as usize, x),
            Format::Percent(d) => format!("{:.*} %", d as usize, 100.0 * x),
            Format::Sci(d) => format!("{:.*e}", d as usize, x),
            Format::Int => format!("{}", x.round() as i64),
        };
        // "-0.00" reads as a sign error; print it as "0.00".
        if s.starts_with('-')
            && s[1..].chars().all(|c| matches!(c, '0' | '.' | ' ' | '%'))
        {
            s[1..].to_string()
        } else {
            s
        }
    }
}

/// A value in a table cell or a fact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// Text, shown as is.
    Text(String),
    /// One number.
    Num(f64),
    /// One measurement per seed; shown as mean ± std.
    Seeds(Vec<f64>),
}

impl Value {
    /// Mean and sample standard deviation of a per-seed value (std 0 for one value).
    pub fn mean_std(values: &[f64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        (mean, var.sqrt())
    }

    /// Renders the value with `fmt` (ignored for text).
    pub fn show(&self, fmt: Format) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Num(x) => fmt.show(*x),
            Value::Seeds(v) if v.is_empty() => "–".into(),
            Value::Seeds(v) if v.len() == 1 => fmt.show(v[0]),
            Value::Seeds(v) => {
                let (m, s) = Self::mean_std(v);
                let (m, s) = (fmt.show(m), fmt.show(s));
                // "48.1 % ± 0.2 %" reads worse than "48.1 ± 0.2 %".
                match m.strip_suffix(" %") {
                    Some(m) => format!("{m} ± {s}"),
                    None => format!("{m} ± {s}"),
                }
            }
        }
    }

    /// The number this value stands for: itself, or the mean over seeds.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Text(_) => None,
            Value::Num(x) => Some(*x),
            Value::Seeds(v) if v.is_empty() => None,
            Value::Seeds(v) => Some(Self::mean_std(v).0),
        }
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Num(x)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

/// A single number quoted in prose (included inline from the generated `.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// The number (or per-seed numbers).
    pub value: Value,
    /// How it is printed.
    pub format: Format,
}

/// A table column: its header and number format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Header text.
    pub header: String,
    /// Format of the numbers in this column.
    pub format: Format,
}

/// A column with this header and number format.
pub fn col(header: &str, format: Format) -> Column {
    Column {
        header: header.into(),
        format,
    }
}

/// A table, rendered as a Markdown pipe table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Anchor name inside the generated `.md` (`snake_case`).
    pub name: String,
    /// Caption printed under the table.
    pub caption: String,
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows of cells, one per column.
    pub rows: Vec<Vec<Value>>,
}

/// One line of a line chart, optionally with a ± band (e.g. std over seeds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// x values.
    pub x: Vec<f64>,
    /// y values, one per x.
    pub y: Vec<f64>,
    /// Half-width of a shaded band around y, one per x.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<Vec<f64>>,
}

/// A group of points of a scatter plot, drawn in one colour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Legend entry.
    pub name: String,
    /// x coordinates.
    pub x: Vec<f64>,
    /// y coordinates.
    pub y: Vec<f64>,
}

/// Axis scale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Linear axis.
    #[default]
    Linear,
    /// Logarithmic axis (all values must be > 0).
    Log,
}

/// What a figure draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plot {
    /// Lines through (x, y) points.
    Lines {
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// x-axis scale.
        x_scale: Scale,
        /// y-axis scale.
        y_scale: Scale,
        /// The lines.
        series: Vec<Series>,
    },
    /// Points, one colour per group.
    Scatter {
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// The point groups.
        groups: Vec<Group>,
    },
    /// A scalar field over a grid with paths drawn on top (e.g. optimizer trajectories
    /// on a loss surface).
    Contour(contour::ContourPlot),
    /// A directed graph, e.g. a computational graph with values and gradients.
    Graph(graph::GraphPlot),
    /// A grid of grey-scale images (0 = white, 255 = black ink), e.g. digits.
    Images {
        /// Pixels per image row.
        width: usize,
        /// Pixels per image column.
        height: usize,
        /// Labels to the left of each grid row.
        row_labels: Vec<String>,
        /// Labels above each grid column.
        col_labels: Vec<String>,
        /// Images in row-major grid order, each `width * height` bytes.
        images: Vec<Vec<u8>>,
    },
    /// A matrix drawn as shaded cells with each value written in its cell, e.g. a
    /// confusion matrix.
    Heatmap {
        /// Label of the columns' axis (above the grid).
        x_label: String,
        /// Label of the rows' axis (left of the grid).
        y_label: String,
        /// One label per row.
        row_labels: Vec<String>,
        /// One label per column.
        col_labels: Vec<String>,
        /// The values, row by row; finite and non-negative.
        values: Vec<Vec<f64>>,
        /// Shade by $\log(1 + v)$ instead of $v$, so that small entries next to large
        /// ones (the errors next to a confusion matrix's diagonal) stay visible.
        log_shade: bool,
        /// Digits after the point in the cells (0 for counts).
        decimals: usize,
    },
}

/// A figure: rendered to `<experiment>-<name>.svg`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// File-name suffix (`snake_case`).
    pub name: String,
    /// Title drawn above the plot.
    pub title: String,
    /// What to draw.
    pub plot: Plot,
}

impl Report {
    /// An empty report for `experiment` in `chapter`.
    pub fn new(chapter: &str, experiment: &str, title: &str) -> Self {
        Report {
            experiment: experiment.into(),
            chapter: chapter.into(),
            title: title.into(),
            config: serde_json::Value::Null,
            seeds: vec![],
            data: vec![],
            facts: BTreeMap::new(),
            tables: vec![],
            figures: vec![],
            quick_fingerprint: None,
        }
    }

    /// Records a fact quoted in prose.
    pub fn fact(&mut self, name: &str, value: impl Into<Value>, format: Format) {
        self.facts.insert(
            name.into(),
            Fact {
                value: value.into(),
                format,
            },
        );
    }

    /// Looks a fact up by name.
    pub fn get_fact(&self, name: &str) -> Option<f64> {
        self.facts.get(name).and_then(|f| f.value.number())
    }

    /// Looks a table up by name.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The report as deterministic JSON: sorted keys, rounded floats, two-space indent,
    /// final newline.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("a Report always serialises");
        round_floats(&mut v);
        // serde_json's Map is a BTreeMap (no `preserve_order` feature): keys come sorted.
        let mut s = serde_json::to_string_pretty(&v).expect("a Value always serialises");
        s.push('\n');
        s
    }

    /// Parses a report written by [`Report::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).context("not a valid experiment report")
    }

    /// Rounds every float as [`Report::to_json`] would, so a report compares equal to
    /// the one read back from its JSON.
    pub fn rounded(&self) -> Self {
        Self::from_json(&self.to_json()).expect("a written report reads back")
    }

    /// The generated Markdown: every table and fact between `ANCHOR` comments, so that
    /// `{{#include generated/ch01/x.md:name}}` picks one of them.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "<!-- Generated by `dlbook regen {}` from {}.json. Do not edit. -->",
            self.chapter, self.experiment
        );
        for t in &self.tables {
            let _ = writeln!(md, "<!-- ANCHOR: {} -->", t.name);
            md.push_str(&render_table(t));
            let _ = writeln!(md, "<!-- ANCHOR_END: {} -->", t.name);
        }
        for (name, f) in &self.facts {
            let _ = writeln!(md, "<!-- ANCHOR: {name} -->");
            let _ = writeln!(md, "{}", f.value.show(f.format));
            let _ = writeln!(md, "<!-- ANCHOR_END: {name} -->");
        }
        md
    }

    /// Every file rendered from this report: `(file name, contents)`, the JSON first.
    pub fn render_files(&self) -> Result<Vec<(String, String)>> {
        let mut out = vec![
            (format!("{}.json", self.experiment), self.to_json()),
            (format!("{}.md", self.experiment), self.to_markdown()),
        ];
        for f in &self.figures {
            out.push((
                format!("{}-{}.svg", self.experiment, f.name),
                render_figure(f)?,
            ));
        }
        Ok(out)
    }

    /// Writes the JSON and everything rendered from it into `dir`.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        // Render from the rounded JSON, exactly as a later check will.
        let this = self.rounded();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut written = vec![];
        for (name, text) in this.render_files()? {
            let path = dir.join(name);
            write_atomic(&path, text.as_bytes())?;
            written.push(path);
        }
        Ok(written)
    }

    /// Reads `dir/<experiment>.json`, re-renders it, and lists every file that is
    /// missing or differs from its rendering.
    pub fn check_dir(dir: &Path, experiment: &str) -> Result<(Report, Vec<String>)> {
        let json_path = dir.join(format!("{experiment}.json"));
        let text = std::fs::read_to_string(&json_path)
            .with_context(|| format!("reading {}", json_path.display()))?;
        let report = Report::from_json(&text)
            .with_context(|| format!("parsing {}", json_path.display()))?;
        let mut problems = vec![];
        for (name, want) in report.render_files()? {
            let path = dir.join(&name);
            match std::fs::read_to_string(&path) {
                Ok(got) if got == want => {}
                Ok(_) if name.ends_with(".json") => problems.push(format!(
                    "{name}: not in canonical form (rounded floats, sorted keys)"
                )),
                Ok(_) => problems.push(format!("{name}: differs from its rendering")),
                Err(_) => problems.push(format!("{name}: missing")),
            }
        }
        Ok((report, problems))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never
/// sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Rounds `x` to [`SIGNIFICANT_DIGITS`] significant digits.
pub fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = x.abs().log10().floor() as i32;
    let p = SIGNIFICANT_DIGITS - 1 - e;
    // Going through the decimal string avoids the drift of multiplying by 10^p.
    format!("{:.*e}", (SIGNIFICANT_DIGITS - 1) as usize, x)
        .parse::<f64>()
        .map(|r| if p > 300 { x } else { r })
        .unwrap_or(x)
}

fn round_floats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64() {
                let r = round_sig(x);
                // Integral floats print as `3.0`; keep them floats so the type is stable.
                if let Some(num) = serde_json::Number::from_f64(r) {
                    *n = num;
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(round_floats),
        serde_json::Value::Object(o) => o.values_mut().for_each(round_floats),
        _ => {}
    }
}

fn render_table(t: &Table) -> String {
    let mut md = String::new();
    let headers: Vec<&str> = t.columns.iter().map(|c| c.header.as_str()).collect();
    let _ = writeln!(md, "| {} |", headers.join(" | "));
    let aligns: Vec<&str> = t
        .columns
        .iter()
        .enumerate()
        .map(|(j, _)| {
            let numeric = t
                .rows
                .iter()
                .any(|r| !matches!(r.get(j), Some(Value::Text(_))));
            if numeric {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    let _ = writeln!(md, "|{}|", aligns.join("|"));
    for row in &t.rows {
        let cells: Vec<String> = t
            .columns
            .iter()
            .zip(row)
            .map(|(c, v)| v.show(c.format).replace('|', "\\|"))
            .collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "*{}*", t.caption);
    md
}

// ---------------------------------------------------------------------------------------
// Figures (plotters, SVG backend)

const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

const FIG_W: u32 = 720;
const FIG_H: u32 = 450;

/// Renders a figure to SVG text.
pub fn render_figure(fig: &Figure) -> Result<String> {
    match &fig.plot {
        Plot::Lines {
            x_label,
            y_label,
            x_scale,
            y_scale,
            series,
        } => render_lines(&fig.title, x_label, y_label, *x_scale, *y_scale, series),
        Plot::Scatter {
            x_label,
            y_label,
            groups,
        } => render_scatter(&fig.title, x_label, y_label, groups),
        Plot::Contour(c) => contour::render(&fig.title, c),
        Plot::Graph(g) => graph::render(&fig.title, g),
        Plot::Images {
            width,
            height,
            row_labels,
            col_labels,
            images,
        } => render_images(&fig.title, *width, *height, row_labels, col_labels, images),
        Plot::Heatmap {
            x_label,
            y_label,
            row_labels,
            col_labels,
            values,
            log_shade,
            decimals,
        } => render_heatmap(
            &fig.title,
            (x_label, y_label),
            (row_labels, col_labels),
            values,
            *log_shade,
            *decimals,
        ),
    }
}

fn bounds(vals: impl Iterator<Item = f64>, scale: Scale) -> Result<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        if scale == Scale::Log && v <= 0.0 {
            bail!("a log axis cannot show {v}");
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        bail!("nothing to plot");
    }
    if scale == Scale::Log {
        return Ok((lo / 1.2, hi * 1.2));
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1.0)
    };
    Ok((lo - pad, hi + pad))
}

fn color(i: usize) -> plotters::style::RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    plotters::style::RGBColor(r, g, b)
}

fn render_lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    xs: Scale,
    ys: Scale,
    series: &[Series],
) -> Result<String> {
    let (x0, x1) = bounds(series.iter().flat_map(|s| s.x.iter().copied()), xs)?;
    let y_vals = series.iter().flat_map(|s| {
        let band = s.band.clone().unwrap_or_else(|| vec![0.0; s.y.len()]);
        s.y.iter()
            .zip(band)
            .flat_map(|(y, b)| [y - b, y + b])
            .collect::<Vec<_>>()
    });
    let (y0, y1) = bounds(y_vals, ys)?;
    let (x0, x1) = if xs == Scale::Linear {
        (x0, x1)
    } else {
        (x0 * 1.2, x1 / 1.2)
    };
    match (xs, ys) {
        (Scale::Linear, Scale::Linear) => {
            draw_lines(title, x_label, y_label, x0..x1, y0..y1, series)
        }
        (Scale::Log, Scale::Linear) => {
            use plotters::prelude::IntoLogRange;
            draw_lines(
                title,
                x_label,
                y_label,
                (x0..x1).log_scale(),
                y0..y1,
                series,
            )
        }
        (Scale::Linear, Scale::Log) => {
            use plotters::prelude::IntoLogRange;
            draw_lines(
                title,
                x_label,
                y_label,
                x0..x1,
                (y0..y1).log_scale(),
                series,
            )
        }
        (Scale::Log, Scale::Log) => {
            use plotters::prelude::IntoLogRange;
            draw_lines(
                title,
                x_label,
                y_label,
                (x0..x1).log_scale(),
                (y0..y1).log_scale(),
                series,
            )
        }
    }
}

fn draw_lines<X, Y>(
    title: &str,
    x_label: &str,
    y_label: &str,
    xr: X,
    yr: Y,
    series: &[Series],
) -> Result<String>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (FIG_W, FIG_H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(xr, yr)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            if let Some(band) = &s.band {
                let upper =
                    s.x.iter()
                        .zip(&s.y)
                        .zip(band)
                        .map(|((x, y), b)| (*x, y + b));
                let lower =
                    s.x.iter()
                        .zip(&s.y)
                        .zip(band)
                        .map(|((x, y), b)| (*x, y - b));
                let poly: Vec<(f64, f64)> = upper.chain(lower.rev()).collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2).filled())))
                    .map_err(plot_err)?;
            }
            let pts: Vec<(f64, f64)> =
                s.x.iter().copied().zip(s.y.iter().copied()).collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        if series.len() > 1 || series.iter().any(|s| !s.name.is_empty()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .border_style(BLACK.mix(0.3))
                .background_style(WHITE.mix(0.85))
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn render_scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    groups: &[Group],
) -> Result<String> {
    use plotters::prelude::*;
    let (x0, x1) = bounds(
        groups.iter().flat_map(|g| g.x.iter().copied()),
        Scale::Linear,
    )?;
    let (y0, y1) = bounds(
        groups.iter().flat_map(|g| g.y.iter().copied()),
        Scale::Linear,
    )?;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (FIG_W, FIG_W * 3 / 4)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        for (i, g) in groups.iter().enumerate() {
            let c = color(i);
            let pts =
                g.x.iter()
                    .zip(&g.y)
                    .map(move |(x, y)| Circle::new((*x, *y), 2, c.filled()));
            chart
                .draw_series(pts)
                .map_err(plot_err)?
                .label(g.name.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Image grids are written directly as SVG rectangles: one per horizontal run of equal
/// grey (16 levels), skipping white, which keeps a digit to a few hundred elements.
fn render_heatmap(
    title: &str,
    (x_label, y_label): (&str, &str),
    (row_labels, col_labels): (&[String], &[String]),
    values: &[Vec<f64>],
    log_shade: bool,
    decimals: usize,
) -> Result<String> {
    let (n_rows, n_cols) = (values.len(), col_labels.len());
    if row_labels.len() != n_rows || values.iter().any(|r| r.len() != n_cols) {
        bail!(
            "a heatmap needs {} row labels and {n_cols} values per row, got {} labels \
             and rows of {:?} values",
            n_rows,
            row_labels.len(),
            values.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    if let Some(v) = values
        .iter()
        .flatten()
        .find(|v| !v.is_finite() || **v < 0.0)
    {
        bail!("a heatmap shades finite, non-negative values, got {v}");
    }
    let shade = |v: f64| if log_shade { v.ln_1p() } else { v };
    let top_value = values
        .iter()
        .flatten()
        .map(|&v| shade(v))
        .fold(0.0, f64::max);
    let cell = 44usize;
    let (left, top) = (96usize, 78usize);
    let (width, height) = (left + n_cols * cell + 16, top + n_rows * cell + 16);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
    let text = |s: &mut String,
                x: usize,
                y: usize,
                size: u32,
                anchor: &str,
                fill: &str,
                t: &str| {
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{y}" font-family="sans-serif" font-size="{size}" text-anchor="{anchor}" fill="{fill}">{}</text>"#,
            xml_escape(t)
        );
    };
    text(&mut s, width / 2, 22, 16, "middle", "black", title);
    text(
        &mut s,
        left + n_cols * cell / 2,
        46,
        13,
        "middle",
        "black",
        x_label,
    );
    let mid_y = top + n_rows * cell / 2;
    let _ = writeln!(
        s,
        r#"<text x="18" y="{mid_y}" font-family="sans-serif" font-size="13" text-anchor="middle" transform="rotate(-90 18 {mid_y})">{}</text>"#,
        xml_escape(y_label)
    );
    for (j, label) in col_labels.iter().enumerate() {
        let x = left + j * cell + cell / 2;
        text(&mut s, x, top - 8, 12, "middle", "black", label);
    }
    for (i, (label, row)) in row_labels.iter().zip(values).enumerate() {
        let y = top + i * cell;
        text(
            &mut s,
            left - 8,
            y + cell / 2 + 4,
            12,
            "end",
            "black",
            label,
        );
        for (j, &v) in row.iter().enumerate() {
            let x = left + j * cell;
            // White (0) to a dark blue (the largest value).
            let t = if top_value > 0.0 {
                shade(v) / top_value
            } else {
                0.0
            };
            let mix = |dark: f64| (255.0 - t * (255.0 - dark)).round();
            let (r, g, b) = (mix(8.0), mix(48.0), mix(107.0));
            let _ = writeln!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({r},{g},{b})" stroke="#ddd"/>"##
            );
            let ink = if t > 0.55 { "white" } else { "black" };
            let label = format!("{v:.decimals$}");
            text(
                &mut s,
                x + cell / 2,
                y + cell / 2 + 4,
                11,
                "middle",
                ink,
                &label,
            );
        }
    }
    s.push_str("</svg>\n");
    Ok(s)
}

fn render_images(
    title: &str,
    w: usize,
    h: usize,
    row_labels: &[String],
    col_labels: &[String],
    images: &[Vec<u8>],
) -> Result<String> {
    let n_cols = col_labels.len().max(1);
    let n_rows = images.len().div_ceil(n_cols);
    if images.iter().any(|im| im.len() != w * h) {
        bail!("every image must have {w}x{h} pixels");
    }
    let scale = 3usize;
    let gap = 6usize;
    let left = if row_labels.is_empty() { gap } else { 90 };
    let top = 34 + if col_labels.is_empty() { 0 } else { 18 };
    let width = left + n_cols * (w * scale + gap);
    let height = top + n_rows * (h * scale + gap) + gap;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-family="sans-serif" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2,
        xml_escape(title)
    );
    for (j, label) in col_labels.iter().enumerate() {
        let x = left + j * (w * scale + gap) + w * scale / 2;
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" font-family="sans-serif" font-size="12" text-anchor="middle">{}</text>"#,
            top - 6,
            xml_escape(label)
        );
    }
    for (i, label) in row_labels.iter().enumerate().take(n_rows) {
        let y = top + i * (h * scale + gap) + h * scale / 2 + 4;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{y}" font-family="sans-serif" font-size="12" text-anchor="end">{}</text>"#,
            left - 8,
            xml_escape(label)
        );
    }
    for (k, im) in images.iter().enumerate() {
        let (gi, gj) = (k / n_cols, k % n_cols);
        let ox = left + gj * (w * scale + gap);
        let oy = top + gi * (h * scale + gap);
        let _ = writeln!(
            s,
            r##"<rect x="{ox}" y="{oy}" width="{}" height="{}" fill="none" stroke="#ccc"/>"##,
            w * scale,
            h * scale
        );
        for r in 0..h {
            let mut c = 0;
            while c < w {
                let level = im[r * w + c] / 16;
                let start = c;
                while c < w && im[r * w + c] / 16 == level {
                    c += 1;
                }
                if level == 0 {
                    continue;
                }
                // Ink is dark: level 15 is black.
                let g = 255 - (level as usize * 17).min(255);
                let _ = writeln!(
                    s,
                    r#"<rect x="{}" y="{}" width="{}" height="{scale}" fill="rgb({g},{g},{g})"/>"#,
                    ox + start * scale,
                    oy + r * scale,
                    (c - start) * scale
                );
            }
        }
    }
    s.push_str("</svg>\n");
    Ok(s)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e:?}")
}

// ---------------------------------------------------------------------------------------
// Notebooks

/// Shows Markdown as rich output in an evcxr (Rust Jupyter) notebook cell. A cell shows
/// one rich output: put a table and a figure in cells of their own.
pub fn show_markdown(md: &str) {
    println!("EVCXR_BEGIN_CONTENT text/markdown\n{md}\nEVCXR_END_CONTENT");
}

/// Shows an SVG image as rich output in an evcxr notebook cell.
pub fn show_svg(svg: &str) {
    println!("EVCXR_BEGIN_CONTENT image/svg+xml\n{svg}\nEVCXR_END_CONTENT");
}

impl Report {
    /// Shows the table `name` in a notebook cell (as the book renders it).
    pub fn show_table(&self, name: &str) -> Result<()> {
        let t = self.table(name).with_context(|| {
            let names: Vec<&str> = self.tables.iter().map(|t| t.name.as_str()).collect();
            format!("no table `{name}` in {}; it has {names:?}", self.experiment)
        })?;
        show_markdown(&render_table(t));
        Ok(())
    }

    /// Shows the figure `name` in a notebook cell (the same SVG the book shows).
    pub fn show_figure(&self, name: &str) -> Result<()> {
        let f = self
            .figures
            .iter()
            .find(|f| f.name == name)
            .with_context(|| {
                let names: Vec<&str> =
                    self.figures.iter().map(|f| f.name.as_str()).collect();
                format!(
                    "no figure `{name}` in {}; it has {names:?}",
                    self.experiment
                )
            })?;
        show_svg(&render_figure(f)?);
        Ok(())
    }
}
