//! Character-level language modelling: the vocabulary of a corpus, its split, batches of
//! windows, an LSTM that predicts the next character, and sampling from it.
//!
//! # The task
//!
//! A corpus is a sequence of characters $x_1, \dots, x_N$ from a vocabulary of $V$
//! symbols. A language model gives the probability of each next character from the ones
//! before it, $p(x_{s+1} \mid x_1, \dots, x_s)$, and is trained by minimising the
//! **cross-entropy per character** on windows of the training text,
//!
//! $$L = -\frac{1}{B T}\sum_{i=1}^{B}\sum_{s=1}^{T} \log p(x_{i, s+1} \mid x_{i,1}, \dots,
//! x_{i,s}),$$
//!
//! in nats (divide by $\ln 2$ for bits). A model that knows nothing predicts the uniform
//! distribution and scores $\ln V$; one that knows the letter frequencies, the unigram
//! entropy. Each window of $T + 1$ characters gives $T$ predictions: the inputs are its
//! first $T$ characters, the targets the same characters shifted by one.
//!
//! # The model
//!
//! [`CharLstm`]: an [`Embedding`] of each character, an [`Lstm`] over the window, and a
//! [`Linear`] read-out of every step's hidden state into $V$ logits, trained with the
//! softmax cross-entropy of every step ([`cross_entropy`]).
//!
//! # Split and batches
//!
//! [`CharCorpus`] splits the text in order: the first 90 % trains, the last 10 %
//! validates, so no validation window overlaps a training one. Training batches are
//! windows at uniformly random positions of the training part ([`random_batch`]);
//! validation uses **fixed** windows, consecutive and non-overlapping from the start of
//! the validation part ([`validation_batches`]), so every run and every evaluation scores
//! the same characters.
//!
//! # Sampling
//!
//! Text is generated one character at a time from the model's distribution
//! ([`sample`]): the logits $z$ are divided by a **temperature** $\tau$, so
//! $p_k \propto e^{z_k/\tau}$ (below 1 the distribution sharpens towards the most
//! likely character, which it becomes as $\tau \to 0$; above 1 it flattens), and
//! **top-k** keeps only the $k$ most likely characters before renormalising, which cuts
//! the long tail of unlikely ones. [`generate`] runs the model over a prompt and then
//! feeds each sampled character back in, carrying the LSTM's state.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use ndarray::{Array2, ArrayD, Axis, Ix2, Ix3, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{read_corpus, DataDir};
use crate::gemm::sgemm;
use crate::nn::{Embedding, Init, Layer, Linear, Mode, Module, Param};
use crate::optim::Optimizer;
use crate::rnn::{profile, Lstm};

/// The corpus file of the book, in the data folder.
pub const TINY_SHAKESPEARE: &str = "tinyshakespeare.txt";

// ANCHOR: vocab
/// The characters of a corpus, sorted, each with its id (its index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    /// Every distinct character of `text`, sorted. An error for an empty text.
    pub fn from_text(text: &str) -> Result<Vocab> {
        ensure!(!text.is_empty(), "an empty text has no vocabulary");
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Ok(Vocab { chars })
    }

    /// The number of characters, $V$.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Never true: a vocabulary comes from a non-empty text.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters, in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<u32> {
        self.chars.binary_search(&c).ok().map(|i| i as u32)
    }

    /// The ids of `text`; an error naming the first character that is not in the
    /// vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                self.id(c).with_context(|| {
                    format!(
                        "character {c:?} at position {i} is not in the vocabulary of {} \
                         characters",
                        self.len()
                    )
                })
            })
            .collect()
    }

    /// The text of `ids`. Panics on an id outside the vocabulary (ids come from
    /// [`Vocab::encode`] or from a model of this vocabulary).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| {
                *self.chars.get(i as usize).unwrap_or_else(|| {
                    panic!("Vocab::decode: id {i} with {} characters", self.len())
                })
            })
            .collect()
    }
}
// ANCHOR_END: vocab

/// A corpus as ids, split in order into a training and a validation part.
#[derive(Clone, Debug)]
pub struct CharCorpus {
    /// The vocabulary of the whole text.
    pub vocab: Vocab,
    /// The first part, for training.
    pub train: Vec<u32>,
    /// The last part, for validation.
    pub valid: Vec<u32>,
}

