//! Contour figures: a scalar field over a grid, with paths on top (being written).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// A scalar field `z[j][i]` at `(x[i], y[j])`, with paths drawn over it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContourPlot {
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Grid x coordinates, increasing.
    pub x: Vec<f64>,
    /// Grid y coordinates, increasing.
    pub y: Vec<f64>,
    /// `z[j][i]` is the field at `(x[i], y[j])`.
    pub z: Vec<Vec<f64>>,
    /// Paths drawn on top (each `Series` is a polyline through its `(x, y)` points).
    pub paths: Vec<super::Series>,
}

/// Renders a contour figure to SVG.
pub fn render(_title: &str, _c: &ContourPlot) -> Result<String> {
    bail!("contour figures are being written")
}
