//! Experiment `sweep_mnist`: grid search, random search and successive halving over the
//! learning rate and width of an MLP on MNIST ([`crate::mlops::sweep`]), each winner
//! chosen on validation images and then measured once on test images; the best
//! validation accuracy found against the epochs spent, for the three strategies.

use anyhow::Result;

use super::{Experiment, Preset};
use crate::data::{self, DataDir};
use crate::mlops::sweep::{self, Strategy, SweepConfig, SweepData};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};

/// Experiment `sweep_mnist`, registered in [`super::all`].
pub struct SweepMnist;

impl Experiment for SweepMnist {
    const NAME: &'static str = "sweep_mnist";
    const CHAPTER: &'static str = "ch13";
    const TITLE: &'static str = "Grid, random search and successive halving on an MNIST MLP";
    type Config = SweepConfig;

    fn run(cfg: &SweepConfig, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

impl Preset for SweepConfig {
    /// The book's sweep: 15 grid points, 15 random ones and 27 for successive halving
    /// ($\eta = 3$: 27 points for 1 epoch, 9 for 3, 3 for 9).
    fn full() -> Self {
        SweepConfig {
            n_train: 10_000,
            n_val: 5_000,
            n_test: 10_000,
            batch_size: 64,
            lr_range: (1e-3, 1.0),
            hidden: vec![16, 64, 256],
            grid_lr: 5,
            n_random: 15,
            max_epochs: 9,
            n_halving: 27,
            min_epochs: 1,
            eta: 3,
            seed: 0,
        }
    }

    /// Seconds: small data and networks, 4 grid points, 9 points halved once.
    fn quick() -> Self {
        SweepConfig {
            n_train: 1_000,
            n_val: 500,
            n_test: 500,
            hidden: vec![16, 32],
            grid_lr: 2,
            n_random: 4,
            max_epochs: 3,
            n_halving: 9,
            ..Self::full()
        }
    }
}

/// The threads the experiment's trials run on: every core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &SweepConfig, dir: &DataDir, r: &mut Report) -> Result<()> {
    let data = SweepData::load(dir, cfg)?;
    r.data = data::mnist_refs();
    r.seeds = vec![cfg.seed];
    let total: usize = cfg.grid().len()
        + cfg.n_random
        + cfg.rungs().iter().map(|&(n, _)| n).sum::<usize>();
    let bar = progress::bar(total as u64, "sweep_mnist");
    let mut results = vec![];
    for s in Strategy::ALL {
        bar.set_message(s.name());
        results.push(sweep::run(cfg, s, &data, threads(), None, &|| bar.inc(1))?);
    }
    bar.finish_and_clear();
    let grid_budget = results[0].budget as f64;
    r.tables.push(Table {
        name: "strategies".into(),
        caption: format!(
            "Each strategy's winner, chosen on {} validation images (from the training \
             file), then measured once on {} test images; budget in epochs of {} training \
             images; learning rates in [{}, {}], widths {:?}",
            cfg.n_val, cfg.n_test, cfg.n_train, cfg.lr_range.0, cfg.lr_range.1, cfg.hidden
        ),
        columns: vec![
            col("strategy", Format::Int),
            col("points", Format::Int),
            col("budget (epochs)", Format::Int),
            col("budget / grid's", Format::Percent(0)),
            col("winner's lr", Format::Sci(1)),
            col("winner's width", Format::Int),
            col("validation accuracy", Format::Percent(2)),
            col("test accuracy", Format::Percent(2)),
        ],
        rows: results
            .iter()
            .map(|res| {
                let w = res.winner();
                vec![
                    Value::Text(res.strategy.name().into()),
                    Value::Num(res.trials.len() as f64),
                    Value::Num(res.budget as f64),
                    Value::Num(res.budget as f64 / grid_budget),
                    Value::Num(f64::from(w.point.lr)),
                    Value::Num(w.point.hidden as f64),
                    Value::Num(w.score()),
                    Value::Num(res.test_acc),
                ]
            })
            .collect(),
    });
    for res in &results {
        let n = res.strategy.name();
        r.fact(&format!("{n}_budget"), Value::Num(res.budget as f64), Format::Int);
        r.fact(&format!("{n}_val_acc"), Value::Num(res.winner().score()), Format::Percent(2));
        r.fact(&format!("{n}_test_acc"), Value::Num(res.test_acc), Format::Percent(2));
    }
    let (grid, halving) = (&results[0], &results[2]);
    r.fact(
        "halving_points_full_budget",
        Value::Num((cfg.n_halving * cfg.max_epochs) as f64),
        Format::Int,
    );
    r.fact(
        "halving_budget_fraction",
        Value::Num(halving.budget as f64 / grid_budget),
        Format::Percent(0),
    );
    r.fact(
        "halving_minus_grid_val",
        Value::Num(halving.winner().score() - grid.winner().score()),
        Format::Percent(2),
    );
    // The epochs at which successive halving first matched the grid's best (or missed).
    let target = grid.winner().score();
    let reached = halving
        .best_so_far()
        .iter()
        .find(|&&(_, best)| best >= target)
        .map(|&(spent, _)| spent as f64);
    r.fact(
        "halving_reached_grid_best",
        Value::Text(if reached.is_some() { "yes" } else { "no" }.into()),
        Format::Int,
    );
    if let Some(spent) = reached {
        r.fact("halving_epochs_to_grid_best", Value::Num(spent), Format::Int);
    }
    r.figures.push(Figure {
        name: "best_vs_budget".into(),
        title: "Best validation accuracy found against the epochs spent".into(),
        plot: Plot::Lines {
            x_label: "epochs spent by the sweep".into(),
            y_label: "best validation accuracy so far".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series: results
                .iter()
                .map(|res| {
                    let (x, y) = res
                        .best_so_far()
                        .iter()
                        .map(|&(s, b)| (s as f64, b))
                        .unzip();
                    Series {
                        name: res.strategy.name().into(),
                        x,
                        y,
                        band: None,
                    }
                })
                .collect(),
        },
    });
    Ok(())
}
