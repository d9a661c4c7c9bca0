//! Recurrent layers from scratch: the vanilla RNN, the LSTM and the GRU, trained by
//! backpropagation through time (BPTT).
//!
//! # The layer contract
//!
//! Sequences are batch-first, `(b, t, d_in)`. A recurrent layer is a
//! [`Layer`](crate::nn::Layer): `forward` returns the hidden state of every step,
//! `(b, t, h)`, and `backward` takes the gradient of the loss with respect to all of them
//! and runs BPTT over the call's `t` steps. Parameters carry PyTorch's names and gate
//! order (`weight_ih (G h, d_in)`, `weight_hh (G h, h)`, `bias_ih (G h)`, `bias_hh (G h)`,
//! `G` gates), so a layer sits in a [`Named`](crate::nn::Named) stack next to an
//! [`Embedding`](crate::nn::Embedding) and a [`Linear`](crate::nn::Linear) read-out, and
//! optimizers, clipping and checkpoints see it like any other layer.
//!
//! # The cells
//!
//! In the row-vector form the code uses, one row per sequence of the batch, a step reads
//! the input $x_t$ and the previous state $h_{t-1}$ through the **pre-activations**
//!
//! $$a_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh}
//! \quad\in\mathbb R^{G h},$$
//!
//! cut into $G$ slices of width $h$, one per gate.
//!
//! **RNN** ($G = 1$): $h_t = \tanh(a_t)$.
//!
//! **LSTM** ($G = 4$, slices $i, f, g, o$):
//!
//! $$i = \sigma(a^i),\quad f = \sigma(a^f),\quad g = \tanh(a^g),\quad o = \sigma(a^o),
//! \qquad c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t).$$
//!
//! **GRU** ($G = 3$, slices $r, z, n$), in PyTorch's form, where the reset gate scales
//! the hidden part of the candidate *after* its product with $W_{hn}$:
//!
//! $$r = \sigma(a^r),\quad z = \sigma(a^z),\quad
//! n = \tanh\big(x_t W_{in}^\top + b_{in} + r \odot (h_{t-1} W_{hn}^\top + b_{hn})\big),
//! \qquad h_t = (1 - z) \odot n + z \odot h_{t-1}.$$
//!
//! # Backward through one step
//!
//! Write $\bar v = \partial L / \partial v$. A step receives $\bar h_t$ (and, for the
//! LSTM, $\bar c_t$) and returns the gradients of its pre-activations $\bar a_t$ and of
//! the previous state. With $\sigma' = \sigma(1 - \sigma)$ and $\tanh' = 1 - \tanh^2$:
//!
//! **RNN**: $\bar a_t = \bar h_t \odot (1 - h_t^2)$.
//!
//! **LSTM**: with $\tau_t = \tanh(c_t)$, the state gradient first passes the output
//! gate, then the cell:
//!
//! $$\bar o = \bar h_t \odot \tau_t, \qquad
//! \bar c_t \mathrel{+}= \bar h_t \odot o \odot (1 - \tau_t^2),$$
//! $$\bar i = \bar c_t \odot g,\quad \bar g = \bar c_t \odot i,\quad
//! \bar f = \bar c_t \odot c_{t-1},\quad \bar c_{t-1} = \bar c_t \odot f,$$
//!
//! and $\bar a^i = \bar i\, i(1-i)$, $\bar a^f = \bar f f(1-f)$, $\bar a^g = \bar g (1 -
//! g^2)$, $\bar a^o = \bar o\, o(1-o)$. The cell's own path back in time,
//! $\bar c_{t-1} = f \odot \bar c_t$, is a product with the forget gate alone: no weight
//! matrix and no saturating derivative.
//!
//! **GRU**: with $u = h_{t-1} W_{hn}^\top + b_{hn}$ (cached in the forward pass),
//!
//! $$\bar n = \bar h_t \odot (1 - z),\quad \bar z = \bar h_t \odot (h_{t-1} - n),\quad
//! \bar a^n = \bar n \odot (1 - n^2),\quad \bar r = \bar a^n \odot u,$$
//!
//! $\bar a^r = \bar r\, r(1 - r)$, $\bar a^z = \bar z\, z(1-z)$. The input side sees
//! $[\bar a^r, \bar a^z, \bar a^n]$, the hidden side $[\bar a^r, \bar a^z, \bar a^n
//! \odot r]$ (the reset gate sits between $W_{hn}$ and the sum), and the direct path
//! adds $\bar h_t \odot z$ to $\bar h_{t-1}$.
//!
//! For every cell the pre-activations are linear in $x_t$ and $h_{t-1}$, so
//!
//! $$\bar x_t = \bar a_t^{ih} W_{ih}, \qquad \bar h_{t-1} \mathrel{+}= \bar a_t^{hh} W_{hh},$$
//!
//! with $\bar a^{ih} = \bar a^{hh} = \bar a$ except for the GRU's candidate slice.
//!
//! # Backpropagation through time
//!
//! Unrolled over $T$ steps, the layer is a feed-forward network of depth $T$ whose layers
//! share one set of weights. The chain rule on the unrolled graph runs the steps
//! backwards, each adding the gradient that arrives from the future to the one from its
//! own output, $\bar h_t = \partial L/\partial y_t + (\text{what step } t + 1 \text{ sent
//! back})$; and a weight used at every step receives the **sum** of its gradients over
//! the steps:
//!
//! $$\bar W_{ih} = \sum_t (\bar a_t^{ih})^\top x_t, \qquad
//! \bar W_{hh} = \sum_t (\bar a_t^{hh})^\top h_{t-1}, \qquad
//! \bar b_{ih} = \sum_t \bar a_t^{ih}, \qquad \bar b_{hh} = \sum_t \bar a_t^{hh}.$$
//!
//! Each sum is one matrix product over the stacked steps: with the $T b$ rows of every
//! step on top of each other, $\bar W_{ih} = \bar{\mathbf A}^\top \mathbf X$ and
//! $\bar W_{hh} = \bar{\mathbf A}^\top \mathbf H_{\text{prev}}$. This is how the layers
//! spend their time: the input projection $\mathbf X W_{ih}^\top$ of the whole sequence is
//! one GEMM before the time loop, each step does one GEMM $h_{t-1} W_{hh}^\top$ into all
//! of its gates at once, and after the backward loop $\bar W_{ih}$, $\bar W_{hh}$ and
//! $\bar{\mathbf X} = \bar{\mathbf A} W_{ih}$ are one GEMM each. Only the product with
//! $W_{hh}$ is sequential; the rest is as parallel as a dense layer. The price of BPTT is
//! memory: the gates and states of all $T$ steps are kept for the backward pass.
//!
//! # Truncated BPTT
//!
//! A long sequence (a book of characters) is cut into chunks of $k$ steps. With
//! `carry_state`, the last state of one chunk is the first of the next, so the forward
//! pass computes exactly what one pass over the whole sequence would; but the state is
//! carried as a **value**: `backward` stops at the chunk's first step and sends no
//! gradient into the previous chunk. The gradient of a chunk is then the gradient with
//! its initial state held constant: the full gradient minus every path that crosses a
//! chunk boundary, so dependencies longer than $k$ steps are learned only through what
//! the state happens to carry. Memory is $O(k)$ instead of $O(T)$. The gradient with
//! respect to the initial state is still computed (`dh0`, `dc0`), and checked, but not
//! used. [`Module::reset_state`](crate::nn::Module::reset_state) starts a new sequence.
//!
//! # Clipping
//!
//! Through the unrolled graph, $\partial h_T / \partial h_t$ is a product of $T - t$
//! step Jacobians: it can shrink towards zero (vanishing gradients) or grow without
//! bound (exploding ones). Growth is cured by **clipping** the global norm of the
//! gradient, $g \leftarrow g \cdot \min(1, \theta / \lVert g\rVert)$, which keeps its
//! direction and bounds the step: `train::clip_grad_norm`, or `TrainSpec::clip_norm` in
//! the training loop. Shrinking has no such cure: it is what the gates of the LSTM and
//! the GRU are for.

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, Axis, Ix1, Ix2, Ix3};
use rand::Rng;
use rand_distr::{Distribution, Uniform};

