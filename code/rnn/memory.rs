//! Long-range memory: Hochreiter and Schmidhuber's **adding problem**, a training loop on
//! fresh random sequences (with optional truncated BPTT), and the gradient that reaches
//! each earlier input, $\lVert \partial \hat y_T / \partial x_{T-k} \rVert$, as a
//! function of the lag $k$.
//!
//! # The adding problem
//!
//! Each example is a sequence of $T$ steps with two channels: a value drawn uniformly
//! from $[0, 1]$, and a marker that is 1 at exactly two steps and 0 elsewhere, one
//! marked step in the first half of the sequence and one in the second. The target is
//! the sum of the two marked values, in $[0, 2]$. A network that remembers nothing can do
//! no better than predict the mean, 1, whose mean squared error is the variance of a
//! sum of two independent uniforms, $2 \cdot \tfrac1{12} = \tfrac16$
//! ([`BASELINE_MSE`]). As in the literature (Hochreiter and Schmidhuber 1997), a
//! prediction counts as right when its absolute error is below 0.04 ([`TOLERANCE`]).
//!
//! To beat the baseline the network must carry the first marked value over at least
//! $T/2$ steps, ignoring every unmarked value on the way: the gradient that teaches it
//! to do so must travel back as far, which is what the vanilla RNN cannot do.
//!
//! # The gradient through time
//!
//! For a model that reads the last step's state, $\hat y = w^\top h_T + b$, the
//! gradient of any loss $\ell(\hat y)$ with respect to the input $k$ steps before the
//! end is $\ell'(\hat y)\, \partial \hat y / \partial x_{T-k}$, and by the chain rule
//!
//! $$\frac{\partial \hat y}{\partial x_{T-k}} = w^\top
//! \frac{\partial h_T}{\partial h_{T-1}} \cdots
//! \frac{\partial h_{T-k+1}}{\partial h_{T-k}} \frac{\partial h_{T-k}}{\partial x_{T-k}},$$
//!
//! a product of $k$ step Jacobians. For the RNN each is
//! $\mathrm{diag}(1 - h_t^2)\, W_{hh}$: when its norm stays below one the product
//! shrinks geometrically with $k$ (vanishing), when above one it grows (exploding). The
//! LSTM's cell path contributes $\mathrm{diag}(f_t)$ per step instead, close to 1 when
//! the forget gate is open. [`grad_by_lag`] measures the norm, per sequence, averaged
//! over a batch.

use ndarray::{Array2, ArrayD, Axis, Ix3, IxDyn, Slice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Gru, LastStep, Lstm, Rnn};
use crate::data::{Dataset, Targets};
use crate::nn::loss::mse;
use crate::nn::{Init, Layer, Linear, Mode, Module, Named};
use crate::optim::{Adam, Optimizer};
use crate::train::{clip_grad_norm, ParamGroups};

/// The accuracy threshold of the adding problem: a prediction is right when
/// $|\hat y - y| < 0.04$.
pub const TOLERANCE: f32 = 0.04;

/// The mean squared error of always predicting 1, the mean of the target:
/// $\mathrm{Var}(u_1 + u_2) = 2/12$ for independent uniforms on $[0, 1]$.
pub const BASELINE_MSE: f64 = 1.0 / 6.0;

// ANCHOR: adding_problem
/// `n` sequences of the adding problem of length `t`: channel 0 the values, uniform on
/// $[0, 1]$; channel 1 the markers, 1 at one step of the first half and one of the
/// second; the target the sum of the two marked values.
///
/// # Shapes
/// - `x`: `(n, t, 2)`; targets: values `(n, 1)`.
///
/// # Panics
/// If `t < 2` (the two halves need a step each).
pub fn adding_problem(n: usize, t: usize, rng: &mut impl Rng) -> Dataset {
    assert!(
        t >= 2,
        "adding_problem: sequences of {t} steps have no two halves"
    );
    let mut x = ArrayD::zeros(IxDyn(&[n, t, 2]));
    let mut y = Array2::zeros((n, 1));
    let half = t / 2;
    for i in 0..n {
        for s in 0..t {
            x[[i, s, 0]] = rng.random::<f32>();
        }
        let first = rng.random_range(0..half);
        let second = rng.random_range(half..t);
        x[[i, first, 1]] = 1.0;
        x[[i, second, 1]] = 1.0;
        y[[i, 0]] = x[[i, first, 0]] + x[[i, second, 0]];
    }
    Dataset::new(x, Targets::Values(y), None)
}
// ANCHOR_END: adding_problem

