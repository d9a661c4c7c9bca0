//! Experiment `transfer_fashion`: Fashion-MNIST with few labels, from pre-trained
//! features, by fine-tuning, and from scratch.
//!
//! For each number of labelled training images $N$ and each seed, the seed draws $N$
//! images from a fixed pool of Fashion-MNIST training images, and every method learns
//! from exactly those:
//!
//! - EfficientNet-Lite0 with its ImageNet weights, frozen, its 1280 pooled features
//!   (computed once for the pool and the test images) fed to a linear softmax classifier;
//! - the same network with its last stage (blocks 12 to 15 and the head convolution)
//!   fine-tuned together with a new classifier, from the cached output of the frozen
//!   front;
//! - the same architecture with random weights, frozen, its features fed to a linear
//!   classifier (what the pre-training is worth, with the architecture fixed);
//! - the week-5 CNN trained on MNIST digits, frozen, its 128 hidden features fed to a
//!   linear classifier (transfer within the book);
//! - the week-5 CNN trained from scratch on the $N$ images.
//!
//! A second table compares fine-tuning strategies at one $N$ (which blocks to unfreeze,
//! batch-norm statistics frozen or updated, a smaller learning rate for the pre-trained
//! layers) and what a larger input costs and buys.

use anyhow::Result;
use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{shuffled_order, DataDir, Dataset, Split};
use crate::models::efficientnet::{
    self, efficientnet_lite0, load_imagenet, load_state_dict,
};
use crate::models::mnist_cnn::{mnist_cnn, CnnConfig};
use crate::models::pth::PthTensor;
use crate::nn::linear::{Init, Linear};
use crate::nn::Named;
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::train::{accuracy_on, train_with, ClassifierLoss, ParamGroups, TrainSpec};
use crate::transfer::{
    backbone_input, feature_rows, run_frozen, split_before, EvalMode, Standardize,
};

/// Experiment `transfer_fashion`, registered in [`super::all`].
pub struct TransferFashion;

impl Experiment for TransferFashion {
    const NAME: &'static str = "transfer_fashion";
    const CHAPTER: &'static str = "ch06";
    const TITLE: &'static str =
        "Fashion-MNIST with few labels: pre-trained features, fine-tuning, training from scratch";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Labelled training images per run: the learning curve's x axis.
    pub sizes: Vec<usize>,
    /// The pool the runs draw their images from: the first Fashion-MNIST training
    /// images (at least the largest size).
    pub pool: usize,
    /// Test images (the first ones).
    pub n_test: usize,
    /// Side of the backbone's input (Fashion-MNIST's 28 pixels resized).
    pub resolution: usize,
    /// Seeds: one run per seed and size.
    pub seeds: Vec<u64>,
    /// Optimizer steps of every trained classifier and fine-tuning run.
    pub steps: usize,
    /// Batch size of every run.
    pub batch_size: usize,
    /// AdamW's learning rate for the linear classifiers.
    pub head_lr: f32,
    /// AdamW's decoupled weight decay for the linear classifiers.
    pub head_weight_decay: f32,
    /// Adam's learning rate when fine-tuning and training the CNN.
    pub tune_lr: f32,
    /// The size at which the fine-tuning strategies are compared.
    pub strategy_size: usize,
    /// A larger input side for the strategy table's resolution row.
    pub large_resolution: usize,
    /// MNIST training images for pre-training the week-5 CNN (one epoch).
    pub mnist_pretrain: usize,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            sizes: vec![100, 1_000, 10_000],
            pool: 10_000,
            n_test: 2_000,
            resolution: 32,
            seeds: vec![0, 1, 2],
            steps: 400,
            batch_size: 32,
            head_lr: 1e-3,
            head_weight_decay: 1e-2,
            tune_lr: 1e-3,
            strategy_size: 1_000,
            large_resolution: 64,
            mnist_pretrain: 60_000,
        }
    }

    /// The test configuration.
    fn quick() -> Self {
        Config {
            sizes: vec![20, 60],
            pool: 60,
            n_test: 60,
            seeds: vec![0],
            steps: 15,
            batch_size: 16,
            strategy_size: 60,
            large_resolution: 36,
            mnist_pretrain: 600,
            ..Self::full()
        }
    }
}

