//! A GPT from scratch: a decoder-only Transformer language model with a hand-written
//! backward pass, built for speed on the CPU, and its generation with a KV cache.
//!
//! # The model
//!
//! Token ids $x_1..x_t$ become vectors $h^0_s = E_{x_s} + P_s$ (a token embedding
//! $E \in \mathbb R^{V \times d}$ and a learned position embedding $P \in \mathbb
//! R^{c \times d}$, $c$ the context length). Each of $L$ blocks updates this **residual
//! stream** twice, pre-LN:
//!
//! $$h \leftarrow h + \operatorname{Attn}(\operatorname{LN}_1(h)), \qquad h \leftarrow h
//! + W_2\, \operatorname{GELU}(W_1 \operatorname{LN}_2(h)),$$
//!
//! with causal multi-head self-attention (one fused product $[Q \mid K \mid V] =
//! \operatorname{LN}_1(h)\, W_{qkv}^\top$, heads of width $d_k = d / H$, an output
//! projection $W_o$) and an MLP of width $4d$. A final $\operatorname{LN}_f$ and the
//! **tied** head $z = \operatorname{LN}_f(h)\, E^\top$ give the logits of the next token
//! at every position. Layer norms have a weight and no bias, and the linear maps no bias,
//! as in the reference configuration ([`GptConfig::reference`]).
//!
//! **Parameters.** $V d + c d$ for the embeddings, per block $2d$ (two layer-norm
//! weights) $+ 3d^2 + d^2$ (attention) $+ 8 d^2$ (MLP), and $d$ for $\operatorname{LN}_f$:
//! $Vd + cd + L(12 d^2 + 2 d) + d$ ([`GptConfig::n_params`]). The head adds nothing: it
//! reuses $E$.
//!
//! # One forward trains every position
//!
//! The causal mask lets query $s$ attend to keys $1..s$ only, so the output at position
//! $s$ depends on $x_1..x_s$ alone, and the logits at $s$ are a prediction of $x_{s+1}$
//! that has not seen it. One forward pass over a window of $t$ tokens therefore gives
//! $t$ honest predictions, and the loss is the cross-entropy averaged over all of them.
//! The backward pass of the mask is nothing: masked weights are zero and receive no
//! gradient, which is why the kernels ([`kernels::causal_attention`]) compute only the
//! lower triangle.
//!
//! # Backward
//!
//! Every map is a product, a layer norm, a GELU, a softmax or an addition, and the
//! backward pass runs them in reverse. For a linear map $Y = X W^\top$ over the $n = b t$
//! rows, $\bar W \mathrel{+}= \bar Y^\top X$ and $\bar X = \bar Y W$; a residual
//! $h + f(h)$ passes $\bar h$ through unchanged and adds $f$'s input gradient; the tied
//! embedding receives two gradients, $\bar z^\top \operatorname{LN}_f(h)$ from the head
//! and the rows of $\bar h^0$ at the input ids.
//!
//! # Ablations
//!
//! [`GptConfig`] switches off the position embedding (the model then cannot tell order,
//! except through the mask), moves the layer norms after the residual additions
//! (post-LN: $h \leftarrow \operatorname{LN}_1(h + \operatorname{Attn}(h))$, and no
//! $\operatorname{LN}_f$), uses any number of heads, or drops the residual connections
//! ($h \leftarrow \operatorname{Attn}(\operatorname{LN}_1(h))$).
//!
//! # Generation and the KV cache
//!
//! See [`generate`](mod@generate): a model that has read $s$ tokens keeps the keys and
//! values of every layer, and the next token costs one row of every product instead of
//! a forward pass over the whole window.

use ndarray::{s, Array2, Array4, ArrayD, ArrayView2, Axis, Ix2, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::gemm::sgemm;
use crate::nn::{join, Layer, Mode, Module, Param};
use crate::rnn::profile::time;
use crate::seq::text::{cross_entropy, Batch};

pub mod candle_twin;
pub mod generate;
pub mod kernels;
pub mod train;

pub use generate::{KvCache, Sampling};
pub use train::{train_step, GptOptimizer, StepStats};

use kernels::{
    causal_attention, causal_attention_backward, gelu_backward, gelu_keep_slope,
    layer_norm, layer_norm_backward,
};

// ANCHOR: config
/// Where the layer norms of a block stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// Before each sub-layer, inside the residual branch, with a final layer norm.
    Pre,
    /// After each residual addition, no final layer norm.
    Post,
}

