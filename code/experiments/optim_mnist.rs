//! Experiment `optim_mnist`: SGD, momentum, Nesterov and Adam training the same MLP on
//! MNIST, after tuning the learning rate of each.
//!
//! 1. **Learning-rate sweep.** Every optimizer trains the MLP for `sweep_epochs` on
//!    `sweep_n_train` images at every learning rate of `lrs` (seed `seeds[0]`); the rate
//!    with the best accuracy on a *validation* set (the last `n_val` training images,
//!    never trained on) is kept. The test set plays no part in the choice.
//! 2. **Adam's lr × β₁ grid**, on the same budget and validation set.
//! 3. **Comparison.** Each optimizer at its chosen rate trains for `n_epochs` on
//!    `n_train` images, once per seed (the seed fixes the initialization and the batch
//!    order); training-loss curves and test accuracy are mean ± std over the seeds.

use anyhow::Result;
use serde::Serialize;

use super::common::{final_losses, loss_curve, loss_figure, over_seeds, TrainFields};
use super::{Experiment, Preset};
use crate::data::Dataset;
use crate::data::{mnist_refs, DataDir, Split};
use crate::nn::activation::Activation;
use crate::nn::linear::Init;
use crate::nn::mlp::Mlp;
use crate::optim::{Adam, Optimizer, OptimizerKind};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::train::{train_classifier, History, TrainSpec};

/// Experiment `optim_mnist`, registered in [`super::all`].
pub struct OptimMnist;

impl Experiment for OptimMnist {
    const NAME: &'static str = "optim_mnist";
    const CHAPTER: &'static str = "ch03";
    const TITLE: &'static str = "Four optimizers training an MLP on MNIST, each at its tuned learning rate";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Layer sizes of the MLP (ReLU, He initialization).
    pub sizes: Vec<usize>,
    /// Training images of the comparison (the first ones).
    pub n_train: usize,
    /// Test images.
    pub n_test: usize,
    /// Epochs, batches and seeds of the comparison (the sweeps use the batch size too).
    #[serde(flatten)]
    pub train: TrainFields,
    /// Validation images for tuning: the last ones of the training set.
    pub n_val: usize,
    /// Steps per point of the training curves.
    pub log_every: usize,
    /// Learning rates tried for every optimizer.
    pub lrs: Vec<f32>,
    /// Training images of the sweeps.
    pub sweep_n_train: usize,
    /// Epochs of the sweeps.
    pub sweep_epochs: usize,
    /// Adam learning rates of the grid.
    pub adam_lrs: Vec<f32>,
    /// Adam β₁ of the grid.
    pub adam_beta1s: Vec<f32>,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            sizes: vec![784, 128, 10],
            n_train: 20_000,
            n_test: 10_000,
            train: TrainFields {
                n_epochs: 2,
                batch_size: 64,
                seeds: vec![0, 1, 2],
            },
            n_val: 10_000,
            log_every: 100,
            lrs: vec![1e-4, 1e-3, 1e-2, 1e-1, 3e-1, 1.0],
            sweep_n_train: 5_000,
            sweep_epochs: 1,
            adam_lrs: vec![1e-4, 1e-3, 1e-2],
            adam_beta1s: vec![0.0, 0.5, 0.9, 0.99],
        }
    }

    /// The test configuration: a few thousand images, one epoch.
    fn quick() -> Self {
        Config {
            n_train: 4_000,
            n_test: 2_000,
            train: TrainFields {
                n_epochs: 1,
                ..Self::full().train
            },
            n_val: 2_000,
            log_every: 10,
            lrs: vec![1e-3, 1e-2, 1e-1, 1.0],
            sweep_n_train: 2_000,
            adam_lrs: vec![1e-3, 1e-2],
            adam_beta1s: vec![0.0, 0.9],
            ..Self::full()
        }
    }
}

/// Trains a fresh MLP of `cfg.sizes` (seeded with `seed`) with `opt`.
pub fn train_mlp(
    cfg: &Config,
    opt: &mut dyn Optimizer,
    train: &Dataset,
    eval: &Dataset,
    n_epochs: usize,
    seed: u64,
) -> History {
    let mut model = Mlp::new(&cfg.sizes, Activation::Relu, Init::He, seed);
    let spec = TrainSpec {
        n_epochs,
        log_every: cfg.log_every,
        ..cfg.train.spec(seed)
    };
    train_classifier(&mut model, opt, train, eval, &spec)
}

