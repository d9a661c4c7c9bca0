//! Experiment `regularization_ablation`: what dropout, batch norm, layer norm, an L2
//! penalty, decoupled weight decay and data augmentation are each worth to an MLP on
//! MNIST.
//!
//! Every variant is the same MLP trained with the same optimizer (Adam), the same
//! budget and the same seeds; only the listed component changes. A seed fixes the
//! initialization, the batch order, the dropout masks and the augmentations. Accuracy
//! is on the MNIST test set, mean ± std over the seeds. The last variant combines batch
//! norm, dropout and augmentation; the combination was fixed before any run, so no
//! choice is made on the test set.
//!
//! The report also shows the augmentation pipeline on a few test digits.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::common::{
    final_losses, loss_curve, loss_figure, Ablation, AblationColumn, TrainFields,
};
use super::{Experiment, Preset};
use crate::augment::{digits_pipeline, Noise, Rotate, Shift, Transform};
use crate::data::Dataset;
use crate::data::{mnist_refs, DataDir, Split};
use crate::nn::activation::{Activation, ActivationLayer};
use crate::nn::batchnorm::BatchNorm;
use crate::nn::dropout::Dropout;
use crate::nn::layernorm::LayerNorm;
use crate::nn::linear::{Init, Linear};
use crate::nn::mlp::Sequential;
use crate::nn::regularization::Penalty;
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Value};
use crate::train::{train_classifier, History, TrainSpec};

/// Experiment `regularization_ablation`, registered in [`super::all`].
pub struct RegularizationAblation;

impl Experiment for RegularizationAblation {
    const NAME: &'static str = "regularization_ablation";
    const CHAPTER: &'static str = "ch03";
    const TITLE: &'static str = "An MLP on MNIST with and without each regularizer";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// Normalization after each hidden `Linear`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// None.
    None,
    /// Batch norm.
    Batch,
    /// Layer norm.
    Layer,
}

/// One variant of the MLP and its training.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    /// Row name.
    pub name: String,
    /// Dropout probability after each hidden activation (0: none).
    pub dropout: f32,
    /// Normalization after each hidden `Linear`.
    pub norm: Norm,
    /// Penalty on the weights, added to the loss.
    pub penalty: Option<Penalty>,
    /// Decoupled weight decay of AdamW (0: plain Adam).
    pub weight_decay: f32,
    /// Train on augmented images.
    pub augment: bool,
}

impl Variant {
    fn plain(name: &str) -> Self {
        Variant {
            name: name.into(),
            dropout: 0.0,
            norm: Norm::None,
            penalty: None,
            weight_decay: 0.0,
            augment: false,
        }
    }
}

/// Augmentation settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AugmentConfig {
    /// Largest shift in pixels.
    pub max_shift: i32,
    /// Largest rotation in degrees.
    pub max_degrees: f32,
    /// Pixel noise standard deviation.
    pub noise_std: f32,
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Layer sizes of the MLP.
    pub sizes: Vec<usize>,
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images.
    pub n_test: usize,
    /// Epochs, batches and seeds.
    #[serde(flatten)]
    pub train: TrainFields,
    /// Adam's learning rate.
    pub lr: f32,
    /// Steps per point of the training curves.
    pub log_every: usize,
    /// The augmentation pipeline.
    pub augment: AugmentConfig,
    /// The variants, the baseline first.
    pub variants: Vec<Variant>,
}

impl Config {
    /// The variants of the book: the baseline, each component alone, and a combination.
    pub fn variants() -> Vec<Variant> {
        vec![
            Variant::plain("baseline (no regularization)"),
            Variant {
                dropout: 0.2,
                ..Variant::plain("+ dropout 0.2")
            },
            Variant {
                norm: Norm::Batch,
                ..Variant::plain("+ batch norm")
            },
            Variant {
                norm: Norm::Layer,
                ..Variant::plain("+ layer norm")
            },
            Variant {
                penalty: Some(Penalty::L2(1e-4)),
                ..Variant::plain("+ L2 penalty 1e-4")
            },
            Variant {
                weight_decay: 1e-2,
                ..Variant::plain("+ AdamW decay 1e-2")
            },
            Variant {
                augment: true,
                ..Variant::plain("+ augmentation")
            },
            Variant {
                dropout: 0.2,
                norm: Norm::Batch,
                augment: true,
                ..Variant::plain("batch norm + dropout + augmentation")
            },
        ]
    }
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            sizes: vec![784, 128, 128, 10],
            n_train: 20_000,
            n_test: 10_000,
            train: TrainFields {
                n_epochs: 3,
                batch_size: 64,
                seeds: vec![0, 1, 2],
            },
            lr: 1e-3,
            log_every: 200,
            augment: AugmentConfig {
                max_shift: 2,
                max_degrees: 12.0,
                noise_std: 0.1,
            },
            variants: Self::variants(),
        }
    }

    /// The test configuration: 5,000 images, one epoch.
    fn quick() -> Self {
        Config {
            n_train: 5_000,
            n_test: 2_000,
            train: TrainFields {
                n_epochs: 1,
                ..Self::full().train
            },
            log_every: 10,
            ..Self::full()
        }
    }
}