/// The sizes of a [`Gpt`] and its ablation switches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Tokens in the vocabulary, $V$.
    pub vocab_size: usize,
    /// Blocks, $L$.
    pub n_layers: usize,
    /// Attention heads per block, $H$.
    pub n_heads: usize,
    /// Width of the residual stream, $d$.
    pub d_model: usize,
    /// The longest window the model reads, $c$ (rows of the position embedding).
    pub seq_len: usize,
    /// Learned position embeddings (off: the ablation without positions).
    pub positions: bool,
    /// Pre-LN or post-LN.
    pub norm: Norm,
    /// Residual connections around each sub-layer (off: the ablation without them).
    pub residual: bool,
}

impl GptConfig {
    /// The reference configuration: 4 blocks, 4 heads, $d = 128$, context 128, with
    /// positions, pre-LN and residuals.
    pub fn reference(vocab_size: usize) -> Self {
        GptConfig {
            vocab_size,
            n_layers: 4,
            n_heads: 4,
            d_model: 128,
            seq_len: 128,
            positions: true,
            norm: Norm::Pre,
            residual: true,
        }
    }

    /// The configuration of the gradient checks: vocabulary 11, 2 blocks, 2 heads,
    /// $d = 8$, context 6.
    pub fn tiny() -> Self {
        GptConfig {
            vocab_size: 11,
            n_layers: 2,
            n_heads: 2,
            d_model: 8,
            seq_len: 6,
            ..Self::reference(11)
        }
    }

    /// The number of scalar parameters, counted from the sizes:
    /// $Vd + cd + L(12d^2 + 2d) + d$ (without $cd$ when there are no positions, without
    /// the last $d$ when post-LN).
    pub fn n_params(&self) -> usize {
        let d = self.d_model;
        let pos = if self.positions { self.seq_len * d } else { 0 };
        let ln_f = if self.norm == Norm::Pre { d } else { 0 };
        self.vocab_size * d + pos + self.n_layers * (12 * d * d + 2 * d) + ln_f
    }

    /// Multiply-adds of the forward pass per token of a window of `t` tokens, by part:
    /// the products with weights ($12 d^2$ per block and $V d$ for the head) and the
    /// attention products (on average $(t + 1)/2$ keys per query, times $2d$ for
    /// $QK^\top$ and $AV$, per block).
    pub fn forward_macs_per_token(&self, t: usize) -> [(&'static str, f64); 3] {
        let (d, l) = (self.d_model as f64, self.n_layers as f64);
        [
            ("weights", l * 12.0 * d * d),
            ("attention", l * 2.0 * d * (t as f64 + 1.0) / 2.0),
            ("head", self.vocab_size as f64 * d),
        ]
    }

    /// Multiply-adds to get the logits of the next token when `s` tokens have been read
    /// (the new one included): with the KV cache one row of every product,
    /// $L(12 d^2 + 2 d s) + V d$; without, a forward pass over all `s` tokens,
    /// $s\,(12 L d^2 + V d) + L d\, s (s + 1)$ (query $i$ attends to $i$ keys, twice:
    /// scores and values).
    pub fn next_token_macs(&self, s: usize, cached: bool) -> f64 {
        let (d, l, v, s) = (
            self.d_model as f64,
            self.n_layers as f64,
            self.vocab_size as f64,
            s as f64,
        );
        if cached {
            l * (12.0 * d * d + 2.0 * d * s) + v * d
        } else {
            s * (12.0 * l * d * d + v * d) + l * d * s * (s + 1.0)
        }
    }

    /// FLOPs of a training step per token on windows of `t`: three times the forward
    /// multiply-adds (forward, and the two products of the backward), 2 FLOPs each.
    pub fn train_flops_per_token(&self, t: usize) -> f64 {
        6.0 * self
            .forward_macs_per_token(t)
            .iter()
            .map(|(_, m)| m)
            .sum::<f64>()
    }

    /// Panics with a message naming the sizes when they do not make a model.
    fn check(&self) {
        assert!(
            self.vocab_size > 0 && self.n_layers > 0 && self.seq_len > 0,
            "GptConfig: empty vocabulary, no blocks or no context in {self:?}"
        );
        assert!(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            "GptConfig: d_model = {} not divisible by {} heads",
            self.d_model,
            self.n_heads
        );
    }
}
// ANCHOR_END: config

/// The parameters of one block: two layer-norm weights and four weight matrices
/// (PyTorch's `(out, in)` layout).
#[derive(Clone, Debug)]
pub struct Block {
    /// Weight of the layer norm before (pre-LN) or after (post-LN) attention, `(d,)`.
    pub ln1: Param,
    /// The fused $[W_q; W_k; W_v]$, `(3d, d)`.
    pub qkv: Param,
    /// The output projection $W_o$, `(d, d)`.
    pub proj: Param,
    /// Weight of the second layer norm, `(d,)`.
    pub ln2: Param,
    /// $W_1$, `(4d, d)`.
    pub fc: Param,
    /// $W_2$, `(d, 4d)`.
    pub fc_proj: Param,
}

impl Module for Block {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "ln1.weight"), &mut self.ln1);
        f(&join(prefix, "attn.qkv.weight"), &mut self.qkv);
        f(&join(prefix, "attn.proj.weight"), &mut self.proj);
        f(&join(prefix, "ln2.weight"), &mut self.ln2);
        f(&join(prefix, "mlp.fc.weight"), &mut self.fc);
        f(&join(prefix, "mlp.proj.weight"), &mut self.fc_proj);
    }
}

