//! Transformer blocks from scratch: the position-wise feed-forward network, the encoder
//! block (self-attention and feed-forward, each wrapped in a residual connection and a
//! layer normalisation) and the decoder block (masked self-attention, cross-attention
//! over the encoder's output, feed-forward), with the layer normalisation either after
//! the residual sum (**post-LN**, the original Transformer and BERT) or at the start of
//! each branch (**pre-LN**, GPT-2 and most models since).
//!
//! # The blocks
//!
//! With $\operatorname{LN}$ a layer normalisation over the feature axis and $F$ a
//! sub-layer (attention or feed-forward), one residual step is
//!
//! $$\text{post-LN:}\quad y = \operatorname{LN}\big(x + F(x)\big), \qquad
//! \text{pre-LN:}\quad y = x + F\big(\operatorname{LN}(x)\big).$$
//!
//! An encoder block is two such steps, $F_1$ = self-attention, $F_2$ = the feed-forward
//! network $\operatorname{FFN}(x) = W_2\, g(W_1 x + b_1) + b_2$ applied to every position
//! alone ($g$ = ReLU or GELU, $W_1$ widening $d$ to $d_\text{ff}$, usually $4d$). A decoder
//! block is three: causal self-attention over the target so far, cross-attention whose
//! queries come from the target and whose keys and values come from the encoder's output
//! (the *memory*), then the feed-forward network. Without residual connections
//! (`residual: false`, an ablation) the $x +$ disappears from each step.
//!
//! # Backward through a residual step
//!
//! A residual connection is a sum, and the gradient of a sum reaches both terms
//! unchanged: for $h = x + F(x)$, $\bar x = \bar h + J_F^\top \bar h$. The identity term
//! carries $\bar h$ to the block's input whatever $F$ does, which is why deep stacks of
//! residual blocks train.
//!
//! **Pre-LN**, $y = x + F(\operatorname{LN}(x))$:
//! $$\bar x = \bar y + \operatorname{LN}'^\top\big(F'^\top\,\bar y\big).$$
//! Through a stack of $L$ pre-LN steps, the gradient at the bottom is $\bar y$ plus a
//! sum of branch terms: the identity path from the loss to every layer crosses no
//! normalisation at all.
//!
//! **Post-LN**, $h = x + F(x)$, $y = \operatorname{LN}(h)$:
//! $$\bar h = \operatorname{LN}'^\top \bar y, \qquad \bar x = \bar h + F'^\top \bar h.$$
//! Here every step's normalisation sits *on* the identity path: the gradient reaching
//! layer $l$ has crossed the Jacobians of all the layer norms above it. Xiong et al.
//! (2020, "On layer normalization in the Transformer architecture") show that at
//! initialisation this makes the expected gradients of the last layers' parameters
//! large (of order $d \sqrt{\ln d}$ independent of depth) while those of a pre-LN
//! Transformer shrink like $1/\sqrt L$; with large gradients near the output, a
//! post-LN Transformer needs a learning-rate **warm-up** (a small learning rate for the
//! first steps, raised linearly) to train at all, and a pre-LN one does not. The layer
//! norm's own backward is in [`crate::nn::layernorm`]: it projects out the mean and the
//! direction of $\hat x$ and scales by $1/\sigma$.
//!
//! A pre-LN stack ends with one more layer norm (its residual stream is never normalised
//! otherwise); [`crate::transformer::seq2seq`] adds it after the last block of each
//! stack.
//!
//! # Backward through a decoder block
//!
//! Cross-attention has two differentiable inputs: the decoder's stream $x$ (through the
//! queries) and the memory $m$ (through the keys and values). So the decoder block's
//! backward returns both, $(\bar x, \bar m)$; an encoder-decoder model sums the $\bar m$
//! of all its decoder blocks (they all read the same memory) and sends it back into the
//! encoder.

use ndarray::ArrayD;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::attn::{Mask, MhaConfig, MultiHeadAttention};
use crate::nn::layernorm::LayerNorm;
use crate::nn::{
    join, Activation, ActivationLayer, Init, Layer, Linear, Mode, Module, Param,
};

