//! Losses the loop trains with: the [`Loss`] trait, and the classifier losses of
//! chapter 2 (softmax cross-entropy, or squared error on the softmax probabilities).

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::data::Targets;
use crate::nn::activation::Softmax;
use crate::nn::loss::{mse, softmax_cross_entropy};
use crate::nn::{Layer, Mode};

/// A loss: the value on a batch and its gradient with respect to the model's output.
/// Classification losses are [`ClassifierLoss`]; regression and sequence losses
/// implement this too.
pub trait Loss {
    /// The mean loss of `pred` against `targets`, and d loss / d `pred`.
    ///
    /// # Panics
    /// If the targets are not of the kind the loss reads, or shapes disagree.
    fn loss(&self, pred: &ArrayD<f32>, targets: &Targets) -> (f32, ArrayD<f32>);
}

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
/// **Why the loss matters for learning speed.** With $s = \mathrm{softmax}(z)$ and a
/// one-hot target $t$, cross-entropy gives $\partial \ell/\partial z = s - t$: a
/// confidently wrong prediction ($s_y \to 0$) gets a gradient of size about 1. Squared
/// error $\ell = \lVert s - t\rVert^2$ gives $\partial \ell/\partial z_j =
/// 2 s_j\,\big((s_j - t_j) - \langle s - t, s\rangle\big)$, a product with $s$, which
/// goes to 0 exactly when the network is confidently wrong: the softmax saturates and
/// the error signal vanishes.
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

impl Loss for ClassifierLoss {
    /// # Shapes
    /// - `pred`: logits `(n, c)`; `targets`: `n` classes; the gradient is `(n, c)`.
    fn loss(&self, pred: &ArrayD<f32>, targets: &Targets) -> (f32, ArrayD<f32>) {
        match targets {
            Targets::Classes(labels) => classifier_loss(*self, pred, labels),
            other => panic!(
                "{}: needs class targets, got {other:?} for logits {:?}",
                self.name(),
                pred.shape()
            ),
        }
    }
}
