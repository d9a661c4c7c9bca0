//! Image grids, written directly as SVG rectangles: one per horizontal run of equal grey
//! (16 levels), skipping white, which keeps a digit to a few hundred elements.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::{svg_open, xml_escape};

/// Renders a grid of grey-scale `w` x `h` images to SVG.
pub(super) fn render(
    title: &str,
    w: usize,
    h: usize,
    row_labels: &[String],
    col_labels: &[String],
    images: &[Vec<u8>],
) -> Result<String> {
    let n_cols = col_labels.len().max(1);
    let n_rows = images.len().div_ceil(n_cols);
    if images.iter().any(|im| im.len() != w * h) {
        bail!("every image must have {w}x{h} pixels");
    }
    let scale = 3usize;
    let gap = 6usize;
    let left = if row_labels.is_empty() { gap } else { 90 };
    let top = 34 + if col_labels.is_empty() { 0 } else { 18 };
    let width = left + n_cols * (w * scale + gap);
    let height = top + n_rows * (h * scale + gap) + gap;
    let mut s = String::new();
    svg_open(&mut s, width, height, "");
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-family="sans-serif" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2,
        xml_escape(title)
    );
    for (j, label) in col_labels.iter().enumerate() {
        let x = left + j * (w * scale + gap) + w * scale / 2;
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" font-family="sans-serif" font-size="12" text-anchor="middle">{}</text>"#,
            top - 6,
            xml_escape(label)
        );
    }
    for (i, label) in row_labels.iter().enumerate().take(n_rows) {
        let y = top + i * (h * scale + gap) + h * scale / 2 + 4;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{y}" font-family="sans-serif" font-size="12" text-anchor="end">{}</text>"#,
            left - 8,
            xml_escape(label)
        );
    }
    for (k, im) in images.iter().enumerate() {
        let (gi, gj) = (k / n_cols, k % n_cols);
        let ox = left + gj * (w * scale + gap);
        let oy = top + gi * (h * scale + gap);
        let _ = writeln!(
            s,
            r##"<rect x="{ox}" y="{oy}" width="{}" height="{}" fill="none" stroke="#ccc"/>"##,
            w * scale,
            h * scale
        );
        grey_runs(&mut s, im, (w, h), (ox, oy), scale);
    }
    s.push_str("</svg>\n");
    Ok(s)
}

/// Writes the `w` x `h` grey image `im` at `(ox, oy)`, each pixel `scale` units wide: one
/// rectangle per horizontal run of equal grey (16 levels), white skipped.
pub(super) fn grey_runs(
    s: &mut String,
    im: &[u8],
    (w, h): (usize, usize),
    (ox, oy): (usize, usize),
    scale: usize,
) {
    for r in 0..h {
        let mut c = 0;
        while c < w {
            let level = im[r * w + c] / 16;
            let start = c;
            while c < w && im[r * w + c] / 16 == level {
                c += 1;
            }
            if level == 0 {
                continue;
            }
            // Ink is dark: level 15 is black.
            let g = 255 - (level as usize * 17).min(255);
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="{}" height="{scale}" fill="rgb({g},{g},{g})"/>"#,
                ox + start * scale,
                oy + r * scale,
                (c - start) * scale
            );
        }
    }
}
