//! Experiment `residual_vs_plain`: the degradation problem on MNIST. A deeper plain CNN,
//! the same depth with identity shortcuts, and a shallow plain CNN as the reference,
//! trained with the same optimizer, budget and seeds.
//!
//! Every network is [`resnet`]: a stride-2 stem to 14x14, two stages of basic blocks
//! (`width` channels at 14x14, then `2 width` at 7x7 from a stride-2 block, with a
//! projection shortcut in the residual network), global average pooling and a dense
//! layer; the shallow and deep networks differ only in the blocks per stage. A seed fixes the weights and the batch order. The report has the
//! training-loss curves (mean ± std over the seeds), the final training loss (the mean
//! over the last `log_every` steps) and the test accuracy, and, at initialization, the
//! norm of the gradient reaching the first layer (the stem) for plain and residual
//! networks of growing depth.

use anyhow::Result;
use serde::Serialize;

use super::common::{final_losses, loss_curve, loss_figure, over_seeds, TrainFields};
use super::{Experiment, Preset};
use crate::data::Dataset;
use crate::data::{mnist_refs, DataDir, Split};
use crate::models::resnet::{resnet, ResNetConfig};
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::{Layer, Mode, Module};
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::train::{train_classifier, History, TrainSpec};

/// Experiment `residual_vs_plain`, registered in [`super::all`].
pub struct ResidualVsPlain;

impl Experiment for ResidualVsPlain {
    const NAME: &'static str = "residual_vs_plain";
    const CHAPTER: &'static str = "ch05";
    const TITLE: &'static str = "Plain and residual CNNs of the same depth, and a shallow plain one, on MNIST";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Channels of the stem and the first stage (the second stage has twice as many).
    pub width: usize,
    /// Stride of the stem (2: 28x28 to 14x14).
    pub stem_stride: usize,
    /// Blocks per stage of the shallow plain reference.
    pub shallow_blocks: Vec<usize>,
    /// Blocks per stage of the deep plain and deep residual networks.
    pub deep_blocks: Vec<usize>,
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images.
    pub n_test: usize,
    /// Epochs, batches and seeds (the gradient measurement uses the seeds too).
    #[serde(flatten)]
    pub train: TrainFields,
    /// Adam's learning rate.
    pub lr: f32,
    /// Steps per point of the training curves (and of the final training loss).
    pub log_every: usize,
    /// Depths (blocks of one stage) at which the initial first-layer gradient is
    /// measured.
    pub grad_blocks: Vec<usize>,
    /// Training images in the batch of the gradient measurement.
    pub grad_batch: usize,
}

impl Config {
    /// The network with `blocks` blocks per stage, with or without shortcuts.
    pub fn net(&self, blocks: &[usize], residual: bool) -> ResNetConfig {
        ResNetConfig {
            width: self.width,
            stem_stride: self.stem_stride,
            blocks: blocks.to_vec(),
            residual,
        }
    }

    /// The three networks trained: `(name, architecture)`, the shallow reference first.
    pub fn variants(&self) -> Vec<(String, ResNetConfig)> {
        let shallow = self.net(&self.shallow_blocks, false);
        let plain = self.net(&self.deep_blocks, false);
        let res = self.net(&self.deep_blocks, true);
        vec![
            (format!("plain, {} conv layers", shallow.depth()), shallow),
            (format!("plain, {} conv layers", plain.depth()), plain),
            (format!("residual, {} conv layers", res.depth()), res),
        ]
    }
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            width: 8,
            stem_stride: 2,
            shallow_blocks: vec![1, 1],
            deep_blocks: vec![8, 8],
            n_train: 20_000,
            n_test: 10_000,
            train: TrainFields {
                n_epochs: 1,
                batch_size: 32,
                seeds: vec![0, 1, 2],
            },
            lr: 2e-3,
            log_every: 25,
            grad_blocks: vec![1, 2, 4, 8, 16],
            grad_batch: 64,
        }
    }

    /// The test configuration.
    fn quick() -> Self {
        Config {
            deep_blocks: vec![3, 3],
            n_train: 480,
            n_test: 200,
            train: TrainFields {
                ..Self::full().train
            },
            log_every: 10,
            grad_blocks: vec![1, 4, 8],
            grad_batch: 32,
            ..Self::full()
        }
    }
}

// ANCHOR: first_layer_grad
/// The norm of $\partial L / \partial W_\text{stem}$, the gradient of the mean
/// cross-entropy on the first `n` images of `data` with respect to the first layer's
/// weights, for the network `arch` freshly initialised from `seed`.
pub fn first_layer_grad_norm(
    arch: &ResNetConfig,
    seed: u64,
    data: &Dataset,
    n: usize,
) -> f64 {
    let mut net = resnet(arch, seed);
    let x = data.head(n).x;
    net.zero_grad();
    let logits = net.forward(&x, Mode::Train);
    let (_, dlogits) = softmax_cross_entropy(&logits, &data.labels()[..n]);
    net.backward(&dlogits);
    let mut norm = 0.0f64;
    net.visit_params("", &mut |name, p| {
        if name == "stem.weight" {
            norm = p
                .grad
                .iter()
                .map(|&g| f64::from(g).powi(2))
                .sum::<f64>()
                .sqrt();
        }
    });
    norm
}
// ANCHOR_END: first_layer_grad

