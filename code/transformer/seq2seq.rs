//! An encoder-decoder Transformer from the blocks of [`crate::transformer`], trained
//! with teacher forcing, and decoded greedily or by beam search.
//!
//! # The model
//!
//! The source ids are embedded, a sinusoidal position code is added, and `n_layers`
//! [`EncoderBlock`]s turn them into the **memory**. The target, shifted right by one
//! (a start token `BOS` first), is embedded the same way and runs through `n_layers`
//! [`DecoderBlock`]s, each reading the memory by cross-attention; a linear layer maps
//! each position to logits over the output vocabulary. A pre-LN model ends each stack
//! with one more layer norm.
//!
//! **Teacher forcing**: in training the decoder reads the true previous tokens, so all
//! positions are predicted in one pass (the causal mask keeps position $i$ from seeing
//! tokens after $i$), and the loss is the mean cross-entropy over positions.
//!
//! # Decoding
//!
//! At test time there is no true prefix: the model's own tokens are fed back. The
//! probability of an output sequence is $p(y \mid x) = \prod_i p(y_i \mid y_{<i}, x)$,
//! and the best sequence maximises $\sum_i \log p(y_i \mid y_{<i}, x)$ over $V^n$
//! candidates, far too many to enumerate.
//!
//! - **Greedy** takes the most likely token at each step. It can miss the best sequence:
//!   a first token slightly more likely than another may lead to much less likely
//!   continuations.
//! - **Beam search** keeps the `width` best prefixes at each step: every kept prefix is
//!   extended by every token, and the `width` best of those `width` $\times V$ extensions
//!   are kept. Width 1 is greedy; width $V^{n-1}$ keeps every prefix of length $n - 1$
//!   and so finds the exact best sequence. In between it is a heuristic, usually (but
//!   not provably) at least as good as greedy.
//!
//! Every output of the sorting task has the length of its input, so decoding runs for
//! exactly that many steps (no end token).

use ndarray::{s, Array2, Array3, ArrayD, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{BlockConfig, DecoderBlock, DecoderMasks, EncoderBlock, Norm, SeqLayerNorm};
use crate::attn::SinusoidalEncoding;
use crate::nn::{
    join, softmax_cross_entropy, Embedding, Init, Layer, Linear, Mode, Module, Param,
};

/// The shape of a [`Seq2Seq`] model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seq2SeqConfig {
    /// Output tokens `0..vocab_size`; the source uses the same ids, and the decoder's
    /// input has one more, `BOS = vocab_size`.
    pub vocab_size: usize,
    /// Blocks in each stack.
    pub n_layers: usize,
    /// The blocks' options.
    pub block: BlockConfig,
    /// The longest sequence the position code covers.
    pub max_len: usize,
}

// ANCHOR: seq2seq
/// An encoder-decoder Transformer.
///
/// Parameters: `src_emb.weight`, `tgt_emb.weight`, `encoder.{i}.*`, `enc_ln.*` (pre-LN),
/// `decoder.{i}.*`, `dec_ln.*` (pre-LN), `out.weight`, `out.bias`.
///
/// # Shapes
/// - `src`: `(b, n)` source ids as `f32`; `tgt_in`: `(b, m)` decoder inputs (`BOS` first);
/// - output logits: `(b, m, vocab_size)`.
#[derive(Clone, Debug)]
pub struct Seq2Seq {
    /// Source embeddings, `(vocab_size, d)`.
    pub src_emb: Embedding,
    /// Target embeddings, `(vocab_size + 1, d)` (the last row is `BOS`).
    pub tgt_emb: Embedding,
    src_pos: SinusoidalEncoding,
    tgt_pos: SinusoidalEncoding,
    /// The encoder stack.
    pub encoder: Vec<EncoderBlock>,
    /// The encoder's final layer norm (pre-LN only).
    pub enc_ln: Option<SeqLayerNorm>,
    /// The decoder stack.
    pub decoder: Vec<DecoderBlock>,
    /// The decoder's final layer norm (pre-LN only).
    pub dec_ln: Option<SeqLayerNorm>,
    /// Logits over the output vocabulary.
    pub out: Linear,
    /// The shape it was built with.
    pub cfg: Seq2SeqConfig,
}

