//! Heatmaps: a matrix drawn as shaded cells with each value written in its cell, as
//! SVG elements.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::{svg_open, xml_escape};

/// Renders a heatmap to SVG: white for 0 to dark blue for the largest (shaded) value.
pub(super) fn render(
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
    svg_open(&mut s, width, height, "");
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