/// A layer norm's saved values: $\hat x$, $1/\sigma$ and the output.
#[derive(Clone, Debug, Default)]
struct NormActs {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
    y: Vec<f32>,
}

impl NormActs {
    fn new(n: usize, d: usize) -> Self {
        NormActs {
            xhat: vec![0.0; n * d],
            rstd: vec![0.0; n],
            y: vec![0.0; n * d],
        }
    }
}

/// What the backward pass needs of one block, over the `n = b t` rows.
#[derive(Clone, Debug)]
struct BlockActs {
    /// The block's input, `(n, d)`.
    x_in: Array2<f32>,
    ln1: NormActs,
    /// `(n, 3d)`.
    qkv: Array2<f32>,
    /// `b * heads * t * t`.
    att: Vec<f32>,
    /// Merged heads before $W_o$, `(n, d)`.
    att_out: Array2<f32>,
    /// The stream after attention (and its norm, post-LN), `(n, d)`.
    x_mid: Array2<f32>,
    ln2: NormActs,
    /// The slope of the GELU at its input (the input itself until the GELU ran), and its
    /// output, `(n, 4d)`.
    f: Array2<f32>,
    g: Array2<f32>,
}

/// Every buffer of a forward and backward pass at one batch shape, kept across steps.
#[derive(Clone, Debug)]
struct Acts {
    b: usize,
    t: usize,
    ids: Vec<usize>,
    blocks: Vec<BlockActs>,
    /// The stream after the last block, `(n, d)`.
    x_out: Array2<f32>,
    ln_f: NormActs,
    /// `(n, V)`: logits after a forward, their gradient after a loss.
    logits: Array2<f32>,
    /// Scratch for gradients: `(n, d)` three times, `(n, 4d)`, `(n, 3d)`.
    dx: Array2<f32>,
    dtmp: Array2<f32>,
    dtmp2: Array2<f32>,
    dwide: Array2<f32>,
    dqkv: Array2<f32>,
}

impl Acts {
    fn new(cfg: &GptConfig, b: usize, t: usize) -> Self {
        let (n, d, h) = (b * t, cfg.d_model, cfg.n_heads);
        let z = |w: usize| Array2::<f32>::zeros((n, w));
        let blocks = (0..cfg.n_layers)
            .map(|_| BlockActs {
                x_in: z(d),
                ln1: NormActs::new(n, d),
                qkv: z(3 * d),
                att: vec![0.0; b * h * t * t],
                att_out: z(d),
                x_mid: z(d),
                ln2: NormActs::new(n, d),
                f: z(4 * d),
                g: z(4 * d),
            })
            .collect();
        Acts {
            b,
            t,
            ids: vec![0; n],
            blocks,
            x_out: z(d),
            ln_f: NormActs::new(n, d),
            logits: z(cfg.vocab_size),
            dx: z(d),
            dtmp: z(d),
            dtmp2: z(d),
            dwide: z(4 * d),
            dqkv: z(3 * d),
        }
    }
}

