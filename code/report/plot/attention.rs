//! Attention maps: one panel per head (or per mask), queries down, keys across, each
//! cell shaded by its weight on an absolute scale from 0 (white) to 1 (dark blue), as
//! SVG rectangles with integer coordinates.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::{svg_open, xml_escape};

/// Panels of attention weights over the same queries and keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionPlot {
    /// One title per panel (`head 0`, `causal`).
    pub panels: Vec<String>,
    /// One label per query (the rows of every panel).
    pub query_labels: Vec<String>,
    /// One label per key (the columns of every panel).
    pub key_labels: Vec<String>,
    /// `weights[panel][query][key]`, each in `[0, 1]`.
    pub weights: Vec<Vec<Vec<f64>>>,
}

/// Renders the panels side by side, at most four to a row.
pub(super) fn render(title: &str, p: &AttentionPlot) -> Result<String> {
    let (n_q, n_k) = (p.query_labels.len(), p.key_labels.len());
    if p.weights.len() != p.panels.len()
        || p.weights
            .iter()
            .any(|w| w.len() != n_q || w.iter().any(|r| r.len() != n_k))
    {
        bail!(
            "an attention map needs {} panels of {n_q} x {n_k} weights (one row per query \
             label, one column per key label)",
            p.panels.len()
        );
    }
    if let Some(v) = p
        .weights
        .iter()
        .flatten()
        .flatten()
        .find(|v| !(0.0..=1.0).contains(*v))
    {
        bail!("attention weights lie in [0, 1], got {v}");
    }
    // Cells shrink with the sequence so a panel stays about 400 pixels wide.
    let cell = (400 / n_k.max(n_q).max(1)).clamp(3, 28);
    // Label every step when the font fits the cell, otherwise every `every`-th step.
    let font = cell.clamp(6, 11);
    let every = font.div_ceil(cell).max(1);
    let label_room = 8 + 6 * p
        .query_labels
        .iter()
        .chain(&p.key_labels)
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(1);
    let gap = 24usize;
    let per_row = p.panels.len().clamp(1, 4);
    let n_rows = p.panels.len().div_ceil(per_row).max(1);
    let (panel_w, panel_h) = (label_room + n_k * cell, 22 + label_room + n_q * cell);
    let width = gap + per_row * (panel_w + gap);
    let top = 40usize;
    let height = top + n_rows * (panel_h + gap) + 30;
    let mut s = String::new();
    svg_open(&mut s, width, height, "");
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-family="sans-serif" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2,
        xml_escape(title)
    );
    for (k, (name, w)) in p.panels.iter().zip(&p.weights).enumerate() {
        let ox = gap + (k % per_row) * (panel_w + gap) + label_room;
        let oy = top + (k / per_row) * (panel_h + gap) + 22 + label_room;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-family="sans-serif" font-size="13" text-anchor="middle">{}</text>"#,
            ox + n_k * cell / 2,
            oy - label_room - 6,
            xml_escape(name)
        );
        for (j, label) in p
            .key_labels
            .iter()
            .enumerate()
            .filter(|(j, _)| j % every == 0)
        {
            let (x, y) = (ox + j * cell + cell / 2 + font / 3, oy - 4);
            let _ = writeln!(
                s,
                r#"<text x="{x}" y="{y}" font-family="sans-serif" font-size="{font}" transform="rotate(-90 {x} {y})">{}</text>"#,
                xml_escape(label)
            );
        }
        for (i, label) in p
            .query_labels
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0)
        {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" font-family="sans-serif" font-size="{font}" text-anchor="end">{}</text>"#,
                ox - 4,
                oy + i * cell + cell / 2 + font / 3,
                xml_escape(label)
            );
        }
        for (i, row) in w.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let (r, g, b) = shade(v);
                let _ = writeln!(
                    s,
                    r#"<rect x="{}" y="{}" width="{cell}" height="{cell}" fill="rgb({r},{g},{b})"/>"#,
                    ox + j * cell,
                    oy + i * cell
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<rect x="{ox}" y="{oy}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            n_k * cell,
            n_q * cell
        );
    }
    // The scale: ten steps from 0 to 1.
    let (sx, sy) = (gap, height - 22);
    let _ = writeln!(
        s,
        r#"<text x="{sx}" y="{}" font-family="sans-serif" font-size="11">0</text>"#,
        sy + 11
    );
    for k in 0..=10 {
        let (r, g, b) = shade(k as f64 / 10.0);
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{sy}" width="14" height="14" fill="rgb({r},{g},{b})" stroke="#ddd"/>"##,
            sx + 12 + 14 * k
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-family="sans-serif" font-size="11">1 (weight; queries down, keys across)</text>"#,
        sx + 12 + 14 * 11 + 4,
        sy + 11
    );
    s.push_str("</svg>\n");
    Ok(s)
}

/// White for 0 to dark blue for 1.
fn shade(v: f64) -> (u8, u8, u8) {
    let mix = |dark: f64| (255.0 - v.clamp(0.0, 1.0) * (255.0 - dark)).round() as u8;
    (mix(8.0), mix(48.0), mix(107.0))
}

/// The figure of attention weights `(heads, t_q, t_k)`, one panel per head (`head 0`,
/// `head 1`, ...), with one label per query and per key: what experiments push into a
/// report, rendered as `<experiment>-<name>.svg`.
///
/// # Panics
/// If the labels do not match the weights' shape (a programmer error).
pub fn attention_figure(
    name: &str,
    title: &str,
    weights: ndarray::ArrayView3<'_, f32>,
    query_labels: &[String],
    key_labels: &[String],
) -> super::Figure {
    let (h, t_q, t_k) = weights.dim();
    assert!(
        query_labels.len() == t_q && key_labels.len() == t_k,
        "attention_figure: {} query and {} key labels for weights (heads, t_q, t_k) = {:?}",
        query_labels.len(),
        key_labels.len(),
        weights.dim()
    );
    super::Figure {
        name: name.into(),
        title: title.into(),
        plot: super::Plot::Attention(AttentionPlot {
            panels: (0..h).map(|k| format!("head {k}")).collect(),
            query_labels: query_labels.to_vec(),
            key_labels: key_labels.to_vec(),
            weights: weights
                .outer_iter()
                .map(|m| {
                    m.outer_iter()
                        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
                        .collect()
                })
                .collect(),
        }),
    }
}

// ANCHOR: write_attention_map
/// Draws attention weights `(heads, t_q, t_k)` as an SVG heatmap at `path`, one panel
/// per head, with one label per query and per key: the attention map of any model.
///
/// # Errors
/// If the labels do not match the weights, a weight lies outside `[0, 1]` (a NaN, say)
/// or the file cannot be written.
pub fn write_attention_map(
    weights: ndarray::ArrayView3<'_, f32>,
    query_labels: &[String],
    key_labels: &[String],
    title: &str,
    path: &std::path::Path,
) -> Result<()> {
    let (_, t_q, t_k) = weights.dim();
    if query_labels.len() != t_q || key_labels.len() != t_k {
        bail!(
            "{} query and {} key labels for attention weights (heads, t_q, t_k) = {:?}",
            query_labels.len(),
            key_labels.len(),
            weights.dim()
        );
    }
    let fig = attention_figure("map", title, weights, query_labels, key_labels);
    let svg = super::render_figure(&fig)?;
    crate::report::write_atomic(path, svg.as_bytes())
}
// ANCHOR_END: write_attention_map
