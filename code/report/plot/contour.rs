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

// ANCHOR: iso_lines
/// The level set `z = level` of a field `z[j][i]` at `(x[i], y[j])` as polylines, by
/// marching squares: each grid cell whose corners lie on both sides of `level` holds
/// one segment (two at a saddle, split the way the cell's mean value says), with its
/// ends interpolated linearly along the crossed cell edges; segments meeting on an
/// edge are then chained into polylines. Panics if `z` is not `y.len()` rows of
/// `x.len()` values.
pub fn iso_lines(
    x: &[f64],
    y: &[f64],
    z: &[Vec<f64>],
    level: f64,
) -> Vec<Vec<(f64, f64)>> {
    let (nx, ny) = (x.len(), y.len());
    assert!(
        z.len() == ny && z.iter().all(|r| r.len() == nx),
        "iso_lines: z must be {ny} rows of {nx} values"
    );
    let above = |i: usize, j: usize| z[j][i] > level;
    // Where `level` crosses the segment from corner a to corner b (values za, zb).
    let cross = |(xa, ya, za): (f64, f64, f64), (xb, yb, zb): (f64, f64, f64)| {
        let t = ((level - za) / (zb - za)).clamp(0.0, 1.0);
        (xa + t * (xb - xa), ya + t * (yb - ya))
    };
    // Edge ids: horizontal edge from (i, j) to (i + 1, j), vertical from (i, j) to (i, j + 1).
    let h = |i: usize, j: usize| (j * nx + i) * 2;
    let v = |i: usize, j: usize| (j * nx + i) * 2 + 1;
    let mut point = std::collections::HashMap::new();
    let mut at = |e: usize, i0: usize, j0: usize, i1: usize, j1: usize| {
        point.entry(e).or_insert_with(|| {
            cross((x[i0], y[j0], z[j0][i0]), (x[i1], y[j1], z[j1][i1]))
        });
        e
    };
    let mut segments: Vec<(usize, usize)> = vec![];
    for j in 0..ny.saturating_sub(1) {
        for i in 0..nx.saturating_sub(1) {
            let (a00, a10, a01, a11) = (
                above(i, j),
                above(i + 1, j),
                above(i, j + 1),
                above(i + 1, j + 1),
            );
            let mut crossed = vec![];
            if a00 != a10 {
                crossed.push(at(h(i, j), i, j, i + 1, j));
            }
            if a10 != a11 {
                crossed.push(at(v(i + 1, j), i + 1, j, i + 1, j + 1));
            }
            if a01 != a11 {
                crossed.push(at(h(i, j + 1), i, j + 1, i + 1, j + 1));
            }
            if a00 != a01 {
                crossed.push(at(v(i, j), i, j, i, j + 1));
            }
            match crossed[..] {
                [p, q] => segments.push((p, q)),
                // A saddle, crossed as [bottom, right, top, left]: if the mean is on the
                // side of corners 00 and 11 they connect, and the segments cut off
                // corners 10 (bottom-right) and 01 (top-left); otherwise 00 and 11.
                [b, r, t, l] => {
                    let mean =
                        (z[j][i] + z[j][i + 1] + z[j + 1][i] + z[j + 1][i + 1]) / 4.0;
                    if (mean > level) == a00 {
                        segments.extend([(b, r), (t, l)]);
                    } else {
                        segments.extend([(b, l), (r, t)]);
                    }
                }
                _ => {}
            }
        }
    }
    // Chain: an edge is shared by at most two cells, so by at most two segments.
    let mut on_edge: std::collections::HashMap<usize, Vec<usize>> = Default::default();
    for (s, &(p, q)) in segments.iter().enumerate() {
        on_edge.entry(p).or_default().push(s);
        on_edge.entry(q).or_default().push(s);
    }
    let mut used = vec![false; segments.len()];
    let mut lines = vec![];
    for s in 0..segments.len() {
        if used[s] {
            continue;
        }
        used[s] = true;
        let mut chain = std::collections::VecDeque::from([segments[s].0, segments[s].1]);
        for forward in [true, false] {
            loop {
                let end = if forward {
                    chain[chain.len() - 1]
                } else {
                    chain[0]
                };
                let next = on_edge[&end].iter().copied().find(|&t| !used[t]);
                let Some(t) = next else { break };
                used[t] = true;
                let (p, q) = segments[t];
                let other = if p == end { q } else { p };
                if forward {
                    chain.push_back(other);
                } else {
                    chain.push_front(other);
                }
            }
        }
        lines.push(chain.iter().map(|e| point[e]).collect());
    }
    lines
}
// ANCHOR_END: iso_lines