/// A 2-d view of a matrix parameter.
fn mat(p: &Param) -> ArrayView2<'_, f32> {
    p.value
        .view()
        .into_dimensionality::<Ix2>()
        .expect("a matrix parameter")
}

/// `(rows, cols)` view of a flat buffer.
fn view(v: &[f32], cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((v.len() / cols, cols), v).expect("whole rows")
}

// ANCHOR: gpt
/// A decoder-only Transformer language model (see the [module docs](self)).
///
/// # Shapes
/// - input: token ids `(b, t)`, `t <= seq_len`;
/// - output: logits `(b, t, V)` ([`Layer::forward`]) or rows `(b t, V)`
///   ([`Gpt::logits`]);
/// - parameters: `wte.weight` `(V, d)`, `wpe.weight` `(c, d)`, per block `i`
///   `blocks.i.{ln1, ln2}.weight` `(d,)`, `blocks.i.attn.qkv.weight` `(3d, d)`,
///   `blocks.i.attn.proj.weight` `(d, d)`, `blocks.i.mlp.fc.weight` `(4d, d)`,
///   `blocks.i.mlp.proj.weight` `(d, 4d)`, and `ln_f.weight` `(d,)`.
#[derive(Clone, Debug)]
pub struct Gpt {
    /// The sizes and switches.
    pub cfg: GptConfig,
    /// Token embedding $E$, also the head, `(V, d)`.
    pub wte: Param,
    /// Position embedding $P$, `(c, d)` (none without positions).
    pub wpe: Option<Param>,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Weight of the final layer norm, `(d,)` (none when post-LN).
    pub ln_f: Option<Param>,
    acts: Option<Acts>,
}

impl Gpt {
    /// A model of `cfg` initialised as GPT-2 is, from `seed`: weights normal with std
    /// 0.02, the two projections that write into the residual stream with std
    /// $0.02/\sqrt{2L}$ (so the stream's variance does not grow with depth), layer-norm
    /// weights 1.
    pub fn new(cfg: &GptConfig, seed: u64) -> Self {
        cfg.check();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = |shape: &[usize], std: f32| {
            Param::new(ArrayD::from_shape_fn(IxDyn(shape), |_| {
                let z: f32 = StandardNormal.sample(&mut rng);
                z * std
            }))
        };
        let (v, d, c) = (cfg.vocab_size, cfg.d_model, cfg.seq_len);
        let out_std = 0.02 / (2.0 * cfg.n_layers as f32).sqrt();
        let wte = normal(&[v, d], 0.02);
        let wpe = cfg.positions.then(|| normal(&[c, d], 0.02));
        let ones = || Param::new(ArrayD::ones(IxDyn(&[d])));
        let blocks = (0..cfg.n_layers)
            .map(|_| Block {
                ln1: ones(),
                qkv: normal(&[3 * d, d], 0.02),
                proj: normal(&[d, d], out_std),
                ln2: ones(),
                fc: normal(&[4 * d, d], 0.02),
                fc_proj: normal(&[d, 4 * d], out_std),
            })
            .collect();
        let ln_f = (cfg.norm == Norm::Pre).then(ones);
        Gpt {
            cfg: cfg.clone(),
            wte,
            wpe,
            blocks,
            ln_f,
            acts: None,
        }
    }

    /// The logits rows `(b t, V)` of the ids `(b, t)` (row `i t + s` predicts the token
    /// after `x[i, s]`), keeping what [`Gpt::backward_logits`] needs.
    pub fn logits(&mut self, x: &ArrayD<f32>) -> &Array2<f32> {
        assert!(
            x.ndim() == 2 && x.shape()[1] >= 1,
            "Gpt::logits: ids must be (b, t), got {:?}",
            x.shape()
        );
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let ids: Vec<usize> = x.iter().map(|&v| v as usize).collect();
        self.forward_ids(&ids, b, t);
        &self.acts.as_ref().expect("forward ran").logits
    }

