//! Line charts: one line per series, with an optional shaded ± band, on linear or log
//! axes.

use anyhow::Result;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use super::{axes, bounds, chart_svg, color, plot_err, FIG_H, FIG_W};
use crate::report::{Scale, Series};

/// Renders a line chart to SVG.
pub(super) fn render(
    title: &str,
    x_label: &str,
    y_label: &str,
    xs: Scale,
    ys: Scale,
    series: &[Series],
) -> Result<String> {
    let (x0, x1) = bounds(series.iter().flat_map(|s| s.x.iter().copied()), xs)?;
    let y_vals = series.iter().flat_map(|s| {
        let band = s.band.clone().unwrap_or_else(|| vec![0.0; s.y.len()]);
        s.y.iter()
            .zip(band)
            .flat_map(|(y, b)| [y - b, y + b])
            .collect::<Vec<_>>()
    });
    let (y0, y1) = bounds(y_vals, ys)?;
    let (x0, x1) = if xs == Scale::Linear {
        (x0, x1)
    } else {
        (x0 * 1.2, x1 / 1.2)
    };
    match (xs, ys) {
        (Scale::Linear, Scale::Linear) => {
            draw_lines(title, x_label, y_label, x0..x1, y0..y1, series)
        }
        (Scale::Log, Scale::Linear) => {
            let xr = (x0..x1).log_scale();
            draw_lines(title, x_label, y_label, xr, y0..y1, series)
        }
        (Scale::Linear, Scale::Log) => {
            let yr = (y0..y1).log_scale();
            draw_lines(title, x_label, y_label, x0..x1, yr, series)
        }
        (Scale::Log, Scale::Log) => {
            let (xr, yr) = ((x0..x1).log_scale(), (y0..y1).log_scale());
            draw_lines(title, x_label, y_label, xr, yr, series)
        }
    }
}

fn draw_lines<X, Y>(
    title: &str,
    x_label: &str,
    y_label: &str,
    xr: X,
    yr: Y,
    series: &[Series],
) -> Result<String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let with_legend = series.len() > 1 || series.iter().any(|s| !s.name.is_empty());
    chart_svg((FIG_W, FIG_H), title, (xr, yr), with_legend, |chart| {
        axes(chart, x_label, y_label)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            if let Some(band) = &s.band {
                let upper =
                    s.x.iter()
                        .zip(&s.y)
                        .zip(band)
                        .map(|((x, y), b)| (*x, y + b));
                let lower =
                    s.x.iter()
                        .zip(&s.y)
                        .zip(band)
                        .map(|((x, y), b)| (*x, y - b));
                let poly: Vec<(f64, f64)> = upper.chain(lower.rev()).collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2).filled())))
                    .map_err(plot_err)?;
            }
            let pts: Vec<(f64, f64)> =
                s.x.iter().copied().zip(s.y.iter().copied()).collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        Ok(())
    })
}