use crate::gemm::sgemm;
use crate::nn::{join, Param};

/// `Module` and `Layer` for a recurrent layer type with a field `weights`, a field
/// `state` and the methods `forward_seq` and `backward_seq`: the plumbing the three
/// layers share. `reset_state` clears the carried state; a first layer skips `dx`.
macro_rules! recurrent_layer {
    ($t:ty) => {
        impl $crate::nn::Module for $t {
            fn visit_params(
                &mut self,
                prefix: &str,
                f: &mut dyn FnMut(&str, &mut $crate::nn::Param),
            ) {
                self.weights.visit(prefix, f);
            }

            fn reset_state(&mut self) {
                self.state.reset();
            }
        }

        impl $crate::nn::Layer for $t {
            fn forward(
                &mut self,
                x: &ndarray::ArrayD<f32>,
                _mode: $crate::nn::Mode,
            ) -> ndarray::ArrayD<f32> {
                self.forward_seq(x)
            }

            fn backward(&mut self, dy: &ndarray::ArrayD<f32>) -> ndarray::ArrayD<f32> {
                self.backward_seq(dy, true).expect("dx was asked for")
            }

            fn backward_params(&mut self, dy: ndarray::ArrayD<f32>) {
                self.backward_seq(&dy, false);
            }
        }
    };
}
pub(crate) use recurrent_layer;