    /// The mean cross-entropy of a batch (no gradient kept for later).
    pub fn loss(&mut self, batch: &Batch) -> f32 {
        self.logits(&batch.x);
        let acts = self.acts.as_mut().expect("forward ran");
        cross_entropy(&mut acts.logits, &batch.targets)
    }

    /// The mean of [`Gpt::loss`] over `batches`, in `f64`.
    pub fn mean_loss(&mut self, batches: &[Batch]) -> f64 {
        let total: f64 = batches.iter().map(|b| f64::from(self.loss(b))).sum();
        total / batches.len().max(1) as f64
    }

    /// The attention weights of every block on the ids `(b, t)`: one `(b, heads, t, t)`
    /// array per block, `[i, h, q, k]` the weight query `q` of sequence `i` gives key `k`
    /// in head `h` (zero for `k > q`, each row summing to one).
    pub fn attention_weights(&mut self, x: &ArrayD<f32>) -> Vec<Array4<f32>> {
        self.logits(x);
        let acts = self.acts.as_ref().expect("forward ran");
        let (b, t, h) = (acts.b, acts.t, self.cfg.n_heads);
        acts.blocks
            .iter()
            .map(|a| {
                Array4::from_shape_vec((b, h, t, t), a.att.clone())
                    .expect("b * heads * t * t weights")
            })
            .collect()
    }

    /// Forward over `ids` (`b * t`, batch-major) into the kept buffers.
    fn forward_ids(&mut self, ids: &[usize], b: usize, t: usize) {
        let cfg = &self.cfg;
        assert!(
            t <= cfg.seq_len && ids.len() == b * t,
            "Gpt: {} ids as (b = {b}, t = {t}) with context {}",
            ids.len(),
            cfg.seq_len
        );
        for &id in ids {
            assert!(
                id < cfg.vocab_size,
                "Gpt: token id {id} outside the vocabulary of {}",
                cfg.vocab_size
            );
        }
        if self.acts.as_ref().is_none_or(|a| a.b != b || a.t != t) {
            self.acts = Some(Acts::new(cfg, b, t));
        }
        let acts = self.acts.as_mut().expect("just made");
        acts.ids.copy_from_slice(ids);
        let (d, heads) = (cfg.d_model, cfg.n_heads);
        let wte = mat(&self.wte);
        // h0 = E[x] + P[s], row i t + s
        time("embedding", || {
            let x0 = if let Some(first) = acts.blocks.first_mut() {
                &mut first.x_in
            } else {
                &mut acts.x_out
            };
            for (r, mut row) in x0.axis_iter_mut(Axis(0)).enumerate() {
                row.assign(&wte.row(ids[r]));
                if let Some(p) = &self.wpe {
                    row += &mat(p).row(r % t);
                }
            }
        });
        let nl = self.blocks.len();
        for l in 0..nl {
            let (done, rest) = acts.blocks.split_at_mut(l + 1);
            let a = &mut done[l];
            let next_in = match rest.first_mut() {
                Some(next) => &mut next.x_in,
                None => &mut acts.x_out,
            };
            block_forward(&self.blocks[l], cfg, a, next_in, b, t, d, heads);
        }
        let hf: ArrayView2<f32> = match &self.ln_f {
            Some(g) => {
                let ln = &mut acts.ln_f;
                time("layer norm", || {
                    layer_norm(
                        acts.x_out.as_slice().expect("row-major"),
                        g.value.as_slice().expect("contiguous"),
                        &mut ln.xhat,
                        &mut ln.rstd,
                        &mut ln.y,
                    )
                });
                view(&acts.ln_f.y, d)
            }
            None => acts.x_out.view(),
        };
        // z = LN_f(h) E^T, the tied head
        time("head", || {
            sgemm(1.0, &hf, &wte.t(), 0.0, &mut acts.logits.view_mut())
        });
    }

    /// The backward pass from `dlogits` `(b t, V)` of the last forward: accumulates
    /// every parameter gradient.
    pub fn backward_logits(&mut self, dlogits: &Array2<f32>) {
        let acts = self
            .acts
            .as_mut()
            .expect("Gpt::backward_logits before a forward");
        assert_eq!(
            dlogits.dim(),
            acts.logits.dim(),
            "Gpt::backward_logits: dlogits {:?} vs logits {:?}",
            dlogits.shape(),
            acts.logits.shape()
        );
        if !std::ptr::eq(dlogits, &acts.logits) {
            acts.logits.assign(dlogits);
        }
        self.backward_kept();
    }

