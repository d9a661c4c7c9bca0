//! Experiment `cnn_features`: what the seed CNN learns in its first epoch, shown as its
//! filters and its feature maps.
//!
//! The seed model ([`mnist_cnn`] with the default [`CnnConfig`]) is trained with Adam on
//! the first `n_train` MNIST training images for `n_epochs` epochs, one seed. The report
//! shows the 32 first-layer $3\times3$ filters at initialization and after training
//! (the initial filters on one grey scale and the trained ones on another, symmetric
//! about zero: mid grey for zero, black and white for the largest |weight|), and the
//! feature maps after each ReLU of the first channels of `conv1` and `conv2` for a few
//! test digits (white for zero, black for the largest activation of that map).
//!
//! Measured on `n_probe` test images: test accuracy, the fraction of activations that
//! are exactly zero after each ReLU (before and after training), and how far the
//! filters moved from their initialization, $\lVert W - W_0\rVert_F / \lVert W_0
//! \rVert_F$.

use anyhow::Result;
use ndarray::{s, ArrayD, Axis};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{mnist_refs, DataDir, Dataset, Split};
use crate::models::mnist_cnn::{mnist_cnn, CnnConfig};
use crate::nn::{Mode, Module, Named};
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Table, Value};
use crate::train::{train_classifier, TrainSpec};

/// Experiment `cnn_features`, registered in [`super::all`].
pub struct CnnFeatures;

impl Experiment for CnnFeatures {
    const NAME: &'static str = "cnn_features";
    const CHAPTER: &'static str = "ch04";
    const TITLE: &'static str = "Filters and feature maps of the seed CNN before and after training on MNIST";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images the accuracy is measured on.
    pub n_test: usize,
    /// Test images the activation statistics are measured on.
    pub n_probe: usize,
    /// Epochs.
    pub n_epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Seed of the initialization, batch order and dropout.
    pub seed: u64,
    /// Digits whose first test image is shown.
    pub digits: Vec<usize>,
    /// Channels of each layer shown in the feature-map figures.
    pub n_maps: usize,
}

impl Preset for Config {
    /// The book's configuration: one epoch on 30,000 training images.
    fn full() -> Self {
        Config {
            n_train: 30_000,
            n_test: 10_000,
            n_probe: 1_000,
            n_epochs: 1,
            batch_size: 64,
            lr: 1e-3,
            seed: 0,
            digits: vec![2, 5, 8],
            n_maps: 8,
        }
    }

    /// The test configuration: 200 steps of 32 images.
    fn quick() -> Self {
        Config {
            n_train: 6_400,
            n_test: 1_000,
            n_probe: 500,
            batch_size: 32,
            ..Self::full()
        }
    }
}

/// A copy of the parameter called `name`.
pub fn param(model: &mut Named, name: &str) -> ArrayD<f32> {
    let mut out = None;
    model.visit_params("", &mut |n, p| {
        if n == name {
            out = Some(p.value.clone());
        }
    });
    out.unwrap_or_else(|| panic!("param: the model has no parameter {name:?}"))
}

// ANCHOR: zero_fraction
/// The fraction of entries that are exactly zero (after a ReLU: the units that are off).
pub fn zero_fraction(a: &ArrayD<f32>) -> f64 {
    a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len().max(1) as f64
}

/// $\lVert a - b\rVert_F / \lVert b\rVert_F$: how far `a` moved from `b`.
pub fn relative_change(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "relative_change: shapes differ");
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x - y).powi(2))
        .sum();
    let n: f64 = b.iter().map(|&y| f64::from(y).powi(2)).sum();
    (d / n).sqrt()
}
// ANCHOR_END: zero_fraction

/// Each `(c_out, 1, k, k)` filter as a `k * up` square image on one signed grey scale
/// shared by all filters: zero is mid grey, the largest |weight| is black or white.
pub fn filter_images(w: &ArrayD<f32>, up: usize) -> Vec<Vec<u8>> {
    let (co, k) = (w.shape()[0], w.shape()[2]);
    let max = w.iter().fold(0.0f32, |m, &v| m.max(v.abs())).max(1e-12);
    (0..co)
        .map(|o| {
            let side = k * up;
            (0..side * side)
                .map(|p| {
                    let v = w[[o, 0, (p / side) / up, (p % side) / up]] / max;
                    (127.5 + 127.5 * v).round().clamp(0.0, 255.0) as u8
                })
                .collect()
        })
        .collect()
}