/// The constructor and state accessors of a recurrent layer type with one state
/// ($h$ only: the RNN and the GRU) and `$gates` gates; the LSTM, with two, has its own.
macro_rules! one_state_layer {
    ($t:ident, $gates:expr) => {
        impl $t {
            /// A `d_in -> hidden` layer with PyTorch's initialization, drawn from `rng`.
            pub fn new(d_in: usize, hidden: usize, rng: &mut impl rand::Rng) -> Self {
                $t {
                    weights: $crate::rnn::Weights::new(d_in, hidden, $gates, rng),
                    carry_state: false,
                    state: $crate::rnn::StateSlot::default(),
                    cache: None,
                }
            }

            /// The hidden width `h`.
            pub fn hidden(&self) -> usize {
                self.weights.hidden()
            }

            /// Sets the initial state `h0` `(b, h)` of the next forward passes (every
            /// one without `carry_state`, the next one with it).
            pub fn set_initial_state(&mut self, h0: ndarray::Array2<f32>) {
                self.state.set(vec![h0]);
            }

            /// The final state $h_T$ of the last forward pass, `(b, h)`.
            pub fn final_state(&self) -> Option<&ndarray::Array2<f32>> {
                self.state.last(0)
            }

            /// $\partial L / \partial h_0$ from the last backward pass, `(b, h)`.
            pub fn dh0(&self) -> Option<&ndarray::Array2<f32>> {
                self.state.grad(0)
            }
        }
    };
}

pub mod candle_twin;
pub mod gru;
pub mod last_step;
pub mod lstm;
pub mod memory;
pub mod profile;
pub mod vanilla;

pub use gru::Gru;
pub use last_step::LastStep;
pub use lstm::Lstm;
pub use vanilla::Rnn;

/// $\sigma(x) = 1 / (1 + e^{-x})$.
#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

// ANCHOR: fast_tanh
/// $\tanh x$ in `f32` by a rational function, $x\,p(x^2)/q(x^2)$ with $p$ of degree 6
/// and $q$ of degree 3 (Eigen's fast `tanh`), on $x$ clamped to $\pm 7.9053$, beyond
/// which $\tanh x$ rounds to $\pm 1$ in `f32`. No branch and no table: a loop over a
/// slice of these compiles to vector instructions, where `f32::tanh` is a call per
/// element. Its error against the exact value is bounded by a test.
#[inline(always)]
pub fn tanh_fast(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_7e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = A[6];
    for &a in A[..6].iter().rev() {
        p = p * x2 + a;
    }
    let q = ((B[3] * x2 + B[2]) * x2 + B[1]) * x2 + B[0];
    x * p / q
}

/// $\sigma(x) = \tfrac12 + \tfrac12 \tanh(x/2)$ by [`tanh_fast`]: its absolute error is
/// half that of `tanh_fast`.
#[inline(always)]
pub fn sigmoid_fast(x: f32) -> f32 {
    0.5 * tanh_fast(0.5 * x) + 0.5
}
// ANCHOR_END: fast_tanh

// ANCHOR: weights
/// The four parameters of a recurrent layer with `G` gates of width `h`, named and laid
/// out as PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU` (without their `_l0` suffix):
/// the gates are stacked along the rows.
///
/// # Shapes
/// - `weight_ih`: `(G h, d_in)`, `weight_hh`: `(G h, h)`
/// - `bias_ih`, `bias_hh`: `(G h,)`
#[derive(Clone, Debug)]
pub struct Weights {
    /// Input-to-hidden weights, `(G h, d_in)`.
    pub weight_ih: Param,
    /// Hidden-to-hidden weights, `(G h, h)`.
    pub weight_hh: Param,
    /// Input-side bias, `(G h,)`.
    pub bias_ih: Param,
    /// Hidden-side bias, `(G h,)`.
    pub bias_hh: Param,
}

