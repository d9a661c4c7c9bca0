//! Generation from a [`Gpt`], with and without a KV cache.
//!
//! # What the cache saves
//!
//! To sample token $s + 1$ the model needs the logits at position $s$. Without a cache
//! that is a forward pass over the whole window of $s$ tokens: per block $12 d^2$
//! multiply-adds per token for the weights and $d\,s(s+1)$ for the attention, so about
//! $s\,(12 L d^2 + V d) + L d s^2$ for one new token, and a sum over $s$ of that,
//! cubic in the length, for a whole sample. But the keys and values of positions
//! $1..s-1$ do not change when token $s$ arrives (causality: nothing at position $j$
//! depends on later tokens). A **KV cache** keeps them, one $(c, d)$ matrix of keys and
//! one of values per block, and the new token costs one row of every product:
//! $12 L d^2 + V d$ for the weights and $2 L d s$ for attending to the $s$ cached
//! positions, linear in $s$ instead of quadratic.
//!
//! # The window
//!
//! The model has $c$ position embeddings and reads at most $c$ tokens. When the text
//! outgrows them, both paths drop the oldest tokens and keep the last $\lceil c/2
//! \rceil$, so the uncached model reads a window that grows again from there and the
//! cached one refills its cache from that window: the two see the same tokens at the
//! same positions and give the same logits, and the cache is refilled once every
//! $c/2$ tokens rather than every token.

use ndarray::{s, Array1, Array2, ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::kernels::layer_norm;
use super::{mat, Gpt, Norm};
use crate::gemm::sgemm;
use crate::seq::text::{sample, SampleSpec};

/// How the next token is drawn: temperature and top-k ([`SampleSpec`]).
pub type Sampling = SampleSpec;

// ANCHOR: kv_cache
/// The keys and values of every block for the tokens read so far.
///
/// # Shapes
/// - `keys[l]`, `values[l]`: `(c, d)`, the first `len` rows filled; head $h$ at columns
///   `h d_k..(h+1) d_k`.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Keys per block.
    pub keys: Vec<Array2<f32>>,
    /// Values per block.
    pub values: Vec<Array2<f32>>,
    /// Positions filled.
    pub len: usize,
}
// ANCHOR_END: kv_cache

/// Layer norm of one row (a copy).
fn norm_row(x: &Array1<f32>, g: &ArrayD<f32>) -> Array1<f32> {
    let d = x.len();
    let (mut xhat, mut rstd, mut y) = (vec![0.0; d], [0.0f32], vec![0.0; d]);
    layer_norm(
        x.as_slice().expect("contiguous"),
        g.as_slice().expect("contiguous"),
        &mut xhat,
        &mut rstd,
        &mut y,
    );
    Array1::from(y)
}

/// The row `x W^T` of one input row (`w`: `(out, in)`).
fn linear_row(x: &Array1<f32>, w: &ArrayD<f32>) -> Array1<f32> {
    let w = w
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("matrix");
    let mut y = Array2::zeros((1, w.nrows()));
    sgemm(
        1.0,
        &x.view().insert_axis(ndarray::Axis(0)),
        &w.t(),
        0.0,
        &mut y.view_mut(),
    );
    y.remove_axis(ndarray::Axis(0))
}

impl Gpt {
    // ANCHOR: prefill
    /// Reads `ids` (at most the context length) in one forward pass and returns the
    /// cache of their keys and values and the logits of the last position.
    pub fn prefill(&mut self, ids: &[usize]) -> (KvCache, Vec<f32>) {
        let (c, d) = (self.cfg.seq_len, self.cfg.d_model);
        assert!(
            !ids.is_empty() && ids.len() <= c,
            "Gpt::prefill: {} ids with context {c}",
            ids.len()
        );
        let t = ids.len();
        self.forward_ids(ids, 1, t);
        let acts = self.acts.as_ref().expect("forward ran");
        let mut cache = KvCache {
            keys: vec![Array2::zeros((c, d)); self.blocks.len()],
            values: vec![Array2::zeros((c, d)); self.blocks.len()],
            len: t,
        };
        for (l, a) in acts.blocks.iter().enumerate() {
            // qkv (t, 3d): [Q | K | V]
            cache.keys[l]
                .slice_mut(s![0..t, ..])
                .assign(&a.qkv.slice(s![.., d..2 * d]));
            cache.values[l]
                .slice_mut(s![0..t, ..])
                .assign(&a.qkv.slice(s![.., 2 * d..]));
        }
        let logits = acts.logits.row(t - 1).to_vec();
        (cache, logits)
    }
    // ANCHOR_END: prefill

