//! Element-wise activations and the row-wise softmax, with their derivatives.
//!
//! For $y = f(x)$ applied element by element, backpropagation is
//! $\partial L/\partial x = \partial L/\partial y \odot f'(x)$, so each activation only
//! needs its scalar derivative, best written in terms of what `forward` already computed:
//!
//! - **sigmoid** $\sigma(x) = 1/(1+e^{-x})$: $\sigma'(x) = e^{-x}/(1+e^{-x})^2
//!   = \sigma(x)\,(1-\sigma(x))$, at most $1/4$ (at $x=0$), so every sigmoid layer
//!   shrinks the gradient at least fourfold;
//! - **tanh** $\tanh x = (e^x - e^{-x})/(e^x + e^{-x})$: $\tanh' x = 1 - \tanh^2 x$, at
//!   most $1$;
//! - **ReLU** $\max(0, x)$: derivative $1$ for $x > 0$ and $0$ for $x < 0$ (we use $0$
//!   at the kink), so a unit whose input is negative for every example gets no gradient
//!   at all: it is *dead*;
//! - **Leaky ReLU** $\max(\alpha x, x)$, $0<\alpha<1$: derivative $1$ or $\alpha$, never
//!   zero.
//! - **ReLU6** $\min(\max(0, x), 6)$: derivative $1$ for $0 < x < 6$ and $0$ outside
//!   (again $0$ at the kinks). The cap keeps activations in a fixed range, which is what
//!   8-bit inference on phones needs (MobileNet, EfficientNet-Lite).
//! - **GELU** $x\,\Phi(x)$, $\Phi$ the standard normal distribution function,
//!   $\Phi(x) = \tfrac12\big(1 + \operatorname{erf}(x/\sqrt2)\big)$: the exact form of
//!   PyTorch's `nn.GELU()` and of BERT. By the product rule its derivative is
//!   $\Phi(x) + x\,\varphi(x)$ with $\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}$: smooth, slightly
//!   negative for $x < -0.75$ or so, and it needs $x$ (the output alone does not tell
//!   which of two inputs produced it).
//!
//! **Softmax** over the last axis, $s_i = e^{z_i} / \sum_k e^{z_k}$, has Jacobian
//! $\partial s_i/\partial z_j = s_i(\delta_{ij} - s_j)$, so
//! $\partial L/\partial z = s \odot (g - \langle g, s\rangle)$ for $g = \partial L /
//! \partial s$. It is computed as $e^{z_i - m}/\sum_k e^{z_k - m}$ with $m = \max_k z_k$,
//! which is the same number but never overflows.

use ndarray::{ArrayD, Axis, Ix2, Zip};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Layer, Mode, Module, Param};

// ANCHOR: activation
/// An element-wise activation function.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// $\sigma(x) = 1/(1+e^{-x})$.
    Sigmoid,
    /// $\tanh x$.
    Tanh,
    /// $\max(0, x)$.
    Relu,
    /// $\max(\alpha x, x)$ with this $\alpha$.
    LeakyRelu(f32),
    /// $x$ (no activation).
    Identity,
    /// $\min(\max(0, x), 6)$.
    Relu6,
    /// $x\,\Phi(x)$, the Gaussian error linear unit in its exact (erf) form.
    Gelu,
}

impl Activation {
    /// $f(x)$.
    pub fn f(self, x: f32) -> f32 {
        match self {
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::Identity => x,
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Gelu => gelu(x),
        }
    }

    /// $f'(x)$, given the input `x` and the output `y = f(x)`.
    pub fn df(self, x: f32, y: f32) -> f32 {
        match self {
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Tanh => 1.0 - y * y,
            Activation::Relu => f32::from(u8::from(x > 0.0)),
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Activation::Identity => 1.0,
            Activation::Relu6 => f32::from(u8::from(x > 0.0 && x < 6.0)),
            Activation::Gelu => gelu_derivative(x),
        }
    }
}
// ANCHOR_END: activation

impl Activation {
    /// Whether $f'$ can be computed from the output alone: `df(y, y) == df(x, y)`.
    /// For ReLU, $y > 0 \iff x > 0$ (for ReLU6, $0 < y < 6 \iff 0 < x < 6$); sigmoid
    /// and tanh use only $y$.
    pub fn df_from_output(self) -> bool {
        matches!(
            self,
            Activation::Relu
                | Activation::Relu6
                | Activation::Sigmoid
                | Activation::Tanh
                | Activation::Identity
        )
    }

    /// A short name for tables.
    pub fn name(self) -> String {
        match self {
            Activation::Sigmoid => "sigmoid".into(),
            Activation::Tanh => "tanh".into(),
            Activation::Relu => "ReLU".into(),
            Activation::LeakyRelu(a) => format!("leaky ReLU ({a})"),
            Activation::Identity => "identity".into(),
            Activation::Relu6 => "ReLU6".into(),
            Activation::Gelu => "GELU".into(),
        }
    }
}