// ANCHOR: build_mlp
/// The MLP of `sizes` with the variant's normalization and dropout in every hidden
/// block: `Linear -> [BatchNorm | LayerNorm] -> ReLU -> [Dropout]`, He-initialised.
pub fn build_mlp(sizes: &[usize], v: &Variant, seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = Sequential::new();
    for (k, w) in sizes.windows(2).enumerate() {
        model.push(Linear::new(w[0], w[1], Init::He, &mut rng));
        if k + 2 == sizes.len() {
            break; // the output layer: logits
        }
        match v.norm {
            Norm::None => {}
            Norm::Batch => model.push(BatchNorm::new(w[1])),
            Norm::Layer => model.push(LayerNorm::new(w[1])),
        }
        model.push(ActivationLayer::new(Activation::Relu));
        if v.dropout > 0.0 {
            model.push(Dropout::new(v.dropout, seed.wrapping_mul(1000) + k as u64));
        }
    }
    model
}
// ANCHOR_END: build_mlp

/// Trains one variant with one seed.
pub fn train_variant(
    cfg: &Config,
    v: &Variant,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
) -> History {
    let mut model = build_mlp(&cfg.sizes, v, seed);
    let mut opt = Adam::adamw(cfg.lr, v.weight_decay);
    let a = cfg.augment;
    let pipeline = digits_pipeline(a.max_shift, a.max_degrees, a.noise_std);
    let spec = TrainSpec {
        log_every: cfg.log_every,
        penalty: v.penalty,
        augment: if v.augment { Some(&pipeline) } else { None },
        ..cfg.train.spec(seed)
    };
    train_classifier(&mut model, &mut opt, train, test, &spec)
}

fn to_u8(img: &[f32]) -> Vec<u8> {
    img.iter()
        .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?.into_flat();
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?.into_flat();
    r.seeds = cfg.train.seeds.clone();
    r.data = mnist_refs();

    let ab = Ablation::run(
        "regularization_ablation",
        cfg.variants.iter().map(|v| (v.name.as_str(), v)),
        &cfg.train.seeds,
        |v, seed| {
            let h = train_variant(cfg, v, &train, &test, seed);
            (h.final_acc(), h)
        },
    );
    ab.accuracy_facts(r);
    // The first variant with the highest mean accuracy.
    let mut best = (f64::NEG_INFINITY, 0);
    for k in 0..ab.names.len() {
        if ab.mean_acc(k) > best.0 {
            best = (ab.mean_acc(k), k);
        }
    }
    let best = best.1;
    r.fact("best_variant", best as f64, Format::Int);
    r.fact(
        "best_acc",
        Value::Seeds(ab.accs[best].clone()),
        Format::Percent(2),
    );
    let last_loss = |hs: &[History]| Value::Seeds(final_losses(hs));
    let columns = [
        AblationColumn::Name("variant"),
        AblationColumn::Accuracy,
        AblationColumn::Delta("Δ vs baseline (points)"),
        AblationColumn::Other(col("final training loss", Format::Fixed(3)), &last_loss),
    ];
    let caption = format!(
            "MLP {:?}, Adam η = {}, {} epochs on {} training images, batch {}: test \
             accuracy on {} images (mean ± std over seeds {:?}), its difference to the \
             baseline in percentage points, and the training loss of the last {} steps \
             (on augmented images where augmentation is on; with dropout active).",
            cfg.sizes,
            cfg.lr,
            cfg.train.n_epochs,
            cfg.n_train,
            cfg.train.batch_size,
            cfg.n_test,
            cfg.train.seeds,
            cfg.log_every
        );
    r.tables.push(ab.table("ablation", caption, &columns));
    let curves = (ab.names.iter().zip(&ab.runs))
        .map(|(name, hs)| loss_curve(name, hs))
        .collect();
    r.figures.push(loss_figure(
        "curves",
        cfg.log_every,
        &cfg.train.seeds,
        Scale::Linear,
        curves,
    ));

    // The augmentation pipeline on the first test image of four digits.
    let a = cfg.augment;
    let transforms: Vec<(String, Box<dyn Transform>)> = vec![
        (
            format!("shift ≤ {}", a.max_shift),
            Box::new(Shift { max: a.max_shift }),
        ),
        (
            format!("rotate ≤ {}°", a.max_degrees),
            Box::new(Rotate {
                max_degrees: a.max_degrees,
            }),
        ),
        (
            format!("noise σ = {}", a.noise_std),
            Box::new(Noise { std: a.noise_std }),
        ),
        (
            "pipeline".into(),
            Box::new(digits_pipeline(a.max_shift, a.max_degrees, a.noise_std)),
        ),
        (
            "pipeline".into(),
            Box::new(digits_pipeline(a.max_shift, a.max_degrees, a.noise_std)),
        ),
        (
            "pipeline".into(),
            Box::new(digits_pipeline(a.max_shift, a.max_degrees, a.noise_std)),
        ),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.train.seeds[0]);
    let mut images = vec![];
    let mut row_labels = vec![];
    for digit in [2usize, 4, 7, 9] {
        let i = test.labels().iter().position(|&y| y == digit).unwrap_or(0);
        let img: Vec<f32> = test.flat().row(i).to_vec();
        row_labels.push(format!("digit {digit}"));
        images.push(to_u8(&img));
        let img = ndarray::Array3::from_shape_vec((1, 28, 28), img).expect("784 pixels");
        for (_, t) in &transforms {
            let variant = t.apply(img.view(), &mut rng); // (1, 28, 28)
            images.push(to_u8(&variant.iter().copied().collect::<Vec<f32>>()));
        }
    }
    r.figures.push(Figure {
        name: "augmentations".into(),
        title: "Seeded augmentations of MNIST test digits".into(),
        plot: Plot::Images {
            width: 28,
            height: 28,
            row_labels,
            col_labels: std::iter::once("original".to_string())
                .chain(transforms.iter().map(|(n, _)| n.clone()))
                .collect(),
            images,
        },
    });
    Ok(())
}