/// The layer where fine-tuning starts: blocks 12 to 15 (the last two stages) and the
/// head are trained, everything before stays frozen.
pub const TUNE_FROM: &str = "_blocks.12";

/// A fine-tuning strategy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Strategy {
    /// Row name.
    pub name: String,
    /// Blocks (from [`TUNE_FROM`] on) that stay frozen.
    pub frozen: Vec<String>,
    /// Batch norms normalise with their running statistics ([`EvalMode`]) instead of
    /// the batch's.
    pub freeze_bn_stats: bool,
    /// Learning-rate multiplier of the pre-trained layers (the new classifier has 1).
    pub backbone_lr_scale: f32,
}

/// The strategies the second table compares.
pub fn strategies() -> Vec<Strategy> {
    let s = |name: &str, frozen: &[&str], freeze_bn_stats, backbone_lr_scale| Strategy {
        name: name.into(),
        frozen: frozen.iter().map(|s| s.to_string()).collect(),
        freeze_bn_stats,
        backbone_lr_scale,
    };
    vec![
        s(
            "last block + head, BN statistics frozen",
            &["_blocks.12", "_blocks.13", "_blocks.14"],
            true,
            1.0,
        ),
        s(
            "last two stages + head, BN statistics frozen",
            &[],
            true,
            1.0,
        ),
        s(
            "last two stages + head, BN statistics updated",
            &[],
            false,
            1.0,
        ),
        s(
            "last two stages + head, BN frozen, backbone η × 0.1",
            &[],
            true,
            0.1,
        ),
    ]
}

/// What every run needs: labels, and the cached inputs of each method.
struct Cache {
    /// Labels of the pool, then of the test images.
    pool_labels: Vec<usize>,
    test_labels: Vec<usize>,
    /// Pooled ImageNet features `(n, 1280)`.
    imagenet: (ArrayD<f32>, ArrayD<f32>),
    /// Output of the frozen front (the input of [`TUNE_FROM`]).
    front: (ArrayD<f32>, ArrayD<f32>),
    /// Pooled features of the randomly initialised network.
    random: (ArrayD<f32>, ArrayD<f32>),
    /// Hidden features of the MNIST-trained week-5 CNN `(n, 128)`.
    mnist_cnn: (ArrayD<f32>, ArrayD<f32>),
    /// The raw images, for training the CNN from scratch.
    pool: Dataset,
    test: Dataset,
}

impl Cache {
    /// The labels of the pool and of the test images.
    fn labels(&self) -> (&[usize], &[usize]) {
        (&self.pool_labels, &self.test_labels)
    }
}

/// The `n` training images seed `seed` draws from the pool (the same for every method).
pub(crate) fn draw(cfg: &Config, n: usize, seed: u64) -> Vec<usize> {
    shuffled_order(cfg.pool, &mut ChaCha8Rng::seed_from_u64(seed))[..n].to_vec()
}

/// The steps of a run as epochs over `n` examples (at least one).
fn epochs(cfg: &Config, n: usize) -> usize {
    (cfg.steps * cfg.batch_size).div_ceil(n).max(1)
}

/// The training of every run: `cfg.steps` steps of `cfg.batch_size` (as whole epochs
/// over `n` examples), quiet.
pub(crate) fn spec(
    cfg: &Config,
    n: usize,
    seed: u64,
    groups: ParamGroups,
) -> TrainSpec<'static> {
    TrainSpec {
        n_epochs: epochs(cfg, n),
        batch_size: cfg.batch_size,
        seed,
        log_every: usize::MAX,
        groups,
        ..TrainSpec::default()
    }
}