impl Seq2Seq {
    /// A model with weights drawn from `rng`; the embeddings' $\mathcal N(0, 1)$ entries
    /// are halved, to the size of the position code's (which lie in $[-1, 1]$).
    pub fn new(cfg: Seq2SeqConfig, rng: &mut impl Rng) -> Self {
        let d = cfg.block.d_model;
        let mut src_emb = Embedding::new(cfg.vocab_size, d, &mut *rng);
        let mut tgt_emb = Embedding::new(cfg.vocab_size + 1, d, &mut *rng);
        src_emb.weight.value *= 0.5;
        tgt_emb.weight.value *= 0.5;
        let pre = cfg.block.norm == Norm::PreLn;
        let ln = || SeqLayerNorm::new(d, cfg.block.ln_eps);
        Seq2Seq {
            src_emb,
            tgt_emb,
            src_pos: SinusoidalEncoding::new(cfg.max_len, d),
            tgt_pos: SinusoidalEncoding::new(cfg.max_len, d),
            encoder: (0..cfg.n_layers)
                .map(|_| EncoderBlock::new(cfg.block, &mut *rng))
                .collect(),
            enc_ln: pre.then(ln),
            decoder: (0..cfg.n_layers)
                .map(|_| DecoderBlock::new(cfg.block, &mut *rng))
                .collect(),
            dec_ln: pre.then(ln),
            out: Linear::new(d, cfg.vocab_size, Init::Xavier, rng),
            cfg,
        }
    }

    /// The start token, the decoder's first input.
    pub fn bos(&self) -> usize {
        self.cfg.vocab_size
    }

    /// The memory: the encoder's output on `src` `(b, n)`, `(b, n, d)`.
    pub fn encode(&mut self, src: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let mut h = self.src_pos.forward(&self.src_emb.forward(src, mode), mode);
        for blk in &mut self.encoder {
            h = blk.forward(&h, mode);
        }
        match &mut self.enc_ln {
            Some(ln) => ln.forward(&h, mode),
            None => h,
        }
    }

    /// The logits `(b, m, vocab_size)` of the decoder on `tgt_in` `(b, m)` reading
    /// `memory`.
    pub fn decode(
        &mut self,
        tgt_in: &ArrayD<f32>,
        memory: &ArrayD<f32>,
        mode: Mode,
    ) -> ArrayD<f32> {
        let mut h = self
            .tgt_pos
            .forward(&self.tgt_emb.forward(tgt_in, mode), mode);
        for blk in &mut self.decoder {
            h = blk.forward_cross(&h, memory, DecoderMasks::default(), mode);
        }
        if let Some(ln) = &mut self.dec_ln {
            h = ln.forward(&h, mode);
        }
        self.out.forward(&h, mode)
    }

    /// Teacher-forced logits `(b, m, vocab_size)`.
    pub fn forward(
        &mut self,
        src: &ArrayD<f32>,
        tgt_in: &ArrayD<f32>,
        mode: Mode,
    ) -> ArrayD<f32> {
        let memory = self.encode(src, mode);
        self.decode(tgt_in, &memory, mode)
    }

    /// The backward of [`Seq2Seq::forward`]: accumulates every parameter gradient. The
    /// memory's gradient is the sum of what each decoder block's cross-attention sends
    /// back; it enters the encoder at the top.
    pub fn backward(&mut self, dlogits: &ArrayD<f32>) {
        let mut dh = self.out.backward(dlogits);
        if let Some(ln) = &mut self.dec_ln {
            dh = ln.backward(&dh);
        }
        let mut dmem: Option<ArrayD<f32>> = None;
        for blk in self.decoder.iter_mut().rev() {
            let (dx, dm) = blk.backward_cross(&dh);
            dh = dx;
            dmem = Some(match dmem {
                Some(acc) => acc + dm,
                None => dm,
            });
        }
        self.tgt_emb.backward_params(self.tgt_pos.backward(&dh));
        let Some(mut dh) = dmem else {
            return; // no decoder block: the encoder is not used
        };
        if let Some(ln) = &mut self.enc_ln {
            dh = ln.backward(&dh);
        }
        for blk in self.encoder.iter_mut().rev() {
            dh = blk.backward(&dh);
        }
        self.src_emb.backward_params(self.src_pos.backward(&dh));
    }

    /// One teacher-forced pass: the mean cross-entropy of `tgt_out` `(b, m)` given
    /// `src` and `tgt_in`, with the gradients accumulated (not zeroed first).
    pub fn loss_and_backward(
        &mut self,
        src: &ArrayD<f32>,
        tgt_in: &ArrayD<f32>,
        tgt_out: &[usize],
    ) -> f32 {
        let logits = self.forward(src, tgt_in, Mode::Train);
        let (b, m, v) = (logits.shape()[0], logits.shape()[1], logits.shape()[2]);
        let flat = logits
            .into_shape_with_order(vec![b * m, v])
            .expect("sizes match");
        let (loss, dflat) = softmax_cross_entropy(&flat, tgt_out);
        self.backward(
            &dflat
                .into_shape_with_order(vec![b, m, v])
                .expect("sizes match"),
        );
        loss
    }
}
// ANCHOR_END: seq2seq

