//! Experiment `activations_mnist`: the same MLP on an MNIST subset with each hidden
//! activation, measuring speed of learning, dead ReLU units and saturation.
//!
//! Every network is `784 - h - h - 10`, trained by mini-batch gradient descent on softmax
//! cross-entropy. Sigmoid and tanh start from Xavier initialization, ReLU and leaky ReLU
//! from He initialization (each with the initialization derived for it). After training,
//! on the first `n_probe` test images:
//!
//! - a hidden unit is **dead** when its output is 0 for every probe image (only ReLU
//!   can output exactly 0 on a whole set; it then receives no gradient ever again);
//! - an activation is **saturated** when its local derivative is below
//!   `saturation` times its largest value (10 %: sigmoid outputs outside about
//!   $[0.03, 0.97]$, tanh outputs with $|y| > 0.95$); for ReLU a zero output has
//!   derivative 0 and counts as saturated.
//!
//! The ablation trains ReLU and leaky ReLU with a large learning rate, which pushes
//! many ReLU units into the dead region.

use anyhow::Result;
use serde::Serialize;

use super::common::{band_series, over_seeds, TrainFields};
use super::{Experiment, Preset};
use crate::data::Dataset;
use crate::data::{self, DataDir, Split};
use crate::nn::activation::Activation;
use crate::nn::linear::Init;
use crate::nn::mlp::Mlp;
use crate::nn::{Layer, Mode};
use crate::optim::Sgd;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Table, Value};
use crate::train::{train_with, ClassifierLoss, TrainSpec};

/// Experiment `activations_mnist`, registered in [`super::all`].
pub struct ActivationsMnist;

impl Experiment for ActivationsMnist {
    const NAME: &'static str = "activations_mnist";
    const CHAPTER: &'static str = "ch02";
    const TITLE: &'static str = "Hidden activations compared on an MNIST subset";
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
    /// Activations compared.
    pub activations: Vec<Activation>,
    /// Learning rate.
    pub lr: f32,
    /// Epochs, mini-batches and seeds.
    #[serde(flatten)]
    pub train: TrainFields,
    /// Test images used to count dead and saturated units.
    pub n_probe: usize,
    /// An activation counts as saturated when its derivative is below this fraction of
    /// the activation's largest derivative.
    pub saturation: f32,
    /// Learning rate of the dead-unit ablation.
    pub ablation_lr: f32,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            n_train: 20_000,
            n_test: 10_000,
            hidden: 128,
            activations: vec![
                Activation::Sigmoid,
                Activation::Tanh,
                Activation::Relu,
                Activation::LeakyRelu(0.01),
            ],
            lr: 0.1,
            train: TrainFields {
                n_epochs: 5,
                batch_size: 64,
                seeds: vec![0, 1, 2],
            },
            n_probe: 1000,
            saturation: 0.1,
            ablation_lr: 1.0,
        }
    }

    /// The test configuration: a small subset, 3 epochs.
    fn quick() -> Self {
        Config {
            n_train: 5000,
            n_test: 2000,
            hidden: 64,
            train: TrainFields {
                n_epochs: 3,
                ..Self::full().train
            },
            n_probe: 500,
            ..Self::full()
        }
    }
}

/// The initialization matched to an activation: He for the ReLU family, else Xavier.
pub fn matched_init(act: Activation) -> Init {
    match act {
        Activation::Relu | Activation::LeakyRelu(_) => Init::He,
        _ => Init::Xavier,
    }
}

/// What one training run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct ActRun {
    /// Test accuracy after each epoch.
    pub test_acc: Vec<f64>,
    /// Mean training loss of each epoch.
    pub train_loss: Vec<f64>,
    /// Fraction of hidden units dead on the probe set.
    pub dead: f64,
    /// Fraction of hidden activations saturated on the probe set.
    pub saturated: f64,
}

// ANCHOR: dead_units
/// Fractions of dead units and of saturated activations over the hidden layers of the
/// last `forward` of `mlp`.
pub fn dead_and_saturated(mlp: &Mlp, saturation: f32) -> (f64, f64) {
    let (mut units, mut dead, mut values, mut sat) = (0usize, 0usize, 0usize, 0usize);
    for act in &mlp.activations {
        let y = act.last_output().expect("forward ran");
        let y = y
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .expect("(n, h)");
        for unit in y.columns() {
            units += 1;
            if unit.iter().all(|&v| v == 0.0) {
                dead += 1;
            }
        }
        values += y.len();
        sat += y
            .iter()
            .filter(|&&v| match act.kind {
                Activation::Sigmoid => v * (1.0 - v) < 0.25 * saturation,
                Activation::Tanh => 1.0 - v * v < saturation,
                Activation::Relu => v == 0.0,
                _ => false,
            })
            .count();
    }
    (dead as f64 / units as f64, sat as f64 / values as f64)
}
// ANCHOR_END: dead_units