// ANCHOR: linear_probe
/// A linear softmax classifier on the frozen features `f` (of the pool, of the test
/// images) of the training rows `idx` (standardised with their own mean and spread);
/// its test accuracy.
pub(crate) fn linear_probe(
    cfg: &Config,
    f: &(ArrayD<f32>, ArrayD<f32>),
    (pool_labels, test_labels): (&[usize], &[usize]),
    idx: &[usize],
    seed: u64,
) -> f64 {
    let x = feature_rows(&f.0, idx);
    let st = Standardize::fit(&x);
    let labels = idx.iter().map(|&i| pool_labels[i]).collect();
    let train = Dataset::classes(st.apply(&x).into_dyn(), labels);
    let all: Vec<usize> = (0..test_labels.len()).collect();
    let x_test = st.apply(&feature_rows(&f.1, &all));
    let test = Dataset::classes(x_test.into_dyn(), test_labels.to_vec());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut head = Linear::new(f.0.shape()[1], 10, Init::Xavier, &mut rng);
    let mut opt = Adam::adamw(cfg.head_lr, cfg.head_weight_decay);
    let spec = spec(cfg, idx.len(), seed, ParamGroups::default());
    train_with(
        &mut head,
        &mut opt,
        &ClassifierLoss::CrossEntropy,
        &train,
        None,
        &spec,
    );
    accuracy_on(&mut head, &test)
}
// ANCHOR_END: linear_probe

// ANCHOR: fine_tune
/// Fine-tunes the back of the ImageNet network (from [`TUNE_FROM`] on, with a new
/// 10-class classifier) by strategy `s` on the cached front outputs `front` (of the
/// pool, of the test images) of rows `idx`; its test accuracy.
pub(crate) fn fine_tune(
    cfg: &Config,
    state: &[PthTensor],
    front: &(ArrayD<f32>, ArrayD<f32>),
    (pool_labels, test_labels): (&[usize], &[usize]),
    idx: &[usize],
    s: &Strategy,
    seed: u64,
) -> Result<f64> {
    let mut net = efficientnet_lite0(10, seed);
    load_imagenet(&mut net, state, false)?;
    let (_, back) = split_before(net, TUNE_FROM);
    let mut model = Named::new();
    for (name, layer) in back.layers {
        // The new classifier keeps training mode (it has no statistics anyway).
        if s.freeze_bn_stats && name != "_fc" {
            model.layers.push((name, Box::new(EvalMode(layer))));
        } else {
            model.layers.push((name, layer));
        }
    }
    let groups = ParamGroups {
        frozen: s.frozen.clone(),
        lr_scale: if s.backbone_lr_scale == 1.0 {
            vec![]
        } else {
            vec![
                ("_blocks".into(), s.backbone_lr_scale),
                ("_conv_head".into(), s.backbone_lr_scale),
                ("_bn1".into(), s.backbone_lr_scale),
            ]
        },
    };
    let train = Dataset::classes(
        front.0.select(ndarray::Axis(0), idx),
        idx.iter().map(|&i| pool_labels[i]).collect(),
    );
    let test = Dataset::classes(front.1.clone(), test_labels.to_vec());
    let mut opt = Adam::new(cfg.tune_lr);
    let spec = spec(cfg, idx.len(), seed, groups);
    train_with(
        &mut model,
        &mut opt,
        &ClassifierLoss::CrossEntropy,
        &train,
        None,
        &spec,
    );
    Ok(accuracy_on(&mut model, &test))
}
// ANCHOR_END: fine_tune

/// The week-5 CNN trained from scratch on the images `idx`; its test accuracy.
fn cnn_from_scratch(cfg: &Config, c: &Cache, idx: &[usize], seed: u64) -> f64 {
    let mut model = mnist_cnn(&CnnConfig::default(), seed);
    let train = c.pool.select(idx);
    let mut opt = Adam::new(cfg.tune_lr);
    let spec = spec(cfg, idx.len(), seed, ParamGroups::default());
    train_with(
        &mut model,
        &mut opt,
        &ClassifierLoss::CrossEntropy,
        &train,
        None,
        &spec,
    );
    accuracy_on(&mut model, &c.test)
}