impl CharCorpus {
    /// `text` as ids, its last `valid_fraction` (rounded down) for validation. An error
    /// for an empty text or a fraction outside `(0, 1)` that leaves a part empty.
    pub fn from_text(text: &str, valid_fraction: f64) -> Result<CharCorpus> {
        let vocab = Vocab::from_text(text)?;
        let ids = vocab.encode(text)?;
        ensure!(
            valid_fraction > 0.0 && valid_fraction < 1.0,
            "the validation fraction must be in (0, 1), got {valid_fraction}"
        );
        let n_valid = (valid_fraction * ids.len() as f64) as usize;
        ensure!(
            n_valid > 0 && n_valid < ids.len(),
            "a text of {} characters leaves an empty part with validation fraction \
             {valid_fraction}",
            ids.len()
        );
        let mut train = ids;
        let valid = train.split_off(train.len() - n_valid);
        Ok(CharCorpus {
            vocab,
            train,
            valid,
        })
    }

    /// The corpus file at `path` (non-empty ASCII), split as [`CharCorpus::from_text`].
    pub fn read(path: &Path, valid_fraction: f64) -> Result<CharCorpus> {
        let text = read_corpus(path)?;
        CharCorpus::from_text(&text, valid_fraction)
            .with_context(|| format!("{}", path.display()))
    }

    /// Tiny Shakespeare from the data folder, checksum verified, split 90/10.
    pub fn tiny_shakespeare(dir: &DataDir) -> Result<CharCorpus> {
        CharCorpus::read(&dir.verified(TINY_SHAKESPEARE)?, 0.1)
    }
}

// ANCHOR: batches
/// A batch of windows: the input characters as ids in `f32` (what [`Embedding`] reads)
/// and the next character of each, batch-major.
///
/// # Shapes
/// - `x`: `(b, t)`; `targets`: `b t` ids, `targets[i t + s]` follows `x[i, s]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Input ids, `(b, t)`.
    pub x: ArrayD<f32>,
    /// Target ids, `b t`.
    pub targets: Vec<usize>,
}

/// The window of `seq_len + 1` ids starting at each of `starts` as a batch.
fn batch_at(ids: &[u32], starts: &[usize], seq_len: usize) -> Batch {
    let b = starts.len();
    let mut x = Vec::with_capacity(b * seq_len);
    let mut targets = Vec::with_capacity(b * seq_len);
    for &s in starts {
        let w = &ids[s..s + seq_len + 1];
        x.extend(w[..seq_len].iter().map(|&i| i as f32));
        targets.extend(w[1..].iter().map(|&i| i as usize));
    }
    Batch {
        x: ArrayD::from_shape_vec(IxDyn(&[b, seq_len]), x).expect("b t ids"),
        targets,
    }
}

/// `batch` windows of `seq_len` inputs at uniformly random positions of `ids`, drawn
/// from `rng`. Panics when `ids` is not longer than `seq_len`.
pub fn random_batch(
    ids: &[u32],
    batch: usize,
    seq_len: usize,
    rng: &mut impl Rng,
) -> Batch {
    assert!(
        ids.len() > seq_len,
        "random_batch: {} ids cannot hold a window of {seq_len} + 1",
        ids.len()
    );
    let starts: Vec<usize> = (0..batch)
        .map(|_| rng.random_range(0..ids.len() - seq_len))
        .collect();
    batch_at(ids, &starts, seq_len)
}

/// The fixed validation batches: consecutive, non-overlapping windows from the start of
/// `ids`, `batch` per batch, as many batches as fit up to `max_batches`. The same on
/// every call. An error when not even one batch fits.
pub fn validation_batches(
    ids: &[u32],
    batch: usize,
    seq_len: usize,
    max_batches: usize,
) -> Result<Vec<Batch>> {
    ensure!(
        batch > 0 && seq_len > 0,
        "batch and seq_len must be positive"
    );
    let windows = ids.len().saturating_sub(1) / seq_len;
    let n = (windows / batch).min(max_batches);
    ensure!(
        n > 0,
        "{} validation characters hold no batch of {batch} windows of {seq_len} + 1",
        ids.len()
    );
    Ok((0..n)
        .map(|k| {
            let starts: Vec<usize> =
                (0..batch).map(|j| (k * batch + j) * seq_len).collect();
            batch_at(ids, &starts, seq_len)
        })
        .collect())
}
// ANCHOR_END: batches

