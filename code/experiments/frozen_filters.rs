//! Experiment `frozen_filters`: what training the convolution filters is worth.
//!
//! The seed CNN is trained three ways with the same budget, optimizer and seeds: every
//! layer trained (the seed), both convolutions frozen at their random He
//! initialization (only `fc1` and `fc2` learn, on random features), and only `conv1`
//! frozen. A seed fixes the initialization, the batch order and the dropout masks, so
//! the variants of one seed start from the same weights. Accuracy is on MNIST test
//! images, mean ± std over the seeds.

use anyhow::Result;
use serde::Serialize;

use super::common::{Ablation, AblationColumn, TrainFields};
use super::{Experiment, Preset};
use crate::data::Dataset;
use crate::data::{mnist_refs, DataDir, Split};
use crate::models::mnist_cnn::{mnist_cnn, CnnConfig};
use crate::nn::freeze::freeze;
use crate::nn::Module;
use crate::optim::Adam;
use crate::report::{col, Format, Report, Value};
use crate::train::train_classifier;

/// Experiment `frozen_filters`, registered in [`super::all`].
pub struct FrozenFilters;

impl Experiment for FrozenFilters {
    const NAME: &'static str = "frozen_filters";
    const CHAPTER: &'static str = "ch04";
    const TITLE: &'static str = "The seed CNN with trained and with frozen random convolution filters";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// One row of the ablation: which layers stay at their initialization.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    /// Row name.
    pub name: String,
    /// Layers frozen at their random initialization.
    pub frozen: Vec<String>,
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images.
    pub n_test: usize,
    /// Epochs, batches and seeds.
    #[serde(flatten)]
    pub train: TrainFields,
    /// Adam's learning rate.
    pub lr: f32,
    /// The variants, the fully trained seed model first.
    pub variants: Vec<Variant>,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        let v = |name: &str, frozen: &[&str]| Variant {
            name: name.into(),
            frozen: frozen.iter().map(|s| s.to_string()).collect(),
        };
        Config {
            n_train: 4_800,
            n_test: 5_000,
            train: TrainFields {
                n_epochs: 1,
                batch_size: 32,
                seeds: vec![0, 1, 2],
            },
            lr: 1e-3,
            variants: vec![
                v("all layers trained (seed)", &[]),
                v("conv1 frozen at random init", &["conv1"]),
                v("conv1 and conv2 frozen at random init", &["conv1", "conv2"]),
            ],
        }
    }

    /// The test configuration.
    fn quick() -> Self {
        Config {
            n_train: 2_400,
            n_test: 500,
            train: TrainFields {
                batch_size: 32,
                seeds: vec![0],
                ..Self::full().train
            },
            ..Self::full()
        }
    }
}

/// Trains one variant with one seed; returns the test accuracy and the number of
/// trainable parameters.
pub fn train_variant(
    cfg: &Config,
    v: &Variant,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
) -> (f64, usize) {
    let mut model = mnist_cnn(&CnnConfig::default(), seed);
    let frozen: Vec<&str> = v.frozen.iter().map(String::as_str).collect();
    freeze(&mut model, &frozen);
    let n_params = model.n_params();
    let spec = cfg.train.spec(seed);
    let mut opt = Adam::new(cfg.lr);
    let h = train_classifier(&mut model, &mut opt, train, test, &spec);
    (h.final_acc(), n_params)
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?;
    r.seeds = cfg.train.seeds.clone();
    r.data = mnist_refs();
    let ab = Ablation::run(
        "frozen_filters",
        cfg.variants.iter().map(|v| (v.name.as_str(), v)),
        &cfg.train.seeds,
        |v, seed| train_variant(cfg, v, &train, &test, seed),
    );
    ab.accuracy_facts(r);
    let steps = cfg.train.n_epochs * train.len().div_ceil(cfg.train.batch_size);
    r.fact("steps", steps as f64, Format::Int);
    // Freezing depends on the layer names only: every seed counts the same.
    let n_params = |runs: &[usize]| Value::Num(runs[0] as f64);
    let columns = [
        AblationColumn::Name("variant"),
        AblationColumn::Other(col("trainable parameters", Format::Int), &n_params),
        AblationColumn::Accuracy,
        AblationColumn::Delta("Δ vs trained (points)"),
    ];
    let caption = format!(
        "The seed CNN, Adam η = {}, {steps} steps of batch {} on the first {} MNIST \
         training images: trainable parameters, test accuracy on {} images (mean ± \
         std over seeds {:?}) and its difference to the fully trained model in \
         percentage points.",
        cfg.lr,
        cfg.train.batch_size,
        train.len(),
        test.len(),
        cfg.train.seeds
    );
    r.tables.push(ab.table("ablation", caption, &columns));
    Ok(())
}
