//! Long-range lookup: a key-value recall task, a small attention model and recurrent
//! models at the same parameter budget, and a training loop on fresh batches.
//!
//! # The task
//!
//! A sequence of $T$ steps, each step a vector of three one-hot groups: a **key** (one of
//! `n_keys`, or none), a **value** (one of `n_values`) and a **query marker**. In the
//! first half of the sequence, `n_pairs` steps at random positions carry a key and its
//! value (distinct keys); every other step of the sequence carries no key and a random
//! value, noise. The last step carries the query marker and one of the pairs' keys; the
//! answer is that key's value, one of `n_values` classes, so guessing is right with
//! probability $1/n_\text{values}$.
//!
//! The matching pair sits at least $T/2$ steps back. Attention finds it in one step,
//! whatever the distance: the last step's query matches the key at that position and
//! reads its value. A recurrent network must carry every pair it has seen (it does not
//! know which will be asked) through every noisy step that follows, and the gradient
//! that teaches it to must travel back as far.
//!
//! # The attention model
//!
//! A linear embedding of the input steps, sinusoidal positions, `n_layers` pre-norm
//! blocks $h = x + \operatorname{MHA}(\operatorname{LN}(x))$, $y = h +
//! \operatorname{MLP}(\operatorname{LN}(h))$, a last layer norm, the last step, and a
//! linear read-out to the `n_values` classes: a [`Named`] stack whose parameters read
//! `embed.weight`, `block0.attn.q.weight`, `block0.mlp.fc1.bias`, `head.weight`.

use ndarray::{Array2, ArrayD, Axis, IxDyn, Slice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::attn::block::SeqNormLayer;
pub use crate::attn::block::{AttnBlock, WeightsTap};
use crate::attn::SinusoidalEncoding;
use crate::data::{Dataset, Targets};
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::{Init, Layer, Linear, Mode, Module, Named};
use crate::optim::{Adam, Optimizer};
use crate::rnn::memory::CellSpec;
use crate::rnn::{Gru, LastStep, Lstm, Rnn};
use crate::train::{clip_grad_norm, ParamGroups};

/// The sizes of the lookup task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupSpec {
    /// Distinct keys.
    pub n_keys: usize,
    /// Distinct values: the classes of the answer.
    pub n_values: usize,
    /// Key-value pairs per sequence, all in its first half.
    pub n_pairs: usize,
}

impl LookupSpec {
    /// The task of section 10.3: 8 keys, 8 values, 4 pairs.
    pub const BOOK: LookupSpec = LookupSpec {
        n_keys: 8,
        n_values: 8,
        n_pairs: 4,
    };

    /// Features per step: the key's one-hot, the value's one-hot, the query marker.
    pub fn n_features(&self) -> usize {
        self.n_keys + self.n_values + 1
    }
}

/// Sequences of the lookup task and where their answers are.
#[derive(Clone, Debug)]
pub struct Lookup {
    /// Inputs `(n, t, n_features)` and class targets (the queried value).
    pub data: Dataset,
    /// For each sequence, the position of the pair whose key the last step asks for.
    pub key_pos: Vec<usize>,
}

// ANCHOR: lookup_task
/// `n` sequences of the lookup task of length `t` (see the module docs).
///
/// # Shapes
/// - `data.x`: `(n, t, spec.n_features())`; targets: `n` classes in `0..n_values`.
///
/// # Panics
/// If the first half of `t` steps cannot hold the pairs or there are fewer keys than
/// pairs.
pub fn lookup_task(n: usize, t: usize, spec: &LookupSpec, rng: &mut impl Rng) -> Lookup {
    let LookupSpec {
        n_keys,
        n_values,
        n_pairs,
    } = *spec;
    assert!(
        n_pairs >= 1 && n_pairs <= n_keys && n_pairs <= (t - 1) / 2,
        "lookup_task: {n_pairs} pairs of {n_keys} keys do not fit the first half of {t} steps"
    );
    let (value0, marker) = (n_keys, n_keys + n_values);
    let mut x = ArrayD::zeros(IxDyn(&[n, t, spec.n_features()]));
    let (mut y, mut key_pos) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let half = (t - 1) / 2;
    for i in 0..n {
        for s in 0..t - 1 {
            x[[i, s, value0 + rng.random_range(0..n_values)]] = 1.0; // noise
        }
        let positions = rand::seq::index::sample(rng, half, n_pairs).into_vec();
        let keys = rand::seq::index::sample(rng, n_keys, n_pairs).into_vec();
        let mut values = vec![0; n_pairs];
        for ((&p, &k), v) in positions.iter().zip(&keys).zip(&mut values) {
            *v = rng.random_range(0..n_values);
            x.slice_mut(ndarray::s![i, p, value0..marker]).fill(0.0);
            x[[i, p, k]] = 1.0;
            x[[i, p, value0 + *v]] = 1.0;
        }
        let asked = rng.random_range(0..n_pairs);
        x[[i, t - 1, keys[asked]]] = 1.0;
        x[[i, t - 1, marker]] = 1.0;
        y.push(values[asked]);
        key_pos.push(positions[asked]);
    }
    Lookup {
        data: Dataset::new(x, Targets::Classes(y), None),
        key_pos,
    }
}
// ANCHOR_END: lookup_task