pub mod bert;
pub mod bert_classifier;
pub mod candle_twin;
pub mod families;
pub mod seq2seq;

/// Where a block normalises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// $x + F(\operatorname{LN}(x))$.
    PreLn,
    /// $\operatorname{LN}(x + F(x))$.
    PostLn,
}

impl Norm {
    /// `pre-LN` or `post-LN`, for tables.
    pub fn name(self) -> &'static str {
        match self {
            Norm::PreLn => "pre-LN",
            Norm::PostLn => "post-LN",
        }
    }
}

/// The shape and options of an [`EncoderBlock`] or a [`DecoderBlock`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockConfig {
    /// The model width $d$.
    pub d_model: usize,
    /// Attention heads; `d_model` must be a multiple of it.
    pub n_heads: usize,
    /// The feed-forward network's hidden width $d_\text{ff}$.
    pub d_ff: usize,
    /// Pre-LN or post-LN.
    pub norm: Norm,
    /// Whether each sub-layer is wrapped in a residual connection.
    pub residual: bool,
    /// Whether the linear layers (attention projections, feed-forward) have biases.
    pub bias: bool,
    /// The feed-forward activation.
    pub activation: Activation,
    /// The $\epsilon$ of every layer norm.
    pub ln_eps: f32,
}

impl BlockConfig {
    /// A pre-LN block with residuals, biases, GELU, $d_\text{ff} = 4d$ and
    /// $\epsilon = 10^{-5}$.
    pub fn new(d_model: usize, n_heads: usize) -> Self {
        BlockConfig {
            d_model,
            n_heads,
            d_ff: 4 * d_model,
            norm: Norm::PreLn,
            residual: true,
            bias: true,
            activation: Activation::Gelu,
            ln_eps: 1e-5,
        }
    }

    fn mha(&self, causal: bool) -> MhaConfig {
        MhaConfig {
            causal,
            bias: self.bias,
            ..MhaConfig::new(self.d_model, self.n_heads)
        }
    }
}

// ANCHOR: ffn
/// The position-wise feed-forward network $W_2\, g(W_1 x + b_1) + b_2$, applied to every
/// position alone. Parameters `fc1.weight`, `fc1.bias`, `fc2.weight`, `fc2.bias`
/// (without biases, only the weights are visited and the biases stay zero).
///
/// # Shapes
/// - input: `(b, t, d)` (or any `(n, ..., d)`); output: the same shape;
/// - `fc1.weight`: `(d_ff, d)`, `fc2.weight`: `(d, d_ff)`.
#[derive(Clone, Debug)]
pub struct FeedForward {
    /// $d \to d_\text{ff}$.
    pub fc1: Linear,
    /// The activation $g$.
    pub act: ActivationLayer,
    /// $d_\text{ff} \to d$.
    pub fc2: Linear,
    /// Whether the biases are parameters.
    pub bias: bool,
}

impl FeedForward {
    /// Xavier-initialised weights from `rng`, zero biases.
    pub fn new(
        d: usize,
        d_ff: usize,
        activation: Activation,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        FeedForward {
            fc1: Linear::new(d, d_ff, Init::Xavier, &mut *rng),
            act: ActivationLayer::new(activation),
            fc2: Linear::new(d_ff, d, Init::Xavier, rng),
            bias,
        }
    }
}

impl Module for FeedForward {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        for (name, lin) in [("fc1", &mut self.fc1), ("fc2", &mut self.fc2)] {
            let p = join(prefix, name);
            if self.bias {
                lin.visit_params(&p, f);
            } else {
                f(&join(&p, "weight"), &mut lin.weight);
            }
        }
    }
}

impl Layer for FeedForward {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let h = self.fc1.forward(x, mode);
        let h = self.act.forward(&h, mode);
        self.fc2.forward(&h, mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let dh = self.fc2.backward(dy);
        let dh = self.act.backward(&dh);
        self.fc1.backward(&dh)
    }
}
// ANCHOR_END: ffn