impl Module for Seq2Seq {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.src_emb.visit_params(&join(prefix, "src_emb"), f);
        self.tgt_emb.visit_params(&join(prefix, "tgt_emb"), f);
        for (i, blk) in self.encoder.iter_mut().enumerate() {
            blk.visit_params(&join(prefix, &format!("encoder.{i}")), f);
        }
        if let Some(ln) = &mut self.enc_ln {
            ln.visit_params(&join(prefix, "enc_ln"), f);
        }
        for (i, blk) in self.decoder.iter_mut().enumerate() {
            blk.visit_params(&join(prefix, &format!("decoder.{i}")), f);
        }
        if let Some(ln) = &mut self.dec_ln {
            ln.visit_params(&join(prefix, "dec_ln"), f);
        }
        self.out.visit_params(&join(prefix, "out"), f);
    }
}

/// Ids as an `f32` array `(rows, cols)`.
///
/// # Panics
/// If the rows differ in length.
pub fn ids_array(rows: &[Vec<usize>]) -> ArrayD<f32> {
    let cols = rows.first().map_or(0, Vec::len);
    assert!(
        rows.iter().all(|r| r.len() == cols),
        "ids_array: rows of different lengths"
    );
    Array2::from_shape_fn((rows.len(), cols), |(i, j)| rows[i][j] as f32).into_dyn()
}

/// Log-softmax of one row, in `f64`.
fn log_softmax(row: ndarray::ArrayView1<f32>) -> Vec<f64> {
    let m = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let lse = f64::from(m)
        + row
            .iter()
            .map(|&v| f64::from(v - m).exp())
            .sum::<f64>()
            .ln();
    row.iter().map(|&v| f64::from(v) - lse).collect()
}

/// A decoded sequence and its log-probability $\sum_i \log p(y_i \mid y_{<i}, x)$.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// The output tokens.
    pub tokens: Vec<usize>,
    /// Its log-probability under the model.
    pub log_prob: f64,
}

/// The memory of one source repeated `k` times: `(1, n, d)` to `(k, n, d)`.
fn repeat_memory(memory: &ArrayD<f32>, k: usize) -> ArrayD<f32> {
    let m3 = memory.slice(s![0..1, .., ..]);
    let (_, n, d) = m3.dim();
    m3.broadcast((k, n, d))
        .expect("broadcast")
        .to_owned()
        .into_dyn()
}

// ANCHOR: decoding
impl Seq2Seq {
    /// The log-probabilities of the next token after each prefix `(k, i)` (each starting
    /// with `BOS`) given the memory `(k, n, d)`: `k` rows of `vocab_size`.
    fn next_log_probs(
        &mut self,
        prefixes: &[Vec<usize>],
        memory: &ArrayD<f32>,
    ) -> Vec<Vec<f64>> {
        let logits = self.decode(&ids_array(prefixes), memory, Mode::Eval);
        let last = logits.shape()[1] - 1;
        let l3 = logits.into_dimensionality::<ndarray::Ix3>().expect("3-D");
        (0..prefixes.len())
            .map(|r| log_softmax(l3.slice(s![r, last, ..])))
            .collect()
    }

