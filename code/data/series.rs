//! Time series stored as CSV columns (AirPassengers, sunspots, Mauna Loa CO2).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// A CSV column read as numbers; empty cells are `None` (missing values).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The first column (dates or years), as text.
    pub index: Vec<String>,
    /// The chosen column's values.
    pub values: Vec<Option<f64>>,
}

/// Reads column `column` (by header name) of a CSV with a one-line header, no quoting.
pub fn read_csv_series(path: &Path, column: &str) -> Result<Series> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read as UTF-8 text", path.display()))?;
    parse_csv_series(&text, column).with_context(|| format!("{}", path.display()))
}

/// [`read_csv_series`] on text already in memory.
pub fn parse_csv_series(text: &str, column: &str) -> Result<Series> {
    let mut lines = text.lines();
    let header = lines
        .next()
        .filter(|h| !h.trim().is_empty())
        .context("empty file: no header")?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let j = cols
        .iter()
        .position(|c| *c == column)
        .with_context(|| format!("no column `{column}` in header `{header}`"))?;
    let mut out = Series {
        index: vec![],
        values: vec![],
    };
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != cols.len() {
            bail!(
                "line {}: {} cells, header has {}",
                i + 2,
                cells.len(),
                cols.len()
            );
        }
        let v = match cells[j] {
            "" => None,
            s => Some(
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .with_context(|| format!("line {}: `{s}` is not a number", i + 2))?,
            ),
        };
        out.index.push(cells[0].to_string());
        out.values.push(v);
    }
    if out.values.is_empty() {
        bail!("no data rows after the header");
    }
    Ok(out)
}