impl Weights {
    /// PyTorch's initialization: every weight and bias uniform on
    /// $[-1/\sqrt h, 1/\sqrt h]$.
    pub fn new(d_in: usize, hidden: usize, gates: usize, rng: &mut impl Rng) -> Self {
        assert!(hidden > 0, "a recurrent layer needs a hidden width above 0");
        let k = 1.0 / (hidden as f32).sqrt();
        let u = Uniform::new_inclusive(-k, k).expect("a finite range");
        let mut draw =
            |shape: &[usize]| Param::new(ArrayD::from_shape_fn(shape, |_| u.sample(rng)));
        let gh = gates * hidden;
        Weights {
            weight_ih: draw(&[gh, d_in]),
            weight_hh: draw(&[gh, hidden]),
            bias_ih: draw(&[gh]),
            bias_hh: draw(&[gh]),
        }
    }

    /// The input width `d_in`.
    pub fn d_in(&self) -> usize {
        self.weight_ih.value.shape()[1]
    }

    /// The hidden width `h`.
    pub fn hidden(&self) -> usize {
        self.weight_hh.value.shape()[1]
    }

    /// Visits the four parameters under `prefix`, in PyTorch's order.
    pub fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight_ih"), &mut self.weight_ih);
        f(&join(prefix, "weight_hh"), &mut self.weight_hh);
        f(&join(prefix, "bias_ih"), &mut self.bias_ih);
        f(&join(prefix, "bias_hh"), &mut self.bias_hh);
    }

    pub(crate) fn w_ih(&self) -> ArrayView2<'_, f32> {
        matrix(&self.weight_ih.value)
    }

    pub(crate) fn w_hh(&self) -> ArrayView2<'_, f32> {
        matrix(&self.weight_hh.value)
    }

    /// The input projection of every step at once, $\mathbf X W_{ih}^\top + b_{ih}$, plus
    /// $b_{hh}$ when `with_b_hh` (every cell but the GRU, whose candidate needs the
    /// hidden-side bias apart): one GEMM over the whole sequence.
    ///
    /// # Shapes
    /// - `x`: `(t b, d_in)` time-major rows; output `(t b, G h)`.
    pub(crate) fn project(&self, x: &Array2<f32>, with_b_hh: bool) -> Array2<f32> {
        let b_ih = self.bias_ih.value.view();
        let mut bias = b_ih.to_owned();
        if with_b_hh {
            bias += &self.bias_hh.value;
        }
        let bias = bias.into_dimensionality::<Ix1>().expect("1-D");
        let mut out = Array2::zeros((x.nrows(), bias.len()));
        out.rows_mut().into_iter().for_each(|mut r| r.assign(&bias));
        sgemm(1.0, &x.view(), &self.w_ih().t(), 1.0, &mut out.view_mut());
        out
    }

    /// The hidden-side product of one step, $c \leftarrow c + h_{t-1} W_{hh}^\top$: one
    /// GEMM into all the gates.
    ///
    /// # Shapes
    /// - `h_prev`: `(b, h)`, `c`: `(b, G h)`.
    pub(crate) fn recur(&self, h_prev: &ArrayView2<f32>, c: &mut ArrayViewMut2<f32>) {
        sgemm(1.0, h_prev, &self.w_hh().t(), 1.0, c);
    }

    /// Accumulates the parameter gradients of a whole sequence from the stacked
    /// pre-activation gradients, one GEMM each, and returns $\bar{\mathbf X}$ when asked.
    ///
    /// # Shapes
    /// - `x`: `(t b, d_in)`, `h_prev`: `(t b, h)` (the state before each step),
    ///   `da_ih`, `da_hh`: `(t b, G h)`; output `(t b, d_in)`.
    pub(crate) fn accumulate(
        &mut self,
        x: &Array2<f32>,
        h_prev: &ArrayView2<f32>,
        da_ih: &Array2<f32>,
        da_hh: &Array2<f32>,
        need_dx: bool,
    ) -> Option<Array2<f32>> {
        let mut gw = self
            .weight_ih
            .grad
            .view_mut()
            .into_dimensionality::<Ix2>()
            .expect("2-D");
        sgemm(1.0, &da_ih.t(), &x.view(), 1.0, &mut gw);
        let mut gw = self
            .weight_hh
            .grad
            .view_mut()
            .into_dimensionality::<Ix2>()
            .expect("2-D");
        sgemm(1.0, &da_hh.t(), h_prev, 1.0, &mut gw);
        self.bias_ih.grad += &da_ih.sum_axis(Axis(0)).into_dyn();
        self.bias_hh.grad += &da_hh.sum_axis(Axis(0)).into_dyn();
        need_dx.then(|| crate::gemm::matmul(&da_ih.view(), &self.w_ih()))
    }
}
// ANCHOR_END: weights

