//! Experiment `cnn_twin`: the seed CNN from scratch against its candle twin.
//!
//! First the agreement from the same initial weights: the largest relative gap of the
//! logits (evaluation mode) and of the loss and every parameter gradient (training
//! mode, the same dropout mask), with the twin in `F64` and in `F32`. Then both are
//! trained from the same initial weights on the same batches with the same dropout
//! masks: the from-scratch model with the book's Adam, the twin with candle-nn's
//! `AdamW` at weight decay 0 (which is Adam), both in `f32`, and evaluated on the test
//! set after each epoch. Wall times are printed, not stored: they depend on the machine.

use anyhow::Result;
use candle_core::DType;
use ndarray::{ArrayD, IxDyn};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{mnist_refs, DataDir, Dataset, Split};
use crate::models::candle_twin::CandleCnn;
use crate::models::{mnist_cnn, CnnConfig};
use crate::nn::dropout::Dropout;
use crate::nn::gradcheck::rel_error;
use crate::nn::{softmax_cross_entropy, Layer, Mode, Module};
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::train::{train_classifier, TrainSpec};

/// Experiment `cnn_twin`, registered in [`super::all`].
pub struct CnnTwin;

impl Experiment for CnnTwin {
    const NAME: &'static str = "cnn_twin";
    const CHAPTER: &'static str = "ch05";
    const TITLE: &'static str = "The seed CNN from scratch against its candle twin";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Examples in the agreement checks.
    pub n_check: usize,
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images (the first ones).
    pub n_test: usize,
    /// Epochs.
    pub n_epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate of both Adams.
    pub lr: f32,
    /// Seed of the initial weights, the batch order and the dropout masks.
    pub seed: u64,
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            n_check: 64,
            n_train: 6_000,
            n_test: 10_000,
            n_epochs: 2,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
        }
    }

    /// The test configuration.
    fn quick() -> Self {
        Config {
            n_check: 16,
            n_train: 1_024,
            n_test: 500,
            n_epochs: 1,
            ..Self::full()
        }
    }
}

