//! Experiment `optim_surfaces`: SGD, momentum, Nesterov and Adam on two classic test
//! functions in the plane, with the trajectories drawn on the loss surface.
//!
//! - The ill-conditioned quadratic $f(x, y) = \frac12(x^2 + \kappa y^2)$, condition
//!   number $\kappa$: gradient descent must keep $\eta < 2/\kappa$ for the steep $y$
//!   direction, and then crawls along the flat $x$ direction.
//! - Rosenbrock's valley $f(x, y) = (1 - x)^2 + 100\,(y - x^2)^2$, minimum at $(1, 1)$
//!   at the bottom of a curved, flat-floored valley.
//!
//! Each optimizer gets its best learning rate from a grid (the one with the lowest
//! final loss that stays finite), so the comparison is between tuned methods.
//! Everything is deterministic: no data, no randomness.

use anyhow::Result;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::optim::surfaces::{losses, steps_to, trajectory, Surface};
use crate::optim::OptimizerKind;
use crate::report::contour::ContourPlot;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `optim_surfaces`, registered in [`super::all`].
pub struct OptimSurfaces;

impl Experiment for OptimSurfaces {
    const NAME: &'static str = "optim_surfaces";
    const CHAPTER: &'static str = "ch03";
    const TITLE: &'static str = "Optimizers on an ill-conditioned quadratic and on Rosenbrock's function";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Condition number $\kappa$ of the quadratic.
    pub kappa: f32,
    /// Start on the quadratic.
    pub quad_start: [f32; 2],
    /// Steps on the quadratic.
    pub quad_steps: usize,
    /// Start on Rosenbrock's function.
    pub rosen_start: [f32; 2],
    /// Steps on Rosenbrock's function.
    pub rosen_steps: usize,
    /// Learning-rate grid searched for every optimizer.
    pub lrs: Vec<f32>,
    /// "Converged" means a loss below this.
    pub tol: f32,
    /// Grid points per axis of the contour figures.
    pub grid: usize,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            kappa: 200.0,
            quad_start: [-4.0, 1.5],
            quad_steps: 2000,
            rosen_start: [-1.2, 1.0],
            rosen_steps: 3000,
            lrs: vec![
                1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2, 1e-1, 2e-1,
                5e-1,
            ],
            tol: 1e-6,
            grid: 48,
        }
    }

    /// The test configuration: the same (it takes well under a second).
    fn quick() -> Self {
        Self::full()
    }
}

/// Tuned result of one optimizer on one surface.
#[derive(Clone, Debug)]
pub struct Tuned {
    /// The optimizer.
    pub kind: OptimizerKind,
    /// The best learning rate of the grid.
    pub lr: f32,
    /// Its path.
    pub path: Vec<[f32; 2]>,
    /// Final loss of every learning rate of the grid (infinite if it diverged).
    pub sweep: Vec<f64>,
}

/// Runs every learning rate of the grid and keeps the lowest final loss; ties (several
/// rates reaching a loss of exactly 0 in `f32`) go to the rate that first gets below
/// `tol`.
pub fn tune(
    surface: Surface,
    kind: OptimizerKind,
    lrs: &[f32],
    start: [f32; 2],
    steps: usize,
    tol: f32,
) -> Tuned {
    let runs: Vec<(f64, usize)> = lrs
        .iter()
        .map(|&lr| {
            let path = trajectory(surface, kind, lr, start, steps);
            let last = *losses(surface, &path).last().expect("a path has a start");
            if path.len() == steps + 1 && last.is_finite() {
                let hit = steps_to(surface, &path, tol).unwrap_or(usize::MAX);
                (f64::from(last), hit)
            } else {
                (f64::INFINITY, usize::MAX)
            }
        })
        .collect();
    let best = (0..lrs.len())
        .min_by(|&a, &b| {
            runs[a]
                .0
                .total_cmp(&runs[b].0)
                .then(runs[a].1.cmp(&runs[b].1))
        })
        .expect("a non-empty grid");
    Tuned {
        kind,
        lr: lrs[best],
        path: trajectory(surface, kind, lrs[best], start, steps),
        sweep: runs.iter().map(|r| r.0).collect(),
    }
}