fn matrix(a: &ArrayD<f32>) -> ArrayView2<'_, f32> {
    a.view().into_dimensionality::<Ix2>().expect("a 2-D weight")
}

/// A batch-first sequence `(b, t, d)` as time-major rows `(t b, d)`: row `s b + i` is
/// sequence `i` at step `s`, so the `b` rows of one step are contiguous. Panics naming
/// the shape when `x` is not `(b, t, d)`.
pub(crate) fn time_major(
    x: &ArrayD<f32>,
    d: usize,
    who: &str,
) -> (Array2<f32>, usize, usize) {
    let x3 = match x.view().into_dimensionality::<Ix3>() {
        Ok(v) if v.shape()[2] == d => v,
        _ => panic!(
            "{who}: expected a sequence batch (b, t, {d}), got {:?}",
            x.shape()
        ),
    };
    let (b, t, _) = x3.dim();
    let tm = x3
        .permuted_axes([1, 0, 2])
        .as_standard_layout()
        .into_owned(); // (t, b, d)
    (
        tm.into_shape_with_order((t * b, d)).expect("sizes match"),
        b,
        t,
    )
}

/// [`time_major`] for a gradient `dy` that must have the output's shape `(b, t, d)`.
pub(crate) fn time_major_like(
    dy: &ArrayD<f32>,
    (b, t, d): (usize, usize, usize),
    who: &str,
) -> Array2<f32> {
    let (m, db, dt) = time_major(dy, d, who);
    assert!(
        (db, dt) == (b, t),
        "{who}: dy is ({db}, {dt}, {d}), the output was ({b}, {t}, {d})"
    );
    m
}

/// Time-major rows `(t b, d)` back to a batch-first sequence `(b, t, d)`.
pub(crate) fn batch_major(m: ArrayView2<f32>, b: usize, t: usize) -> ArrayD<f32> {
    let d = m.ncols();
    let tm = m.into_shape_with_order((t, b, d)).expect("sizes match"); // (t, b, d)
    tm.permuted_axes([1, 0, 2])
        .as_standard_layout()
        .into_owned()
        .into_dyn()
}

/// The state a layer starts from and ends in: one `(b, h)` matrix for the RNN and the
/// GRU ($h$), two for the LSTM ($h$ and $c$).
#[derive(Clone, Debug, Default)]
pub(crate) struct StateSlot {
    /// The initial state of the next `forward`: zeros when `None`.
    init: Option<Vec<Array2<f32>>>,
    /// The final state of the last `forward`.
    last: Option<Vec<Array2<f32>>>,
    /// The gradient of the last `backward` with respect to the initial state.
    grad: Option<Vec<Array2<f32>>>,
}

impl StateSlot {
    /// The initial state for a batch of `b`: the one set or carried, or `n` zero matrices.
    fn start(&self, n: usize, b: usize, h: usize, who: &str) -> Vec<Array2<f32>> {
        match &self.init {
            Some(s) => {
                assert!(
                    s.iter().all(|m| m.dim() == (b, h)),
                    "{who}: the initial state is {:?}, the batch needs ({b}, {h})",
                    s[0].shape()
                );
                s.clone()
            }
            None => vec![Array2::zeros((b, h)); n],
        }
    }

    /// Records the final state; with `carry`, it is the next forward's initial state.
    fn finish(&mut self, last: Vec<Array2<f32>>, carry: bool) {
        if carry {
            self.init = Some(last.clone());
        }
        self.last = Some(last);
    }

    fn set(&mut self, init: Vec<Array2<f32>>) {
        self.init = Some(init);
    }

    fn reset(&mut self) {
        self.init = None;
    }

    fn last(&self, k: usize) -> Option<&Array2<f32>> {
        self.last.as_ref().map(|s| &s[k])
    }

    fn grad(&self, k: usize) -> Option<&Array2<f32>> {
        self.grad.as_ref().map(|s| &s[k])
    }
}
