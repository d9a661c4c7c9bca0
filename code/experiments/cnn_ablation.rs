//! Experiment `cnn_ablation`: what each component of the seed CNN is worth on MNIST.
//!
//! Every variant is trained with the same optimizer (Adam, $\eta = 10^{-3}$), the same
//! batches, the same budget and the same seeds; only the listed component changes. The
//! budget is smaller than the main run's (two passes over the training images instead
//! of five), so the table compares components under a short budget. Accuracy is on the whole test set, mean ± std over the seeds.

use anyhow::Result;
use serde::Serialize;

use super::common::{Ablation, AblationColumn, TrainFields};
use super::{Experiment, Preset};
use crate::augment::digits_pipeline;
use crate::data::Dataset;
use crate::data::{mnist_refs, DataDir, Split};
use crate::models::{mnist_cnn, CnnConfig, Downsample};
use crate::nn::Module;
use crate::optim::Adam;
use crate::report::{col, Format, Report, Value};
use crate::train::{train_classifier, History, TrainSpec};

/// Experiment `cnn_ablation`, registered in [`super::all`].
pub struct CnnAblation;

impl Experiment for CnnAblation {
    const NAME: &'static str = "cnn_ablation";
    const CHAPTER: &'static str = "ch05";
    const TITLE: &'static str = "The seed CNN with one component changed at a time";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// One variant: an architecture and whether its training images are augmented.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    /// Row name.
    pub name: String,
    /// The architecture.
    pub model: CnnConfig,
    /// Train on augmented images (shift, rotation, noise).
    pub augment: bool,
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
    /// Adam's learning rate.
    pub lr: f32,
    /// Augmentation: largest shift in pixels.
    pub max_shift: i32,
    /// Augmentation: largest rotation in degrees.
    pub max_degrees: f32,
    /// Augmentation: pixel noise standard deviation.
    pub noise_std: f32,
    /// The variants, the seed model first.
    pub variants: Vec<Variant>,
}

impl Config {
    /// The seed model and one change each.
    pub fn variants() -> Vec<Variant> {
        let seed = CnnConfig::default();
        let v = |name: &str, model: CnnConfig, augment: bool| Variant {
            name: name.into(),
            model,
            augment,
        };
        vec![
            v("seed model", seed, false),
            v(
                "no dropout",
                CnnConfig {
                    dropout: 0.0,
                    ..seed
                },
                false,
            ),
            v(
                "strided conv instead of pooling",
                CnnConfig {
                    downsample: Downsample::StridedConv,
                    ..seed
                },
                false,
            ),
            v("one conv layer", CnnConfig { n_conv: 1, ..seed }, false),
            v(
                "+ batch norm",
                CnnConfig {
                    batch_norm: true,
                    ..seed
                },
                false,
            ),
            v("+ augmentation", seed, true),
        ]
    }
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            n_train: 60_000,
            n_test: 10_000,
            train: TrainFields {
                n_epochs: 2,
                batch_size: 128,
                seeds: vec![0, 1, 2],
            },
            lr: 1e-3,
            max_shift: 2,
            max_degrees: 12.0,
            noise_std: 0.1,
            variants: Self::variants(),
        }
    }

    /// The test configuration: 512 training images, 500 test images, one seed.
    fn quick() -> Self {
        Config {
            n_train: 512,
            n_test: 500,
            train: TrainFields {
                n_epochs: 1,
                seeds: vec![0],
                ..Self::full().train
            },
            ..Self::full()
        }
    }
}

/// Trains one variant with one seed; returns what training measured and the number of
/// parameters.
pub fn train_variant(
    cfg: &Config,
    v: &Variant,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
) -> (History, usize) {
    let mut model = mnist_cnn(&v.model, seed);
    let mut opt = Adam::new(cfg.lr);
    let pipeline = digits_pipeline(cfg.max_shift, cfg.max_degrees, cfg.noise_std);
    let spec = TrainSpec {
        log_every: 10,
        augment: if v.augment { Some(&pipeline) } else { None },
        ..cfg.train.spec(seed)
    };
    let h = train_classifier(&mut model, &mut opt, train, test, &spec);
    (h, model.n_params())
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?;
    r.seeds = cfg.train.seeds.clone();
    r.data = mnist_refs();
    let ab = Ablation::run(
        "cnn_ablation",
        cfg.variants.iter().map(|v| (v.name.as_str(), v)),
        &cfg.train.seeds,
        |v, seed| {
            let (h, n_params) = train_variant(cfg, v, &train, &test, seed);
            (h.final_acc(), n_params)
        },
    );
    ab.accuracy_facts(r);
    // Every seed builds the same architecture: the first run's count is the count.
    let n_params = |runs: &[usize]| Value::Num(runs[0] as f64);
    let columns = [
        AblationColumn::Name("variant"),
        AblationColumn::Other(col("parameters", Format::Int), &n_params),
        AblationColumn::Accuracy,
        AblationColumn::Delta("Δ vs seed (points)"),
    ];
    let caption = format!(
        "Adam η = {}, batch {}, {} epoch(s) on the first {} training images: accuracy \
         on {} test images, mean ± std over seeds {:?}, and its difference to the seed \
         model in percentage points. Augmentation: shift ≤ {} px, rotation ≤ {}°, noise \
         σ = {}.",
        cfg.lr,
        cfg.train.batch_size,
        cfg.train.n_epochs,
        cfg.n_train,
        cfg.n_test,
        cfg.train.seeds,
        cfg.max_shift,
        cfg.max_degrees,
        cfg.noise_std
    );
    r.tables.push(ab.table("ablation", caption, &columns));
    Ok(())
}