    /// [`Gpt::backward_logits`] with the gradient already in the kept logits buffer
    /// (where [`cross_entropy`] writes it).
    fn backward_kept(&mut self) {
        let cfg = &self.cfg;
        let acts = self.acts.as_mut().expect("a forward pass");
        let (t, d) = (acts.t, cfg.d_model);
        let wte = self
            .wte
            .value
            .view()
            .into_dimensionality::<Ix2>()
            .expect("(V, d)");
        let mut dwte = self
            .wte
            .grad
            .view_mut()
            .into_dimensionality::<Ix2>()
            .expect("(V, d)");
        let hf: ArrayView2<f32> = match &self.ln_f {
            Some(_) => view(&acts.ln_f.y, d),
            None => acts.x_out.view(),
        };
        // dE += dz^T LN_f(h); d LN_f(h) = dz E
        time("head backward", || {
            sgemm(1.0, &acts.logits.t(), &hf, 1.0, &mut dwte);
            sgemm(
                1.0,
                &acts.logits.view(),
                &wte,
                0.0,
                &mut acts.dtmp.view_mut(),
            );
        });
        match &mut self.ln_f {
            Some(g) => time("layer norm backward", || {
                let ln = &acts.ln_f;
                layer_norm_backward(
                    acts.dtmp.as_slice().expect("row-major"),
                    &ln.xhat,
                    &ln.rstd,
                    g.value.as_slice().expect("contiguous"),
                    g.grad.as_slice_mut().expect("contiguous"),
                    acts.dx.as_slice_mut().expect("row-major"),
                    false,
                )
            }),
            None => acts.dx.assign(&acts.dtmp),
        }
        for l in (0..self.blocks.len()).rev() {
            block_backward(&mut self.blocks[l], cfg, acts, l, t);
        }
        // dE[x] += dh0, dP[s] += dh0 summed over the batch
        time("embedding backward", || {
            for (r, row) in acts.dx.axis_iter(Axis(0)).enumerate() {
                let mut e = dwte.row_mut(acts.ids[r]);
                e += &row;
                if let Some(p) = &mut self.wpe {
                    let mut g = p
                        .grad
                        .view_mut()
                        .into_dimensionality::<Ix2>()
                        .expect("(c, d)");
                    let mut pr = g.row_mut(r % t);
                    pr += &row;
                }
            }
        });
    }

    /// Forward, cross-entropy over every position and backward: accumulates the
    /// gradients of the batch's mean loss and returns that loss.
    pub fn loss_and_backward(&mut self, batch: &Batch) -> f32 {
        self.logits(&batch.x);
        let acts = self.acts.as_mut().expect("forward ran");
        let loss = time("softmax + cross-entropy", || {
            cross_entropy(&mut acts.logits, &batch.targets)
        });
        self.backward_kept();
        loss
    }
}
// ANCHOR_END: gpt

/// A layer norm of `x` into `ln` with weight `g`.
fn norm_into(x: &Array2<f32>, g: &Param, ln: &mut NormActs) {
    time("layer norm", || {
        layer_norm(
            x.as_slice().expect("row-major"),
            g.value.as_slice().expect("contiguous"),
            &mut ln.xhat,
            &mut ln.rstd,
            &mut ln.y,
        )
    });
}