/// The largest relative gaps between the scratch model and the twin in `dtype`, from
/// the seed model with `seed`: `(logits in eval mode, loss and gradients in training
/// mode with the same dropout mask)`.
pub fn agreement(
    x: &ArrayD<f32>,
    y: &[usize],
    seed: u64,
    dtype: DType,
) -> Result<(f64, f64)> {
    let n = y.len();
    let mut net = mnist_cnn(&CnnConfig::default(), seed);
    let twin = CandleCnn::from_model(&mut net, dtype)?;
    let ours = net.forward(x, Mode::Eval).mapv(f64::from);
    let logit_gap = rel_error(&ours, &twin.logits(x)?);

    // The model's dropout is seeded with seed ^ 0xD80B and draws one number per
    // activation: a fresh layer with that seed draws the mask of the first batch.
    let mut drop = Dropout::new(0.5, seed ^ 0xD80B);
    drop.forward(&ArrayD::ones(IxDyn(&[n, 128])), Mode::Train);
    let mask = drop
        .mask()
        .expect("a training forward draws a mask")
        .clone();
    net.zero_grad();
    let logits = net.forward(x, Mode::Train);
    let (loss, dlogits) = softmax_cross_entropy(&logits, y);
    net.backward(&dlogits);
    let mut grads = vec![];
    net.visit_params("", &mut |_, p| grads.push(p.grad.mapv(f64::from)));
    let (twin_loss, twin_grads) = twin.loss_grads(x, y, Some(&mask))?;
    let mut grad_gap = (f64::from(loss) - twin_loss).abs() / twin_loss.abs();
    for (a, (_, b)) in grads.iter().zip(&twin_grads) {
        grad_gap = grad_gap.max(rel_error(a, b));
    }
    Ok((logit_gap, grad_gap))
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let train = Dataset::mnist(dir, Split::Train, cfg.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, cfg.n_test)?;
    r.seeds = vec![cfg.seed];
    r.data = mnist_refs();

    // Agreement from the same weights.
    let n = cfg.n_check.min(train.len());
    let x = train.head(n).x;
    let y = &train.labels()[..n];
    let mut rows = vec![];
    for (name, dtype) in [("F64", DType::F64), ("F32", DType::F32)] {
        let (lg, gg) = agreement(&x, y, cfg.seed, dtype)?;
        r.fact(
            &format!("logit_gap_{}", name.to_lowercase()),
            lg,
            Format::Sci(1),
        );
        r.fact(
            &format!("grad_gap_{}", name.to_lowercase()),
            gg,
            Format::Sci(1),
        );
        rows.push(vec![Value::from(name), Value::Num(lg), Value::Num(gg)]);
    }
    r.tables.push(Table {
        name: "agreement".into(),
        caption: format!(
            "Largest relative gap (max-norm) between the from-scratch seed model (f32) \
             and its candle twin, from the same seed-{} weights on {} training digits: \
             logits in evaluation mode; loss and the gradient of each of the 8 \
             parameters in training mode with the same dropout mask.",
            cfg.seed, n
        ),
        columns: vec![
            col("twin dtype", Format::Int),
            col("logits", Format::Sci(1)),
            col("loss and gradients", Format::Sci(1)),
        ],
        rows,
    });

    // Training both from the same weights on the same batches and masks.
    let mut ours = mnist_cnn(&CnnConfig::default(), cfg.seed);
    let twin = CandleCnn::from_model(&mut ours, DType::F32)?;
    let mut opt = Adam::new(cfg.lr);
    let mut candle_opt = twin.adam(f64::from(cfg.lr))?;
    let mut twin_drop = Dropout::new(0.5, cfg.seed ^ 0xD80B);
    let mut mask_of = |b: usize| {
        twin_drop.forward(&ArrayD::ones(IxDyn(&[b, 128])), Mode::Train);
        twin_drop
            .mask()
            .expect("a training forward draws a mask")
            .clone()
    };
    // `train_classifier` reshuffles with a generator seeded by `spec.seed` and draws
    // nothing else from it without augmentation: the same generator gives the twin the
    // same batches.
    let mut order: Vec<usize> = (0..train.len()).collect();
    let (train_x, test_x) = (train.flat().to_owned(), test.flat().to_owned()); // (N, 784)
    let (mut acc_ours, mut acc_twin) = (vec![], vec![]);
    let mut rows = vec![];
    for epoch in 1..=cfg.n_epochs {
        let t = std::time::Instant::now();
        let spec = TrainSpec {
            n_epochs: 1,
            batch_size: cfg.batch_size,
            seed: cfg.seed.wrapping_add(1000 * epoch as u64),
            log_every: usize::MAX,
            ..TrainSpec::default()
        };
        let mut spec_rng = ChaCha8Rng::seed_from_u64(spec.seed);
        order.sort_unstable();
        order.shuffle(&mut spec_rng);
        let h = train_classifier(&mut ours, &mut opt, &train, &test, &spec);
        let t_ours = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        twin.train_epoch(
            &mut candle_opt,
            &train_x,
            train.labels(),
            &order,
            cfg.batch_size,
            &mut mask_of,
        )?;
        let a_twin = twin.accuracy(&test_x, test.labels())?;
        let t_twin = t.elapsed().as_secs_f64();
        let a_ours = h.final_acc();
        crate::progress::println(format!(
            "cnn_twin epoch {epoch}: from scratch {t_ours:.1} s, candle {t_twin:.1} s \
             (each with its test evaluation; not stored)"
        ));
        acc_ours.push(a_ours);
        acc_twin.push(a_twin);
        rows.push(vec![
            Value::Num(epoch as f64),
            Value::Num(a_ours),
            Value::Num(a_twin),
            Value::Num(100.0 * (a_ours - a_twin)),
        ]);
    }
    let gap = acc_ours
        .iter()
        .zip(&acc_twin)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    r.fact("max_acc_gap", 100.0 * gap, Format::Fixed(2));
    r.fact(
        "final_acc_ours",
        *acc_ours.last().unwrap_or(&0.0),
        Format::Percent(2),
    );
    r.fact(
        "final_acc_twin",
        *acc_twin.last().unwrap_or(&0.0),
        Format::Percent(2),
    );
    r.tables.push(Table {
        name: "training".into(),
        caption: format!(
            "Both trained in f32 from the same seed-{} weights, on the same batches of \
             {} from the first {} training images, with the same dropout masks: test \
             accuracy on {} images after each epoch, and the difference in points.",
            cfg.seed, cfg.batch_size, cfg.n_train, cfg.n_test
        ),
        columns: vec![
            col("epoch", Format::Int),
            col("from scratch", Format::Percent(2)),
            col("candle twin", Format::Percent(2)),
            col("Δ (points)", Format::Fixed(2)),
        ],
        rows,
    });
    let xs: Vec<f64> = (1..=cfg.n_epochs).map(|e| e as f64).collect();
    r.figures.push(Figure {
        name: "training".into(),
        title: "Test accuracy, from scratch vs candle twin".into(),
        plot: Plot::Lines {
            x_label: "epoch".into(),
            y_label: "test accuracy".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                Series {
                    name: "from scratch".into(),
                    x: xs.clone(),
                    y: acc_ours,
                    band: None,
                },
                Series {
                    name: "candle twin".into(),
                    x: xs,
                    y: acc_twin,
                    band: None,
                },
            ],
        },
    });
    Ok(())
}
