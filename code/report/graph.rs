//! Graph figures: a directed graph such as a computational graph (being written).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// A directed graph: labelled nodes and edges `(from, to)` between node indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphPlot {
    /// Node labels, e.g. `a = 2.0 | grad 3.0` or an operation `*`.
    pub nodes: Vec<String>,
    /// Edges as `(from, to)` node indices.
    pub edges: Vec<(usize, usize)>,
}

/// Renders a graph figure to SVG.
pub fn render(_title: &str, _g: &GraphPlot) -> Result<String> {
    bail!("graph figures are being written")
}