    /// Greedy decoding of a batch of sources of one length `n`: `n` tokens each, the most
    /// likely at every step.
    pub fn greedy(&mut self, src: &[Vec<usize>]) -> Vec<Hypothesis> {
        let n = src.first().map_or(0, Vec::len);
        let memory = self.encode(&ids_array(src), Mode::Eval);
        let mut prefixes: Vec<Vec<usize>> = vec![vec![self.bos()]; src.len()];
        let mut log_probs = vec![0.0; src.len()];
        for _ in 0..n {
            let lp = self.next_log_probs(&prefixes, &memory);
            for ((p, row), total) in prefixes.iter_mut().zip(&lp).zip(&mut log_probs) {
                // the first of equally likely tokens, so ties break the same way as beams
                let (best, &v) =
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, &f64::NEG_INFINITY),
                            |a, b| if b.1 > a.1 { b } else { a },
                        );
                p.push(best);
                *total += v;
            }
        }
        prefixes
            .into_iter()
            .zip(log_probs)
            .map(|(p, log_prob)| Hypothesis {
                tokens: p[1..].to_vec(),
                log_prob,
            })
            .collect()
    }

    /// Beam search of width `width` on one source: the kept hypotheses after `n` steps
    /// (`n` the source's length), best first.
    pub fn beam(&mut self, src: &[usize], width: usize) -> Vec<Hypothesis> {
        assert!(width > 0, "Seq2Seq::beam: width 0");
        let memory = self.encode(&ids_array(&[src.to_vec()]), Mode::Eval);
        let mut beams = vec![(vec![self.bos()], 0.0f64)];
        for _ in 0..src.len() {
            let prefixes: Vec<Vec<usize>> =
                beams.iter().map(|(p, _)| p.clone()).collect();
            let lp = self.next_log_probs(&prefixes, &repeat_memory(&memory, beams.len()));
            let mut cand: Vec<(Vec<usize>, f64)> = vec![];
            for ((p, score), row) in beams.iter().zip(&lp) {
                for (tok, &l) in row.iter().enumerate() {
                    let mut q = p.clone();
                    q.push(tok);
                    cand.push((q, score + l));
                }
            }
            // best first; equal scores by token order, so the result is deterministic
            cand.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            cand.truncate(width);
            beams = cand;
        }
        beams
            .into_iter()
            .map(|(p, log_prob)| Hypothesis {
                tokens: p[1..].to_vec(),
                log_prob,
            })
            .collect()
    }

    /// $\log p(y \mid x)$ of each candidate output `ys` (all of the source's length) by
    /// one teacher-forced pass.
    pub fn sequence_log_probs(&mut self, src: &[usize], ys: &[Vec<usize>]) -> Vec<f64> {
        if ys.is_empty() {
            return vec![];
        }
        let memory = self.encode(&ids_array(&[src.to_vec()]), Mode::Eval);
        let tgt_in: Vec<Vec<usize>> = ys
            .iter()
            .map(|y| {
                let mut t = vec![self.bos()];
                t.extend_from_slice(&y[..y.len() - 1]);
                t
            })
            .collect();
        let logits = self.decode(
            &ids_array(&tgt_in),
            &repeat_memory(&memory, ys.len()),
            Mode::Eval,
        );
        let l3: Array3<f32> = logits.into_dimensionality().expect("3-D");
        ys.iter()
            .enumerate()
            .map(|(r, y)| {
                y.iter()
                    .enumerate()
                    .map(|(i, &tok)| log_softmax(l3.index_axis(Axis(0), r).row(i))[tok])
                    .sum()
            })
            .collect()
    }

    /// The most likely output of the source's length by scoring all $V^n$ of them: only
    /// for tiny vocabularies and lengths.
    pub fn exhaustive(&mut self, src: &[usize]) -> Hypothesis {
        let (v, n) = (self.cfg.vocab_size, src.len());
        let all: Vec<Vec<usize>> = (0..v.pow(n as u32))
            .map(|mut code| {
                let mut y = vec![0; n];
                for slot in y.iter_mut().rev() {
                    *slot = code % v;
                    code /= v;
                }
                y
            })
            .collect();
        let scores = self.sequence_log_probs(src, &all);
        let (best, &log_prob) =
            scores
                .iter()
                .enumerate()
                .fold(
                    (0, &f64::NEG_INFINITY),
                    |a, b| if b.1 > a.1 { b } else { a },
                );
        Hypothesis {
            tokens: all[best].clone(),
            log_prob,
        }
    }
}
// ANCHOR_END: decoding

/// Sources, decoder inputs and targets of a batch, one token list per sequence.
pub type SortBatch = (Vec<Vec<usize>>, Vec<Vec<usize>>, Vec<Vec<usize>>);

// ANCHOR: sort_task
/// A batch of the sorting task: `batch` sources of `len` digits drawn uniformly from
/// `0..vocab_size`, and their sorted versions as decoder inputs (`BOS` first, the last
/// token dropped) and targets.
pub fn sort_batch(
    batch: usize,
    len: usize,
    vocab_size: usize,
    rng: &mut impl Rng,
) -> SortBatch {
    let src: Vec<Vec<usize>> = (0..batch)
        .map(|_| (0..len).map(|_| rng.random_range(0..vocab_size)).collect())
        .collect();
    let tgt: Vec<Vec<usize>> = src
        .iter()
        .map(|s| {
            let mut t = s.clone();
            t.sort_unstable();
            t
        })
        .collect();
    let tgt_in = tgt
        .iter()
        .map(|t| {
            let mut i = vec![vocab_size];
            i.extend_from_slice(&t[..len - 1]);
            i
        })
        .collect();
    (src, tgt_in, tgt)
}
// ANCHOR_END: sort_task