    // ANCHOR: step_cached
    /// Reads one more token `id` at position `cache.len`, attending to the cached keys
    /// and values, appends its own, and returns the logits of its position. Panics when
    /// the cache is full.
    pub fn step_cached(&self, cache: &mut KvCache, id: usize) -> Vec<f32> {
        let cfg = &self.cfg;
        let (pos, d, heads) = (cache.len, cfg.d_model, cfg.n_heads);
        assert!(
            pos < cfg.seq_len && id < cfg.vocab_size,
            "Gpt::step_cached: position {pos} of {}, token {id} of {}",
            cfg.seq_len,
            cfg.vocab_size
        );
        let dk = d / heads;
        let scale = 1.0 / (dk as f32).sqrt();
        let pre = cfg.norm == Norm::Pre;
        let mut x = mat(&self.wte).row(id).to_owned();
        if let Some(p) = &self.wpe {
            x += &mat(p).row(pos);
        }
        for (l, p) in self.blocks.iter().enumerate() {
            let h = if pre {
                norm_row(&x, &p.ln1.value)
            } else {
                x.clone()
            };
            let qkv = linear_row(&h, &p.qkv.value);
            cache.keys[l].row_mut(pos).assign(&qkv.slice(s![d..2 * d]));
            cache.values[l].row_mut(pos).assign(&qkv.slice(s![2 * d..]));
            let mut o = Array1::<f32>::zeros(d);
            let mut w = vec![0.0f32; pos + 1];
            for hd in 0..heads {
                let q = qkv.slice(s![hd * dk..(hd + 1) * dk]);
                // scores against the pos + 1 cached keys, then their softmax
                for (j, wj) in w.iter_mut().enumerate() {
                    *wj = scale
                        * q.dot(&cache.keys[l].slice(s![j, hd * dk..(hd + 1) * dk]));
                }
                let m = w.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let mut sum = 0.0;
                w.iter_mut().for_each(|v| {
                    *v = (*v - m).exp();
                    sum += *v
                });
                let mut oh = o.slice_mut(s![hd * dk..(hd + 1) * dk]);
                for (j, &wj) in w.iter().enumerate() {
                    oh.scaled_add(
                        wj / sum,
                        &cache.values[l].slice(s![j, hd * dk..(hd + 1) * dk]),
                    );
                }
            }
            let y = linear_row(&o, &p.proj.value);
            x = if cfg.residual { x + y } else { y };
            if !pre {
                x = norm_row(&x, &p.ln1.value);
            }
            let h = if pre {
                norm_row(&x, &p.ln2.value)
            } else {
                x.clone()
            };
            let mut f = linear_row(&h, &p.fc.value);
            let mut g = Array1::zeros(f.len());
            super::kernels::gelu(
                f.as_slice().expect("contiguous"),
                g.as_slice_mut().expect("contiguous"),
            );
            f = linear_row(&g, &p.fc_proj.value);
            x = if cfg.residual { x + f } else { f };
            if !pre {
                x = norm_row(&x, &p.ln2.value);
            }
        }
        cache.len += 1;
        let hf = match &self.ln_f {
            Some(g) => norm_row(&x, &g.value),
            None => x,
        };
        linear_row(&hf, &self.wte.value).to_vec()
    }
    // ANCHOR_END: step_cached

    /// The logits of the last position of `ids` by a full forward pass.
    pub fn last_logits(&mut self, ids: &[usize]) -> Vec<f32> {
        let x = ArrayD::from_shape_vec(
            IxDyn(&[1, ids.len()]),
            ids.iter().map(|&i| i as f32).collect(),
        )
        .expect("1 x t ids");
        let logits = self.logits(&x);
        logits.row(logits.nrows() - 1).to_vec()
    }

    /// The first token of the window the model reads of `tokens`, given the previous
    /// window start: moved up to keep the last $\lceil c/2 \rceil$ tokens once more than
    /// $c$ would be read.
    fn window_start(&self, tokens: usize, start: usize) -> usize {
        let c = self.cfg.seq_len;
        if tokens - start > c {
            tokens - c.div_ceil(2)
        } else {
            start
        }
    }

    // ANCHOR: generate
    /// `n` tokens generated after `prompt`, each drawn by `sampling` from a generator
    /// seeded with `seed`, with the KV cache ([`Gpt::prefill`], [`Gpt::step_cached`]).
    /// Panics on an empty prompt or a token outside the vocabulary.
    pub fn generate(
        &mut self,
        prompt: &[usize],
        n: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Vec<usize> {
        assert!(!prompt.is_empty(), "Gpt::generate: an empty prompt");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut tokens = prompt.to_vec();
        let mut start = self.window_start(tokens.len(), 0);
        let (mut cache, mut logits) = self.prefill(&tokens[start..]);
        for i in 0..n {
            let next = sample(&logits, sampling, &mut rng);
            tokens.push(next);
            if i + 1 == n {
                break; // nothing reads the last token's logits
            }
            let moved = self.window_start(tokens.len(), start);
            if moved != start {
                start = moved;
                (cache, logits) = self.prefill(&tokens[start..]);
            } else {
                logits = self.step_cached(&mut cache, next);
            }
        }
        tokens.split_off(prompt.len())
    }

    /// [`Gpt::generate`] without a cache: a full forward pass over the window for every
    /// new token. The same tokens, at a cost quadratic in the window.
    pub fn generate_uncached(
        &mut self,
        prompt: &[usize],
        n: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Vec<usize> {
        assert!(
            !prompt.is_empty(),
            "Gpt::generate_uncached: an empty prompt"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut tokens = prompt.to_vec();
        let mut start = 0;
        for _ in 0..n {
            start = self.window_start(tokens.len(), start);
            let logits = self.last_logits(&tokens[start..]);
            tokens.push(sample(&logits, sampling, &mut rng));
        }
        tokens.split_off(prompt.len())
    }
    // ANCHOR_END: generate
}