// ANCHOR: block_forward
/// One block forward from `a.x_in` into `out`, keeping its activations in `a`.
#[allow(clippy::too_many_arguments)]
fn block_forward(
    p: &Block,
    cfg: &GptConfig,
    a: &mut BlockActs,
    out: &mut Array2<f32>,
    b: usize,
    t: usize,
    d: usize,
    heads: usize,
) {
    let pre = cfg.norm == Norm::Pre;
    // Attention's input: LN1(x) pre-LN, x itself post-LN.
    if pre {
        norm_into(&a.x_in, &p.ln1, &mut a.ln1);
    }
    let att_in = if pre {
        view(&a.ln1.y, d)
    } else {
        a.x_in.view()
    };
    time("qkv projection", || {
        sgemm(1.0, &att_in, &mat(&p.qkv).t(), 0.0, &mut a.qkv.view_mut())
    });
    time("attention", || {
        // one sequence per task: its rows of qkv and att_out, its heads' weights
        let qkv = &a.qkv;
        a.att
            .par_chunks_mut(heads * t * t)
            .zip(a.att_out.axis_chunks_iter_mut(Axis(0), t).into_par_iter())
            .enumerate()
            .for_each(|(i, (att, out))| {
                causal_attention(qkv.slice(s![i * t..(i + 1) * t, ..]), heads, att, out)
            });
    });
    debug_assert_eq!(a.att.len(), b * heads * t * t);
    // x_mid = x + att_out W_o^T (post-LN: then LN1)
    time("attention projection", || {
        if cfg.residual {
            a.x_mid.assign(&a.x_in);
        }
        let beta = if cfg.residual { 1.0 } else { 0.0 };
        sgemm(
            1.0,
            &a.att_out.view(),
            &mat(&p.proj).t(),
            beta,
            &mut a.x_mid.view_mut(),
        );
    });
    if !pre {
        norm_into(&a.x_mid, &p.ln1, &mut a.ln1);
        a.x_mid
            .as_slice_mut()
            .expect("row-major")
            .copy_from_slice(&a.ln1.y);
    }
    if pre {
        norm_into(&a.x_mid, &p.ln2, &mut a.ln2);
    }
    let mlp_in = if pre {
        view(&a.ln2.y, d)
    } else {
        a.x_mid.view()
    };
    time("mlp products", || {
        sgemm(1.0, &mlp_in, &mat(&p.fc).t(), 0.0, &mut a.f.view_mut())
    });
    time("gelu", || {
        // a.f becomes GELU'(f), what the backward pass needs
        gelu_keep_slope(
            a.f.as_slice_mut().expect("row-major"),
            a.g.as_slice_mut().expect("row-major"),
        )
    });
    time("mlp products", || {
        if cfg.residual {
            out.assign(&a.x_mid);
        }
        let beta = if cfg.residual { 1.0 } else { 0.0 };
        sgemm(
            1.0,
            &a.g.view(),
            &mat(&p.fc_proj).t(),
            beta,
            &mut out.view_mut(),
        );
    });
    if !pre {
        norm_into(out, &p.ln2, &mut a.ln2);
        out.as_slice_mut()
            .expect("row-major")
            .copy_from_slice(&a.ln2.y);
    }
}
// ANCHOR_END: block_forward

/// `dw += dy^T x`.
fn weight_grad(dw: &mut Param, dy: &ArrayView2<f32>, x: &ArrayView2<f32>) {
    let mut g = dw
        .grad
        .view_mut()
        .into_dimensionality::<Ix2>()
        .expect("matrix");
    sgemm(1.0, &dy.t(), x, 1.0, &mut g);
}

/// The backward of a layer norm: `dx` (gradient of its output) becomes the gradient
/// of its input, through `tmp`.
fn norm_back(g: &mut Param, ln: &NormActs, dx: &mut Array2<f32>, tmp: &mut Array2<f32>) {
    time("layer norm backward", || {
        tmp.assign(dx);
        layer_norm_backward(
            tmp.as_slice().expect("row-major"),
            &ln.xhat,
            &ln.rstd,
            g.value.as_slice().expect("contiguous"),
            g.grad.as_slice_mut().expect("contiguous"),
            dx.as_slice_mut().expect("row-major"),
            false,
        )
    });
}

