//! The data catalog as a table, for the book's data appendix: every file, its size and
//! its sha256, straight from [`crate::data::catalog`], so the page cannot drift from the
//! checks `dlbook data verify` runs.

use anyhow::Result;

use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{self, DataDir};
use crate::report::{Column, Format, Report, Table, Value};

/// Experiment `datasets`, registered in [`super::all`].
pub struct Datasets;

impl Experiment for Datasets {
    const NAME: &'static str = "datasets";
    const CHAPTER: &'static str = "data";
    const TITLE: &'static str = "The datasets the book reads";
    type Config = Config;

    fn run(_cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(r)
    }
}

/// Where the table comes from (there is nothing to configure).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The function the table is read from.
    pub catalog: String,
}

impl Preset for Config {
    fn full() -> Self {
        Config {
            catalog: "dlbook::data::catalog".into(),
        }
    }
}

fn run(r: &mut Report) -> Result<()> {
    let col = |h: &str, f| Column {
        header: h.into(),
        format: f,
    };
    let mut rows = vec![];
    for d in data::catalog() {
        for f in d.files {
            rows.push(vec![
                Value::from(d.name),
                Value::from(format!("`{}`", f.path)),
                // As text: a number is stored to 6 significant digits, a size is exact.
                Value::from(f.bytes.to_string()),
                Value::from(format!("`{}`", f.sha256)),
            ]);
        }
    }
    r.tables.push(Table {
        name: "files".into(),
        caption: "Every file `dlbook data verify` checks (an optional dataset only when \
                  named), with its recorded sha256."
            .into(),
        columns: vec![
            col("dataset", Format::Int),
            col("file", Format::Int),
            col("bytes", Format::Int),
            col("sha256", Format::Int),
        ],
        rows,
    });
    let sources: Vec<Vec<Value>> = data::catalog()
        .iter()
        .map(|d| {
            vec![
                Value::from(d.name),
                Value::from(if d.optional {
                    format!("{} (optional)", d.about)
                } else {
                    d.about.to_string()
                }),
                Value::from(d.package.unwrap_or("–")),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "sources".into(),
        caption: "What each dataset is, and the package that ships it.".into(),
        columns: vec![
            col("dataset", Format::Int),
            col("what", Format::Int),
            col("package", Format::Int),
        ],
        rows: sources,
    });
    Ok(())
}
