//! Graph figures: a directed graph such as a computational graph, drawn left to right.
//!
//! Layout: a node's column is the length of the longest path reaching it from a node
//! without inputs, so every edge points rightwards, and a node without inputs sits just
//! left of its first consumer; nodes keep their input order within a column. Value nodes are boxes, operation nodes circles. The SVG is plain text with
//! integer coordinates, so its bytes are deterministic.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::{svg_open, xml_escape};

/// A directed graph: labelled nodes and edges `(from, to)` between node indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphPlot {
    /// Node labels, e.g. `a | data 2.0 | grad 3.0` or an operation `×`.
    pub nodes: Vec<String>,
    /// Edges as `(from, to)` node indices.
    pub edges: Vec<(usize, usize)>,
    /// Which nodes are operations (drawn as circles); missing entries are values.
    #[serde(default)]
    pub is_op: Vec<bool>,
}

/// Renders a graph figure to SVG.
pub fn render(title: &str, g: &GraphPlot) -> Result<String> {
    let n = g.nodes.len();
    if n == 0 {
        bail!("graph figure `{title}` has no nodes");
    }
    if let Some(&(a, b)) = g.edges.iter().find(|&&(a, b)| a >= n || b >= n) {
        bail!("graph figure `{title}`: edge ({a}, {b}) names a node out of 0..{n}");
    }
    // Longest-path layering (Bellman-Ford style relaxation; a cycle would never settle).
    let mut layer = vec![0usize; n];
    for round in 0..=n {
        let mut changed = false;
        for &(a, b) in &g.edges {
            if layer[b] < layer[a] + 1 {
                layer[b] = layer[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        if round == n {
            bail!("graph figure `{title}` has a cycle");
        }
    }
    // Sources sit just left of their first consumer, not all in the first column.
    for i in 0..n {
        let has_input = g.edges.iter().any(|&(_, b)| b == i);
        let first_use = g
            .edges
            .iter()
            .filter(|&&(a, _)| a == i)
            .map(|&(_, b)| layer[b])
            .min();
        if let (false, Some(u)) = (has_input, first_use) {
            layer[i] = u.saturating_sub(1);
        }
    }
    let is_op = |i: usize| g.is_op.get(i).copied().unwrap_or(false);
    let n_layers = layer.iter().max().copied().unwrap_or(0) + 1;
    let mut columns: Vec<Vec<usize>> = vec![vec![]; n_layers];
    for i in 0..n {
        columns[layer[i]].push(i);
    }
    // Sizes: boxes fit their label (7 px per character), circles are 36 px wide.
    let char_w = 7;
    let width_of = |i: usize| {
        if is_op(i) {
            36
        } else {
            (g.nodes[i].chars().count() * char_w + 16) as i64
        }
    };
    let col_w: Vec<i64> = columns
        .iter()
        .map(|c| c.iter().map(|&i| width_of(i)).max().unwrap_or(36))
        .collect();
    let (gap_x, row_h, margin, top) = (40i64, 56i64, 20i64, 44i64);
    let max_rows = columns.iter().map(Vec::len).max().unwrap_or(1) as i64;
    let height = top + max_rows * row_h + margin;
    let mut col_x = vec![margin; n_layers];
    for c in 1..n_layers {
        col_x[c] = col_x[c - 1] + col_w[c - 1] + gap_x;
    }
    let width = col_x[n_layers - 1] + col_w[n_layers - 1] + margin;
    // Centre of each node; columns are vertically centred.
    let mut pos = vec![(0i64, 0i64); n];
    for (c, col) in columns.iter().enumerate() {
        let offset = (max_rows - col.len() as i64) * row_h / 2;
        for (r, &i) in col.iter().enumerate() {
            pos[i] = (
                col_x[c] + col_w[c] / 2,
                top + offset + r as i64 * row_h + row_h / 2,
            );
        }
    }
    let mut s = String::new();
    let font = r#" font-family="sans-serif" font-size="12""#;
    svg_open(&mut s, width, height, font);
    let _ = writeln!(
        s,
        r##"<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        width / 2,
        xml_escape(title)
    );
    for &(a, b) in &g.edges {
        let (xa, ya) = (pos[a].0 + width_of(a) / 2, pos[a].1);
        let (xb, yb) = (pos[b].0 - width_of(b) / 2, pos[b].1);
        let _ = writeln!(
            s,
            r##"<line x1="{xa}" y1="{ya}" x2="{xb}" y2="{yb}" stroke="#555" marker-end="url(#arrow)"/>"##
        );
    }
    for (i, &(x, y)) in pos.iter().enumerate() {
        let w = width_of(i);
        if is_op(i) {
            let _ = writeln!(
                s,
                r##"<circle cx="{x}" cy="{y}" r="18" fill="#fde9c8" stroke="#a66"/>"##
            );
        } else {
            let _ = writeln!(
                s,
                r##"<rect x="{}" y="{}" width="{w}" height="28" rx="4" fill="#e3eefc" stroke="#468"/>"##,
                x - w / 2,
                y - 14
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            y + 4,
            xml_escape(&g.nodes[i])
        );
    }
    s.push_str("</svg>\n");
    Ok(s)
}
