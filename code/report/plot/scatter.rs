//! Scatter plots: points, one colour per group, optionally with polylines over them.

use anyhow::Result;
use plotters::prelude::*;

use super::{axes, bounds, chart_svg, color, plot_err, FIG_W};
use crate::report::{Group, Scale, Series};

/// Renders a scatter plot to SVG, with `lines` drawn over the points.
pub(super) fn render(
    title: &str,
    x_label: &str,
    y_label: &str,
    groups: &[Group],
    lines: &[Series],
) -> Result<String> {
    let (x0, x1) = bounds(
        groups
            .iter()
            .flat_map(|g| g.x.iter().copied())
            .chain(lines.iter().flat_map(|l| l.x.iter().copied())),
        Scale::Linear,
    )?;
    let (y0, y1) = bounds(
        groups
            .iter()
            .flat_map(|g| g.y.iter().copied())
            .chain(lines.iter().flat_map(|l| l.y.iter().copied())),
        Scale::Linear,
    )?;
    let size = (FIG_W, FIG_W * 3 / 4);
    chart_svg(size, title, (x0..x1, y0..y1), true, |chart| {
        axes(chart, x_label, y_label)?;
        for (i, g) in groups.iter().enumerate() {
            let c = color(i);
            let pts =
                g.x.iter()
                    .zip(&g.y)
                    .map(move |(x, y)| Circle::new((*x, *y), 2, c.filled()));
            chart
                .draw_series(pts)
                .map_err(plot_err)?
                .label(g.name.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        }
        // One colour and legend entry per distinct line name, in order of appearance.
        let mut names: Vec<&str> = vec![];
        for l in lines {
            let known = names.iter().position(|&n| n == l.name);
            let k = known.unwrap_or(names.len());
            if known.is_none() {
                names.push(&l.name);
            }
            let c = color(groups.len() + k);
            let pts: Vec<(f64, f64)> =
                l.x.iter().copied().zip(l.y.iter().copied()).collect();
            let drawn = chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?;
            if known.is_none() {
                drawn.label(l.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            }
        }
        Ok(())
    })
}
