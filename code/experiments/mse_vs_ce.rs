//! Experiment `mse_vs_ce`: the same classifier trained with softmax cross-entropy and
//! with squared error on the softmax probabilities, each at several learning rates.
//!
//! The network is `784 - h - 10` with ReLU and He initialization on an MNIST subset.
//! Both losses see the same initial weights and the same batches for a given seed; each
//! is reported at every learning rate, so neither is judged at a rate that suits only the
//! other. The gradient each loss sends to the logit of the true class when the network
//! is confidently wrong is computed exactly (see [`crate::train::classifier_loss`]).

use anyhow::Result;
use serde::Serialize;

use super::common::{over_seeds, TrainFields};
use super::{Experiment, Preset};
use crate::data::Dataset;
use crate::data::{self, DataDir, Split};
use crate::nn::activation::Activation;
use crate::nn::linear::Init;
use crate::nn::mlp::Mlp;
use crate::optim::Sgd;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::train::{classifier_loss, train_with, ClassifierLoss, TrainSpec};

/// Experiment `mse_vs_ce`, registered in [`super::all`].
pub struct MseVsCe;

impl Experiment for MseVsCe {
    const NAME: &'static str = "mse_vs_ce";
    const CHAPTER: &'static str = "ch02";
    const TITLE: &'static str = "Cross-entropy vs squared error for an MNIST classifier";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images (the first ones).
    pub n_test: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Learning rates tried for each loss.
    pub lrs: Vec<f32>,
    /// Epochs, mini-batches and seeds.
    #[serde(flatten)]
    pub train: TrainFields,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            n_train: 20_000,
            n_test: 10_000,
            hidden: 128,
            lrs: vec![0.03, 0.1, 0.3, 1.0],
            train: TrainFields {
                n_epochs: 3,
                batch_size: 64,
                seeds: vec![0, 1, 2],
            },
        }
    }

    /// The test configuration.
    fn quick() -> Self {
        Config {
            n_train: 3000,
            n_test: 1000,
            hidden: 64,
            lrs: vec![0.1, 1.0],
            train: TrainFields {
                n_epochs: 1,
                ..Self::full().train
            },
        }
    }
}

// ANCHOR: confidently_wrong
/// The gradient each loss sends to the true-class logit when the network puts
/// probability about $e^{-m}$ on it (logits: `-m` for the true class, 0 for the 9 others).
pub fn true_class_gradient(m: f32) -> (f32, f32) {
    let mut z = ndarray::Array2::<f32>::zeros((1, 10));
    z[[0, 0]] = -m;
    let z = z.into_dyn();
    let (_, g_ce) = classifier_loss(ClassifierLoss::CrossEntropy, &z, &[0]);
    let (_, g_mse) = classifier_loss(ClassifierLoss::MseOnSoftmax, &z, &[0]);
    (g_ce[[0, 0]], g_mse[[0, 0]])
}
// ANCHOR_END: confidently_wrong

/// Test accuracy after each epoch of one run.
fn train_run(
    loss: ClassifierLoss,
    lr: f32,
    cfg: &Config,
    seed: u64,
    train: &Dataset,
    test: &Dataset,
) -> Vec<f64> {
    let mut mlp = Mlp::new(
        &[train.example_shape()[0], cfg.hidden, 10],
        Activation::Relu,
        Init::He,
        seed,
    );
    let spec = TrainSpec::gradient_descent(
        cfg.train.n_epochs,
        cfg.train.batch_size,
        seed.wrapping_add(1000),
    );
    train_with(
        &mut mlp,
        &mut Sgd::new(lr),
        &loss,
        train,
        Some(test),
        &spec,
    )
    .test_acc
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    // The MLP takes rows: (n, 1, 28, 28) -> (n, 784).
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?.into_flat();
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?.into_flat();
    r.seeds = cfg.train.seeds.clone();
    r.data = data::mnist_refs();
    let mut rows = vec![];
    let mut series = vec![];
    for loss in [ClassifierLoss::CrossEntropy, ClassifierLoss::MseOnSoftmax] {
        let mut finals = vec![];
        let mut best = (f64::NEG_INFINITY, vec![]);
        for &lr in &cfg.lrs {
            let what = format!("mse_vs_ce: {} at lr {lr}", loss.name());
            let runs = over_seeds(&what, &cfg.train.seeds, |s| {
                train_run(loss, lr, cfg, s, &train, &test)
            });
            let first: Vec<f64> = runs.iter().map(|r| r[0]).collect();
            let last: Vec<f64> =
                runs.iter().map(|r| *r.last().expect("epochs")).collect();
            let mean_last = Value::mean_std(&last).0;
            if mean_last > best.0 {
                best = (mean_last, last.clone());
            }
            finals.push(Value::mean_std(&last).0);
            rows.push(vec![
                Value::Text(loss.name().into()),
                Value::Num(f64::from(lr)),
                Value::Seeds(first),
                Value::Seeds(last),
            ]);
        }
        let key = match loss {
            ClassifierLoss::CrossEntropy => "ce",
            ClassifierLoss::MseOnSoftmax => "mse",
        };
        r.fact(
            &format!("best_{key}"),
            Value::Seeds(best.1),
            Format::Percent(1),
        );
        series.push(Series {
            name: loss.name().into(),
            x: cfg.lrs.iter().map(|&l| f64::from(l)).collect(),
            y: finals,
            band: None,
        });
    }
    r.tables.push(Table {
        name: "losses".into(),
        caption: format!(
            "784-{}-10 ReLU MLP, {} training / {} test images, batch {}, {} epochs, mean ± \
             std over {} seeds; both losses start from the same weights for a seed.",
            cfg.hidden,
            train.len(),
            test.len(),
            cfg.train.batch_size,
            cfg.train.n_epochs,
            cfg.train.seeds.len()
        ),
        columns: vec![
            col("loss", Format::Int),
            col("lr", Format::Fixed(2)),
            col("test acc. after epoch 1", Format::Percent(1)),
            col("final test acc.", Format::Percent(1)),
        ],
        rows,
    });
    r.figures.push(Figure {
        name: "lr".into(),
        title: "Final test accuracy vs learning rate, by loss".into(),
        plot: Plot::Lines {
            x_label: "learning rate".into(),
            y_label: "test accuracy".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series,
        },
    });
    // The vanishing error signal of squared error, exactly.
    let margins = [0.0f32, 2.0, 5.0, 10.0];
    let grad_rows = margins
        .iter()
        .map(|&m| {
            let (ce, mse) = true_class_gradient(m);
            vec![
                Value::Num(f64::from(m)),
                Value::Num(f64::from(ce)),
                Value::Num(f64::from(mse)),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "true_class_gradient".into(),
        caption:
            "Gradient on the true-class logit when it trails the 9 other logits by m \
                  (a confidently wrong prediction for large m)."
                .into(),
        columns: vec![
            col("m", Format::Int),
            col("cross-entropy", Format::Sci(2)),
            col("MSE on softmax", Format::Sci(2)),
        ],
        rows: grad_rows,
    });
    Ok(())
}
