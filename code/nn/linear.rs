//! The fully connected layer $y = x W^\top + b$.
//!
//! For a batch $x \in \mathbb{R}^{n \times d_\text{in}}$, weights
//! $W \in \mathbb{R}^{d_\text{out} \times d_\text{in}}$ (the PyTorch and candle layout) and
//! bias $b \in \mathbb{R}^{d_\text{out}}$, the output is $y_{ij} = \sum_k x_{ik} W_{jk} + b_j$.
//! Given $\delta = \partial L / \partial y$, the chain rule gives
//!
//! $$\frac{\partial L}{\partial W} = \delta^\top x, \qquad
//! \frac{\partial L}{\partial b} = \sum_i \delta_{i\cdot}, \qquad
//! \frac{\partial L}{\partial x} = \delta\, W .$$
//!
//! Initialization sets the scale of $W$. With inputs of unit variance, a unit's
//! pre-activation has variance $d_\text{in}\,\sigma_W^2$: **naive** initialization uses a
//! fixed $\sigma_W$ whatever the width, so signals shrink or grow geometrically with depth;
//! **Xavier** (Glorot) uses $\sigma_W^2 = 2 / (d_\text{in} + d_\text{out})$, which keeps
//! the variance of both activations and gradients near one for symmetric activations
//! such as tanh; **He** uses $\sigma_W^2 = 2 / d_\text{in}$, which compensates for ReLU
//! zeroing half of its inputs.

use ndarray::{Array, Array1, Array2, ArrayD, Axis, CowArray, Dimension, Ix2};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::{Layer, Mode, Module, Param};

// ANCHOR: init
/// How the weights of a [`Linear`] layer are drawn (biases start at zero).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Naive: $\mathcal N(0, \sigma^2)$ with a fixed $\sigma$, whatever the width.
    Normal(f32),
    /// Xavier (Glorot) normal: $\sigma^2 = 2 / (d_\text{in} + d_\text{out})$.
    Xavier,
    /// He (Kaiming) normal: $\sigma^2 = 2 / d_\text{in}$.
    He,
}

impl Init {
    /// The standard deviation of the weights of a `d_in -> d_out` layer.
    pub fn std(self, d_in: usize, d_out: usize) -> f32 {
        match self {
            Init::Normal(s) => s,
            Init::Xavier => (2.0 / (d_in + d_out) as f32).sqrt(),
            Init::He => (2.0 / d_in as f32).sqrt(),
        }
    }

    /// A short name for tables (`naive N(0, 0.01²)`, `Xavier`, `He`).
    pub fn name(self) -> String {
        match self {
            Init::Normal(s) => format!("naive N(0, {s}²)"),
            Init::Xavier => "Xavier".into(),
            Init::He => "He".into(),
        }
    }
}
// ANCHOR_END: init

/// A fully connected layer $y = x W^\top + b$.
///
/// Any leading axes are batch axes: a sequence `(b, t, d_in)` is treated as `b t` rows,
/// so a per-step readout can follow a recurrent layer with no reshape.
///
/// # Shapes
/// - input `x`: `(n, d_in)`, or `(n, ..., d_in)`
/// - output `y`: `(n, d_out)`, or `(n, ..., d_out)` (the input's leading axes)
/// - `weight`: `(d_out, d_in)`, `bias`: `(d_out,)`
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weights, `(d_out, d_in)`.
    pub weight: Param,
    /// Bias, `(d_out,)`.
    pub bias: Param,
    /// The input of the last forward pass as rows, `(n, d_in)`, and its leading axes.
    x: Option<(Array2<f32>, Vec<usize>)>,
}

impl Linear {
    /// A `d_in -> d_out` layer with weights drawn by `init` from `rng`, zero bias.
    pub fn new(d_in: usize, d_out: usize, init: Init, rng: &mut impl Rng) -> Self {
        let std = init.std(d_in, d_out);
        let normal = Normal::new(0.0f32, std).expect("a finite, non-negative std");
        let w = Array2::from_shape_fn((d_out, d_in), |_| normal.sample(rng));
        Self::from_weights(w, Array1::zeros(d_out))
    }