/// Mean squared error and accuracy (share of $|\hat y - y| <$ [`TOLERANCE`]) of
/// predictions `pred` against targets `y`.
///
/// # Shapes
/// - `pred`, `y`: `(n, 1)`.
pub fn adding_scores(pred: &ArrayD<f32>, y: &Array2<f32>) -> (f64, f64) {
    assert_eq!(
        pred.shape(),
        y.shape(),
        "adding_scores: predictions {:?} for targets {:?}",
        pred.shape(),
        y.shape()
    );
    let n = y.len() as f64;
    let (mut sq, mut hits) = (0.0f64, 0usize);
    for (&p, &t) in pred.iter().zip(y) {
        let e = p - t;
        sq += f64::from(e) * f64::from(e);
        hits += usize::from(e.abs() < TOLERANCE);
    }
    (sq / n, hits as f64 / n)
}

/// Which recurrent cell, and how it starts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellSpec {
    /// The vanilla RNN, its recurrent weights $W_{hh}$ multiplied by `recurrent_scale`
    /// after PyTorch's initialization (1 leaves them as they are).
    Rnn {
        /// Factor applied to $W_{hh}$.
        recurrent_scale: f32,
    },
    /// The LSTM with the forget gate's total bias set to `forget_bias` (PyTorch's
    /// initialization when `None`).
    Lstm {
        /// The forget gate's initial total bias.
        forget_bias: Option<f32>,
    },
    /// The GRU with PyTorch's initialization.
    Gru,
}

impl CellSpec {
    /// The plain RNN.
    pub const RNN: CellSpec = CellSpec::Rnn {
        recurrent_scale: 1.0,
    };
    /// The LSTM with PyTorch's initialization.
    pub const LSTM: CellSpec = CellSpec::Lstm { forget_bias: None };
    /// The GRU.
    pub const GRU: CellSpec = CellSpec::Gru;

    /// A label for tables and legends.
    pub fn name(self) -> String {
        match self {
            CellSpec::Rnn {
                recurrent_scale: 1.0,
            } => "RNN".into(),
            CellSpec::Rnn { recurrent_scale } => format!("RNN, W_hh x {recurrent_scale}"),
            CellSpec::Lstm { forget_bias: None } => "LSTM".into(),
            CellSpec::Lstm {
                forget_bias: Some(b),
            } => format!("LSTM, forget bias {b}"),
            CellSpec::Gru => "GRU".into(),
        }
    }

    /// The number of gates `G`.
    pub fn gates(self) -> usize {
        match self {
            CellSpec::Rnn { .. } => 1,
            CellSpec::Lstm { .. } => 4,
            CellSpec::Gru => 3,
        }
    }

    // ANCHOR: cell_cost
    /// Parameters of [`memory_model`] with this cell: the recurrent layer's
    /// $G h (d_{in} + h + 2)$ (two matrices, two biases) and the read-out's $h + 1$.
    pub fn params(self, d_in: usize, hidden: usize) -> usize {
        self.gates() * hidden * (d_in + hidden + 2) + hidden + 1
    }

    /// Forward FLOPs of one step of one sequence in the recurrent layer:
    /// $2 G h (d_{in} + h)$ for the two matrix products (every weight is one multiply-add
    /// per step) and $2 G h$ for the two biases. The gates' element-wise work (sigmoids,
    /// tanh, the products with the gates: a few operations per hidden unit, against
    /// $2 G (d_{in} + h)$ per unit for the products) is not counted, as in chapter 5's
    /// count: it is memory traffic more than arithmetic.
    pub fn flops_per_step(self, d_in: usize, hidden: usize) -> usize {
        2 * self.gates() * hidden * (d_in + hidden + 1)
    }
    // ANCHOR_END: cell_cost
}

// ANCHOR: memory_model
/// A sequence regressor: the recurrent layer `cell` (`d_in -> hidden`), the last step's
/// state, and a linear read-out to one number; named `rnn`, `last`, `head`. With `carry`
/// the recurrent layer carries its state from one `forward` to the next (truncated
/// BPTT; [`Module::reset_state`] starts a new sequence).
///
/// # Shapes
/// - input `(b, t, d_in)`, output `(b, 1)`.
pub fn memory_model(
    cell: CellSpec,
    d_in: usize,
    hidden: usize,
    carry: bool,
    seed: u64,
) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    match cell {
        CellSpec::Rnn { recurrent_scale } => {
            let mut l = Rnn::new(d_in, hidden, &mut rng);
            l.weights.weight_hh.value *= recurrent_scale;
            l.carry_state = carry;
            net.push("rnn", l);
        }
        CellSpec::Lstm { forget_bias } => {
            let mut l = Lstm::new(d_in, hidden, &mut rng);
            if let Some(b) = forget_bias {
                l = l.init_forget_bias(b);
            }
            l.carry_state = carry;
            net.push("rnn", l);
        }
        CellSpec::Gru => {
            let mut l = Gru::new(d_in, hidden, &mut rng);
            l.carry_state = carry;
            net.push("rnn", l);
        }
    }
    net.push("last", LastStep::new());
    net.push("head", Linear::new(hidden, 1, Init::Xavier, &mut rng));
    net
}
// ANCHOR_END: memory_model

