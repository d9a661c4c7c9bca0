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

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

mod json;
mod markdown;
mod notebook;
mod plot;
mod value;

pub use json::{round_sig, write_atomic, write_file_atomic, SIGNIFICANT_DIGITS};
pub use notebook::{show_markdown, show_svg};
pub use plot::attention::{attention_figure, write_attention_map};
pub use plot::{attention, boxes, contour, flow, graph, render_figure};
pub use value::{Fact, Format, Value};

use json::round_floats;
pub use markdown::render_table;

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
    /// code that made it (see `experiments::check_fresh`). Absent from quick
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
    /// Points in groups with polylines over them (e.g. a classifier's training points
    /// with its decision boundary drawn by [`contour::iso_lines`]).
    ScatterLines {
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// The point groups.
        groups: Vec<Group>,
        /// Polylines through their `(x, y)` points; pieces with the same name share a
        /// colour and one legend entry.
        lines: Vec<Series>,
    },
    /// A scalar field over a grid with paths drawn on top (e.g. optimizer trajectories
    /// on a loss surface).
    Contour(contour::ContourPlot),
    /// A directed graph, e.g. a computational graph with values and gradients.
    Graph(graph::GraphPlot),
    /// Boxes on a grid joined by arrows, each box with links (to code and tests).
    Flow(flow::FlowPlot),
    /// Grey-scale images with boxes drawn over them (detections, ground truth).
    Boxes(boxes::BoxesPlot),
    /// Attention weights, one panel per head or mask, queries down and keys across.
    Attention(attention::AttentionPlot),
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
    /// A picture taken of something real (a screenshot), kept as PNG bytes (base64 in
    /// the JSON) and shown at its size under the title.
    Picture {
        /// The PNG file, base64-encoded (RFC 4648, with padding).
        png_base64: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
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
        let mut texts = vec![self.to_json(), self.to_markdown()];
        for f in &self.figures {
            texts.push(render_figure(f)?);
        }
        Ok(self.file_names().into_iter().zip(texts).collect())
    }

    /// The names of the files [`Report::render_files`] writes, in its order, without
    /// rendering anything.
    pub fn file_names(&self) -> Vec<String> {
        let mut names = vec![
            format!("{}.json", self.experiment),
            format!("{}.md", self.experiment),
        ];
        names.extend(
            self.figures
                .iter()
                .map(|f| format!("{}-{}.svg", self.experiment, f.name)),
        );
        names
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