/// A layer norm over the last axis of `(b, t, d)`: [`LayerNorm`] works on rows `(n, d)`.
#[derive(Clone, Debug)]
pub struct SeqLayerNorm {
    /// The row-wise layer norm: parameters `gamma` and `beta`, `(d,)`.
    pub ln: LayerNorm,
}

impl SeqLayerNorm {
    /// Over `d` features with this $\epsilon$.
    pub fn new(d: usize, eps: f32) -> Self {
        let mut ln = LayerNorm::new(d);
        ln.eps = eps;
        SeqLayerNorm { ln }
    }
}

impl Module for SeqLayerNorm {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.ln.visit_params(prefix, f)
    }
}

/// `(n, ..., d)` as rows `(n ..., d)`, in standard layout.
fn as_rows(x: &ArrayD<f32>) -> ArrayD<f32> {
    let d = *x.shape().last().expect("SeqLayerNorm: a 0-d input");
    let n = x.len() / d.max(1);
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order(vec![n, d])
        .expect("sizes match")
}

impl Layer for SeqLayerNorm {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        // (b, t, d) -> (b t, d) -> (b, t, d)
        let y = self.ln.forward(&as_rows(x), mode);
        y.into_shape_with_order(x.shape()).expect("sizes match")
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let dx = self.ln.backward(&as_rows(dy));
        dx.into_shape_with_order(dy.shape()).expect("sizes match")
    }
}

/// Checks that `x` is `(b, t, d)`, naming `who`.
fn check3(x: &ArrayD<f32>, d: usize, who: &str) {
    assert!(
        x.ndim() == 3 && x.shape()[2] == d,
        "{who}: input must be (b, t, {d}), got {:?}",
        x.shape()
    );
}

// ANCHOR: encoder_block
/// A Transformer encoder block: self-attention then feed-forward, each in a residual
/// step, pre-LN or post-LN ([`BlockConfig::norm`]).
///
/// Parameters: `attn.{q,k,v,o}.{weight,bias}`, `ln1.{gamma,beta}`,
/// `ffn.{fc1,fc2}.{weight,bias}`, `ln2.{gamma,beta}`.
///
/// # Shapes
/// - input `x`: `(b, t, d_model)`; padding mask `(b, t, t)`; output `(b, t, d_model)`.
#[derive(Clone, Debug)]
pub struct EncoderBlock {
    /// Self-attention.
    pub attn: MultiHeadAttention,
    /// The layer norm of the attention step.
    pub ln1: SeqLayerNorm,
    /// The feed-forward network.
    pub ffn: FeedForward,
    /// The layer norm of the feed-forward step.
    pub ln2: SeqLayerNorm,
    /// The options it was built with.
    pub cfg: BlockConfig,
}

impl EncoderBlock {
    /// A block with weights drawn from `rng`.
    pub fn new(cfg: BlockConfig, rng: &mut impl Rng) -> Self {
        EncoderBlock {
            attn: MultiHeadAttention::new(cfg.mha(false), &mut *rng),
            ln1: SeqLayerNorm::new(cfg.d_model, cfg.ln_eps),
            ffn: FeedForward::new(cfg.d_model, cfg.d_ff, cfg.activation, cfg.bias, rng),
            ln2: SeqLayerNorm::new(cfg.d_model, cfg.ln_eps),
            cfg,
        }
    }

    /// The block on `x` with a padding mask (keys masked for every query), or none.
    pub fn forward_masked(
        &mut self,
        x: &ArrayD<f32>,
        mask: Option<&Mask>,
        mode: Mode,
    ) -> ArrayD<f32> {
        check3(x, self.cfg.d_model, "EncoderBlock");
        let res = self.cfg.residual;
        let attn = |a: &mut MultiHeadAttention, x: &ArrayD<f32>| match mask {
            Some(m) => a.forward_masked(x, m, mode),
            None => a.forward(x, mode),
        };
        match self.cfg.norm {
            Norm::PreLn => {
                let h = attn(&mut self.attn, &self.ln1.forward(x, mode));
                let h = residual_sum(res, x, h);
                let f = self.ffn.forward(&self.ln2.forward(&h, mode), mode);
                residual_sum(res, &h, f)
            }
            Norm::PostLn => {
                let h = residual_sum(res, x, attn(&mut self.attn, x));
                let h = self.ln1.forward(&h, mode);
                let f = residual_sum(res, &h, self.ffn.forward(&h, mode));
                self.ln2.forward(&f, mode)
            }
        }
    }
}

