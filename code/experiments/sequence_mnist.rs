//! Experiment `sequence_mnist`: MNIST read row by row, a 28-step sequence of 28 pixels,
//! by an LSTM and a GRU, against a model blind to the order of the rows, and the LSTM on
//! rows whose order is scrambled the same way for every image or shuffled per image.
//!
//! Every model sees the same rows; what differs is what it can know about their order:
//!
//! - LSTM and GRU, rows in order: recurrent layer, last step, linear classifier.
//! - order-blind: each row through one shared linear layer and a ReLU, averaged over the
//!   rows, then a linear classifier (the same output for any order of the rows).
//! - LSTM, rows in one fixed random order: the order is scrambled, but the same
//!   permutation for every image (training and test), so it still carries information.
//! - LSTM (and the order-blind model), rows shuffled per image: each image its own
//!   permutation, so the order carries nothing.
//!
//! To fit a few minutes on two cores, the models train on the first `n_train` training
//! images (a subset, not all 60,000) and are tested on the first `n_test` test images;
//! Adam, gradient clipping, one run per seed (initialization and batch order). For the
//! recurrent models, the accuracy the classifier would have if it stopped reading after
//! each row (its head applied to every step's hidden state) is measured on the test
//! images too.

use anyhow::Result;
use serde::Serialize;

use super::common::{band_series, loss_curve, loss_figure, Ablation, AblationColumn};
use super::{Experiment, Preset};
use crate::data::{mnist_refs, Dataset, DataDir, Split};
use crate::nn::{Module, Named};
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Value};
use crate::seq::{accuracy_by_step, order_blind_net, recurrent_net, reorder, rows_as_sequence};
use crate::seq::{Cell, RowOrder};
use crate::train::{train_classifier, History, TrainSpec};

use super::common::TrainFields;

/// Experiment `sequence_mnist`, registered in [`super::all`].
pub struct SequenceMnist;

impl Experiment for SequenceMnist {
    const NAME: &'static str = "sequence_mnist";
    const CHAPTER: &'static str = "ch09";
    const TITLE: &'static str =
        "MNIST row by row: LSTM and GRU against an order-blind model, and scrambled row orders";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// Which model reads the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// A recurrent layer, its last step, a linear classifier.
    Recurrent(Cell),
    /// A shared row network, the mean over rows, a linear classifier.
    OrderBlind,
}

/// One model on one row order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    /// The row as the tables show it.
    pub name: String,
    /// The model.
    pub model: Model,
    /// The order it reads the rows in (training and test alike).
    pub order: RowOrder,
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images (the first ones).
    pub n_test: usize,
    /// Epochs, batches and seeds.
    #[serde(flatten)]
    pub train: TrainFields,
    /// Hidden width of the recurrent layers.
    pub hidden: usize,
    /// Width of the order-blind model's row network.
    pub width: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Gradient-norm clipping threshold.
    pub clip_norm: f32,
    /// Steps per point of the training-loss curves.
    pub log_every: usize,
    /// The variants, the reference (LSTM, rows in order) first.
    pub variants: Vec<Variant>,
}

impl Config {
    /// The book's variants, with the row permutations drawn from `perm_seed`.
    pub fn variants(perm_seed: u64) -> Vec<Variant> {
        let v = |name: &str, model, order| Variant {
            name: name.into(),
            model,
            order,
        };
        let (lstm, gru) = (Model::Recurrent(Cell::Lstm), Model::Recurrent(Cell::Gru));
        let fixed = RowOrder::Fixed { seed: perm_seed };
        let shuffled = RowOrder::PerImage { seed: perm_seed };
        vec![
            v("LSTM, rows in order", lstm, RowOrder::Natural),
            v("GRU, rows in order", gru, RowOrder::Natural),
            v("order-blind, rows in order", Model::OrderBlind, RowOrder::Natural),
            v("LSTM, rows in one fixed random order", lstm, fixed),
            v("LSTM, rows shuffled per image", lstm, shuffled),
            v("order-blind, rows shuffled per image", Model::OrderBlind, shuffled),
            v(
                "RNN (no gates), rows in order",
                Model::Recurrent(Cell::Rnn),
                RowOrder::Natural,
            ),
        ]
    }
}

impl Preset for Config {
    /// The book's configuration: the first 8,000 training images, the 10,000 test
    /// images, three seeds.
    fn full() -> Self {
        Config {
            n_train: 8_000,
            n_test: 10_000,
            train: TrainFields {
                n_epochs: 5,
                batch_size: 64,
                seeds: vec![0, 1, 2],
            },
            hidden: 64,
            width: 128,
            lr: 2e-3,
            clip_norm: 1.0,
            log_every: 20,
            variants: Config::variants(2024),
        }
    }

    /// The test configuration: 500 training images, 500 test images, small models, one
    /// seed.
    fn quick() -> Self {
        Config {
            n_train: 500,
            n_test: 500,
            train: TrainFields {
                n_epochs: 2,
                batch_size: 50,
                seeds: vec![0],
            },
            hidden: 16,
            width: 16,
            log_every: 2,
            ..Self::full()
        }
    }
}

/// What one run gives besides its test accuracy.
#[derive(Clone, Debug)]
pub struct Run {
    /// The training curves and the accuracy after each epoch.
    pub history: History,
    /// For recurrent models, the test accuracy after each row read.
    pub by_step: Option<Vec<f64>>,
    /// The model's parameter count.
    pub n_params: usize,
}