/// Trains one network on `train` (rows of pixels) and measures it on `test`.
pub fn train_one(
    act: Activation,
    lr: f32,
    cfg: &Config,
    seed: u64,
    train: &Dataset,
    test: &Dataset,
) -> ActRun {
    let h = cfg.hidden;
    let d = train.example_shape()[0];
    let mut mlp = Mlp::new(&[d, h, h, 10], act, matched_init(act), seed);
    let spec = TrainSpec::gradient_descent(
        cfg.train.n_epochs,
        cfg.train.batch_size,
        seed.wrapping_add(1000),
    );
    let loss = ClassifierLoss::CrossEntropy;
    let h = train_with(
        &mut mlp,
        &mut Sgd::new(lr),
        &loss,
        train,
        Some(test),
        &spec,
    );
    let (test_acc, train_loss) = (h.test_acc, h.epoch_loss);
    let _ = mlp.forward(&test.head(cfg.n_probe).x, Mode::Eval);
    let (dead, saturated) = dead_and_saturated(&mlp, cfg.saturation);
    ActRun {
        test_acc,
        train_loss,
        dead,
        saturated,
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    // The MLP takes rows: (n, 1, 28, 28) -> (n, 784).
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?.into_flat();
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?.into_flat();
    let seeds = &cfg.train.seeds;
    r.seeds = seeds.clone();
    r.data = data::mnist_refs();
    let mut rows_ = vec![];
    let mut series = vec![];
    for &act in &cfg.activations {
        let runs = over_seeds(&format!("activations_mnist: {}", act.name()), seeds, |s| {
            train_one(act, cfg.lr, cfg, s, &train, &test)
        });
        let per = |f: &dyn Fn(&ActRun) -> f64| Value::Seeds(runs.iter().map(f).collect());
        let key = act.name().to_lowercase().replace([' ', '(', ')', '.'], "");
        let first = runs.iter().map(|r| r.test_acc[0]).collect::<Vec<_>>();
        let last = runs
            .iter()
            .map(|r| *r.test_acc.last().expect("epochs"))
            .collect();
        r.fact(
            &format!("acc1_{key}"),
            Value::Seeds(first.clone()),
            Format::Percent(1),
        );
        rows_.push(vec![
            Value::Text(act.name()),
            Value::Text(matched_init(act).name()),
            Value::Seeds(first),
            Value::Seeds(last),
            per(&|r| *r.train_loss.last().expect("epochs")),
            per(&|r| r.dead),
            per(&|r| r.saturated),
        ]);
        let epochs: Vec<f64> = (1..=cfg.train.n_epochs).map(|e| e as f64).collect();
        let losses: Vec<&[f64]> = runs.iter().map(|r| r.train_loss.as_slice()).collect();
        series.push(band_series(act.name(), &epochs, &losses));
    }
    r.tables.push(Table {
        name: "activations".into(),
        caption: format!(
            "784-{h}-{h}-10 MLP, {} training / {} test images, lr = {}, batch {}, {} \
             epochs, mean ± std over {} seeds. Dead = hidden units with zero output on all \
             {} probe images; saturated = activations with f' below {} % of its maximum.",
            train.len(),
            test.len(),
            cfg.lr,
            cfg.train.batch_size,
            cfg.train.n_epochs,
            seeds.len(),
            cfg.n_probe,
            100.0 * cfg.saturation,
            h = cfg.hidden
        ),
        columns: vec![
            col("activation", Format::Int),
            col("init", Format::Int),
            col("test acc. after epoch 1", Format::Percent(1)),
            col("final test acc.", Format::Percent(1)),
            col("final train loss", Format::Fixed(3)),
            col("dead units", Format::Percent(1)),
            col("saturated", Format::Percent(1)),
        ],
        rows: rows_,
    });
    r.figures.push(Figure {
        name: "loss".into(),
        title: "Training loss by hidden activation (mean ± std over seeds)".into(),
        plot: Plot::Lines {
            x_label: "epoch".into(),
            y_label: "mean training cross-entropy".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    });

    // Ablation: a large learning rate kills ReLU units; leaky ReLU has no dead region.
    let mut abl = vec![];
    let ab_cfg = Config {
        train: TrainFields {
            n_epochs: 1,
            ..cfg.train.clone()
        },
        ..cfg.clone()
    };
    for act in [Activation::Relu, Activation::LeakyRelu(0.01)] {
        let what = format!("activations_mnist: {} at lr {}", act.name(), cfg.ablation_lr);
        let runs = over_seeds(&what, seeds, |s| {
            train_one(act, cfg.ablation_lr, &ab_cfg, s, &train, &test)
        });
        let key = act.name().to_lowercase().replace([' ', '(', ')', '.'], "");
        let dead: Vec<f64> = runs.iter().map(|r| r.dead).collect();
        r.fact(
            &format!("dead_high_lr_{key}"),
            Value::Seeds(dead.clone()),
            Format::Percent(1),
        );
        abl.push(vec![
            Value::Text(act.name()),
            Value::Seeds(runs.iter().map(|r| r.test_acc[0]).collect()),
            Value::Seeds(dead),
        ]);
    }
    r.tables.push(Table {
        name: "dead_relu".into(),
        caption: format!(
            "Ablation: one epoch at lr = {} (ten times the default), mean ± std over {} seeds.",
            cfg.ablation_lr,
            seeds.len()
        ),
        columns: vec![
            col("activation", Format::Int),
            col("test acc.", Format::Percent(1)),
            col("dead units", Format::Percent(1)),
        ],
        rows: abl,
    });
    Ok(())
}