/// `x + f` with a residual connection, `f` without.
fn residual_sum(residual: bool, x: &ArrayD<f32>, f: ArrayD<f32>) -> ArrayD<f32> {
    if residual {
        f + x
    } else {
        f
    }
}

/// The gradient into a residual step's input: `dy` (the identity path) plus the branch's.
fn residual_grad(residual: bool, dy: &ArrayD<f32>, dbranch: ArrayD<f32>) -> ArrayD<f32> {
    if residual {
        dbranch + dy
    } else {
        dbranch
    }
}

impl Layer for EncoderBlock {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.forward_masked(x, None, mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let res = self.cfg.residual;
        match self.cfg.norm {
            Norm::PreLn => {
                // y = h + FFN(LN2(h)): the gradient reaches h along both terms
                let dh = self.ln2.backward(&self.ffn.backward(dy));
                let dh = residual_grad(res, dy, dh);
                // h = x + Attn(LN1(x))
                let dx = self.ln1.backward(&self.attn.backward(&dh));
                residual_grad(res, &dh, dx)
            }
            Norm::PostLn => {
                // y = LN2(h + FFN(h)): the norm first, then both terms
                let df = self.ln2.backward(dy);
                let dh = residual_grad(res, &df, self.ffn.backward(&df));
                // h = LN1(x + Attn(x))
                let da = self.ln1.backward(&dh);
                residual_grad(res, &da, self.attn.backward(&da))
            }
        }
    }
}
// ANCHOR_END: encoder_block

impl Module for EncoderBlock {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.attn.visit_params(&join(prefix, "attn"), f);
        self.ln1.visit_params(&join(prefix, "ln1"), f);
        self.ffn.visit_params(&join(prefix, "ffn"), f);
        self.ln2.visit_params(&join(prefix, "ln2"), f);
    }
}

/// The masks of a decoder block: on its self-attention (combined with the causal mask)
/// and on its cross-attention (which memory positions are real).
#[derive(Clone, Copy, Debug, Default)]
pub struct DecoderMasks<'a> {
    /// `(b, t, t)`: the target's padding, if any.
    pub target: Option<&'a Mask>,
    /// `(b, t, t_memory)`: the source's padding, if any.
    pub memory: Option<&'a Mask>,
}

// ANCHOR: decoder_block
/// A Transformer decoder block: causal self-attention, cross-attention over the
/// encoder's memory, feed-forward; each in a residual step, pre-LN or post-LN.
///
/// Parameters: `self_attn.*`, `ln1.*`, `cross_attn.*`, `ln2.*`, `ffn.*`, `ln3.*`.
///
/// # Shapes
/// - input `x`: `(b, t, d_model)`; `memory`: `(b, t_m, d_model)`;
/// - masks: target `(b, t, t)`, memory `(b, t, t_m)`;
/// - output `(b, t, d_model)`; backward returns `(dx, dmemory)` of the input shapes.
#[derive(Clone, Debug)]
pub struct DecoderBlock {
    /// Causal self-attention.
    pub self_attn: MultiHeadAttention,
    /// The layer norm of the self-attention step.
    pub ln1: SeqLayerNorm,
    /// Cross-attention: queries from the decoder, keys and values from the memory.
    pub cross_attn: MultiHeadAttention,
    /// The layer norm of the cross-attention step.
    pub ln2: SeqLayerNorm,
    /// The feed-forward network.
    pub ffn: FeedForward,
    /// The layer norm of the feed-forward step.
    pub ln3: SeqLayerNorm,
    /// The options it was built with.
    pub cfg: BlockConfig,
}