// ANCHOR: block_backward
/// One block backward: `acts.dx` holds the gradient of the block's output and becomes
/// that of its input.
fn block_backward(p: &mut Block, cfg: &GptConfig, acts: &mut Acts, l: usize, t: usize) {
    let (d, heads, pre) = (cfg.d_model, cfg.n_heads, cfg.norm == Norm::Pre);
    let a = &acts.blocks[l];
    let (dx, dtmp, dtmp2, dwide, dqkv) = (
        &mut acts.dx,
        &mut acts.dtmp,
        &mut acts.dtmp2,
        &mut acts.dwide,
        &mut acts.dqkv,
    );
    // Post-LN: through LN2 first; dx is then the gradient of x_mid + mlp.
    if !pre {
        norm_back(&mut p.ln2, &a.ln2, dx, dtmp);
    }
    let mlp_in = if pre {
        view(&a.ln2.y, d)
    } else {
        a.x_mid.view()
    };
    time("mlp products backward", || {
        // dW2 += dm^T g; dg = dm W2
        weight_grad(&mut p.fc_proj, &dx.view(), &a.g.view());
        sgemm(
            1.0,
            &dx.view(),
            &mat(&p.fc_proj),
            0.0,
            &mut dwide.view_mut(),
        );
    });
    time("gelu backward", || {
        // df = dg gelu'(f), the slope kept in a.f
        gelu_backward(
            a.f.as_slice().expect("row-major"),
            dwide.as_slice_mut().expect("row-major"),
        )
    });
    time("mlp products backward", || {
        // dW1 += df^T mlp_in; d mlp_in = df W1
        weight_grad(&mut p.fc, &dwide.view(), &mlp_in);
        sgemm(1.0, &dwide.view(), &mat(&p.fc), 0.0, &mut dtmp.view_mut());
    });
    // dtmp: gradient of the MLP's input
    if pre {
        norm_back(&mut p.ln2, &a.ln2, dtmp, dtmp2);
    }
    add_branch(dx, dtmp, cfg.residual);
    // dx: gradient of x_mid
    if !pre {
        norm_back(&mut p.ln1, &a.ln1, dx, dtmp);
    }
    let att_in = if pre {
        view(&a.ln1.y, d)
    } else {
        a.x_in.view()
    };
    time("attention projection backward", || {
        weight_grad(&mut p.proj, &dx.view(), &a.att_out.view());
        sgemm(1.0, &dx.view(), &mat(&p.proj), 0.0, &mut dtmp.view_mut());
    });
    time("attention backward", || {
        let (qkv, att, dout) = (&a.qkv, &a.att, &*dtmp);
        dqkv.axis_chunks_iter_mut(Axis(0), t)
            .into_par_iter()
            .zip(att.par_chunks(heads * t * t))
            .enumerate()
            .for_each(|(i, (dq, at))| {
                let rows = s![i * t..(i + 1) * t, ..];
                let mut scratch = vec![0.0f32; t * t];
                causal_attention_backward(
                    qkv.slice(rows),
                    heads,
                    at,
                    dout.slice(rows),
                    dq,
                    &mut scratch,
                );
            });
    });
    time("qkv projection backward", || {
        weight_grad(&mut p.qkv, &dqkv.view(), &att_in);
        sgemm(1.0, &dqkv.view(), &mat(&p.qkv), 0.0, &mut dtmp.view_mut());
    });
    if pre {
        norm_back(&mut p.ln1, &a.ln1, dtmp, dtmp2);
    }
    add_branch(dx, dtmp, cfg.residual);
}
// ANCHOR_END: block_backward

/// `dx = dx + branch` with a residual connection, `dx = branch` without.
fn add_branch(dx: &mut Array2<f32>, branch: &Array2<f32>, residual: bool) {
    if residual {
        *dx += branch;
    } else {
        dx.assign(branch);
    }
}

impl Module for Gpt {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "wte.weight"), &mut self.wte);
        if let Some(p) = &mut self.wpe {
            f(&join(prefix, "wpe.weight"), p);
        }
        for (i, b) in self.blocks.iter_mut().enumerate() {
            b.visit_params(&join(prefix, &format!("blocks.{i}")), f);
        }
        if let Some(p) = &mut self.ln_f {
            f(&join(prefix, "ln_f.weight"), p);
        }
    }
}

impl Layer for Gpt {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let v = self.cfg.vocab_size;
        self.logits(x)
            .clone()
            .into_shape_with_order((b, t, v))
            .expect("rows of (b, t)")
            .into_dyn()
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let acts = self.acts.as_ref().expect("Gpt::backward before a forward");
        let (b, t, v) = (acts.b, acts.t, self.cfg.vocab_size);
        assert_eq!(
            dy.shape(),
            [b, t, v],
            "Gpt::backward: dy {:?} vs logits (b, t, V) = {:?}",
            dy.shape(),
            [b, t, v]
        );
        let d = dy
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((b * t, v))
            .expect("sizes match");
        self.backward_logits(&d);
        ArrayD::zeros(IxDyn(&[b, t])) // ids have no gradient
    }
}
