//! Flow figures: boxes on a grid joined by arrows, each box carrying links (to the code
//! and the tests behind it), e.g. the whole MLOps pipeline of chapter 13.
//!
//! A box sits at its `(col, row)` cell; an arrow runs between the centres of two boxes,
//! cut where it leaves one box and enters the other. The SVG scales to the page's width
//! (its `viewBox` keeps the proportions) and its links are ordinary `<a href>`
//! elements, followed when the SVG is inlined in a page. Coordinates are integers, so the
//! bytes are deterministic.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::xml_escape;

/// One box of a flow figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowNode {
    /// Its name, drawn in bold.
    pub label: String,
    /// One short line under the name.
    pub detail: String,
    /// Grid column, from the left.
    pub col: usize,
    /// Grid row, from the top.
    pub row: usize,
    /// Links drawn under the detail, as `(text, href)`.
    pub links: Vec<(String, String)>,
}

/// Boxes on a grid and arrows `(from, to)` between box indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowPlot {
    /// The boxes.
    pub nodes: Vec<FlowNode>,
    /// The arrows, as `(from, to)` indices into `nodes`.
    pub edges: Vec<(usize, usize)>,
}

const CELL_W: i64 = 210;
const CELL_H: i64 = 96;
const BOX_W: i64 = 182;
const BOX_H: i64 = 66;
const MARGIN: i64 = 16;
const TOP: i64 = 40;

/// The point where the segment from the centre `(cx, cy)` of a box towards `(tx, ty)`
/// leaves the box.
fn exit_point((cx, cy): (i64, i64), (tx, ty): (i64, i64)) -> (i64, i64) {
    let (dx, dy) = ((tx - cx) as f64, (ty - cy) as f64);
    let (hw, hh) = (BOX_W as f64 / 2.0 + 3.0, BOX_H as f64 / 2.0 + 3.0);
    let t = f64::min(
        if dx == 0.0 {
            f64::INFINITY
        } else {
            hw / dx.abs()
        },
        if dy == 0.0 {
            f64::INFINITY
        } else {
            hh / dy.abs()
        },
    );
    (cx + (dx * t).round() as i64, cy + (dy * t).round() as i64)
}

/// Renders a flow figure to SVG.
pub fn render(title: &str, f: &FlowPlot) -> Result<String> {
    let n = f.nodes.len();
    if n == 0 {
        bail!("flow figure `{title}` has no boxes");
    }
    if let Some(&(a, b)) = f.edges.iter().find(|&&(a, b)| a >= n || b >= n || a == b) {
        bail!("flow figure `{title}`: arrow ({a}, {b}) must join two boxes of 0..{n}");
    }
    for (i, x) in f.nodes.iter().enumerate() {
        if let Some(y) = f.nodes[..i]
            .iter()
            .find(|y| (y.col, y.row) == (x.col, x.row))
        {
            bail!(
                "flow figure `{title}`: `{}` and `{}` share cell ({}, {})",
                y.label,
                x.label,
                x.col,
                x.row
            );
        }
    }
    let cols = f.nodes.iter().map(|x| x.col).max().unwrap_or(0) as i64 + 1;
    let rows = f.nodes.iter().map(|x| x.row).max().unwrap_or(0) as i64 + 1;
    let (width, height) = (2 * MARGIN + cols * CELL_W, TOP + rows * CELL_H + MARGIN);
    let centre = |x: &FlowNode| {
        (
            MARGIN + x.col as i64 * CELL_W + CELL_W / 2,
            TOP + x.row as i64 * CELL_H + CELL_H / 2,
        )
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg viewBox="0 0 {width} {height}" width="{width}" style="max-width: 100%; height: auto" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11" role="img" aria-label="{}">"#,
        xml_escape(title)
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r##"<defs><marker id="flow-arrow" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        width / 2,
        xml_escape(title)
    );
    for &(a, b) in &f.edges {
        let (ca, cb) = (centre(&f.nodes[a]), centre(&f.nodes[b]));
        let (x1, y1) = exit_point(ca, cb);
        let (x2, y2) = exit_point(cb, ca);
        let _ = writeln!(
            s,
            r##"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#555" stroke-width="1.5" marker-end="url(#flow-arrow)"/>"##
        );
    }
    for x in &f.nodes {
        let (cx, cy) = centre(x);
        let (left, top) = (cx - BOX_W / 2, cy - BOX_H / 2);
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{top}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="#e3eefc" stroke="#468"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{cx}" y="{}" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#,
            top + 18,
            xml_escape(&x.label)
        );
        let _ = writeln!(
            s,
            r#"<text x="{cx}" y="{}" text-anchor="middle">{}</text>"#,
            top + 35,
            xml_escape(&x.detail)
        );
        // The links share one line, centred: each about 6 px per character.
        let texts: Vec<i64> = x
            .links
            .iter()
            .map(|(t, _)| t.chars().count() as i64 * 6)
            .collect();
        let gap = 12;
        let total = texts.iter().sum::<i64>() + gap * (texts.len() as i64 - 1).max(0);
        let mut at = cx - total / 2;
        for ((text, href), w) in x.links.iter().zip(&texts) {
            let _ = writeln!(
                s,
                r##"<a href="{}"><text x="{}" y="{}" text-anchor="middle" fill="#1a5fb4" text-decoration="underline">{}</text></a>"##,
                xml_escape(href).replace('"', "&quot;"),
                at + w / 2,
                top + 54,
                xml_escape(text)
            );
            at += w + gap;
        }
    }
    s.push_str("</svg>\n");
    Ok(s)
}
