//! Experiment `twin_mnist`: the same MLP trained from scratch and in candle on an MNIST
//! subset, from the same initial weights, on the same batches, with the same plain SGD.
//!
//! The two runs compute the same function with different kernels (ndarray vs candle
//! matrix products, different summation orders), so their weights drift apart by
//! rounding only; the experiment measures how far apart they end up, in test accuracy
//! and in the largest weight difference.

use anyhow::Result;
use candle_core::DType;
use serde::Serialize;

use super::common::{over_seeds, TrainFields};
use super::{Experiment, Preset};
use crate::data::Dataset;
use crate::data::{self, DataDir, Split};
use crate::nn::activation::Activation;
use crate::nn::candle_twin::{to_array, CandleMlp};
use crate::nn::linear::Init;
use crate::nn::loss::accuracy;
use crate::nn::mlp::Mlp;
use crate::nn::Module;
use crate::optim::Sgd;
use crate::report::{col, Format, Report, Table, Value};
use crate::train::{
    accuracy_on, fit, Callback, ClassifierLoss, Control, EpochInfo, TrainSpec,
};

/// Experiment `twin_mnist`, registered in [`super::all`].
pub struct TwinMnist;

impl Experiment for TwinMnist {
    const NAME: &'static str = "twin_mnist";
    const CHAPTER: &'static str = "ch02";
    const TITLE: &'static str = "The same MLP trained from scratch and in candle";
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
    /// Layer sizes.
    pub sizes: Vec<usize>,
    /// Learning rate.
    pub lr: f32,
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
            sizes: vec![784, 128, 10],
            lr: 0.1,
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
            sizes: vec![784, 64, 10],
            train: TrainFields {
                n_epochs: 1,
                ..Self::full().train
            },
            ..Self::full()
        }
    }
}

/// One seed: from-scratch and candle test accuracy, and the largest absolute weight
/// difference after training.
pub fn train_both(
    cfg: &Config,
    seed: u64,
    train: &Dataset,
    test: &Dataset,
    x: &ndarray::Array2<f32>,
) -> Result<(f64, f64, f64)> {
    let y = train.labels();
    let mut mlp = Mlp::new(&cfg.sizes, Activation::Relu, Init::He, seed);
    let twin = CandleMlp::from_mlp(&mlp, DType::F32)?;
    // The twin trains alongside, each epoch in the order ours just used.
    struct Twin<'a> {
        twin: &'a CandleMlp,
        x: &'a ndarray::Array2<f32>,
        y: &'a [usize],
        cfg: &'a Config,
        result: Result<()>,
    }
    impl Callback for Twin<'_> {
        fn on_epoch(&mut self, info: &EpochInfo) -> Control {
            let lr = f64::from(self.cfg.lr);
            self.result = self
                .twin
                .train_epoch(self.x, self.y, info.order, self.cfg.train.batch_size, lr)
                .map(|_| ());
            match self.result {
                Ok(()) => Control::Continue,
                Err(_) => Control::Stop,
            }
        }
    }
    let mut cb = Twin {
        twin: &twin,
        x,
        y,
        cfg,
        result: Ok(()),
    };
    let spec = TrainSpec::gradient_descent(
        cfg.train.n_epochs,
        cfg.train.batch_size,
        seed.wrapping_add(1000),
    );
    let loss = ClassifierLoss::CrossEntropy;
    fit(
        &mut mlp,
        &mut Sgd::new(cfg.lr),
        &loss,
        train,
        None,
        &spec,
        &mut [&mut cb],
    )?;
    cb.result?;
    let ours = accuracy_on(&mut mlp, test);
    let theirs = accuracy(&twin.predict(&test.x)?, test.labels());
    let mut ours_w = vec![];
    mlp.visit_params("", &mut |_, p| ours_w.push(p.value.mapv(f64::from)));
    let mut diff = 0.0f64;
    for ((_, v), w) in twin.named_vars().iter().zip(&ours_w) {
        let t = to_array(v.as_tensor())?;
        diff = t.iter().zip(w).fold(diff, |m, (a, b)| m.max((a - b).abs()));
    }
    Ok((ours, theirs, diff))
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    // The MLP takes rows: (n, 1, 28, 28) -> (n, 784); the candle twin reads a matrix.
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?.into_flat();
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?.into_flat();
    let x = train.flat().to_owned();
    r.seeds = cfg.train.seeds.clone();
    r.data = data::mnist_refs();
    let (mut ours, mut theirs, mut gap, mut diffs) = (vec![], vec![], vec![], vec![]);
    for run in over_seeds("twin_mnist", &cfg.train.seeds, |s| train_both(cfg, s, &train, &test, &x)) {
        let (a, b, d) = run?;
        ours.push(a);
        theirs.push(b);
        gap.push((a - b).abs());
        diffs.push(d);
    }
    let sizes: Vec<String> = cfg.sizes.iter().map(|s| s.to_string()).collect();
    r.fact(
        "acc_scratch",
        Value::Seeds(ours.clone()),
        Format::Percent(2),
    );
    r.fact(
        "acc_candle",
        Value::Seeds(theirs.clone()),
        Format::Percent(2),
    );
    r.fact(
        "max_acc_gap",
        gap.iter().fold(0.0, |m: f64, &g| m.max(g)),
        Format::Percent(2),
    );
    r.tables.push(Table {
        name: "twin".into(),
        caption: format!(
            "{} ReLU MLP, He init, {} training / {} test images, SGD lr = {}, batch {}, {} \
             epochs, same initial weights and batches; mean ± std over {} seeds.",
            sizes.join("-"),
            train.len(),
            test.len(),
            cfg.lr,
            cfg.train.batch_size,
            cfg.train.n_epochs,
            cfg.train.seeds.len()
        ),
        columns: vec![
            col("from scratch", Format::Percent(2)),
            col("candle", Format::Percent(2)),
            col("accuracy gap (absolute)", Format::Percent(2)),
            col("largest weight difference", Format::Sci(1)),
        ],
        rows: vec![vec![
            Value::Seeds(ours),
            Value::Seeds(theirs),
            Value::Seeds(gap),
            Value::Seeds(diffs),
        ]],
    });
    Ok(())
}