impl DecoderBlock {
    /// A block with weights drawn from `rng`.
    pub fn new(cfg: BlockConfig, rng: &mut impl Rng) -> Self {
        DecoderBlock {
            self_attn: MultiHeadAttention::new(cfg.mha(true), &mut *rng),
            ln1: SeqLayerNorm::new(cfg.d_model, cfg.ln_eps),
            cross_attn: MultiHeadAttention::new(cfg.mha(false), &mut *rng),
            ln2: SeqLayerNorm::new(cfg.d_model, cfg.ln_eps),
            ffn: FeedForward::new(cfg.d_model, cfg.d_ff, cfg.activation, cfg.bias, rng),
            ln3: SeqLayerNorm::new(cfg.d_model, cfg.ln_eps),
            cfg,
        }
    }

    /// The block on the target stream `x` reading `memory`.
    pub fn forward_cross(
        &mut self,
        x: &ArrayD<f32>,
        memory: &ArrayD<f32>,
        masks: DecoderMasks<'_>,
        mode: Mode,
    ) -> ArrayD<f32> {
        check3(x, self.cfg.d_model, "DecoderBlock");
        check3(memory, self.cfg.d_model, "DecoderBlock (memory)");
        let res = self.cfg.residual;
        let self_attn = |a: &mut MultiHeadAttention, x: &ArrayD<f32>| match masks.target {
            Some(m) => a.forward_masked(x, m, mode),
            None => a.forward(x, mode),
        };
        match self.cfg.norm {
            Norm::PreLn => {
                let h1 = self_attn(&mut self.self_attn, &self.ln1.forward(x, mode));
                let h1 = residual_sum(res, x, h1);
                let q = self.ln2.forward(&h1, mode);
                let h2 = self
                    .cross_attn
                    .forward_cross(&q, memory, masks.memory, mode);
                let h2 = residual_sum(res, &h1, h2);
                let f = self.ffn.forward(&self.ln3.forward(&h2, mode), mode);
                residual_sum(res, &h2, f)
            }
            Norm::PostLn => {
                let h1 = residual_sum(res, x, self_attn(&mut self.self_attn, x));
                let h1 = self.ln1.forward(&h1, mode);
                let c = self
                    .cross_attn
                    .forward_cross(&h1, memory, masks.memory, mode);
                let h2 = self.ln2.forward(&residual_sum(res, &h1, c), mode);
                let f = residual_sum(res, &h2, self.ffn.forward(&h2, mode));
                self.ln3.forward(&f, mode)
            }
        }
    }

    /// The backward of [`DecoderBlock::forward_cross`]: accumulates the parameter
    /// gradients and returns `(dx, dmemory)`.
    pub fn backward_cross(&mut self, dy: &ArrayD<f32>) -> (ArrayD<f32>, ArrayD<f32>) {
        let res = self.cfg.residual;
        match self.cfg.norm {
            Norm::PreLn => {
                let dh2 = self.ln3.backward(&self.ffn.backward(dy));
                let dh2 = residual_grad(res, dy, dh2);
                let (dq, dmem) = self.cross_attn.backward_cross(&dh2);
                let dh1 = residual_grad(res, &dh2, self.ln2.backward(&dq));
                let dx = self.ln1.backward(&self.self_attn.backward(&dh1));
                (residual_grad(res, &dh1, dx), dmem)
            }
            Norm::PostLn => {
                let df = self.ln3.backward(dy);
                let dh2 = residual_grad(res, &df, self.ffn.backward(&df));
                let dc = self.ln2.backward(&dh2);
                let (dq, dmem) = self.cross_attn.backward_cross(&dc);
                let dh1 = residual_grad(res, &dc, dq);
                let da = self.ln1.backward(&dh1);
                (residual_grad(res, &da, self.self_attn.backward(&da)), dmem)
            }
        }
    }
}
// ANCHOR_END: decoder_block

impl Module for DecoderBlock {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.self_attn.visit_params(&join(prefix, "self_attn"), f);
        self.ln1.visit_params(&join(prefix, "ln1"), f);
        self.cross_attn.visit_params(&join(prefix, "cross_attn"), f);
        self.ln2.visit_params(&join(prefix, "ln2"), f);
        self.ffn.visit_params(&join(prefix, "ffn"), f);
        self.ln3.visit_params(&join(prefix, "ln3"), f);
    }
}
