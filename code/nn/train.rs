//! A minimal training loop for classifiers: mini-batch gradient descent on MNIST-like
//! data, with either softmax cross-entropy or mean squared error on the softmax
//! probabilities.
//!
//! **Why the loss matters for learning speed.** With $s = \mathrm{softmax}(z)$ and a
//! one-hot target $t$, cross-entropy gives $\partial \ell/\partial z = s - t$: a
//! confidently wrong prediction ($s_y \to 0$) gets a gradient of size about 1. Squared
//! error $\ell = \lVert s - t\rVert^2$ gives $\partial \ell/\partial z_j =
//! 2 s_j\,\big((s_j - t_j) - \langle s - t, s\rangle\big)$, a product with $s$, which
//! goes to 0 exactly when the network is confidently wrong: the softmax saturates and
//! the error signal vanishes.

use ndarray::{Array2, ArrayD, Axis};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::activation::Softmax;
use super::loss::{mse, softmax_cross_entropy};
use super::mlp::{sgd_step, Mlp};
use super::{Layer, Mode, Module};
use crate::data::LabelledImages;

/// The loss a classifier is trained with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierLoss {
    /// Softmax cross-entropy on the logits.
    CrossEntropy,
    /// Mean squared error between the softmax probabilities and the one-hot target
    /// (summed over classes, averaged over the batch).
    MseOnSoftmax,
}

impl ClassifierLoss {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            ClassifierLoss::CrossEntropy => "cross-entropy",
            ClassifierLoss::MseOnSoftmax => "MSE on softmax",
        }
    }
}

// ANCHOR: classifier_loss
/// The loss of `logits` against `labels` and its gradient with respect to the logits.
///
/// # Shapes
/// - `logits`: `(n, c)`; `labels`: `n` indices; the gradient is `(n, c)`.
pub fn classifier_loss(
    kind: ClassifierLoss,
    logits: &ArrayD<f32>,
    labels: &[usize],
) -> (f32, ArrayD<f32>) {
    match kind {
        ClassifierLoss::CrossEntropy => softmax_cross_entropy(logits, labels),
        ClassifierLoss::MseOnSoftmax => {
            let (n, c) = (logits.shape()[0], logits.shape()[1]);
            let mut sm = Softmax::new();
            let s = sm.forward(logits, Mode::Train);
            let mut t = ArrayD::zeros(vec![n, c]);
            for (i, &y) in labels.iter().enumerate() {
                t[[i, y]] = 1.0;
            }
            // `mse` averages over n * c entries; scale to a per-example sum over classes.
            let (l, ds) = mse(&s, &t);
            let scale = c as f32;
            (l * scale, sm.backward(&(ds * scale)))
        }
    }
}
// ANCHOR_END: classifier_loss

/// The first `n` images of a set as a `(n, rows * cols)` matrix in $[0, 1]$, and their
/// labels.
pub fn image_matrix(set: &LabelledImages, n: usize) -> (Array2<f32>, Vec<usize>) {
    let n = n.min(set.images.n);
    let d = set.images.rows * set.images.cols;
    let px = set.images.pixels[..n * d]
        .iter()
        .map(|&p| f32::from(p) / 255.0);
    let x = Array2::from_shape_vec((n, d), px.collect()).expect("n * d pixels");
    (x, set.labels[..n].iter().map(|&y| usize::from(y)).collect())
}

/// `0..n` in a random order.
pub fn shuffled(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

// ANCHOR: train_epoch
/// One epoch of mini-batch gradient descent over the rows of `x` in `order`. Returns the
/// mean training loss over the batches.
pub fn train_epoch(
    mlp: &mut Mlp,
    x: &Array2<f32>,
    labels: &[usize],
    order: &[usize],
    batch_size: usize,
    lr: f32,
    loss: ClassifierLoss,
) -> f64 {
    let (mut total, mut batches) = (0.0, 0);
    for chunk in order.chunks(batch_size) {
        let xb = x.select(Axis(0), chunk).into_dyn(); // (b, d)
        let yb: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
        mlp.zero_grad();
        let logits = mlp.forward(&xb, Mode::Train);
        let (l, dlogits) = classifier_loss(loss, &logits, &yb);
        mlp.backward(&dlogits);
        sgd_step(mlp, lr);
        total += f64::from(l);
        batches += 1;
    }
    total / batches.max(1) as f64
}
// ANCHOR_END: train_epoch

/// Classification accuracy of `mlp` on `x`, in batches of 1000.
pub fn evaluate(mlp: &mut Mlp, x: &Array2<f32>, labels: &[usize]) -> f64 {
    let mut hits = 0.0;
    for start in (0..x.nrows()).step_by(1000) {
        let end = (start + 1000).min(x.nrows());
        let logits = mlp.forward(&super::mlp::rows(x, start, end), Mode::Eval);
        hits +=
            super::loss::accuracy(&logits, &labels[start..end]) * (end - start) as f64;
    }
    hits / x.nrows() as f64
}