/// Builds every cached input.
fn build_cache(cfg: &Config, dir: &DataDir, state: &[PthTensor]) -> Result<Cache> {
    let pool = Dataset::fashion_mnist(dir, Split::Train, cfg.pool)?;
    let test = Dataset::fashion_mnist(dir, Split::Test, cfg.n_test)?;
    let norm = efficientnet::normalize;
    let (xp, xt) = (
        backbone_input(&pool.x, cfg.resolution, norm),
        backbone_input(&test.x, cfg.resolution, norm),
    );
    let mut net = efficientnet_lite0(efficientnet::CLASSES, 0);
    load_imagenet(&mut net, state, true)?;
    let (mut front, back) = split_before(net, TUNE_FROM);
    let (mut to_features, _) = split_before(back, "_fc");
    let fp = run_frozen(&mut front, &xp, 64, "ImageNet front, pool");
    let ft = run_frozen(&mut front, &xt, 64, "ImageNet front, test");
    let imagenet = (
        run_frozen(&mut to_features, &fp, 256, "ImageNet back, pool"),
        run_frozen(&mut to_features, &ft, 256, "ImageNet back, test"),
    );
    let random_net = efficientnet_lite0(efficientnet::CLASSES, 0);
    let (mut random_features, _) = split_before(random_net, "_fc");
    let random = (
        run_frozen(&mut random_features, &xp, 64, "random init, pool"),
        run_frozen(&mut random_features, &xt, 64, "random init, test"),
    );
    // The week-5 CNN, trained for one epoch on MNIST digits, then frozen.
    let mnist = Dataset::mnist(dir, Split::Train, cfg.mnist_pretrain)?;
    let mut cnn = mnist_cnn(&CnnConfig::default(), 0);
    let spec = TrainSpec {
        n_epochs: 1,
        batch_size: 128,
        seed: 0,
        log_every: usize::MAX,
        ..TrainSpec::default()
    };
    train_with(
        &mut cnn,
        &mut Adam::new(1e-3),
        &ClassifierLoss::CrossEntropy,
        &mnist,
        None,
        &spec,
    );
    let (mut cnn_features, _) = split_before(cnn, "fc2");
    let mnist_features = (
        run_frozen(&mut cnn_features, &pool.x, 256, "MNIST CNN, pool"),
        run_frozen(&mut cnn_features, &test.x, 256, "MNIST CNN, test"),
    );
    Ok(Cache {
        pool_labels: pool.labels().to_vec(),
        test_labels: test.labels().to_vec(),
        imagenet,
        front: (fp, ft),
        random,
        mnist_cnn: mnist_features,
        pool,
        test,
    })
}