// ANCHOR: grad_by_lag
/// $\lVert \partial \hat y / \partial x_{T-k} \rVert$ for $k = 0, \dots, T - 1$: the
/// gradient of each sequence's prediction with respect to the input $k$ steps before its
/// end (the last step is $k = 0$), its norm averaged over the batch. A loss on the last
/// step multiplies it by $\ell'(\hat y)$.
///
/// # Shapes
/// - `x`: `(b, t, d_in)`; `model` maps it to `(b, 1)`; the result has `t` entries.
pub fn grad_by_lag(model: &mut dyn Layer, x: &ArrayD<f32>) -> Vec<f64> {
    let (b, t) = (x.shape()[0], x.shape()[1]);
    model.reset_state();
    let y = model.forward(x, Mode::Train);
    // d(sum of predictions)/d(prediction) = 1: each sequence's own gradient.
    let dx = model.backward(&ArrayD::ones(y.raw_dim()));
    let dx = dx.into_dimensionality::<Ix3>().expect("(b, t, d_in)");
    (0..t)
        .map(|k| {
            let step = dx.index_axis(Axis(1), t - 1 - k); // (b, d_in)
            let norms: f64 = step
                .outer_iter()
                .map(|row| {
                    row.iter()
                        .map(|&g| f64::from(g).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .sum();
            norms / b as f64
        })
        .collect()
}
// ANCHOR_END: grad_by_lag

/// How to train on the adding problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddingTrain {
    /// Optimizer steps, each on a fresh batch.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Clip the global gradient norm to this.
    pub clip_norm: Option<f32>,
    /// Truncated BPTT: run the sequence in chunks of this many steps, carrying the
    /// state, and backpropagate through the last chunk only (the loss is on the last
    /// step). `None`: full BPTT.
    pub truncate: Option<usize>,
}

/// What a run of [`train_adding`] ends with, on the test set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddingScore {
    /// Mean squared error.
    pub mse: f64,
    /// Share of predictions within [`TOLERANCE`].
    pub accuracy: f64,
    /// Whether every training loss was finite.
    pub finite: bool,
}

/// The predictions of `model` on `x`, from a fresh state, in batches of 500.
pub fn predict(model: &mut dyn Layer, x: &ArrayD<f32>) -> ArrayD<f32> {
    let n = x.shape()[0];
    let parts: Vec<ArrayD<f32>> = (0..n)
        .step_by(500)
        .map(|start| {
            model.reset_state();
            let xb = x.slice_axis(Axis(0), Slice::from(start..(start + 500).min(n)));
            model.forward(&xb.to_owned(), Mode::Eval)
        })
        .collect();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).expect("same widths")
}

/// The test scores of `model`: MSE and accuracy on `test`.
pub fn score(model: &mut dyn Layer, test: &Dataset) -> (f64, f64) {
    let Targets::Values(y) = &test.y else {
        panic!("score: the adding problem has value targets")
    };
    adding_scores(&predict(model, &test.x), y)
}

// ANCHOR: train_adding
/// Trains `model` (built with `carry` when `cfg.truncate` is set) with Adam on fresh
/// adding-problem batches of length `t`, drawn from `seed`, and scores it on `test`.
/// Stops at the first loss that is not finite.
///
/// This is not [`train::fit`](crate::train::fit), which reads a fixed dataset in
/// epochs: here every step draws new sequences, so the network cannot memorise them,
/// and with truncation only the last chunk of each sequence is backpropagated.
pub fn train_adding(
    model: &mut Named,
    cfg: &AddingTrain,
    t: usize,
    seed: u64,
    test: &Dataset,
) -> AddingScore {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut opt = Adam::new(cfg.lr);
    let groups = ParamGroups::default();
    let chunk = cfg.truncate.unwrap_or(t).clamp(1, t);
    let mut finite = true;
    for _ in 0..cfg.steps {
        let batch = adding_problem(cfg.batch_size, t, &mut rng);
        let Targets::Values(y) = &batch.y else {
            unreachable!("adding_problem has value targets")
        };
        model.reset_state();
        model.zero_grad();
        // Chunks before the last: forward only, to carry the state.
        let last = t - chunk;
        for start in (0..last).step_by(chunk) {
            let end = (start + chunk).min(last);
            let xc = batch.x.slice_axis(Axis(1), Slice::from(start..end));
            let _ = model.forward(&xc.to_owned(), Mode::Train);
        }
        let xc = batch.x.slice_axis(Axis(1), Slice::from(last..t)).to_owned();
        let pred = model.forward(&xc, Mode::Train);
        let (l, dpred) = mse(&pred, &y.clone().into_dyn());
        if !l.is_finite() {
            finite = false;
            break;
        }
        model.backward_params(dpred);
        if let Some(c) = cfg.clip_norm {
            clip_grad_norm(model, &groups, c);
        }
        opt.step(model);
    }
    let (mse, accuracy) = score(model, test);
    AddingScore {
        mse,
        accuracy,
        finite,
    }
}
// ANCHOR_END: train_adding