// ANCHOR: gelu
/// $\Phi(x)$, the standard normal distribution function, through erf in `f64` (the
/// special function comes from candle's math routines; the result is rounded once, to
/// `f32`).
fn normal_cdf(x: f32) -> f64 {
    0.5 * (1.0 + candle_core::cpu::erf::erf_f64(f64::from(x) / std::f64::consts::SQRT_2))
}

/// GELU, $x\,\Phi(x)$ (exact, not the tanh approximation).
pub fn gelu(x: f32) -> f32 {
    (f64::from(x) * normal_cdf(x)) as f32
}

/// $\frac{d}{dx}\,x\Phi(x) = \Phi(x) + x\,\varphi(x)$, with $\varphi$ the standard
/// normal density.
pub fn gelu_derivative(x: f32) -> f32 {
    let x64 = f64::from(x);
    let density = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
    (normal_cdf(x) + x64 * density) as f32
}
// ANCHOR_END: gelu

/// Arrays at least this long are processed in parallel.
pub(crate) const PAR_MIN: usize = 1 << 15;

/// `f` applied to every element of `x`, over flat chunks in parallel when `x` is large
/// and contiguous.
pub(crate) fn map_elements(
    x: &ArrayD<f32>,
    f: impl Fn(f32) -> f32 + Sync,
) -> ArrayD<f32> {
    match x.as_slice() {
        Some(xs) if xs.len() >= PAR_MIN => {
            let mut y = vec![0.0f32; xs.len()];
            y.par_chunks_mut(PAR_MIN)
                .zip(xs.par_chunks(PAR_MIN))
                .for_each(|(y, xs)| {
                    for (y, &x) in y.iter_mut().zip(xs) {
                        *y = f(x);
                    }
                });
            ArrayD::from_shape_vec(x.raw_dim(), y).expect("sizes match")
        }
        _ => x.mapv(f),
    }
}

/// The logistic sigmoid, computed without overflow for any `x`.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// An activation as a layer: applies an [`Activation`] element-wise.
///
/// # Shapes
/// - input `x`: any shape; output `y`: the same shape.
#[derive(Clone, Debug)]
pub struct ActivationLayer {
    /// The function applied.
    pub kind: Activation,
    x: Option<ArrayD<f32>>,
    y: Option<ArrayD<f32>>,
    /// After [`Layer::forward_owned`] of a ReLU: `1` where the output is positive.
    positive: Option<Vec<u8>>,
}

impl ActivationLayer {
    /// A layer applying `kind`.
    pub fn new(kind: Activation) -> Self {
        ActivationLayer {
            kind,
            x: None,
            y: None,
            positive: None,
        }
    }

    /// The output of the last [`Layer::forward`] (e.g. to count dead or saturated
    /// units). `None` after [`Layer::forward_owned`] of a ReLU, which keeps only the
    /// signs of its output.
    pub fn last_output(&self) -> Option<&ArrayD<f32>> {
        self.y.as_ref()
    }
}

impl Module for ActivationLayer {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

// ANCHOR: activation_layer
impl Layer for ActivationLayer {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let kind = self.kind;
        let y = map_elements(x, |v| kind.f(v));
        // ReLU, sigmoid, tanh and identity get f'(x) from y alone: keep x only for the
        // others (one copy less of the largest activations).
        self.x = (!kind.df_from_output()).then(|| x.clone());
        self.y = Some(y.clone());
        self.positive = None;
        y
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        if self.positive.is_some() {
            return self.backward_owned(dy.clone());
        }
        let Some(y) = &self.y else {
            panic!("ActivationLayer::backward called before forward");
        };
        let x = self.x.as_ref().unwrap_or(y);
        assert_eq!(
            dy.shape(),
            x.shape(),
            "ActivationLayer::backward: dy vs x shape"
        );
        let kind = self.kind;
        match (dy.as_slice(), x.as_slice(), y.as_slice()) {
            // Contiguous (the usual case): one pass over flat slices, in parallel.
            (Some(d), Some(xs), Some(ys)) if d.len() >= PAR_MIN => {
                let mut dx = vec![0.0f32; d.len()];
                dx.par_chunks_mut(PAR_MIN)
                    .zip(d.par_chunks(PAR_MIN))
                    .zip(xs.par_chunks(PAR_MIN).zip(ys.par_chunks(PAR_MIN)))
                    .for_each(|((o, d), (xs, ys))| {
                        for (o, ((&d, &x), &y)) in
                            o.iter_mut().zip(d.iter().zip(xs).zip(ys))
                        {
                            *o = d * kind.df(x, y);
                        }
                    });
                ArrayD::from_shape_vec(dy.raw_dim(), dx).expect("sizes match")
            }
            _ => Zip::from(dy)
                .and(x)
                .and(y)
                .map_collect(|&d, &x, &y| d * kind.df(x, y)),
        }
    }

    // In the activation's own buffer when the caller hands it over (section 5.3).
    fn forward_owned(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.forward_in_place(x, mode)
    }

