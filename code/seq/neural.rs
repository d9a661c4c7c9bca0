//! Recurrent forecasters: an LSTM or a GRU that reads a window and predicts what follows
//! it, as a [`WindowModel`], so both strategies, the scaling and the evaluation of the
//! baselines apply to it unchanged.
//!
//! The network reads the window $z_{t-p+1}, \dots, z_t$ (scaled values, one feature per
//! step), keeps the hidden state of its last step and maps it by a linear layer to $k$
//! outputs: $k = 1$ for the recursive strategy, $k = H$ for the direct one.
//!
//! **Changes, not levels.** With `relative`, the network predicts the change from the
//! window's last value, $\hat z_{t+j} = z_t + \mathrm{net}(z_{t-p+1..t})_j$, and learns
//! from targets $z_{t+j} - z_t$. The hidden state of a recurrent layer is bounded ($h =
//! o \odot \tanh c$), and on a trending series the held-out tail lies above every level
//! the training part reached: a network that must output the level itself meets values
//! it has never produced, while a change of the usual size is familiar. The shift is
//! applied to the data, outside the network, so no gradient changes.
//!
//! **Training** is the book's loop ([`train::fit`](crate::train::fit)) with Adam, the
//! squared error ([`SquaredError`]), gradient-norm clipping, and early stopping on the
//! last windows of the training part, restoring the best epoch's weights. Those
//! validation windows are carved from the *end* of the training part, in time order; with
//! $k$ targets per window, the $k - 1$ windows before them are dropped, so that no
//! training target is also a validation target. The held-out tail is never seen.

use std::cell::RefCell;

use anyhow::{ensure, Result};
use ndarray::{s, ArrayD, Axis, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Scaled, Strategy, Transform, WindowModel, WindowPredict, Windowed, Windows};
use crate::data::{Dataset, Targets};
use crate::nn::{mse, Init, Layer, Linear, Mode, Named};
use crate::optim::Adam;
use crate::rnn::{Gru, LastStep, Lstm, Rnn};
use crate::train::{fit, EarlyStopping, Loss, Monitor, Summary, TrainSpec};

/// Which recurrent layer a network uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    /// The LSTM, its forget-gate bias started at 1.
    Lstm,
    /// The GRU.
    Gru,
    /// The plain (tanh) RNN, the gateless baseline.
    Rnn,
}

impl Cell {
    /// `LSTM`, `GRU` or `RNN`, for tables.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "LSTM",
            Cell::Gru => "GRU",
            Cell::Rnn => "RNN",
        }
    }

    /// The layer `d_in -> hidden`, drawn from `rng`, boxed for a [`Named`] stack.
    pub fn layer(
        self,
        d_in: usize,
        hidden: usize,
        rng: &mut ChaCha8Rng,
    ) -> Box<dyn Layer> {
        match self {
            Cell::Lstm => Box::new(Lstm::new(d_in, hidden, rng).init_forget_bias(1.0)),
            Cell::Gru => Box::new(Gru::new(d_in, hidden, rng)),
            Cell::Rnn => Box::new(Rnn::new(d_in, hidden, rng)),
        }
    }
}

// ANCHOR: recurrent_net
/// The network of a recurrent forecaster or sequence classifier: `rnn` (the recurrent
/// layer), `last` (its last step), `head` (a linear map to `d_out`).
///
/// # Shapes
/// - input `(b, t, d_in)`, output `(b, d_out)`
pub fn recurrent_net(
    cell: Cell,
    d_in: usize,
    hidden: usize,
    d_out: usize,
    seed: u64,
) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    net.layers
        .push(("rnn".into(), cell.layer(d_in, hidden, &mut rng)));
    net.push("last", LastStep::new());
    net.push("head", Linear::new(hidden, d_out, Init::Xavier, &mut rng));
    net
}
// ANCHOR_END: recurrent_net

/// The mean squared error on value targets, as a training [`Loss`]: $\frac{1}{n k}
/// \sum_{i, j} (\hat y_{ij} - y_{ij})^2$ ([`mse`](crate::nn::mse)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SquaredError;

impl Loss for SquaredError {
    /// # Shapes
    /// - `pred`: `(n, k)`; `targets`: values `(n, k)`; the gradient is `(n, k)`.
    fn loss(&self, pred: &ArrayD<f32>, targets: &Targets) -> (f32, ArrayD<f32>) {
        match targets {
            Targets::Values(y) => mse(pred, &y.view().into_dyn().to_owned()),
            other => panic!(
                "SquaredError: needs value targets, got {other:?} for predictions {:?}",
                pred.shape()
            ),
        }
    }
}