/// The methods of the learning curve, in table order.
pub const METHODS: [&str; 5] = [
    "EfficientNet-Lite0 (ImageNet), frozen + linear",
    "EfficientNet-Lite0 (ImageNet), last two stages fine-tuned",
    "EfficientNet-Lite0 (random init), frozen + linear",
    "week-5 CNN (MNIST), frozen + linear",
    "week-5 CNN, trained from scratch",
];

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    anyhow::ensure!(
        cfg.sizes.iter().all(|&n| n <= cfg.pool) && cfg.strategy_size <= cfg.pool,
        "transfer_fashion: sizes {:?} and strategy size {} must be at most the pool {}",
        cfg.sizes,
        cfg.strategy_size,
        cfg.pool
    );
    let state = load_state_dict(dir)?;
    let c = build_cache(cfg, dir, &state)?;
    r.seeds = cfg.seeds.clone();
    let tuned = &strategies()[1];
    // acc[method][size] = one accuracy per seed.
    let mut acc = vec![vec![vec![]; cfg.sizes.len()]; METHODS.len()];
    let bar = crate::progress::bar(
        (cfg.sizes.len() * cfg.seeds.len()) as u64,
        "transfer_fashion",
    );
    for (k, &n) in cfg.sizes.iter().enumerate() {
        for &seed in &cfg.seeds {
            let idx = draw(cfg, n, seed);
            acc[0][k].push(linear_probe(cfg, &c.imagenet, c.labels(), &idx, seed));
            acc[1][k].push(fine_tune(
                cfg,
                &state,
                &c.front,
                c.labels(),
                &idx,
                tuned,
                seed,
            )?);
            acc[2][k].push(linear_probe(cfg, &c.random, c.labels(), &idx, seed));
            acc[3][k].push(linear_probe(cfg, &c.mnist_cnn, c.labels(), &idx, seed));
            acc[4][k].push(cnn_from_scratch(cfg, &c, &idx, seed));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    curve_outputs(cfg, &acc, r);
    strategy_table(cfg, &state, &c, r)?;
    Ok(())
}

/// The learning-curve table, facts and figure.
fn curve_outputs(cfg: &Config, acc: &[Vec<Vec<f64>>], r: &mut Report) {
    let caption = format!(
        "Test accuracy on {} Fashion-MNIST test images after learning from N labelled \
         training images (mean ± std over seeds {:?}; a seed draws the N images from \
         the first {} and initialises the new layers). Inputs {r_}x{r_} for \
         EfficientNet-Lite0; {} optimizer steps of batch {} for every method.",
        cfg.n_test,
        cfg.seeds,
        cfg.pool,
        cfg.steps,
        cfg.batch_size,
        r_ = cfg.resolution
    );
    let keys = [
        "imagenet_linear",
        "imagenet_tuned",
        "random_linear",
        "mnist_linear",
        "cnn_scratch",
    ];
    let names: Vec<String> = METHODS.iter().map(|m| m.to_string()).collect();
    let curve = Curve {
        sizes: &cfg.sizes,
        names: &names,
        keys: &keys,
        acc,
    };
    curve.report(
        caption,
        "Fashion-MNIST: test accuracy against labelled training images",
        r,
    );
}

/// Accuracies per method, size and seed, and what to call them.
pub(crate) struct Curve<'a> {
    /// The sizes N (the columns).
    pub sizes: &'a [usize],
    /// Each method's name (the rows, the figure's series).
    pub names: &'a [String],
    /// Each method's fact key: facts `<key>_<N>` hold the means.
    pub keys: &'a [&'a str],
    /// `acc[method][size]`: one accuracy per seed.
    pub acc: &'a [Vec<Vec<f64>>],
}

impl Curve<'_> {
    /// The table `curve` (mean ± std per cell), the facts and the figure `curve`.
    pub(crate) fn report(&self, caption: String, title: &str, r: &mut Report) {
        let mut columns = vec![col("method", Format::Int)];
        for n in self.sizes {
            columns.push(col(&format!("N = {n}"), Format::Percent(1)));
        }
        let rows = self
            .names
            .iter()
            .zip(self.acc)
            .map(|(name, per_size)| {
                let mut row = vec![Value::Text(name.clone())];
                row.extend(per_size.iter().map(|s| Value::Seeds(s.clone())));
                row
            })
            .collect();
        r.tables.push(Table {
            name: "curve".into(),
            caption,
            columns,
            rows,
        });
        for (key, per_size) in self.keys.iter().zip(self.acc) {
            for (n, s) in self.sizes.iter().zip(per_size) {
                let (m, _) = Value::mean_std(s);
                r.fact(&format!("{key}_{n}"), m, Format::Percent(1));
            }
        }
        let series = self
            .names
            .iter()
            .zip(self.acc)
            .map(|(name, per_size)| {
                let (y, band): (Vec<f64>, Vec<f64>) =
                    per_size.iter().map(|s| Value::mean_std(s)).unzip();
                Series {
                    name: name.clone(),
                    x: self.sizes.iter().map(|&n| n as f64).collect(),
                    y,
                    band: Some(band),
                }
            })
            .collect();
        r.figures.push(Figure {
            name: "curve".into(),
            title: title.into(),
            plot: Plot::Lines {
                x_label: "labelled training images N".into(),
                y_label: "test accuracy".into(),
                x_scale: Scale::Log,
                y_scale: Scale::Linear,
                series,
            },
        });
    }
}