/// The shape of the attention model of the lookup task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttnSpec {
    /// Model width.
    pub d_model: usize,
    /// Heads per block.
    pub n_heads: usize,
    /// Blocks.
    pub n_layers: usize,
}

impl AttnSpec {
    /// The attention model of section 10.3: width 32, 2 heads, one block.
    pub const BOOK: AttnSpec = AttnSpec {
        d_model: 32,
        n_heads: 2,
        n_layers: 1,
    };

    /// Parameters of [`attention_model`] for inputs of `d_in` features and `n_out`
    /// classes: the embedding's $d(d_{in} + 1)$, per block two layer norms ($4d$), the
    /// four projections ($4d(d + 1)$) and the MLP ($8d^2 + 5d$), the last layer norm
    /// ($2d$) and the read-out ($n_{out}(d + 1)$).
    pub fn params(&self, d_in: usize, n_out: usize) -> usize {
        let d = self.d_model;
        let block = 4 * d + 4 * d * (d + 1) + 8 * d * d + 5 * d;
        d * (d_in + 1) + self.n_layers * block + 2 * d + n_out * (d + 1)
    }

    /// Forward FLOPs of one sequence of `t` steps: the embedding, per block the four
    /// projections ($8 t d^2$), the scores and the weighted sum ($4 t^2 d$: the only term
    /// that grows as $t^2$) and the MLP ($16 t d^2$), and the read-out of the last step.
    /// Normalisations, softmax and activations are not counted.
    pub fn flops(&self, d_in: usize, n_out: usize, t: usize) -> usize {
        let d = self.d_model;
        2 * t * d_in * d
            + self.n_layers * (24 * t * d * d + 4 * t * t * d)
            + 2 * d * n_out
    }
}

// ANCHOR: attention_model
/// The attention model of the lookup task (see the module docs) for sequences of up to
/// `max_len` steps of `d_in` features and `n_out` classes, and one [`WeightsTap`] per
/// block. Layers: `embed`, `pos`, `block0`, ..., `norm`, `last`, `head`.
///
/// # Shapes
/// - input `(b, t, d_in)` with `t <= max_len`; output: logits `(b, n_out)`.
pub fn attention_model(
    spec: AttnSpec,
    d_in: usize,
    n_out: usize,
    max_len: usize,
    seed: u64,
) -> (Named, Vec<WeightsTap>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = spec.d_model;
    let mut net = Named::new();
    net.push("embed", Linear::new(d_in, d, Init::Xavier, &mut rng));
    net.push("pos", SinusoidalEncoding::new(max_len, d));
    let mut taps = vec![];
    for l in 0..spec.n_layers {
        let tap = WeightsTap::default();
        taps.push(tap.clone());
        net.push(
            &format!("block{l}"),
            AttnBlock::new(d, spec.n_heads, Some(tap), &mut rng),
        );
    }
    net.push("norm", SeqNormLayer::new(d));
    net.push("last", LastStep::new());
    net.push("head", Linear::new(d, n_out, Init::Xavier, &mut rng));
    (net, taps)
}
// ANCHOR_END: attention_model

/// The recurrent cells of section 10.3: the LSTM with forget bias 1, the GRU.
pub fn book_cells() -> Vec<CellSpec> {
    vec![
        CellSpec::Lstm {
            forget_bias: Some(1.0),
        },
        CellSpec::GRU,
    ]
}

/// Parameters of [`recurrent_model`]: the recurrent layer's $G h (d_{in} + h + 2)$ and
/// the read-out's $n_{out}(h + 1)$.
pub fn recurrent_params(
    cell: CellSpec,
    d_in: usize,
    hidden: usize,
    n_out: usize,
) -> usize {
    cell.gates() * hidden * (d_in + hidden + 2) + n_out * (hidden + 1)
}