    /// A layer with these weights `(d_out, d_in)` and bias `(d_out,)`.
    pub fn from_weights(weight: Array2<f32>, bias: Array1<f32>) -> Self {
        assert_eq!(
            weight.nrows(),
            bias.len(),
            "Linear: weight {:?} and bias {:?} disagree on d_out",
            weight.shape(),
            bias.shape()
        );
        Linear {
            weight: Param::new(weight.into_dyn()),
            bias: Param::new(bias.into_dyn()),
            x: None,
        }
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.weight.value.shape()[1]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.value.shape()[0]
    }

    fn w(&self) -> ndarray::ArrayView2<'_, f32> {
        self.weight
            .value
            .view()
            .into_dimensionality::<Ix2>()
            .expect("weight is 2-D")
    }
}

/// Views `a` as a matrix, panicking with the shapes when it is not `(n, want_cols)`.
pub(crate) fn as_matrix<'a>(
    a: &'a ArrayD<f32>,
    want_cols: usize,
    who: &str,
) -> ndarray::ArrayView2<'a, f32> {
    match a.view().into_dimensionality::<Ix2>() {
        Ok(m) if m.ncols() == want_cols => m,
        _ => panic!(
            "{who}: expected shape (n, {want_cols}), got {:?}",
            a.shape()
        ),
    }
}

/// `x` `(n, ..., d)` as rows `(n ...,  d)` (a copy), and its leading axes `[n, ...]`.
/// A matrix is copied as it is.
fn rows(x: &ArrayD<f32>, d: usize, who: &str) -> (Array2<f32>, Vec<usize>) {
    if x.ndim() == 2 {
        return (as_matrix(x, d, who).to_owned(), vec![x.shape()[0]]);
    }
    assert!(
        x.ndim() > 2 && x.shape()[x.ndim() - 1] == d,
        "{who}: expected shape (n, ..., {d}), got {:?}",
        x.shape()
    );
    let lead = x.shape()[..x.ndim() - 1].to_vec();
    let n = lead.iter().product::<usize>();
    let m = x.as_standard_layout().into_owned();
    (m.into_shape_with_order((n, d)).expect("sizes match"), lead)
}

/// `dy` `(n, ..., d)` as rows `(n ..., d)` without a copy when it is a matrix or in
/// standard layout, and its leading axes.
fn row_view<'a>(
    dy: &'a ArrayD<f32>,
    d: usize,
    who: &str,
) -> (CowArray<'a, f32, Ix2>, Vec<usize>) {
    if dy.ndim() == 2 {
        return (as_matrix(dy, d, who).into(), vec![dy.shape()[0]]);
    }
    let (m, lead) = rows(dy, d, who);
    (m.into(), lead)
}

/// Rows `(n ..., d)` back to `(n, ..., d)` with the leading axes `lead`.
fn unrows<D: Dimension>(m: Array<f32, D>, lead: &[usize]) -> ArrayD<f32> {
    let mut shape = lead.to_vec();
    shape.push(m.shape()[1]);
    m.into_shape_with_order(shape).expect("sizes match")
}

impl Module for Linear {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&super::join(prefix, "weight"), &mut self.weight);
        f(&super::join(prefix, "bias"), &mut self.bias);
    }
}

// ANCHOR: linear_layer
impl Layer for Linear {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let (x, lead) = rows(x, self.d_in(), "Linear::forward"); // (n ..., d_in)
        let b = self.bias.value.view().insert_axis(Axis(0)); // (1, d_out)
        let y = x.dot(&self.w().t()) + b; // (n ..., d_out)
        let y = unrows(y, &lead); // (n, ..., d_out)
        self.x = Some((x, lead));
        y
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let (x, lead) = self
            .x
            .as_ref()
            .expect("Linear::backward called before forward");
        let (dy, dy_lead) = row_view(dy, self.d_out(), "Linear::backward"); // (n ..., d_out)
        assert_eq!(
            &dy_lead,
            lead,
            "Linear::backward: dy {:?} vs x {:?}",
            dy.shape(),
            x.shape()
        );
        let dw = dy.t().dot(x); // (d_out, d_in)
        self.weight.grad += &dw.into_dyn();
        self.bias.grad += &dy.sum_axis(Axis(0)).into_dyn();
        unrows(dy.dot(&self.w()), lead) // (n, ..., d_in)
    }
}
// ANCHOR_END: linear_layer