/// The fine-tuning strategies and the resolution row at `cfg.strategy_size`.
fn strategy_table(
    cfg: &Config,
    state: &[PthTensor],
    c: &Cache,
    r: &mut Report,
) -> Result<()> {
    let n = cfg.strategy_size;
    let mut rows = vec![];
    let mut push = |name: &str, accs: Vec<f64>, r: &mut Report, key: &str| {
        let (m, _) = Value::mean_std(&accs);
        r.fact(key, m, Format::Percent(1));
        rows.push(vec![Value::Text(name.to_string()), Value::Seeds(accs)]);
    };
    let draws: Vec<Vec<usize>> =
        cfg.seeds.iter().map(|&seed| draw(cfg, n, seed)).collect();
    let probe: Vec<f64> = cfg
        .seeds
        .iter()
        .zip(&draws)
        .map(|(&s, idx)| linear_probe(cfg, &c.imagenet, c.labels(), idx, s))
        .collect();
    push(
        &format!("frozen + linear, {0}x{0} input", cfg.resolution),
        probe,
        r,
        "strategy_linear",
    );
    for (k, s) in strategies().iter().enumerate() {
        let accs = cfg
            .seeds
            .iter()
            .zip(&draws)
            .map(|(&seed, idx)| fine_tune(cfg, state, &c.front, c.labels(), idx, s, seed))
            .collect::<Result<Vec<_>>>()?;
        push(&s.name, accs, r, &format!("strategy_{k}"));
    }
    // The same linear probe on a larger input: only the drawn images are needed.
    let mut wanted: Vec<usize> = draws.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let big = |x: &ArrayD<f32>| {
        backbone_input(x, cfg.large_resolution, efficientnet::normalize)
    };
    let mut net = efficientnet_lite0(efficientnet::CLASSES, 0);
    load_imagenet(&mut net, state, true)?;
    let (mut features, _) = split_before(net, "_fc");
    let pool_sub = c.pool.select(&wanted);
    let fp = run_frozen(&mut features, &big(&pool_sub.x), 32, "larger input, pool");
    let ft = run_frozen(&mut features, &big(&c.test.x), 32, "larger input, test");
    // Scatter the computed rows back to pool positions.
    let mut full = ArrayD::zeros(vec![cfg.pool, fp.shape()[1]]);
    for (row, &i) in wanted.iter().enumerate() {
        full.index_axis_mut(ndarray::Axis(0), i)
            .assign(&fp.index_axis(ndarray::Axis(0), row));
    }
    let large = (full, ft);
    let accs: Vec<f64> = cfg
        .seeds
        .iter()
        .zip(&draws)
        .map(|(&s, idx)| linear_probe(cfg, &large, c.labels(), idx, s))
        .collect();
    push(
        &format!("frozen + linear, {0}x{0} input", cfg.large_resolution),
        accs,
        r,
        "strategy_large_input",
    );
    r.tables.push(Table {
        name: "strategies".into(),
        caption: format!(
            "Fine-tuning strategies for EfficientNet-Lite0 (ImageNet) on N = {n} \
             Fashion-MNIST images: test accuracy on {} images, mean ± std over seeds {:?}. \
             Unless the row says otherwise, inputs are {r_}x{r_} and the pre-trained layers \
             learn at the classifier's rate η = {}.",
            cfg.n_test,
            cfg.seeds,
            cfg.tune_lr,
            r_ = cfg.resolution
        ),
        columns: vec![col("strategy", Format::Int), col("test accuracy", Format::Percent(1))],
        rows,
    });
    Ok(())
}