    fn backward_owned(&mut self, dy: ArrayD<f32>) -> ArrayD<f32> {
        self.backward_in_place(dy)
    }
}
// ANCHOR_END: activation_layer

// ANCHOR: relu_in_place
impl ActivationLayer {
    /// [`Layer::forward_owned`]: a ReLU overwrites its input and keeps one byte per unit
    /// for the backward pass; other activations take the borrowing path.
    pub fn forward_in_place(&mut self, mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        if self.kind != Activation::Relu || !x.is_standard_layout() {
            return self.forward(&x, mode);
        }
        let xs = x.as_slice_mut().expect("standard layout");
        let mut positive = vec![0u8; xs.len()];
        relu_in_place(xs, &mut positive);
        (self.x, self.y, self.positive) = (None, None, Some(positive));
        x
    }

    /// [`Layer::backward_owned`]: $\delta \odot f'(x)$ in `dy`'s own buffer after
    /// [`ActivationLayer::forward_in_place`].
    pub fn backward_in_place(&mut self, mut dy: ArrayD<f32>) -> ArrayD<f32> {
        let Some(positive) = &self.positive else {
            return self.backward(&dy);
        };
        assert_eq!(
            dy.len(),
            positive.len(),
            "ActivationLayer::backward: dy {:?} vs the forward output's {} values",
            dy.shape(),
            positive.len()
        );
        match dy.as_slice_mut() {
            Some(d) => relu_backward_in_place(d, positive),
            None => {
                let mut d = dy.as_standard_layout().into_owned();
                relu_backward_in_place(d.as_slice_mut().expect("standard"), positive);
                dy = d;
            }
        }
        dy
    }
}

/// ReLU in the activation's own buffer: $x \leftarrow \max(x, 0)$, and
/// `positive[i] = 1` where the result is positive. A byte per unit is all the backward
/// pass needs, since $f'(x) = [x > 0] = [y > 0]$: a quarter of keeping $y$ as floats.
fn relu_in_place(xs: &mut [f32], positive: &mut [u8]) {
    let run = |xs: &mut [f32], positive: &mut [u8]| {
        for (x, p) in xs.iter_mut().zip(positive) {
            *p = u8::from(*x > 0.0);
            *x = Activation::Relu.f(*x);
        }
    };
    if xs.len() >= PAR_MIN {
        xs.par_chunks_mut(PAR_MIN)
            .zip(positive.par_chunks_mut(PAR_MIN))
            .for_each(|(xs, p)| run(xs, p));
    } else {
        run(xs, positive);
    }
}

/// $\delta \leftarrow \delta\, f'(x)$ in place, with $f'(x)$ from `positive`.
fn relu_backward_in_place(d: &mut [f32], positive: &[u8]) {
    let run = |d: &mut [f32], positive: &[u8]| {
        for (d, &p) in d.iter_mut().zip(positive) {
            *d *= f32::from(p);
        }
    };
    if d.len() >= PAR_MIN {
        d.par_chunks_mut(PAR_MIN)
            .zip(positive.par_chunks(PAR_MIN))
            .for_each(|(d, p)| run(d, p));
    } else {
        run(d, positive);
    }
}
// ANCHOR_END: relu_in_place

/// Softmax over the last axis of a matrix, stably (the row maximum is subtracted).
///
/// # Shapes
/// - `z`: `(n, c)`; output: `(n, c)`, rows summing to one.
pub fn softmax(z: &ArrayD<f32>) -> ArrayD<f32> {
    let z = z
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap_or_else(|_| panic!("softmax: expected (n, c), got {:?}", z.shape()));
    let mut s = z.to_owned();
    for mut row in s.axis_iter_mut(Axis(0)) {
        let m = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - m).exp());
        let total = row.sum();
        row.mapv_inplace(|v| v / total);
    }
    s.into_dyn()
}

/// Softmax over the last axis as a layer.
///
/// # Shapes
/// - input `z`: `(n, c)`; output `s`: `(n, c)`.
#[derive(Clone, Debug, Default)]
pub struct Softmax {
    s: Option<ArrayD<f32>>,
}

impl Softmax {
    /// A softmax layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for Softmax {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

// ANCHOR: softmax_layer
impl Layer for Softmax {
    fn forward(&mut self, z: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let s = softmax(z);
        self.s = Some(s.clone());
        s
    }

    fn backward(&mut self, ds: &ArrayD<f32>) -> ArrayD<f32> {
        let s = self
            .s
            .as_ref()
            .expect("Softmax::backward called before forward");
        assert_eq!(ds.shape(), s.shape(), "Softmax::backward: ds vs s shape");
        // dz = s * (ds - <ds, s>) row by row.
        let dot = (ds * s).sum_axis(Axis(1)).insert_axis(Axis(1)); // (n, 1)
        s * &(ds - &dot)
    }
}
// ANCHOR_END: softmax_layer
