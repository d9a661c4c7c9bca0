//! Experiment `transfer_full`: the learning curve of [`super::transfer_fashion`] for
//! the costly methods, on the same draws of training images, the same seeds and the same
//! optimizer budget:
//!
//! - EfficientNet-Lite0 with its ImageNet weights, **every layer fine-tuned** together
//!   with a new classifier (the pre-trained layers at a tenth of the classifier's
//!   learning rate, the best strategy of `transfer_fashion`'s table; batch-norm
//!   statistics updated);
//! - the **same architecture from random weights, trained end to end** (every layer at
//!   the full rate): what the ImageNet weights are worth when everything trains;
//! - at a **larger input** (64 x 64 instead of 32 x 32): the frozen ImageNet network
//!   with a linear classifier, and its last two stages fine-tuned.
//!
//! The 32-pixel runs push every image through the whole network at every step, which is
//! why they are an experiment of their own: `transfer_fashion`'s cached-feature methods
//! regenerate without them.

use anyhow::Result;
use ndarray::ArrayD;
use serde::Serialize;

use super::transfer_fashion::{
    self as tf, draw, fine_tune, linear_probe, spec, TUNE_FROM,
};
use super::{Experiment, Preset};
use crate::data::{DataDir, Dataset, Split};
use crate::models::efficientnet::{
    self, efficientnet_lite0, load_imagenet, load_state_dict,
};
use crate::models::pth::PthTensor;
use crate::optim::Adam;
use crate::report::Report;
use crate::train::{accuracy_on, train_with, ClassifierLoss, ParamGroups};
use crate::transfer::{backbone_input, run_frozen, split_before};

/// Experiment `transfer_full`, registered in [`super::all`].
pub struct TransferFull;

impl Experiment for TransferFull {
    const NAME: &'static str = "transfer_full";
    const CHAPTER: &'static str = "ch06";
    const TITLE: &'static str =
        "Fashion-MNIST with few labels: full fine-tuning, training from random weights, a larger input";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Sizes, pool, test images, seeds, steps, batch and rates: those of
    /// `transfer_fashion`, so that the two tables are one learning curve.
    pub curve: tf::Config,
    /// Learning-rate multiplier of the pre-trained layers in full fine-tuning.
    pub pretrained_lr_scale: f32,
}

impl Preset for Config {
    /// `transfer_fashion`'s full configuration.
    fn full() -> Self {
        Config {
            curve: tf::Config::full(),
            pretrained_lr_scale: 0.1,
        }
    }

    /// `transfer_fashion`'s quick configuration.
    fn quick() -> Self {
        Config {
            curve: tf::Config::quick(),
            ..Self::full()
        }
    }
}

/// The methods of the table, in order.
pub const METHODS: [&str; 4] = [
    "EfficientNet-Lite0 (ImageNet), all layers fine-tuned",
    "EfficientNet-Lite0 (random init), trained end to end",
    "EfficientNet-Lite0 (ImageNet), frozen + linear, larger input",
    "EfficientNet-Lite0 (ImageNet), last two stages fine-tuned, larger input",
];

/// The keys of the facts, `<key>_<N>`, in [`METHODS`] order.
pub const KEYS: [&str; 4] = [
    "imagenet_full",
    "random_full",
    "large_linear",
    "large_tuned",
];

