//! Contour figures: a scalar field over a grid, drawn as filled bands of a colour map,
//! with paths (e.g. optimizer trajectories) on top.
//!
//! The field is quantised into [`ContourPlot::levels`] bands, linearly or in
//! $\log_{10}$ (for losses spanning decades, like Rosenbrock's), and each run of
//! equal band along a grid row is one rectangle, which keeps the SVG small. Path
//! points outside the grid are clamped to its edge.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::{chart_svg, color, plot_err, FIG_H, FIG_W};

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
    pub paths: Vec<crate::report::Series>,
    /// Bands of the colour map in `log10(z)` (all `z` must be > 0) instead of `z`.
    #[serde(default)]
    pub log_scale: bool,
    /// Number of colour bands.
    #[serde(default = "default_levels")]
    pub levels: usize,
}

fn default_levels() -> usize {
    14
}

/// A light-to-dark blue-green map, `t` in `[0, 1]` (low values light, so paths stand
/// out at the minimum).
fn colormap(t: f64) -> plotters::style::RGBColor {
    let stops = [
        (0.0, (255.0, 255.0, 229.0)),
        (0.25, (217.0, 240.0, 163.0)),
        (0.5, (120.0, 198.0, 121.0)),
        (0.75, (49.0, 163.0, 84.0)),
        (1.0, (0.0, 90.0, 50.0)),
    ];
    let t = t.clamp(0.0, 1.0);
    let k = stops
        .iter()
        .rposition(|s| s.0 <= t)
        .unwrap_or(0)
        .min(stops.len() - 2);
    let (t0, c0) = stops[k];
    let (t1, c1) = stops[k + 1];
    let f = (t - t0) / (t1 - t0);
    let mix = |a: f64, b: f64| (a + f * (b - a)).round() as u8;
    plotters::style::RGBColor(mix(c0.0, c1.0), mix(c0.1, c1.1), mix(c0.2, c1.2))
}

/// Renders a contour figure to SVG.
pub fn render(title: &str, c: &ContourPlot) -> Result<String> {
    use plotters::prelude::*;
    let (nx, ny) = (c.x.len(), c.y.len());
    if nx < 2 || ny < 2 || c.z.len() != ny || c.z.iter().any(|row| row.len() != nx) {
        bail!("a contour grid needs z[{ny}][{nx}] with at least 2 x 2 points");
    }
    let levels = c.levels.max(2);
    let f = |z: f64| -> Result<f64> {
        if c.log_scale {
            if z <= 0.0 {
                bail!("a log-scale contour cannot show {z}");
            }
            Ok(z.log10())
        } else {
            Ok(z)
        }
    };
    let mut t = vec![vec![0.0; nx]; ny];
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (j, row) in c.z.iter().enumerate() {
        for (i, &z) in row.iter().enumerate() {
            let v = f(z)?;
            t[j][i] = v;
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    let band = |v: f64| {
        (((v - lo) / span) * levels as f64)
            .floor()
            .min(levels as f64 - 1.0)
    };
    // Cell edges: midpoints between grid coordinates.
    let edges = |g: &[f64]| -> Vec<f64> {
        let mut e = vec![g[0] - (g[1] - g[0]) / 2.0];
        e.extend(g.windows(2).map(|w| (w[0] + w[1]) / 2.0));
        e.push(g[g.len() - 1] + (g[g.len() - 1] - g[g.len() - 2]) / 2.0);
        e
    };
    let (ex, ey) = (edges(&c.x), edges(&c.y));
    let (x0, x1, y0, y1) = (ex[0], ex[nx], ey[0], ey[ny]);
    let with_legend = !c.paths.is_empty();
    chart_svg(
        (FIG_W, FIG_H),
        title,
        (x0..x1, y0..y1),
        with_legend,
        |chart| {
            let mut rects = vec![];
            for j in 0..ny {
                let mut i = 0;
                while i < nx {
                    let b = band(t[j][i]);
                    let start = i;
                    while i < nx && band(t[j][i]) == b {
                        i += 1;
                    }
                    let col = colormap((b + 0.5) / levels as f64);
                    rects.push(Rectangle::new(
                        [(ex[start], ey[j]), (ex[i], ey[j + 1])],
                        col.filled(),
                    ));
                }
            }
            chart.draw_series(rects).map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc(c.x_label.as_str())
                .y_desc(c.y_label.as_str())
                .disable_mesh()
                .draw()
                .map_err(plot_err)?;
            let clamp = |x: f64, y: f64| (x.clamp(x0, x1), y.clamp(y0, y1));
            for (k, s) in c.paths.iter().enumerate() {
                let col = color(k);
                let pts: Vec<(f64, f64)> =
                    s.x.iter().zip(&s.y).map(|(&x, &y)| clamp(x, y)).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2))
                    });
                if let Some(&end) = pts.last() {
                    chart
                        .draw_series(std::iter::once(Circle::new(end, 4, col.filled())))
                        .map_err(plot_err)?;
                }
            }
            if let Some(s) = c.paths.first() {
                if let (Some(&x), Some(&y)) = (s.x.first(), s.y.first()) {
                    chart
                        .draw_series(std::iter::once(Cross::new(clamp(x, y), 6, BLACK)))
                        .map_err(plot_err)?;
                }
            }
            Ok(())
        },
    )
}