/// How [`train_sort`] trains a model on the sorting task.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SortTraining {
    /// Adam steps.
    pub steps: usize,
    /// Sequences per step (fresh ones every step).
    pub batch_size: usize,
    /// The peak learning rate.
    pub lr: f32,
    /// Steps of linear warm-up from `lr / warmup` to `lr` (0: none).
    pub warmup: usize,
    /// Training lengths `min_len..=max_len`, one length per step, drawn uniformly.
    pub min_len: usize,
    /// The longest training sequence.
    pub max_len: usize,
}

impl SortTraining {
    /// The learning rate of step `i` (from 0): linear warm-up, then constant.
    pub fn lr_at(&self, i: usize) -> f32 {
        if self.warmup == 0 {
            self.lr
        } else {
            self.lr * ((i + 1) as f32 / self.warmup as f32).min(1.0)
        }
    }
}

// ANCHOR: train_sort
/// Trains `model` on fresh batches of the sorting task with Adam and teacher forcing;
/// calls `on_step(step, loss)` after every step. Draws from `rng`.
pub fn train_sort(
    model: &mut Seq2Seq,
    t: &SortTraining,
    rng: &mut impl Rng,
    mut on_step: impl FnMut(usize, f32),
) {
    use crate::optim::Optimizer;
    let mut opt = crate::optim::Adam::new(t.lr);
    let v = model.cfg.vocab_size;
    for i in 0..t.steps {
        let len = rng.random_range(t.min_len..=t.max_len);
        let (src, tgt_in, tgt) = sort_batch(t.batch_size, len, v, &mut *rng);
        model.zero_grad();
        let labels: Vec<usize> = tgt.concat();
        let loss =
            model.loss_and_backward(&ids_array(&src), &ids_array(&tgt_in), &labels);
        opt.lr = t.lr_at(i);
        opt.step(model);
        on_step(i, loss);
    }
}
// ANCHOR_END: train_sort

/// The share of `n` random sources of length `len` (drawn from `rng`) whose decoded
/// output is exactly the sorted source: greedy when `beam_width` is 1, beam search
/// otherwise.
pub fn sort_accuracy(
    model: &mut Seq2Seq,
    n: usize,
    len: usize,
    beam_width: usize,
    rng: &mut impl Rng,
) -> f64 {
    let (src, _, tgt) = sort_batch(n, len, model.cfg.vocab_size, rng);
    let outputs: Vec<Vec<usize>> = if beam_width == 1 {
        model.greedy(&src).into_iter().map(|h| h.tokens).collect()
    } else {
        src.iter()
            .map(|s| model.beam(s, beam_width).swap_remove(0).tokens)
            .collect()
    };
    let right = outputs.iter().zip(&tgt).filter(|(o, t)| o == t).count();
    right as f64 / n as f64
}

/// The gradient norm of each block (`encoder.{i}`, `decoder.{i}`) after one
/// teacher-forced batch of length `len` drawn from `rng`: where the gradient is large and
/// where it is small, at the model's current weights.
pub fn block_grad_norms(
    model: &mut Seq2Seq,
    batch_size: usize,
    len: usize,
    rng: &mut impl Rng,
) -> Vec<(String, f64)> {
    let (src, tgt_in, tgt) = sort_batch(batch_size, len, model.cfg.vocab_size, rng);
    model.zero_grad();
    model.loss_and_backward(&ids_array(&src), &ids_array(&tgt_in), &tgt.concat());
    let mut norms: Vec<(String, f64)> = vec![];
    model.visit_params("", &mut |name, p| {
        let mut parts = name.split('.');
        let (Some(stack), Some(i)) = (parts.next(), parts.next()) else {
            return;
        };
        if stack != "encoder" && stack != "decoder" {
            return;
        }
        let block = format!("{stack}.{i}");
        let sq: f64 = p.grad.iter().map(|&g| f64::from(g).powi(2)).sum();
        match norms.last_mut() {
            Some((b, s)) if *b == block => *s += sq,
            _ => norms.push((block, sq)),
        }
    });
    model.zero_grad();
    norms.into_iter().map(|(b, s)| (b, s.sqrt())).collect()
}