// ANCHOR: cross_entropy
/// The softmax cross-entropy of every row of `logits` against its target, averaged, and
/// its gradient written over the logits: $(\mathrm{softmax}(z) - \mathrm{onehot}(y))/n$.
/// The same function as [`crate::nn::softmax_cross_entropy`], in one pass over each row
/// and in place, in `f32` except for the sum of the losses.
///
/// # Shapes
/// - `logits`: `(n, c)`, overwritten by the gradient; `targets`: `n` ids in `0..c`.
pub fn cross_entropy(logits: &mut Array2<f32>, targets: &[usize]) -> f32 {
    let (n, c) = logits.dim();
    assert_eq!(
        n,
        targets.len(),
        "cross_entropy: logits {:?} with {} targets",
        logits.shape(),
        targets.len()
    );
    let inv_n = 1.0 / n as f32;
    let mut total = 0.0f64;
    for (mut row, &y) in logits.axis_iter_mut(Axis(0)).zip(targets) {
        assert!(y < c, "cross_entropy: target {y} with {c} classes");
        let z = row.as_slice_mut().expect("row-major logits");
        let m = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let zy = z[y] - m;
        let mut sum = 0.0f32;
        for v in z.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        // -log softmax(z)_y = log sum_k e^{z_k - m} - (z_y - m).
        total += f64::from(sum.ln() - zy);
        let k = inv_n / sum;
        z.iter_mut().for_each(|v| *v *= k);
        z[y] -= inv_n;
    }
    (total / n as f64) as f32
}
// ANCHOR_END: cross_entropy

/// The sizes of a [`CharLstm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharLstmConfig {
    /// Characters in the vocabulary, $V$.
    pub vocab_size: usize,
    /// Width of a character's embedding.
    pub d_embed: usize,
    /// Hidden width of the LSTM.
    pub hidden: usize,
}

impl CharLstmConfig {
    /// Multiply-adds per character of the forward pass, by product: the input
    /// projection $d_\text{embed} \cdot 4h$, the recurrent product $h \cdot 4h$ and the
    /// read-out $h V$.
    pub fn forward_macs(&self) -> [(&'static str, u64); 3] {
        let (e, h, v) = (
            self.d_embed as u64,
            self.hidden as u64,
            self.vocab_size as u64,
        );
        [
            ("input projection", e * 4 * h),
            ("recurrent product", h * 4 * h),
            ("read-out", h * v),
        ]
    }

    /// FLOPs per character of a training step: each forward product is 2 FLOPs per
    /// multiply-add, and its backward pass two products of the same size (the weight
    /// gradient and the input gradient), so 6 per multiply-add in all. The embedding's
    /// input gradient is the LSTM's: nothing is skipped. Element-wise work (gates,
    /// softmax, Adam) is not counted.
    pub fn train_flops_per_char(&self) -> f64 {
        self.forward_macs()
            .iter()
            .map(|(_, m)| 6.0 * *m as f64)
            .sum()
    }
}

// ANCHOR: char_lstm
/// The character-level language model: `Embedding(V, d_embed) -> Lstm(hidden) ->
/// Linear(hidden -> V)`, the logits of every step's next character.
///
/// # Shapes
/// - input: ids `(b, t)` as `f32`; output: logits `(b, t, V)`.
/// - parameters: `embed.weight (V, d_embed)`, `lstm.weight_ih (4h, d_embed)`,
///   `lstm.weight_hh (4h, h)`, `lstm.bias_ih (4h)`, `lstm.bias_hh (4h)`,
///   `head.weight (V, h)`, `head.bias (V)`.
pub struct CharLstm {
    /// A learned vector per character.
    pub embed: Embedding,
    /// The recurrent layer.
    pub lstm: Lstm,
    /// The read-out into logits.
    pub head: Linear,
    /// The LSTM's outputs of the last forward pass as rows `(b t, h)`, for the
    /// read-out's backward pass, with `(b, t)`.
    hs: Option<(Array2<f32>, usize, usize)>,
}

impl CharLstm {
    /// A model of these sizes: the embedding $\mathcal N(0, 1)$, the LSTM with PyTorch's
    /// initialization and its fast path ([`Lstm::fast_gates`]), the read-out Xavier, all
    /// drawn from `seed`.
    pub fn new(cfg: &CharLstmConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let embed = Embedding::new(cfg.vocab_size, cfg.d_embed, &mut rng);
        let mut lstm = Lstm::new(cfg.d_embed, cfg.hidden, &mut rng);
        lstm.fast_gates = true;
        CharLstm {
            embed,
            lstm,
            head: Linear::new(cfg.hidden, cfg.vocab_size, Init::Xavier, &mut rng),
            hs: None,
        }
    }