/// The hidden width at which [`recurrent_model`] with `cell` has the number of
/// parameters closest to `budget`.
pub fn hidden_for_budget(
    cell: CellSpec,
    d_in: usize,
    n_out: usize,
    budget: usize,
) -> usize {
    (1..=4 * budget.max(1))
        .take_while(|&h| recurrent_params(cell, d_in, h - 1, n_out) <= budget)
        .min_by_key(|&h| recurrent_params(cell, d_in, h, n_out).abs_diff(budget))
        .expect("at least one width")
}

/// A recurrent classifier: the layer `cell` (`d_in -> hidden`), the last step's state
/// and a linear read-out to `n_out` logits; named `rnn`, `last`, `head`.
///
/// # Shapes
/// - input `(b, t, d_in)`; output: logits `(b, n_out)`.
pub fn recurrent_model(
    cell: CellSpec,
    d_in: usize,
    hidden: usize,
    n_out: usize,
    seed: u64,
) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    match cell {
        CellSpec::Rnn { recurrent_scale } => {
            let mut l = Rnn::new(d_in, hidden, &mut rng);
            l.weights.weight_hh.value *= recurrent_scale;
            net.push("rnn", l);
        }
        CellSpec::Lstm { forget_bias } => {
            let mut l = Lstm::new(d_in, hidden, &mut rng);
            if let Some(b) = forget_bias {
                l = l.init_forget_bias(b);
            }
            net.push("rnn", l);
        }
        CellSpec::Gru => net.push("rnn", Gru::new(d_in, hidden, &mut rng)),
    }
    net.push("last", LastStep::new());
    net.push("head", Linear::new(hidden, n_out, Init::Xavier, &mut rng));
    net
}

/// How to train on the lookup task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LookupTrain {
    /// Optimizer steps, each on a fresh batch.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Clip the global gradient norm to this.
    pub clip_norm: Option<f32>,
}

/// The class predictions of `model` on `x`, in evaluation mode, in batches of `chunk`.
pub fn predict_classes(
    model: &mut dyn Layer,
    x: &ArrayD<f32>,
    chunk: usize,
) -> Vec<usize> {
    let n = x.shape()[0];
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(chunk.max(1)) {
        model.reset_state();
        let xb = x.slice_axis(Axis(0), Slice::from(start..(start + chunk).min(n)));
        let logits = model.forward(&xb.to_owned(), Mode::Eval);
        let logits = logits
            .into_dimensionality::<ndarray::Ix2>()
            .expect("logits (b, classes)");
        out.extend(logits.outer_iter().map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        }));
    }
    out
}

/// The share of `test` that `model` answers right.
pub fn lookup_accuracy(model: &mut dyn Layer, test: &Dataset) -> f64 {
    let Targets::Classes(y) = &test.y else {
        panic!("lookup_accuracy: the lookup task has class targets")
    };
    let pred = predict_classes(model, &test.x, 100);
    pred.iter().zip(y).filter(|(p, y)| p == y).count() as f64 / y.len().max(1) as f64
}

// ANCHOR: train_lookup
/// One training step of `model` on `batch`: forward, softmax cross-entropy on the
/// answer, backward, the gradient norm clipped to `clip_norm`, an optimizer step.
/// Returns the loss.
pub fn lookup_step(
    model: &mut Named,
    opt: &mut dyn Optimizer,
    batch: &Dataset,
    clip_norm: Option<f32>,
) -> f32 {
    let Targets::Classes(y) = &batch.y else {
        panic!("lookup_step: the lookup task has class targets")
    };
    model.reset_state();
    model.zero_grad();
    let logits = model.forward(&batch.x, Mode::Train);
    let (loss, dlogits) = softmax_cross_entropy(&logits, y);
    model.backward_params(dlogits);
    if let Some(c) = clip_norm {
        clip_grad_norm(model, &ParamGroups::default(), c);
    }
    opt.step(model);
    loss
}

/// Trains `model` with Adam on fresh lookup batches of length `t` drawn from `seed`
/// ([`lookup_step`] on each), and returns its accuracy on `test`.
pub fn train_lookup(
    model: &mut Named,
    cfg: &LookupTrain,
    spec: &LookupSpec,
    t: usize,
    seed: u64,
    test: &Dataset,
) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_1007);
    let mut opt = Adam::new(cfg.lr);
    for _ in 0..cfg.steps {
        let batch = lookup_task(cfg.batch_size, t, spec, &mut rng).data;
        lookup_step(model, &mut opt, &batch, cfg.clip_norm);
    }
    lookup_accuracy(model, test)
}
// ANCHOR_END: train_lookup