/// Trains one network with one seed.
pub fn train_one(
    cfg: &Config,
    arch: &ResNetConfig,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
) -> History {
    let mut net = resnet(arch, seed);
    let mut opt = Adam::new(cfg.lr);
    let spec = TrainSpec {
        log_every: cfg.log_every,
        ..cfg.train.spec(seed)
    };
    train_classifier(&mut net, &mut opt, train, test, &spec)
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?;
    let seeds = &cfg.train.seeds;
    r.seeds = seeds.clone();
    r.data = mnist_refs();

    // 1. The gradient at the first layer, at initialization.
    let mut grad_rows = vec![];
    let (mut plain_line, mut res_line) = (vec![], vec![]);
    for &n in &cfg.grad_blocks {
        let norms = |residual| -> Vec<f64> {
            seeds
                .iter()
                .map(|&s| {
                    first_layer_grad_norm(
                        &cfg.net(&[n], residual),
                        s,
                        &train,
                        cfg.grad_batch,
                    )
                })
                .collect()
        };
        let (plain, res) = (norms(false), norms(true));
        let depth = cfg.net(&[n], false).depth();
        r.fact(
            &format!("grad_plain_{n}"),
            Value::Seeds(plain.clone()),
            Format::Sci(2),
        );
        r.fact(
            &format!("grad_res_{n}"),
            Value::Seeds(res.clone()),
            Format::Sci(2),
        );
        plain_line.push(Value::mean_std(&plain).0);
        res_line.push(Value::mean_std(&res).0);
        grad_rows.push(vec![
            Value::Num(depth as f64),
            Value::Seeds(plain),
            Value::Seeds(res),
        ]);
    }
    let depths: Vec<f64> = cfg
        .grad_blocks
        .iter()
        .map(|&n| cfg.net(&[n], false).depth() as f64)
        .collect();

    // 2. Training.
    let mut rows = vec![];
    let mut curves = vec![];
    for (vi, (name, arch)) in cfg.variants().iter().enumerate() {
        let hs = over_seeds(&format!("residual_vs_plain: {name}"), seeds, |s| {
            train_one(cfg, arch, &train, &test, s)
        });
        let last = final_losses(&hs);
        let accs: Vec<f64> = hs.iter().map(History::final_acc).collect();
        r.fact(
            &format!("loss_{vi}"),
            Value::Seeds(last.clone()),
            Format::Fixed(3),
        );
        r.fact(
            &format!("acc_{vi}"),
            Value::Seeds(accs.clone()),
            Format::Percent(2),
        );
        let mut net = resnet(arch, 0);
        rows.push(vec![
            Value::from(name.as_str()),
            Value::Num(net.n_params() as f64),
            Value::Seeds(last),
            Value::Seeds(accs),
        ]);
        curves.push(loss_curve(name, &hs));
    }
    r.tables.push(Table {
        name: "training".into(),
        caption: format!(
            "Stride-{} stem to 14 x 14, two stages of basic blocks of {} and {} \
             channels (the second starts with a stride-2 block, to 7 x 7; blocks per \
             stage {:?} shallow, {:?} deep), global average pooling, dense layer; Adam η = {}, {} epoch(s) on {} training images, batch \
             {}. Final training loss: mean over the last {} steps; test accuracy on {} \
             images. Mean ± std over seeds {:?}.",
            cfg.stem_stride,
            cfg.width,
            2 * cfg.width,
            cfg.shallow_blocks,
            cfg.deep_blocks,
            cfg.lr,
            cfg.train.n_epochs,
            cfg.n_train,
            cfg.train.batch_size,
            cfg.log_every,
            cfg.n_test,
            seeds
        ),
        columns: vec![
            col("network", Format::Int),
            col("parameters", Format::Int),
            col("final training loss", Format::Fixed(3)),
            col("test accuracy", Format::Percent(2)),
        ],
        rows,
    });
    r.tables.push(Table {
        name: "first_layer_gradient".into(),
        caption: format!(
            "At initialization: the norm of the gradient of the mean cross-entropy on \
             {} training images with respect to the first layer's weights, plain and \
             residual networks of each depth (one stage of {} channels; conv layers on \
             the longest path), mean ± std over seeds {:?}.",
            cfg.grad_batch, cfg.width, seeds
        ),
        columns: vec![
            col("conv layers", Format::Int),
            col("plain ‖dL/dW₁‖", Format::Sci(2)),
            col("residual ‖dL/dW₁‖", Format::Sci(2)),
        ],
        rows: grad_rows,
    });
    r.figures.push(loss_figure(
        "curves",
        cfg.log_every,
        seeds,
        Scale::Log,
        curves,
    ));
    r.figures.push(Figure {
        name: "gradient".into(),
        title: "First-layer gradient norm at initialization (mean over seeds)".into(),
        plot: Plot::Lines {
            x_label: "conv layers".into(),
            y_label: "‖dL/dW₁‖".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Log,
            series: vec![
                Series {
                    name: "plain".into(),
                    x: depths.clone(),
                    y: plain_line,
                    band: None,
                },
                Series {
                    name: "residual".into(),
                    x: depths,
                    y: res_line,
                    band: None,
                },
            ],
        },
    });
    Ok(())
}
