//! Figures as SVG: [`render_figure`] dispatches on the kind of plot, one file per kind.
//!
//! Lines, scatter and contour plots are drawn with plotters (SVG backend) in one shared
//! frame: a title, axes with room for their labels, a legend at the top right. Heatmaps,
//! image grids and graphs are written directly as SVG elements with integer coordinates.

use anyhow::{bail, Result};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

use super::{Figure, Plot, Scale};

pub mod attention;
pub mod boxes;
pub mod contour;
pub mod flow;
pub mod graph;
mod heatmap;
mod images;
mod lines;
mod scatter;

const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

const FIG_W: u32 = 720;
const FIG_H: u32 = 450;

/// Renders a figure to SVG text.
pub fn render_figure(fig: &Figure) -> Result<String> {
    match &fig.plot {
        Plot::Lines {
            x_label,
            y_label,
            x_scale,
            y_scale,
            series,
        } => lines::render(&fig.title, x_label, y_label, *x_scale, *y_scale, series),
        Plot::Scatter {
            x_label,
            y_label,
            groups,
        } => scatter::render(&fig.title, x_label, y_label, groups, &[]),
        Plot::ScatterLines {
            x_label,
            y_label,
            groups,
            lines,
        } => scatter::render(&fig.title, x_label, y_label, groups, lines),
        Plot::Contour(c) => contour::render(&fig.title, c),
        Plot::Graph(g) => graph::render(&fig.title, g),
        Plot::Flow(f) => flow::render(&fig.title, f),
        Plot::Boxes(b) => boxes::render(&fig.title, b),
        Plot::Attention(a) => attention::render(&fig.title, a),
        Plot::Images {
            width,
            height,
            row_labels,
            col_labels,
            images,
        } => images::render(&fig.title, *width, *height, row_labels, col_labels, images),
        Plot::Heatmap {
            x_label,
            y_label,
            row_labels,
            col_labels,
            values,
            log_shade,
            decimals,
        } => heatmap::render(
            &fig.title,
            (x_label, y_label),
            (row_labels, col_labels),
            values,
            *log_shade,
            *decimals,
        ),
        Plot::Picture {
            png_base64,
            width,
            height,
        } => Ok(picture(&fig.title, png_base64, *width, *height)),
    }
}

/// A PNG under a title, embedded as a data URL (the SVG stays one self-contained file).
fn picture(title: &str, png_base64: &str, width: u32, height: u32) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    svg_open(&mut s, width, height + 34, "");
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-family="sans-serif" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2,
        xml_escape(title)
    );
    let _ = writeln!(
        s,
        r#"<image x="0" y="34" width="{width}" height="{height}" href="data:image/png;base64,{png_base64}"/>"#
    );
    s.push_str("</svg>\n");
    s
}

fn bounds(vals: impl Iterator<Item = f64>, scale: Scale) -> Result<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        if scale == Scale::Log && v <= 0.0 {
            bail!("a log axis cannot show {v}");
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        bail!("nothing to plot");
    }
    if scale == Scale::Log {
        return Ok((lo / 1.2, hi * 1.2));
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1.0)
    };
    Ok((lo - pad, hi + pad))
}

fn color(i: usize) -> plotters::style::RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    plotters::style::RGBColor(r, g, b)
}

/// A plotters chart drawn into an SVG string.
type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

/// The frame every plotters figure shares: a `size` white canvas, `title` above, the
/// plotting area over `xr` x `yr` with room for axis labels. `draw` fills the chart, then
/// the labelled series get a legend box at the top right if `with_legend`. Returns the
/// SVG text.
fn chart_svg<X, Y>(
    size: (u32, u32),
    title: &str,
    (xr, yr): (X, Y),
    with_legend: bool,
    draw: impl FnOnce(&mut Chart<'_, '_, X::CoordDescType, Y::CoordDescType>) -> Result<()>,
) -> Result<String>
where
    X: AsRangedCoord,
    Y: AsRangedCoord,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(xr, yr)
            .map_err(plot_err)?;
        draw(&mut chart)?;
        if with_legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .border_style(BLACK.mix(0.3))
                .background_style(WHITE.mix(0.85))
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Labelled axes without grid lines (lines and scatter plots).
fn axes<X, Y>(chart: &mut Chart<'_, '_, X, Y>, x_label: &str, y_label: &str) -> Result<()>
where
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_err)
}

/// Opens an SVG document of `width` x `height` (with `attrs`, each with a leading space,
/// on the root element) on a white background.
fn svg_open(
    s: &mut String,
    width: impl std::fmt::Display,
    height: impl std::fmt::Display,
    attrs: &str,
) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        r#"<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"{attrs}>"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e:?}")
}