/// The attention weights `(b, heads, t, t)` of every block of an [`attention_model`] on
/// `x`, read from its taps after one evaluation-mode forward pass.
pub fn attention_weights(
    model: &mut Named,
    taps: &[WeightsTap],
    x: &ArrayD<f32>,
) -> Vec<ArrayD<f32>> {
    let _ = model.forward(x, Mode::Eval);
    taps.iter()
        .map(|t| {
            t.lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .expect("an evaluation-mode forward pass fills every tap")
        })
        .collect()
}

/// For one block's weights `(b, heads, t, t)`: per head, the mean over the sequences of
/// the weight the last step puts on the position of the pair it asks for.
pub fn weight_on_key(weights: &ArrayD<f32>, key_pos: &[usize]) -> Vec<f64> {
    let w = weights
        .view()
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap_or_else(|_| {
            panic!(
                "weight_on_key: weights must be (b, heads, t, t), got {:?}",
                weights.shape()
            )
        });
    let (b, h, t, _) = w.dim();
    assert_eq!(
        key_pos.len(),
        b,
        "weight_on_key: {} key positions for {b} sequences",
        key_pos.len()
    );
    (0..h)
        .map(|hd| {
            key_pos
                .iter()
                .enumerate()
                .map(|(n, &p)| f64::from(w[[n, hd, t - 1, p]]))
                .sum::<f64>()
                / b.max(1) as f64
        })
        .collect()
}

/// Short labels of the steps of one lookup sequence `(t, n_features)`: `k3:v5` for a
/// pair, `v5` for noise, `?k3` for the query.
pub fn step_labels(x: &Array2<f32>, spec: &LookupSpec) -> Vec<String> {
    let (nk, nv) = (spec.n_keys, spec.n_values);
    let find = |row: ndarray::ArrayView1<f32>, from: usize, n: usize| {
        (from..from + n).find(|&j| row[j] > 0.5).map(|j| j - from)
    };
    x.outer_iter()
        .map(|row| {
            let key = find(row, 0, nk);
            let value = find(row, nk, nv);
            match (key, value, row[nk + nv] > 0.5) {
                (Some(k), _, true) => format!("?k{k}"),
                (Some(k), Some(v), false) => format!("k{k}:v{v}"),
                (None, Some(v), _) => format!("v{v}"),
                _ => String::from("·"),
            }
        })
        .collect()
}

/// A model of the lookup comparison: the attention model, or a recurrent cell at a
/// hidden width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LookupModel {
    /// [`attention_model`] of this shape.
    Attention(AttnSpec),
    /// [`recurrent_model`] with this cell and hidden width.
    Recurrent(CellSpec, usize),
}

impl LookupModel {
    /// The attention model `attn`, then each of `cells` at the hidden width whose
    /// parameter count is closest to the attention model's, for the task `spec`.
    pub fn at_budget(attn: AttnSpec, cells: &[CellSpec], spec: &LookupSpec) -> Vec<Self> {
        let (d_in, n_out) = (spec.n_features(), spec.n_values);
        let budget = attn.params(d_in, n_out);
        let mut m = vec![LookupModel::Attention(attn)];
        m.extend(cells.iter().map(|&c| {
            LookupModel::Recurrent(c, hidden_for_budget(c, d_in, n_out, budget))
        }));
        m
    }

    /// A label for tables and legends.
    pub fn name(&self) -> String {
        match self {
            LookupModel::Attention(_) => "attention".into(),
            LookupModel::Recurrent(c, _) => c.name(),
        }
    }

    /// `d_model` or the hidden width.
    pub fn width(&self) -> usize {
        match self {
            LookupModel::Attention(a) => a.d_model,
            LookupModel::Recurrent(_, h) => *h,
        }
    }

    /// The model for `spec`, sequences up to `max_len`, weights from `seed`, and its
    /// weight taps (none for a recurrent model).
    pub fn build(
        &self,
        spec: &LookupSpec,
        max_len: usize,
        seed: u64,
    ) -> (Named, Vec<WeightsTap>) {
        let (d_in, n_out) = (spec.n_features(), spec.n_values);
        match *self {
            LookupModel::Attention(a) => attention_model(a, d_in, n_out, max_len, seed),
            LookupModel::Recurrent(c, h) => {
                (recurrent_model(c, d_in, h, n_out, seed), vec![])
            }
        }
    }

    /// Forward FLOPs of one sequence of `t` steps (matrix products and biases).
    pub fn flops(&self, spec: &LookupSpec, t: usize) -> usize {
        let (d_in, n_out) = (spec.n_features(), spec.n_values);
        match *self {
            LookupModel::Attention(a) => a.flops(d_in, n_out, t),
            LookupModel::Recurrent(c, h) => t * c.flops_per_step(d_in, h) + 2 * h * n_out,
        }
    }
}