fn subset(d: &Dataset, range: std::ops::Range<usize>) -> Dataset {
    d.select(&range.collect::<Vec<_>>())
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let all = Dataset::mnist(dir, Split::Train, 60_000)?.into_flat();
    let n = all.len();
    anyhow::ensure!(
        cfg.n_train.max(cfg.sweep_n_train) + cfg.n_val <= n,
        "n_train ({}) + n_val ({}) exceed the {n} training images",
        cfg.n_train.max(cfg.sweep_n_train),
        cfg.n_val
    );
    let train = subset(&all, 0..cfg.n_train);
    let sweep_train = subset(&all, 0..cfg.sweep_n_train);
    let val = subset(&all, n - cfg.n_val..n);
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?.into_flat();

    r.seeds = cfg.train.seeds.clone();
    r.data = mnist_refs();
    let seed0 = cfg.train.seeds[0];

    // 1. Learning-rate sweep, chosen on validation accuracy.
    let mut sweep_rows = vec![];
    let mut sweep_series = vec![];
    let mut best_lr = vec![];
    for kind in OptimizerKind::ALL {
        let accs: Vec<f64> = cfg
            .lrs
            .iter()
            .map(|&lr| {
                let mut opt = kind.build(lr);
                let h = train_mlp(
                    cfg,
                    opt.as_mut(),
                    &sweep_train,
                    &val,
                    cfg.sweep_epochs,
                    seed0,
                );
                h.final_acc()
            })
            .collect();
        let best = (0..accs.len())
            .max_by(|&a, &b| accs[a].total_cmp(&accs[b]))
            .expect("a non-empty grid");
        best_lr.push(cfg.lrs[best]);
        r.fact(
            &format!("best_lr_{}", kind.name().to_lowercase()),
            f64::from(cfg.lrs[best]),
            Format::Fixed(4),
        );
        let mut row = vec![Value::from(kind.name())];
        row.extend(accs.iter().map(|&a| Value::Num(a)));
        sweep_rows.push(row);
        sweep_series.push(Series {
            name: kind.name().into(),
            x: cfg.lrs.iter().map(|&l| f64::from(l)).collect(),
            y: accs,
            band: None,
        });
    }
    let mut cols = vec![col("optimizer", Format::Int)];
    cols.extend(
        cfg.lrs
            .iter()
            .map(|l| col(&format!("η = {l}"), Format::Percent(1))),
    );
    r.tables.push(Table {
        name: "lr_sweep".into(),
        caption: format!(
            "Validation accuracy after {} epoch(s) on {} training images, per learning \
             rate (seed {seed0}); 0 % marks a run whose loss became NaN.",
            cfg.sweep_epochs, cfg.sweep_n_train
        ),
        columns: cols,
        rows: sweep_rows,
    });
    r.figures.push(Figure {
        name: "lr_sweep".into(),
        title: "Validation accuracy against the learning rate".into(),
        plot: Plot::Lines {
            x_label: "learning rate η".into(),
            y_label: "validation accuracy".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series: sweep_series,
        },
    });

    // 2. Adam: learning rate × beta1.
    let mut grid_rows = vec![];
    let mut grid_best = (0.0, 0.0f32, 0.0f32);
    for &b1 in &cfg.adam_beta1s {
        let mut row = vec![Value::from(format!("β₁ = {b1}"))];
        for &lr in &cfg.adam_lrs {
            let mut opt = Adam {
                beta1: b1,
                ..Adam::new(lr)
            };
            let acc =
                train_mlp(cfg, &mut opt, &sweep_train, &val, cfg.sweep_epochs, seed0)
                    .final_acc();
            if acc > grid_best.0 {
                grid_best = (acc, lr, b1);
            }
            row.push(Value::Num(acc));
        }
        grid_rows.push(row);
    }
    let mut cols = vec![col("Adam", Format::Int)];
    cols.extend(
        cfg.adam_lrs
            .iter()
            .map(|l| col(&format!("η = {l}"), Format::Percent(1))),
    );
    r.tables.push(Table {
        name: "adam_grid".into(),
        caption: "Adam's validation accuracy over learning rate × β₁ (β₂ = 0.999), same \
                  budget as the sweep."
            .into(),
        columns: cols,
        rows: grid_rows,
    });
    r.fact("adam_grid_best_acc", grid_best.0, Format::Percent(1));
    r.fact(
        "adam_grid_best_lr",
        f64::from(grid_best.1),
        Format::Fixed(4),
    );
    r.fact(
        "adam_grid_best_beta1",
        f64::from(grid_best.2),
        Format::Fixed(2),
    );

    // 3. The comparison over seeds.
    let mut rows = vec![];
    let mut curves = vec![];
    for (kind, &lr) in OptimizerKind::ALL.iter().zip(&best_lr) {
        let what = format!("optim_mnist: {}", kind.name());
        let hs = over_seeds(&what, &cfg.train.seeds, |seed| {
            let mut opt = kind.build(lr);
            train_mlp(cfg, opt.as_mut(), &train, &test, cfg.train.n_epochs, seed)
        });
        let accs: Vec<f64> = hs.iter().map(History::final_acc).collect();
        let last = final_losses(&hs);
        let first_window: Vec<f64> = hs
            .iter()
            .map(|h| h.train_loss.first().copied().unwrap_or(f64::NAN))
            .collect();
        let key = kind.name().to_lowercase();
        r.fact(
            &format!("acc_{key}"),
            Value::Seeds(accs.clone()),
            Format::Percent(2),
        );
        r.fact(
            &format!("loss_{key}"),
            Value::Seeds(last.clone()),
            Format::Fixed(3),
        );
        r.fact(
            &format!("first_loss_{key}"),
            Value::Seeds(first_window),
            Format::Fixed(3),
        );
        rows.push(vec![
            Value::from(kind.name()),
            f64::from(lr).into(),
            Value::Seeds(accs),
            Value::Seeds(last),
        ]);
        curves.push(loss_curve(format!("{} (η = {lr})", kind.name()), &hs));
    }
    r.tables.push(Table {
        name: "comparison".into(),
        caption: format!(
            "MLP {:?} on {} MNIST training images, {} epochs, batch {}: test accuracy on \
             {} test images and the training loss of the last {} steps, mean ± std over \
             seeds {:?}.",
            cfg.sizes,
            cfg.n_train,
            cfg.train.n_epochs,
            cfg.train.batch_size,
            cfg.n_test,
            cfg.log_every,
            cfg.train.seeds
        ),
        columns: vec![
            col("optimizer", Format::Int),
            col("tuned η", Format::Fixed(4)),
            col("test accuracy", Format::Percent(2)),
            col("final training loss", Format::Fixed(3)),
        ],
        rows,
    });
    r.figures.push(loss_figure(
        "curves",
        cfg.log_every,
        &cfg.train.seeds,
        Scale::Linear,
        curves,
    ));
    Ok(())
}
