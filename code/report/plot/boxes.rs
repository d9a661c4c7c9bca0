//! Images with boxes drawn over them (object detection): each image is drawn like
//! [`Plot::Images`](crate::report::Plot::Images) (grey runs as rectangles), then each box
//! as a coloured outline, dashed for ground truth, with its label above its top-left
//! corner.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::images::grey_runs;
use super::{color, svg_open, xml_escape};

/// A box to draw over an image, in the image's pixel coordinates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrawnBox {
    /// Left edge.
    pub x0: f64,
    /// Top edge.
    pub y0: f64,
    /// Right edge.
    pub x1: f64,
    /// Bottom edge.
    pub y1: f64,
    /// Text drawn above the box (e.g. `7 0.93`); empty for none.
    pub label: String,
    /// Palette index of the outline and label.
    pub color: usize,
    /// Dashed outline (ground truth) instead of solid (a detection).
    pub dashed: bool,
}

/// A grid of grey-scale images with boxes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxesPlot {
    /// Pixels per image row.
    pub width: usize,
    /// Pixels per image column.
    pub height: usize,
    /// Images per grid row.
    pub n_cols: usize,
    /// A caption under each image.
    pub captions: Vec<String>,
    /// Images in row-major grid order, each `width * height` bytes (0 = white).
    pub images: Vec<Vec<u8>>,
    /// The boxes of each image.
    pub boxes: Vec<Vec<DrawnBox>>,
}

/// Renders images with their boxes to SVG.
pub(super) fn render(title: &str, p: &BoxesPlot) -> Result<String> {
    let (w, h) = (p.width, p.height);
    if p.images.iter().any(|im| im.len() != w * h) {
        bail!("every image must have {w}x{h} pixels");
    }
    if p.boxes.len() != p.images.len() || p.captions.len() != p.images.len() {
        bail!("one list of boxes and one caption per image");
    }
    let scale = 4usize;
    let gap = 16usize;
    let cap = 18usize;
    let n_cols = p.n_cols.max(1);
    let n_rows = p.images.len().div_ceil(n_cols);
    let (cw, ch) = (w * scale + gap, h * scale + gap + cap);
    let top = 40usize;
    let width = gap + n_cols * cw;
    let height = top + n_rows * ch;
    let mut s = String::new();
    svg_open(&mut s, width, height, "");
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-family="sans-serif" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2,
        xml_escape(title)
    );
    for (k, im) in p.images.iter().enumerate() {
        let ox = gap + (k % n_cols) * cw;
        let oy = top + (k / n_cols) * ch;
        let _ = writeln!(
            s,
            r##"<rect x="{ox}" y="{oy}" width="{}" height="{}" fill="none" stroke="#ccc"/>"##,
            w * scale,
            h * scale
        );
        grey_runs(&mut s, im, (w, h), (ox, oy), scale);
        let sc = scale as f64;
        for b in &p.boxes[k] {
            let col = color(b.color);
            let rgb = format!("rgb({},{},{})", col.0, col.1, col.2);
            let dash = if b.dashed {
                r#" stroke-dasharray="4 3""#
            } else {
                ""
            };
            let (x, y) = (ox as f64 + b.x0 * sc, oy as f64 + b.y0 * sc);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{rgb}" stroke-width="2"{dash}/>"#,
                (b.x1 - b.x0) * sc,
                (b.y1 - b.y0) * sc
            );
            if !b.label.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<text x="{x:.1}" y="{:.1}" font-family="sans-serif" font-size="11" fill="{rgb}">{}</text>"#,
                    (y - 3.0).max(oy as f64 + 9.0),
                    xml_escape(&b.label)
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-family="sans-serif" font-size="12" text-anchor="middle">{}</text>"#,
            ox + w * scale / 2,
            oy + h * scale + 14,
            xml_escape(&p.captions[k])
        );
    }
    s.push_str("</svg>\n");
    Ok(s)
}