    /// The logits of every step as rows `(b t, V)`, row `i t + s` for sequence `i` at
    /// step `s`: the embedding, the LSTM, then the read-out as one product
    /// $H W^\top + b$ over all the steps.
    pub fn logits(&mut self, x: &ArrayD<f32>, mode: Mode) -> Array2<f32> {
        let (b, t) = match x.view().into_dimensionality::<Ix2>() {
            Ok(v) => v.dim(),
            Err(_) => panic!("CharLstm: expected ids (b, t), got {:?}", x.shape()),
        };
        let e = profile::time("embedding", || self.embed.forward(x, mode)); // (b, t, d)
        let h = self.lstm.forward(&e, mode); // (b, t, h)
        let hid = self.lstm.hidden();
        let hs = h
            .into_shape_with_order((x.len(), hid))
            .expect("(b, t, h) is standard layout"); // (b t, h)
        let logits = profile::time("read-out GEMM", || {
            let w = self.head.weight.value.view().into_dimensionality::<Ix2>();
            let w = w.expect("2-D weight"); // (V, h)
            let mut out = Array2::zeros((hs.nrows(), w.nrows()));
            let b = self.head.bias.value.view();
            out.rows_mut().into_iter().for_each(|mut r| r.assign(&b));
            sgemm(1.0, &hs.view(), &w.t(), 1.0, &mut out.view_mut());
            out
        });
        self.hs = Some((hs, b, t));
        logits
    }

    /// Backward from the gradient of the logits rows `(b t, V)`: the read-out's weight
    /// and bias gradients, then the LSTM's BPTT and the embedding's gradient.
    pub fn backward_logits(&mut self, dlogits: &Array2<f32>) {
        let (hs, b, t) = self
            .hs
            .take()
            .expect("CharLstm::backward_logits called before logits");
        let dh = profile::time("read-out backward GEMMs", || {
            let mut gw = self
                .head
                .weight
                .grad
                .view_mut()
                .into_dimensionality::<Ix2>();
            let gw = gw.as_mut().expect("2-D weight");
            sgemm(1.0, &dlogits.t(), &hs.view(), 1.0, gw); // (V, h)
            self.head.bias.grad += &dlogits.sum_axis(Axis(0)).into_dyn();
            let w = self.head.weight.value.view().into_dimensionality::<Ix2>();
            crate::gemm::matmul(&dlogits.view(), &w.expect("2-D weight")) // (b t, h)
        });
        let dh = dh
            .into_shape_with_order((b, t, self.lstm.hidden()))
            .expect("rows of (b, t)")
            .into_dyn();
        let de = self.lstm.backward(&dh);
        profile::time("embedding backward", || self.embed.backward_params(de));
    }

    /// Cross-entropy per character of a batch, in evaluation mode (no gradient).
    pub fn loss(&mut self, batch: &Batch) -> f32 {
        let mut logits = self.logits(&batch.x, Mode::Eval);
        cross_entropy(&mut logits, &batch.targets)
    }

    /// The mean cross-entropy per character over `batches`, each window from a zero
    /// state: what the fixed validation batches score.
    pub fn mean_loss(&mut self, batches: &[Batch]) -> f64 {
        self.lstm.reset_state();
        let total: f64 = batches.iter().map(|b| f64::from(self.loss(b))).sum();
        total / batches.len().max(1) as f64
    }
}

impl Module for CharLstm {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.embed
            .visit_params(&crate::nn::join(prefix, "embed"), f);
        self.lstm.visit_params(&crate::nn::join(prefix, "lstm"), f);
        self.head.visit_params(&crate::nn::join(prefix, "head"), f);
    }

    fn reset_state(&mut self) {
        self.lstm.reset_state();
    }
}

/// What one training step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The batch's cross-entropy per character, before the update.
    pub loss: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// One training step: zero the gradients, forward, cross-entropy per character,
/// backward through time, clip the global gradient norm to `clip` (when `Some`), and
/// the optimizer's update.
pub fn train_step(
    model: &mut CharLstm,
    opt: &mut dyn Optimizer,
    batch: &Batch,
    clip: Option<f32>,
) -> StepStats {
    profile::time("zero gradients", || model.zero_grad());
    let mut logits = model.logits(&batch.x, Mode::Train);
    let loss = profile::time("softmax + cross-entropy", || {
        cross_entropy(&mut logits, &batch.targets)
    });
    model.backward_logits(&logits);
    let grad_norm = profile::time("gradient clipping", || clip_grad_norm(model, clip));
    profile::time("Adam", || opt.step(model));
    StepStats { loss, grad_norm }
}
// ANCHOR_END: char_lstm