// ANCHOR: recurrent_forecaster
/// A recurrent window model and how it is trained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recurrent {
    /// LSTM or GRU.
    pub cell: Cell,
    /// The hidden width $h$.
    pub hidden: usize,
    /// Predict changes from the window's last value (see the module docs).
    pub relative: bool,
    /// Adam's learning rate.
    pub lr: f32,
    /// The most epochs a run may take.
    pub n_epochs: usize,
    /// Windows per step.
    pub batch_size: usize,
    /// The share of the windows, taken from the end, that early stopping watches.
    pub val_fraction: f64,
    /// Epochs without a better validation loss before training stops.
    pub patience: usize,
    /// Gradient-norm clipping threshold.
    pub clip_norm: f32,
    /// The seed of the initialization and of the batch order.
    pub seed: u64,
}

/// A fitted [`Recurrent`] window model.
pub struct RecurrentFit {
    /// The trained network (in a cell: predicting runs a forward pass, which caches).
    net: RefCell<Named>,
    /// Whether the network predicts changes from the window's last value.
    relative: bool,
    /// How training went (epochs, best epoch, why it stopped).
    pub summary: Summary,
}

impl std::fmt::Debug for RecurrentFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecurrentFit")
            .field("relative", &self.relative)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl WindowModel for Recurrent {
    type Fitted = RecurrentFit;

    fn fit_windows(&self, w: &Windows) -> Result<RecurrentFit> {
        let (n, k) = (w.len(), w.targets.ncols());
        ensure!(
            self.val_fraction > 0.0 && self.val_fraction < 1.0,
            "a validation share of {}: it must be strictly between 0 and 1",
            self.val_fraction
        );
        let n_val = ((n as f64 * self.val_fraction).round() as usize).max(1);
        // Training windows end k - 1 windows before the first validation window, so
        // that their targets stop before the first validation target.
        ensure!(
            n > n_val + k - 1,
            "{n} windows of {k} targets leave none for training after {n_val} validation \
             windows and a gap of {}: use a shorter window or horizon",
            k - 1
        );
        let n_fit = n - n_val - (k - 1);
        let data = self.dataset(w);
        let fit_idx: Vec<usize> = (0..n_fit).collect();
        let val_idx: Vec<usize> = (n - n_val..n).collect();
        let (train, val) = (data.select(&fit_idx), data.select(&val_idx));
        let mut net = recurrent_net(self.cell, 1, self.hidden, k, self.seed);
        let spec = TrainSpec {
            n_epochs: self.n_epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            clip_norm: Some(self.clip_norm),
            early_stopping: Some(EarlyStopping {
                monitor: Monitor::Loss,
                patience: self.patience,
                min_delta: 0.0,
                restore_best: true,
            }),
            ..TrainSpec::default()
        };
        let mut opt = Adam::new(self.lr);
        let summary = fit(
            &mut net,
            &mut opt,
            &SquaredError,
            &train,
            Some(&val),
            &spec,
            &mut [],
        )
        .expect("no checkpoints are written");
        Ok(RecurrentFit {
            net: RefCell::new(net),
            relative: self.relative,
            summary,
        })
    }
}
// ANCHOR_END: recurrent_forecaster

impl Recurrent {
    /// The windows as a sequence dataset `(n, p, 1)`, the targets shifted by each
    /// window's last value when `relative`.
    fn dataset(&self, w: &Windows) -> Dataset {
        let mut d = w.to_dataset();
        if self.relative {
            let last = w.inputs.column(w.inputs.ncols() - 1).mapv(|v| v as f32); // (n)
            if let Targets::Values(y) = &mut d.y {
                *y -= &last.insert_axis(Axis(1)); // (n, k) - (n, 1)
            }
        }
        d
    }

    /// This model under `strategy` with windows of `window` values, on the series
    /// scaled (after `transform`) on the training part: a forecaster.
    pub fn forecaster(
        self,
        window: usize,
        strategy: Strategy,
        transform: Transform,
    ) -> Scaled<Windowed<Recurrent>> {
        Scaled {
            inner: Windowed {
                model: self,
                window,
                strategy,
            },
            transform,
        }
    }
}

impl WindowPredict for RecurrentFit {
    fn predict(&self, window: &[f64]) -> Vec<f64> {
        // (p) -> (1, p, 1): one sequence of p steps with one feature.
        let x = ArrayD::from_shape_fn(vec![1, window.len(), 1], |i| window[i[1]] as f32);
        let y = self.net.borrow_mut().forward(&x, Mode::Eval); // (1, k)
        let y = y
            .into_dimensionality::<Ix2>()
            .expect("the head gives (1, k)");
        let shift = if self.relative {
            *window.last().expect("a window has values")
        } else {
            0.0
        };
        y.slice(s![0, ..])
            .iter()
            .map(|&v| f64::from(v) + shift)
            .collect()
    }
}