// ANCHOR: train_whole
/// Trains the whole EfficientNet-Lite0 with a new 10-class classifier on the images
/// `x` (the pool, the test images; already resized and normalised) of rows `idx`:
/// from the ImageNet weights (`state`, the pre-trained layers at `pretrained_lr_scale`
/// times the rate) or from random weights (`None`, every layer at the full rate). Batch
/// norms use the batch's statistics while training. Its test accuracy.
fn train_whole(
    cfg: &Config,
    state: Option<&[PthTensor]>,
    x: &(ArrayD<f32>, ArrayD<f32>),
    (pool_labels, test_labels): (&[usize], &[usize]),
    idx: &[usize],
    seed: u64,
) -> Result<f64> {
    let mut net = efficientnet_lite0(10, seed);
    let mut groups = ParamGroups::default();
    if let Some(state) = state {
        load_imagenet(&mut net, state, false)?;
        // Every layer but the new classifier `_fc` is pre-trained.
        groups.lr_scale = net
            .names()
            .iter()
            .filter(|n| **n != "_fc")
            .map(|n| (n.to_string(), cfg.pretrained_lr_scale))
            .collect();
    }
    let train = Dataset::classes(
        x.0.select(ndarray::Axis(0), idx),
        idx.iter().map(|&i| pool_labels[i]).collect(),
    );
    let test = Dataset::classes(x.1.clone(), test_labels.to_vec());
    let c = &cfg.curve;
    let spec = spec(c, idx.len(), seed, groups);
    train_with(
        &mut net,
        &mut Adam::new(c.tune_lr),
        &ClassifierLoss::CrossEntropy,
        &train,
        None,
        &spec,
    );
    Ok(accuracy_on(&mut net, &test))
}
// ANCHOR_END: train_whole

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let c = &cfg.curve;
    anyhow::ensure!(
        c.sizes.iter().all(|&n| n <= c.pool),
        "transfer_full: sizes {:?} must be at most the pool {}",
        c.sizes,
        c.pool
    );
    let state = load_state_dict(dir)?;
    let pool = Dataset::fashion_mnist(dir, Split::Train, c.pool)?;
    let test = Dataset::fashion_mnist(dir, Split::Test, c.n_test)?;
    let labels = (pool.labels(), test.labels());
    let input = |side: usize| {
        (
            backbone_input(&pool.x, side, efficientnet::normalize),
            backbone_input(&test.x, side, efficientnet::normalize),
        )
    };
    let small = input(c.resolution);
    // The larger input: the frozen front's output (for fine-tuning the back) and the
    // pooled features (for the linear classifier), computed once.
    let (front, features) = {
        let large = input(c.large_resolution);
        let mut net = efficientnet_lite0(efficientnet::CLASSES, 0);
        load_imagenet(&mut net, &state, true)?;
        let (mut front, back) = split_before(net, TUNE_FROM);
        let (mut to_features, _) = split_before(back, "_fc");
        let fp = run_frozen(
            &mut front,
            &large.0,
            32,
            "ImageNet front, larger input, pool",
        );
        let ft = run_frozen(
            &mut front,
            &large.1,
            32,
            "ImageNet front, larger input, test",
        );
        let features = (
            run_frozen(
                &mut to_features,
                &fp,
                128,
                "ImageNet back, larger input, pool",
            ),
            run_frozen(
                &mut to_features,
                &ft,
                128,
                "ImageNet back, larger input, test",
            ),
        );
        ((fp, ft), features)
    };
    let tuned = &tf::strategies()[1];
    r.seeds = c.seeds.clone();
    let mut acc = vec![vec![vec![]; c.sizes.len()]; METHODS.len()];
    let bar =
        crate::progress::bar((c.sizes.len() * c.seeds.len()) as u64, "transfer_full");
    for (k, &n) in c.sizes.iter().enumerate() {
        for &seed in &c.seeds {
            let idx = draw(c, n, seed);
            acc[0][k].push(train_whole(cfg, Some(&state), &small, labels, &idx, seed)?);
            acc[1][k].push(train_whole(cfg, None, &small, labels, &idx, seed)?);
            acc[2][k].push(linear_probe(c, &features, labels, &idx, seed));
            acc[3][k].push(fine_tune(c, &state, &front, labels, &idx, tuned, seed)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    outputs(cfg, &acc, r);
    Ok(())
}

/// The method's name in the table: the input side spelled out.
fn method_name(cfg: &Config, k: usize) -> String {
    let c = &cfg.curve;
    let side = if k < 2 {
        c.resolution
    } else {
        c.large_resolution
    };
    let name = METHODS[k].replace(", larger input", "");
    format!("{name}, {side}x{side} input")
}

/// The table, the facts and the figure.
fn outputs(cfg: &Config, acc: &[Vec<Vec<f64>>], r: &mut Report) {
    let c = &cfg.curve;
    let caption = format!(
        "Test accuracy on {} Fashion-MNIST test images after learning from N labelled \
         training images: the same draws, seeds {:?}, {} steps of batch {} and rates \
         as the table above. Full fine-tuning trains the pre-trained layers at {} times \
         the classifier's rate η = {}.",
        c.n_test, c.seeds, c.steps, c.batch_size, cfg.pretrained_lr_scale, c.tune_lr
    );
    let names: Vec<String> = (0..METHODS.len()).map(|k| method_name(cfg, k)).collect();
    let curve = tf::Curve {
        sizes: &c.sizes,
        names: &names,
        keys: &KEYS,
        acc,
    };
    curve.report(
        caption,
        "Fashion-MNIST: full fine-tuning, random init, larger input",
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_experiments_share_their_curve_configuration() {
        assert_eq!(Config::full().curve, tf::Config::full());
        assert_eq!(Config::quick().curve, tf::Config::quick());
    }

    #[test]
    fn methods_name_their_input_side() {
        let cfg = Config::full();
        assert_eq!(
            method_name(&cfg, 0),
            "EfficientNet-Lite0 (ImageNet), all layers fine-tuned, 32x32 input"
        );
        assert_eq!(
            method_name(&cfg, 2),
            "EfficientNet-Lite0 (ImageNet), frozen + linear, 64x64 input"
        );
    }
}
