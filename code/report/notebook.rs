//! Showing tables and figures in an evcxr (Rust Jupyter) notebook, as the book renders
//! them.

use anyhow::{Context, Result};

use super::markdown::render_table;
use super::{render_figure, Report};

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
