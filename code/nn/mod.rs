//! Neural-network layers from scratch, on `ndarray`, in `f32`.
//!
//! The contract every layer of the book follows (weeks 2 to 11):
//!
//! - [`Param`]: a trainable tensor and the gradient accumulated for it.
//! - [`Module`]: anything that owns parameters visits them by dotted name
//!   (`encoder.layers.0.attn.w_q`), so optimizers, checkpoints and freezing are one loop.
//! - [`Layer`]: `forward` caches what `backward` needs; `backward` takes the gradient of
//!   the loss with respect to the output (`dy`), **accumulates** the parameter gradients
//!   into [`Param::grad`] and returns the gradient with respect to the input (`dx`).
//!
//! Tensors are [`ndarray::ArrayD<f32>`] so one trait covers dense, convolutional and
//! sequence layers; each layer documents its shapes in a `# Shapes` section.

use ndarray::{ArrayD, ArrayViewMutD};
use rand_chacha::ChaCha8Rng;

/// A trainable tensor and the gradient accumulated for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The values.
    pub value: ArrayD<f32>,
    /// d loss / d value, accumulated by `backward`, cleared by [`Param::zero_grad`].
    pub grad: ArrayD<f32>,
}

impl Param {
    /// A parameter with these values and a zero gradient.
    pub fn new(value: ArrayD<f32>) -> Self {
        let grad = ArrayD::zeros(value.raw_dim());
        Param { value, grad }
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }
}

/// `prefix.name`, or `name` when the prefix is empty.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Anything that owns parameters.
pub trait Module {
    /// Calls `f` on every parameter with its dotted name under `prefix`, in a fixed order.
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param));

    /// Calls `f` on every state tensor that is not trained by gradients but is part of
    /// the model (the running statistics of batch norm), with its dotted name under
    /// `prefix`, in a fixed order. Checkpoints save and load these next to the
    /// parameters. Layers without such state keep this default, which visits nothing.
    fn visit_buffers(
        &mut self,
        _prefix: &str,
        _f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>),
    ) {
    }

    /// Calls `f` on every random-number generator the model draws from while training
    /// (the mask generator of dropout), with its dotted name under `prefix`, in a fixed
    /// order. A training checkpoint saves and restores their positions, so that a run
    /// resumed from it draws the same masks as one that never stopped: the generators
    /// are state of the run, like the optimizer's moments, not of the model, which is why
    /// they are not buffers (a model file does not carry them). Containers forward it to
    /// their layers; layers without randomness keep this default, which visits nothing.
    fn visit_rngs(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut ChaCha8Rng)) {}

    /// Forgets the state a recurrent layer carries from one `forward` to the next (the
    /// last hidden state, when it trains on consecutive chunks of one long sequence), so
    /// the next `forward` starts a new sequence: at the start of an epoch, before
    /// validation. Carried state is state of the run, not of the model: it is neither a
    /// parameter nor a buffer, and no checkpoint holds it. Containers forward it to their
    /// layers; layers without carried state keep this default, which does nothing.
    fn reset_state(&mut self) {}

    /// Zeroes every parameter gradient.
    fn zero_grad(&mut self) {
        self.visit_params("", &mut |_, p| p.zero_grad());
    }

    /// The number of scalar parameters.
    fn n_params(&mut self) -> usize {
        let mut n = 0;
        self.visit_params("", &mut |_, p| n += p.value.len());
        n
    }
}

/// Training or evaluation: dropout and batch norm behave differently in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: dropout drops, batch norm uses and updates batch statistics.
    Train,
    /// Evaluation: dropout is the identity, batch norm uses running statistics.
    Eval,
}

/// A differentiable layer.
pub trait Layer: Module {
    /// Computes the output and caches what [`Layer::backward`] needs.
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32>;

    /// Given `dy` = d loss / d output of the last `forward`, accumulates parameter
    /// gradients and returns `dx` = d loss / d input.
    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32>;

    /// [`Layer::forward`] on an input the caller hands over. Element-wise layers
    /// override it to work in the input's own buffer instead of a new one; the default
    /// borrows. [`Named`] passes its activations along this way.
    fn forward_owned(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.forward(&x, mode)
    }

    /// [`Layer::backward`] on a `dy` the caller hands over (see
    /// [`Layer::forward_owned`]).
    fn backward_owned(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        self.backward(&dy)
    }

    /// The backward pass when nobody needs `dx`, only the parameter gradients: the first
    /// layer of a network, whose input is the data. Layers for which `dx` costs real
    /// work (a convolution's second matrix product) override it to skip that work.
    fn backward_params(&mut self, dy: ArrayD<f32>) {
        self.backward_owned(dy);
    }
}

pub mod activation;
pub mod candle_twin;
pub mod embedding;
pub mod freeze;
pub mod gradcheck;
pub mod linear;
pub mod loss;
pub mod mlp;
pub mod perceptron;

pub use activation::{Activation, ActivationLayer, Softmax};
pub use embedding::Embedding;
pub use linear::{Init, Linear};
pub use loss::{bce_with_logits, mse, softmax_cross_entropy};
pub use mlp::{sgd_step, Mlp, Sequential};

pub mod batchnorm;
pub mod dropout;
pub mod layernorm;
pub mod regularization;

pub mod named;
pub use named::{Named, Reshape};