/// The global $L_2$ norm of the gradients, and their scaling to at most `max_norm`.
fn clip_grad_norm(model: &mut CharLstm, max_norm: Option<f32>) -> f64 {
    let mut sq = 0.0f64;
    model.visit_params("", &mut |_, p| {
        let s: f32 = p.grad.iter().map(|g| g * g).sum();
        sq += f64::from(s);
    });
    let norm = sq.sqrt();
    if let Some(max) = max_norm {
        if norm > f64::from(max) {
            let k = (f64::from(max) / norm) as f32;
            model.visit_params("", &mut |_, p| p.grad.mapv_inplace(|g| g * k));
        }
    }
    norm
}

// ANCHOR: sample
/// How to draw the next character: the temperature $\tau$ that divides the logits (0
/// means "always the most likely one") and how many of the most likely characters to
/// keep (`None`: all).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleSpec {
    /// $\tau \ge 0$.
    pub temperature: f32,
    /// Keep only the `k` largest logits.
    pub top_k: Option<usize>,
}

/// Draws an index from $\mathrm{softmax}(z/\tau)$ restricted to the `top_k` largest
/// logits (ties broken towards the lower index), using one uniform number of `rng`.
/// $\tau = 0$ returns the arg max. Panics on empty logits, a negative temperature or
/// `top_k = Some(0)`.
pub fn sample(logits: &[f32], spec: SampleSpec, rng: &mut impl Rng) -> usize {
    assert!(!logits.is_empty(), "sample: no logits");
    assert!(
        spec.temperature >= 0.0,
        "sample: temperature {} < 0",
        spec.temperature
    );
    assert!(spec.top_k != Some(0), "sample: top_k = 0 keeps nothing");
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Largest first; equal logits in index order.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(spec.top_k.unwrap_or(logits.len()).min(logits.len()));
    if spec.temperature == 0.0 {
        return order[0];
    }
    let top = f64::from(logits[order[0]]);
    let tau = f64::from(spec.temperature);
    let w: Vec<f64> = order
        .iter()
        .map(|&k| ((f64::from(logits[k]) - top) / tau).exp())
        .collect();
    let u = rng.random::<f64>() * w.iter().sum::<f64>();
    let mut acc = 0.0;
    for (&k, &wk) in order.iter().zip(&w) {
        acc += wk;
        if u < acc {
            return k;
        }
    }
    *order.last().expect("at least one kept")
}
// ANCHOR_END: sample

// ANCHOR: generate
/// `n_chars` characters generated after `prompt`: the model reads the prompt, then
/// each sampled character is fed back in with the LSTM's state carried, drawn by
/// [`sample`] from a generator seeded with `seed`. An error for an empty prompt or one
/// with a character outside the vocabulary.
pub fn generate(
    model: &mut CharLstm,
    vocab: &Vocab,
    prompt: &str,
    n_chars: usize,
    spec: SampleSpec,
    seed: u64,
) -> Result<String> {
    if prompt.is_empty() {
        bail!("the prompt is empty: give at least one character to start from");
    }
    let ids = vocab.encode(prompt).context("the prompt")?;
    ensure!(
        vocab.len() == model.head.d_out(),
        "the vocabulary has {} characters, the model {}",
        vocab.len(),
        model.head.d_out()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let carry = model.lstm.carry_state;
    model.lstm.carry_state = true;
    model.lstm.reset_state();
    let x = ArrayD::from_shape_vec(
        IxDyn(&[1, ids.len()]),
        ids.iter().map(|&i| i as f32).collect(),
    )
    .expect("1 x t ids");
    let mut logits = model.logits(&x, Mode::Eval);
    let mut out = Vec::with_capacity(n_chars);
    for _ in 0..n_chars {
        let last = logits.row(logits.nrows() - 1);
        let next = sample(last.as_slice().expect("row-major"), spec, &mut rng);
        out.push(next as u32);
        let x = ArrayD::from_elem(IxDyn(&[1, 1]), next as f32);
        logits = model.logits(&x, Mode::Eval);
    }
    model.lstm.carry_state = carry;
    model.lstm.reset_state();
    Ok(vocab.decode(&out))
}
// ANCHOR_END: generate

impl Layer for CharLstm {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let logits = self.logits(x, mode); // checks that x is (b, t)
        let (b, t, v) = (x.shape()[0], x.shape()[1], self.head.d_out());
        logits
            .into_shape_with_order((b, t, v))
            .expect("rows of (b, t)")
            .into_dyn()
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let d3 = dy
            .view()
            .into_dimensionality::<Ix3>()
            .unwrap_or_else(|_| panic!("CharLstm::backward: dy {:?}", dy.shape()));
        let (b, t, v) = d3.dim();
        let d = d3
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((b * t, v))
            .expect("sizes match");
        self.backward_logits(&d);
        ArrayD::zeros(IxDyn(&[b, t])) // ids have no gradient
    }
}
