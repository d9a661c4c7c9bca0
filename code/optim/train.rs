//! A minibatch training loop for classifiers, shared by the chapter's experiments.
//!
//! Each epoch visits the training set in a fresh seeded order, in batches of
//! `batch_size`. Per batch: forward in [`Mode::Train`], softmax cross-entropy, backward,
//! optional penalty gradient, one optimizer step. Training loss is averaged over windows
//! of `log_every` steps (the curves), test accuracy is measured in [`Mode::Eval`] at the
//! end of every epoch.

use anyhow::Result;
use ndarray::{Array2, ArrayD, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Optimizer;
use crate::augment::{augment_batch, Transform};
use crate::data::{self, DataDir, Split};
use crate::nn::loss::{accuracy, softmax_cross_entropy};
use crate::nn::regularization::{add_penalty_grad, penalty, Penalty};
use crate::nn::{Layer, Mode};

/// Images as rows of pixels in `[0, 1]`, with their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `(N, 784)` pixels in `[0, 1]`.
    pub x: Array2<f32>,
    /// `N` class labels.
    pub y: Vec<usize>,
}

impl Dataset {
    /// The first `n` images of an MNIST split (all of them if `n` is larger).
    pub fn mnist(dir: &DataDir, split: Split, n: usize) -> Result<Self> {
        let d = data::mnist(dir, split)?;
        let n = n.min(d.labels.len());
        let px = 28 * 28;
        let x = Array2::from_shape_vec(
            (n, px),
            d.images.pixels[..n * px]
                .iter()
                .map(|&p| f32::from(p) / 255.0)
                .collect(),
        )?;
        let y = d.labels[..n].iter().map(|&l| usize::from(l)).collect();
        Ok(Dataset { x, y })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// How to train.
pub struct TrainSpec<'a> {
    /// Passes over the training set.
    pub n_epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of the shuffling (and of the augmentation).
    pub seed: u64,
    /// Training loss is averaged over windows of this many steps.
    pub log_every: usize,
    /// A penalty on the weights, added to the loss.
    pub penalty: Option<Penalty>,
    /// A transform applied to every training batch.
    pub augment: Option<&'a dyn Transform>,
}

/// What training measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Steps at the end of each logging window.
    pub steps: Vec<f64>,
    /// Mean training loss (cross-entropy, without the penalty) over each window.
    pub train_loss: Vec<f64>,
    /// Test accuracy after each epoch.
    pub test_acc: Vec<f64>,
    /// Whether the loss stayed finite.
    pub finite: bool,
}

impl History {
    /// The test accuracy after the last epoch (0 if training diverged).
    pub fn final_acc(&self) -> f64 {
        if self.finite {
            self.test_acc.last().copied().unwrap_or(0.0)
        } else {
            0.0
        }
    }
}

/// Accuracy of `model` on `data` in evaluation mode, in batches of 1,000.
pub fn evaluate(model: &mut dyn Layer, data: &Dataset) -> f64 {
    let mut hits = 0.0;
    for start in (0..data.len()).step_by(1000) {
        let end = (start + 1000).min(data.len());
        let x = data
            .x
            .slice(ndarray::s![start..end, ..])
            .to_owned()
            .into_dyn();
        let logits = model.forward(&x, Mode::Eval);
        hits += accuracy(&logits, &data.y[start..end]) * (end - start) as f64;
    }
    hits / data.len() as f64
}

// ANCHOR: train_classifier
/// Trains `model` with `opt` on `train`, measuring accuracy on `test` after each epoch.
/// Stops early (with `finite = false`) if the loss becomes NaN or infinite.
pub fn train_classifier(
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    train: &Dataset,
    test: &Dataset,
    spec: &TrainSpec,
) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut h = History {
        finite: true,
        ..History::default()
    };
    let (mut window, mut in_window, mut step) = (0.0, 0, 0);
    for _ in 0..spec.n_epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(spec.batch_size) {
            let mut x = train.x.select(Axis(0), batch); // (B, 784)
            if let Some(t) = spec.augment {
                x = augment_batch(&x, 28, 28, t, &mut rng);
            }
            let y: Vec<usize> = batch.iter().map(|&i| train.y[i]).collect();
            model.zero_grad();
            let logits = model.forward_owned(x.into_dyn(), Mode::Train);
            let (loss, dlogits) = softmax_cross_entropy(&logits, &y);
            if !loss.is_finite() {
                h.finite = false;
                return h;
            }
            model.backward_params(dlogits); // only the parameter gradients
            if let Some(p) = spec.penalty {
                add_penalty_grad(model, p);
            }
            opt.step(model);
            step += 1;
            window += f64::from(loss);
            in_window += 1;
            if in_window == spec.log_every {
                h.steps.push(step as f64);
                h.train_loss.push(window / in_window as f64);
                (window, in_window) = (0.0, 0);
            }
        }
        h.test_acc.push(evaluate(model, test));
    }
    h
}
// ANCHOR_END: train_classifier

/// The loss of `model` on a batch including the penalty (used by tests).
pub fn penalised_loss(
    model: &mut dyn Layer,
    x: &ArrayD<f32>,
    y: &[usize],
    pen: Option<Penalty>,
) -> f32 {
    let logits = model.forward(x, Mode::Train);
    let (loss, _) = softmax_cross_entropy(&logits, y);
    loss + pen.map_or(0.0, |p| penalty(model, p))
}
