//! Scatter plots: points, one colour per group.

use anyhow::Result;
use plotters::prelude::*;

use super::{axes, bounds, chart_svg, color, plot_err, FIG_W};
use crate::report::{Group, Scale};

/// Renders a scatter plot to SVG.
pub(super) fn render(
    title: &str,
    x_label: &str,
    y_label: &str,
    groups: &[Group],
) -> Result<String> {
    let (x0, x1) = bounds(
        groups.iter().flat_map(|g| g.x.iter().copied()),
        Scale::Linear,
    )?;
    let (y0, y1) = bounds(
        groups.iter().flat_map(|g| g.y.iter().copied()),
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
        Ok(())
    })
}
