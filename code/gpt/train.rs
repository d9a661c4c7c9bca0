//! Training a [`Gpt`]: AdamW with weight decay on the matrices only, the global gradient
//! norm clipped, one step per batch.
//!
//! Weight decay pulls weights towards zero; on a layer-norm weight (whose neutral value is
//! one) that is a bias, not a regulariser, so, as in nanoGPT, only the 2-d tensors (the
//! embeddings and the weight matrices) decay. Two [`Adam`]s share the work, each
//! stepping one group through a [`Module`] view that visits only its parameters.

use crate::nn::{Module, Param};
use crate::optim::{Adam, Optimizer};
use crate::rnn::profile::time;
use crate::seq::text::Batch;
use crate::train::{clip_grad_norm, ParamGroups};

use super::Gpt;

/// The parameters of a model with `matrices` dimensions or not: a view for one
/// optimizer group.
struct Group<'a> {
    model: &'a mut dyn Module,
    matrices: bool,
}

impl Module for Group<'_> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        let matrices = self.matrices;
        self.model.visit_params(prefix, &mut |name, p| {
            if (p.value.ndim() >= 2) == matrices {
                f(name, p)
            }
        });
    }
}

// ANCHOR: optimizer
/// AdamW with decoupled weight decay on the matrices and none on the vectors, and
/// optional clipping of the global gradient norm.
#[derive(Clone, Debug)]
pub struct GptOptimizer {
    /// The optimizer of the matrices (weight decay on).
    pub decayed: Adam,
    /// The optimizer of the vectors (layer-norm weights; no weight decay).
    pub plain: Adam,
    /// The largest global gradient norm (`None`: no clipping).
    pub clip: Option<f32>,
}

impl GptOptimizer {
    /// AdamW with learning rate `lr`, $\beta = (0.9, \beta_2)$ and weight decay
    /// `weight_decay` on the matrices.
    pub fn new(lr: f32, beta2: f32, weight_decay: f32, clip: Option<f32>) -> Self {
        let adam = |wd| Adam {
            beta2,
            ..Adam::adamw(lr, wd)
        };
        GptOptimizer {
            decayed: adam(weight_decay),
            plain: adam(0.0),
            clip,
        }
    }

    /// The reference optimizer: $\eta = 10^{-3}$, $\beta = (0.9, 0.99)$, weight decay
    /// 0.1, clipping at 1.
    pub fn reference() -> Self {
        Self::new(1e-3, 0.99, 0.1, Some(1.0))
    }

    /// Sets the learning rate of both groups (a schedule's step).
    pub fn set_lr(&mut self, lr: f32) {
        self.decayed.lr = lr;
        self.plain.lr = lr;
    }

    /// Clips the gradients (when set) and updates every parameter; returns the global
    /// gradient norm before clipping.
    pub fn step(&mut self, model: &mut dyn Module) -> f64 {
        let norm = time("gradient clipping", || match self.clip {
            Some(c) => clip_grad_norm(model, &ParamGroups::default(), c),
            None => crate::train::grad_norm(model, &ParamGroups::default()),
        });
        time("AdamW", || {
            self.decayed.step(&mut Group {
                model,
                matrices: true,
            });
            self.plain.step(&mut Group {
                model,
                matrices: false,
            });
        });
        norm
    }
}
// ANCHOR_END: optimizer

/// What one training step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The batch's mean cross-entropy, before the update.
    pub loss: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

// ANCHOR: train_step
/// One training step: zero the gradients, forward, cross-entropy over every position,
/// backward, clip and update.
pub fn train_step(model: &mut Gpt, opt: &mut GptOptimizer, batch: &Batch) -> StepStats {
    time("zero gradients", || model.zero_grad());
    let loss = model.loss_and_backward(batch);
    let grad_norm = opt.step(model);
    StepStats { loss, grad_norm }
}
// ANCHOR_END: train_step