// ANCHOR: build
/// The network of a variant, initialized from `seed`.
pub fn build(cfg: &Config, model: Model, seed: u64) -> Named {
    const ROW: usize = 28;
    const CLASSES: usize = 10;
    match model {
        Model::Recurrent(cell) => recurrent_net(cell, ROW, cfg.hidden, CLASSES, seed),
        Model::OrderBlind => order_blind_net(ROW, cfg.width, CLASSES, seed),
    }
}
// ANCHOR_END: build

/// Trains `v` with `seed` on `train` and tests it on `test` (both already in the
/// variant's row order).
pub fn train_variant(
    cfg: &Config,
    v: &Variant,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
) -> Result<Run> {
    let mut net = build(cfg, v.model, seed);
    let spec = TrainSpec {
        log_every: cfg.log_every,
        clip_norm: Some(cfg.clip_norm),
        ..cfg.train.spec(seed)
    };
    let history = train_classifier(&mut net, &mut Adam::new(cfg.lr), train, test, &spec);
    let by_step = match v.model {
        Model::Recurrent(_) => Some(accuracy_by_step(&mut net, test)?),
        Model::OrderBlind => None,
    };
    Ok(Run {
        history,
        by_step,
        n_params: net.n_params(),
    })
}

fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = rows_as_sequence(&Dataset::mnist(dir, Split::Train, cfg.n_train)?)?;
    let test = rows_as_sequence(&Dataset::mnist(dir, Split::Test, cfg.n_test)?)?;
    r.seeds = cfg.train.seeds.clone();
    r.data = mnist_refs();
    let mut error = None;
    let ab = Ablation::run(
        "sequence_mnist",
        cfg.variants.iter().map(|v| (v.name.as_str(), v)),
        &cfg.train.seeds,
        |v, seed| {
            // The salts keep the per-image permutations of the two splits apart.
            let (tr, te) = (reorder(&train, v.order, 1), reorder(&test, v.order, 2));
            match train_variant(cfg, v, &tr, &te, seed) {
                Ok(run) => (run.history.final_acc(), Some(run)),
                Err(e) => {
                    error.get_or_insert(e);
                    (f64::NAN, None)
                }
            }
        },
    );
    if let Some(e) = error {
        return Err(e);
    }
    let runs: Vec<Vec<Run>> = ab
        .runs
        .iter()
        .map(|rs| rs.iter().map(|r| r.clone().expect("no error")).collect())
        .collect();
    ab.accuracy_facts(r);
    let params = |k: usize| runs[k][0].n_params as f64;
    let table = ab.table(
        "accuracy",
        format!(
            "MNIST read row by row ({} training images, the first {} test images), Adam \
             η = {}, batch {}, {} epochs, gradients clipped at norm {}: test accuracy, \
             mean ± std over seeds {:?}, and the difference to the LSTM reading the rows \
             in order, in percentage points. Recurrent layers of {} units; the \
             order-blind model's row network has {} units.",
            cfg.n_train,
            cfg.n_test,
            cfg.lr,
            cfg.train.batch_size,
            cfg.train.n_epochs,
            cfg.clip_norm,
            cfg.train.seeds,
            cfg.hidden,
            cfg.width
        ),
        &[
            AblationColumn::Name("model, row order"),
            AblationColumn::Other(col("parameters", Format::Int), &|rs: &[Option<Run>]| {
                Value::Num(rs[0].as_ref().expect("no error").n_params as f64)
            }),
            AblationColumn::Accuracy,
            AblationColumn::Delta("Δ vs LSTM in order (points)"),
        ],
    );
    r.tables.push(table);
    for k in 0..runs.len() {
        r.fact(&format!("params_{k}"), params(k), Format::Int);
    }

    // Accuracy after each row read, for the recurrent variants.
    let rows_x: Vec<f64> = (1..=28).map(|s| s as f64).collect();
    let by_step: Vec<_> = ab
        .names
        .iter()
        .zip(&runs)
        .filter_map(|(name, rs)| {
            let curves: Option<Vec<Vec<f64>>> = rs.iter().map(|r| r.by_step.clone()).collect();
            curves.map(|c| band_series(name.as_str(), &rows_x, &c))
        })
        .collect();
    for (k, rs) in runs.iter().enumerate() {
        if let Some(c) = rs.iter().map(|r| r.by_step.clone()).collect::<Option<Vec<_>>>() {
            let half: Vec<f64> = c.iter().map(|s| s[13]).collect();
            r.fact(&format!("acc_half_{k}"), Value::Seeds(half), Format::Percent(1));
        }
    }
    r.figures.push(Figure {
        name: "by_row".into(),
        title: format!(
            "Test accuracy if the classifier stopped after each row, mean ± std over {} seeds",
            cfg.train.seeds.len()
        ),
        plot: Plot::Lines {
            x_label: "rows read".into(),
            y_label: "test accuracy".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: by_step,
        },
    });
    let curves = ab
        .names
        .iter()
        .zip(&runs)
        .map(|(name, rs)| loss_curve(name.as_str(), rs.iter().map(|r| &r.history)))
        .collect();
    r.figures.push(loss_figure(
        "curves",
        cfg.log_every,
        &cfg.train.seeds,
        Scale::Log,
        curves,
    ));
    Ok(())
}