/// A non-negative map `(h, w)` as a `(h up, w up)` image, black at its maximum (an
/// all-zero map is white).
pub fn map_image(m: &ndarray::ArrayView2<f32>, up: usize) -> Vec<u8> {
    let (h, w) = m.dim();
    let max = m.iter().fold(0.0f32, |a, &v| a.max(v));
    let scale = if max > 0.0 { 255.0 / max } else { 0.0 };
    (0..h * up * w * up)
        .map(|p| {
            let (r, c) = (p / (w * up) / up, (p % (w * up)) / up);
            (m[[r, c]].max(0.0) * scale).round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?;
    r.seeds = vec![cfg.seed];
    r.data = mnist_refs();

    let n_probe = cfg.n_probe.min(test.len());
    let probe = test.head(n_probe).x;
    let mut model = mnist_cnn(&CnnConfig::default(), cfg.seed);
    let w0 = param(&mut model, "conv1.weight");
    let w0_2 = param(&mut model, "conv2.weight");
    let zero_init = [
        zero_fraction(&model.layer_output(&probe, "relu1")),
        zero_fraction(&model.layer_output(&probe, "relu2")),
    ];

    // ANCHOR: train_seed
    let spec = TrainSpec {
        n_epochs: cfg.n_epochs,
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        log_every: 50,
        ..TrainSpec::default()
    };
    let mut opt = Adam::new(cfg.lr);
    let history = train_classifier(&mut model, &mut opt, &train, &test, &spec);
    // ANCHOR_END: train_seed
    let w1 = param(&mut model, "conv1.weight");
    let w1_2 = param(&mut model, "conv2.weight");
    let zero_trained = [
        zero_fraction(&model.layer_output(&probe, "relu1")),
        zero_fraction(&model.layer_output(&probe, "relu2")),
    ];
    let change = [relative_change(&w1, &w0), relative_change(&w1_2, &w0_2)];
    let steps = cfg.n_epochs * train.len().div_ceil(cfg.batch_size);

    r.fact("test_acc", history.final_acc(), Format::Percent(2));
    r.fact("steps", steps as f64, Format::Int);
    r.fact("zero_relu1_init", zero_init[0], Format::Percent(1));
    r.fact("zero_relu2_init", zero_init[1], Format::Percent(1));
    r.fact("zero_relu1", zero_trained[0], Format::Percent(1));
    r.fact("zero_relu2", zero_trained[1], Format::Percent(1));
    r.fact("change_conv1", change[0], Format::Fixed(2));
    r.fact("change_conv2", change[1], Format::Fixed(2));
    r.tables.push(Table {
        name: "activations".into(),
        caption: format!(
            "The seed CNN before and after {steps} steps of Adam (η = {}, batch {}, seed \
             {}) on the first {} MNIST training images: the fraction of activations \
             that are exactly zero after each ReLU on {n_probe} test images, and the \
             relative distance of each convolution's weights from their initialization. \
             Test accuracy after training: {} on {} test images.",
            cfg.lr,
            cfg.batch_size,
            cfg.seed,
            train.len(),
            Format::Percent(2).show(history.final_acc()),
            test.len()
        ),
        columns: vec![
            col("layer", Format::Int),
            col("zero after ReLU, init", Format::Percent(1)),
            col("zero after ReLU, trained", Format::Percent(1)),
            col("‖W − W₀‖ / ‖W₀‖", Format::Fixed(2)),
        ],
        rows: (0..2)
            .map(|l| {
                vec![
                    Value::from(format!("conv{}", l + 1)),
                    zero_init[l].into(),
                    zero_trained[l].into(),
                    change[l].into(),
                ]
            })
            .collect(),
    });

    // The 32 filters, before and after, 16 to a grid row.
    let (before, after) = (filter_images(&w0, 4), filter_images(&w1, 4));
    let half = before.len() / 2;
    let mut images = vec![];
    let mut row_labels = vec![];
    for (label, imgs) in [("init", &before), ("trained", &after)] {
        for (part, chunk) in imgs.chunks(half).enumerate() {
            row_labels.push(format!("{label} {}–{}", part * half + 1, (part + 1) * half));
            images.extend(chunk.iter().cloned());
        }
    }
    r.figures.push(Figure {
        name: "filters".into(),
        title: "The 32 conv1 filters (3×3), at initialization and after training".into(),
        plot: Plot::Images {
            width: 12,
            height: 12,
            row_labels,
            col_labels: (1..=half).map(|i| i.to_string()).collect(),
            images,
        },
    });

    // Feature maps after ReLU for a few test digits.
    let picks: Vec<usize> = cfg
        .digits
        .iter()
        .map(|&d| test.labels().iter().position(|&y| y == d).unwrap_or(0))
        .collect();
    let x = test.x.select(Axis(0), &picks); // (n_digits, 1, 28, 28)
    let outs = model.forward_all(&x, Mode::Eval);
    let get = |name: &str| {
        outs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .expect("the seed model has this layer")
    };
    let (relu1, relu2) = (get("relu1"), get("relu2")); // (n, 32, 26, 26), (n, 64, 11, 11)
    for (layer, maps, up, side) in [("conv1", &relu1, 1, 26), ("conv2", &relu2, 2, 22)] {
        let mut images = vec![];
        let mut row_labels = vec![];
        for (k, &i) in picks.iter().enumerate() {
            row_labels.push(format!("digit {}", test.labels()[i]));
            // The input, cropped (conv1) or resampled to the map's grid: conv1 unit
            // (a, b) is centred on pixel (a + 1, b + 1), so dropping the border aligns.
            let img = test.flat().row(i).to_owned();
            images.push(
                (0..side * side)
                    .map(|p| {
                        let (a, b) = (p / side, p % side);
                        let (pa, pb) = if layer == "conv1" {
                            (a + 1, b + 1)
                        } else {
                            (a * 28 / side, b * 28 / side)
                        };
                        (img[pa * 28 + pb] * 255.0).round() as u8
                    })
                    .collect(),
            );
            for c in 0..cfg.n_maps.min(maps.shape()[1]) {
                images.push(map_image(&maps.slice(s![k, c, .., ..]), up));
            }
        }
        r.figures.push(Figure {
            name: format!("maps_{layer}"),
            title: format!(
                "Feature maps after {layer} and its ReLU, channels 1 to {}",
                cfg.n_maps
            ),
            plot: Plot::Images {
                width: side,
                height: side,
                row_labels,
                col_labels: std::iter::once("input".to_string())
                    .chain((1..=cfg.n_maps).map(|c| format!("ch {c}")))
                    .collect(),
                images,
            },
        });
    }
    Ok(())
}