fn contour(
    surface: Surface,
    x: (f64, f64),
    y: (f64, f64),
    n: usize,
    tuned: &[Tuned],
    log_scale: bool,
) -> ContourPlot {
    let lin = |(a, b): (f64, f64)| -> Vec<f64> {
        (0..n)
            .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
            .collect()
    };
    let (xs, ys) = (lin(x), lin(y));
    let z = ys
        .iter()
        .map(|&yv| {
            xs.iter()
                .map(|&xv| f64::from(surface.f(xv as f32, yv as f32)) + 1e-3)
                .collect()
        })
        .collect();
    // At most 200 points per path: enough for the eye, and a small SVG.
    let paths = tuned
        .iter()
        .map(|t| {
            let stride = t.path.len().div_ceil(200).max(1);
            let pts: Vec<&[f32; 2]> = t.path.iter().step_by(stride).collect();
            Series {
                name: format!("{} (η = {})", t.kind.name(), t.lr),
                x: pts.iter().map(|p| f64::from(p[0])).collect(),
                y: pts.iter().map(|p| f64::from(p[1])).collect(),
                band: None,
            }
        })
        .collect();
    ContourPlot {
        x_label: "x".into(),
        y_label: "y".into(),
        x: xs,
        y: ys,
        z,
        paths,
        log_scale,
        levels: 14,
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, r: &mut Report) -> Result<()> {
    let quad = Surface::Quadratic(cfg.kappa);
    let rosen = Surface::Rosenbrock;
    let mut rows = vec![];
    let mut sweep_series = vec![];
    for (sname, surface, start, steps) in [
        ("quadratic", quad, cfg.quad_start, cfg.quad_steps),
        ("rosenbrock", rosen, cfg.rosen_start, cfg.rosen_steps),
    ] {
        let tuned: Vec<Tuned> = OptimizerKind::ALL
            .iter()
            .map(|&k| tune(surface, k, &cfg.lrs, start, steps, cfg.tol))
            .collect();
        for t in &tuned {
            let last = f64::from(*losses(surface, &t.path).last().expect("non-empty"));
            let hit = steps_to(surface, &t.path, cfg.tol);
            let key = format!("{sname}_{}", t.kind.name().to_lowercase());
            r.fact(&format!("{key}_loss"), last, Format::Sci(1));
            r.fact(&format!("{key}_lr"), f64::from(t.lr), Format::Fixed(4));
            if let Some(s) = hit {
                r.fact(&format!("{key}_steps"), s as f64, Format::Int);
            }
            rows.push(vec![
                Value::from(sname),
                Value::from(t.kind.name()),
                f64::from(t.lr).into(),
                last.into(),
                match hit {
                    Some(s) => (s as f64).into(),
                    None => format!("> {steps}").into(),
                },
            ]);
            if sname == "quadratic" {
                let ok: Vec<usize> = (0..cfg.lrs.len())
                    .filter(|&i| t.sweep[i].is_finite())
                    .collect();
                sweep_series.push(Series {
                    name: t.kind.name().into(),
                    x: ok.iter().map(|&i| f64::from(cfg.lrs[i])).collect(),
                    y: ok.iter().map(|&i| t.sweep[i].max(1e-30)).collect(),
                    band: None,
                });
            }
        }
        let plot = if sname == "quadratic" {
            contour(surface, (-4.5, 4.5), (-2.0, 2.0), cfg.grid, &tuned, false)
        } else {
            contour(surface, (-2.0, 2.0), (-1.0, 3.0), cfg.grid, &tuned, true)
        };
        r.figures.push(Figure {
            name: sname.into(),
            title: if sname == "quadratic" {
                format!(
                    "{} steps on ½(x² + {}y²), each optimizer at its best learning rate",
                    cfg.quad_steps, cfg.kappa
                )
            } else {
                format!(
                    "{} steps on Rosenbrock's function (log-scale colours)",
                    cfg.rosen_steps
                )
            },
            plot: Plot::Contour(plot),
        });
    }
    r.tables.push(Table {
        name: "surfaces".into(),
        caption: format!(
            "Each optimizer at the learning rate of the grid with the lowest final loss: \
             the final loss, and the first step with a loss below {:e} (momentum and \
             Nesterov use μ = 0.9; Adam β₁ = 0.9, β₂ = 0.999).",
            cfg.tol
        ),
        columns: vec![
            col("surface", Format::Int),
            col("optimizer", Format::Int),
            col("best η", Format::Fixed(4)),
            col("final loss", Format::Sci(1)),
            col("steps to tolerance", Format::Int),
        ],
        rows,
    });
    r.figures.push(Figure {
        name: "quadratic_lr_sweep".into(),
        title: format!(
            "Final loss after {} steps on the quadratic against the learning rate \
             (diverged runs left out)",
            cfg.quad_steps
        ),
        plot: Plot::Lines {
            x_label: "learning rate η".into(),
            y_label: "final loss".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Log,
            series: sweep_series,
        },
    });
    Ok(())
}
