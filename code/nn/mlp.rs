//! A stack of layers, and the multilayer perceptron built from a list of layer sizes.
//!
//! For layers $f_1, \dots, f_L$, the forward pass is $h_0 = x$, $h_\ell = f_\ell(h_{\ell-1})$
//! and the backward pass runs the chain rule in reverse,
//! $\delta_{\ell-1} = \partial L/\partial h_{\ell-1} = \mathrm{backward}_\ell(\delta_\ell)$,
//! each layer accumulating its own parameter gradients on the way. This is
//! backpropagation: one forward and one backward sweep give every gradient, at about
//! three times the cost of the forward pass alone.

use ndarray::{s, Array2, ArrayD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::activation::{Activation, ActivationLayer};
use super::linear::{Init, Linear};
use super::{join, Layer, Mode, Module, Param};

/// Layers applied one after the other; parameters are named `layers.{i}.{name}`.
///
/// # Shapes
/// - input: what the first layer takes; output: what the last layer returns.
#[derive(Default)]
pub struct Sequential {
    /// The layers, in order.
    pub layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Layer + 'static) {
        self.layers.push(Box::new(layer));
    }
}

impl Module for Sequential {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_params(&join(prefix, &format!("layers.{i}")), f);
        }
    }

    fn visit_buffers(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>),
    ) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_buffers(&join(prefix, &format!("layers.{i}")), f);
        }
    }

    fn visit_rngs(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut ChaCha8Rng)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_rngs(&join(prefix, &format!("layers.{i}")), f);
        }
    }

    fn reset_state(&mut self) {
        for layer in &mut self.layers {
            layer.reset_state();
        }
    }
}

// ANCHOR: sequential
impl Layer for Sequential {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let mut h = x.clone();
        for layer in &mut self.layers {
            h = layer.forward(&h, mode);
        }
        h
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let mut d = dy.clone();
        for layer in self.layers.iter_mut().rev() {
            d = layer.backward(&d);
        }
        d
    }
}
// ANCHOR_END: sequential

/// A multilayer perceptron: `Linear, activation, Linear, activation, ..., Linear`, built
/// from the list of layer sizes `[d_in, h_1, ..., d_out]`. The last layer has no
/// activation: its outputs are logits (or regression outputs), to be fed to a loss.
///
/// Parameters are named like PyTorch's `nn.Sequential`: `layers.0.weight`,
/// `layers.0.bias`, `layers.2.weight`, ... (odd indices are the activations).
///
/// # Shapes
/// - input: `(n, sizes[0])`; output: `(n, sizes[last])`.
pub struct Mlp {
    /// The layer sizes it was built from.
    pub sizes: Vec<usize>,
    /// The `Linear` layers, `sizes.len() - 1` of them.
    pub linears: Vec<Linear>,
    /// The hidden activations, one after each `Linear` but the last.
    pub activations: Vec<ActivationLayer>,
}

// ANCHOR: mlp
impl Mlp {
    /// An MLP with these sizes, hidden activation and initialization, seeded.
    pub fn new(sizes: &[usize], activation: Activation, init: Init, seed: u64) -> Self {
        assert!(
            sizes.len() >= 2,
            "Mlp::new: need at least [d_in, d_out], got {sizes:?}"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let linears: Vec<Linear> = sizes
            .windows(2)
            .map(|w| Linear::new(w[0], w[1], init, &mut rng))
            .collect();
        let activations = (1..linears.len())
            .map(|_| ActivationLayer::new(activation))
            .collect();
        Mlp {
            sizes: sizes.to_vec(),
            linears,
            activations,
        }
    }
}

impl Layer for Mlp {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let mut h = x.clone();
        for (k, linear) in self.linears.iter_mut().enumerate() {
            h = linear.forward(&h, mode);
            if let Some(act) = self.activations.get_mut(k) {
                h = act.forward(&h, mode);
            }
        }
        h
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let mut d = dy.clone();
        for k in (0..self.linears.len()).rev() {
            if let Some(act) = self.activations.get_mut(k) {
                d = act.backward(&d);
            }
            d = self.linears[k].backward(&d);
        }
        d
    }
}
// ANCHOR_END: mlp

impl Mlp {
    /// The number of `Linear` layers.
    pub fn depth(&self) -> usize {
        self.linears.len()
    }

    /// The name prefix of the `k`-th `Linear` layer (`layers.{2k}`).
    pub fn linear_prefix(k: usize) -> String {
        format!("layers.{}", 2 * k)
    }
}

impl Module for Mlp {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        for (k, linear) in self.linears.iter_mut().enumerate() {
            linear.visit_params(&join(prefix, &Self::linear_prefix(k)), f);
        }
    }
}

// ANCHOR: sgd_step
/// One plain gradient-descent step $\theta \leftarrow \theta - \eta\, \nabla_\theta L$ on
/// every parameter (week 3 builds the real optimizers).
pub fn sgd_step(model: &mut dyn Module, lr: f32) {
    model.visit_params("", &mut |_, p| p.value.scaled_add(-lr, &p.grad));
}
// ANCHOR_END: sgd_step

/// The L2 norm of every parameter gradient, by name, in visiting order.
pub fn grad_norms(model: &mut dyn Module) -> Vec<(String, f64)> {
    let mut out = vec![];
    model.visit_params("", &mut |name, p| {
        let n = p
            .grad
            .iter()
            .map(|&g| f64::from(g).powi(2))
            .sum::<f64>()
            .sqrt();
        out.push((name.to_string(), n));
    });
    out
}

/// Rows `start..end` of a matrix as a batch.
pub fn rows(x: &Array2<f32>, start: usize, end: usize) -> ArrayD<f32> {
    x.slice(s![start..end, ..]).to_owned().into_dyn()
}
