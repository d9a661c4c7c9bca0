//! Multi-head attention: four projections around scaled dot-product attention, for
//! self-attention (an [`nn::Layer`](crate::nn::Layer) on `(b, t, d)`), self-attention
//! with a padding mask, and cross-attention on a second, differentiable input.

use ndarray::ArrayD;
use rand::Rng;

use super::{
    merge_heads, scaled_dot_product_attention_backward_with,
    scaled_dot_product_attention_with, split_heads, Mask, Rope, Schedule,
};
use crate::nn::{join, Init, Layer, Linear, Mode, Module, Param};

/// The shape and options of a [`MultiHeadAttention`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MhaConfig {
    /// The model width `d_model`.
    pub d_model: usize,
    /// The number of heads; `d_model` must be a multiple of it.
    pub n_heads: usize,
    /// Whether the four projections have biases.
    pub bias: bool,
    /// Whether self-attention is causal (query `i` sees keys `j <= i`).
    pub causal: bool,
    /// Rotary position encodings on queries and keys, if any.
    pub rope: Option<Rope>,
}

impl MhaConfig {
    /// `n_heads` heads over `d_model`, with biases, not causal, no RoPE.
    pub fn new(d_model: usize, n_heads: usize) -> Self {
        MhaConfig {
            d_model,
            n_heads,
            bias: true,
            causal: false,
            rope: None,
        }
    }
}

/// What the backward pass needs from the last forward pass.
#[derive(Clone, Debug)]
struct Cache {
    /// Queries and keys after RoPE, values, `(b, heads, t, d_k)`.
    q: ArrayD<f32>,
    k: ArrayD<f32>,
    v: ArrayD<f32>,
    /// Attention weights `(b, heads, t_q, t_k)`.
    weights: ArrayD<f32>,
}

// ANCHOR: mha
/// Multi-head attention $\operatorname{MHA}(x, m) = \operatorname{merge}_h\big(
/// \operatorname{attn}(Q_h, K_h, V_h)\big) W_o^\top + b_o$, with $Q = x W_q^\top + b_q$,
/// $K = m W_k^\top + b_k$, $V = m W_v^\top + b_v$ ($m = x$ for self-attention) split into
/// heads of width $d_k = d_\text{model} / \text{heads}$.
///
/// Parameters are four [`Linear`] layers visited as `q`, `k`, `v`, `o`
/// (`q.weight`, `q.bias`, ...); without biases only the weights are visited.
///
/// # Shapes
/// - input `x`: `(b, t_q, d_model)`; `memory` (cross-attention): `(b, t_k, d_model)`;
/// - mask: `(b, t_q, t_k)`;
/// - output: `(b, t_q, d_model)`; weights of each projection `(d_model, d_model)`;
/// - [`MultiHeadAttention::last_weights`]: `(b, heads, t_q, t_k)`.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
    /// The number of heads.
    pub n_heads: usize,
    /// Whether self-attention ([`Layer::forward`], [`MultiHeadAttention::forward_masked`])
    /// is causal. Cross-attention ignores it.
    pub causal: bool,
    /// Rotary encodings of queries and keys, if any.
    pub rope: Option<Rope>,
    /// How the (batch, head) pairs of attention are scheduled (parallel unless set;
    /// the same bits either way).
    pub schedule: Schedule,
    /// Whether the projections' biases are parameters (otherwise they stay zero).
    bias: bool,
    cache: Option<Cache>,
}

impl MultiHeadAttention {
    /// A layer with Xavier-initialized projections drawn from `rng`, zero biases.
    pub fn new(cfg: MhaConfig, rng: &mut impl Rng) -> Self {
        let d = cfg.d_model;
        assert!(
            cfg.n_heads > 0 && d.is_multiple_of(cfg.n_heads),
            "MultiHeadAttention: d_model {d} not divisible by {} heads",
            cfg.n_heads
        );
        if cfg.rope.is_some() {
            assert!(
                (d / cfg.n_heads).is_multiple_of(2),
                "MultiHeadAttention: RoPE needs an even d_k, got {}",
                d / cfg.n_heads
            );
        }
        let mut lin = || Linear::new(d, d, Init::Xavier, &mut *rng);
        MultiHeadAttention {
            q: lin(),
            k: lin(),
            v: lin(),
            o: lin(),
            n_heads: cfg.n_heads,
            causal: cfg.causal,
            rope: cfg.rope,
            schedule: Schedule::Parallel,
            bias: cfg.bias,
            cache: None,
        }
    }

    /// `d_model`.
    pub fn d_model(&self) -> usize {
        self.q.d_in()
    }

    /// Whether the projections have biases.
    pub fn has_bias(&self) -> bool {
        self.bias
    }

    /// The attention weights `(b, heads, t_q, t_k)` of the last forward pass.
    pub fn last_weights(&self) -> Option<&ArrayD<f32>> {
        self.cache.as_ref().map(|c| &c.weights)
    }

    /// Self-attention on `x` `(b, t, d_model)` with a mask `(b, t, t)` (padding, say),
    /// combined with the causal mask when [`MultiHeadAttention::causal`] is set.
    pub fn forward_masked(
        &mut self,
        x: &ArrayD<f32>,
        mask: &Mask,
        _mode: Mode,
    ) -> ArrayD<f32> {
        self.self_attend(x, Some(mask))
    }

    /// Cross-attention: queries from `x` `(b, t_q, d_model)`, keys and values from
    /// `memory` `(b, t_k, d_model)`, with an optional mask `(b, t_q, t_k)`.
    pub fn forward_cross(
        &mut self,
        x: &ArrayD<f32>,
        memory: &ArrayD<f32>,
        mask: Option<&Mask>,
        _mode: Mode,
    ) -> ArrayD<f32> {
        self.check_input(x, "x");
        self.check_input(memory, "memory");
        assert_eq!(
            x.shape()[0],
            memory.shape()[0],
            "MultiHeadAttention::forward_cross: x {:?} and memory {:?} disagree on b",
            x.shape(),
            memory.shape()
        );
        self.attend(x, memory, mask)
    }

    /// The backward of [`MultiHeadAttention::forward_cross`]: accumulates the parameter
    /// gradients and returns `(dx, dmemory)`.
    pub fn backward_cross(&mut self, dy: &ArrayD<f32>) -> (ArrayD<f32>, ArrayD<f32>) {
        self.backward_parts(dy)
    }

    fn check_input(&self, x: &ArrayD<f32>, what: &str) {
        let d = self.d_model();
        assert!(
            x.ndim() == 3 && x.shape()[2] == d,
            "MultiHeadAttention: {what} must be (b, t, {d}), got {:?}",
            x.shape()
        );
    }

    fn self_attend(&mut self, x: &ArrayD<f32>, mask: Option<&Mask>) -> ArrayD<f32> {
        self.check_input(x, "x");
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let causal = self.causal.then(|| Mask::causal(b, t));
        let mask = match (mask, causal) {
            (Some(m), Some(c)) => Some(m.and(&c)),
            (Some(m), None) => Some(m.clone()),
            (None, c) => c,
        };
        self.attend(x, x, mask.as_ref())
    }

    /// Projections, heads, RoPE, attention, merge, output projection.
    fn attend(
        &mut self,
        x: &ArrayD<f32>,
        memory: &ArrayD<f32>,
        mask: Option<&Mask>,
    ) -> ArrayD<f32> {
        let h = self.n_heads;
        let mut q = split_heads(&self.q.forward(x, Mode::Train), h);
        let mut k = split_heads(&self.k.forward(memory, Mode::Train), h);
        let v = split_heads(&self.v.forward(memory, Mode::Train), h);
        if let Some(r) = self.rope {
            q = r.rotate(&q, false);
            k = r.rotate(&k, false);
        }
        let att = scaled_dot_product_attention_with(&q, &k, &v, mask, self.schedule);
        let y = self.o.forward(&merge_heads(&att.out), Mode::Train);
        self.cache = Some(Cache {
            q,
            k,
            v,
            weights: att.weights,
        });
        y
    }

    /// The backward pass of [`MultiHeadAttention::attend`]: `(d x through the queries,
    /// d memory through the keys and values)`.
    fn backward_parts(&mut self, dy: &ArrayD<f32>) -> (ArrayD<f32>, ArrayD<f32>) {
        let c = self
            .cache
            .as_ref()
            .expect("MultiHeadAttention::backward called before forward");
        let d_out = split_heads(&self.o.backward(dy), self.n_heads);
        let g = scaled_dot_product_attention_backward_with(
            &c.q,
            &c.k,
            &c.v,
            &c.weights,
            &d_out,
            self.schedule,
        );
        let (mut dq, mut dk) = (g.dq, g.dk);
        if let Some(r) = self.rope {
            // the rotation is orthogonal: its backward is the inverse rotation
            dq = r.rotate(&dq, true);
            dk = r.rotate(&dk, true);
        }
        let dx = self.q.backward(&merge_heads(&dq));
        let dmem =
            self.k.backward(&merge_heads(&dk)) + self.v.backward(&merge_heads(&g.dv));
        (dx, dmem)
    }
}
// ANCHOR_END: mha

impl Module for MultiHeadAttention {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        let bias = self.bias;
        for (name, lin) in [
            ("q", &mut self.q),
            ("k", &mut self.k),
            ("v", &mut self.v),
            ("o", &mut self.o),
        ] {
            let p = join(prefix, name);
            if bias {
                lin.visit_params(&p, f);
            } else {
                f(&join(&p, "weight"), &mut lin.weight);
            }
        }
    }
}

impl Layer for MultiHeadAttention {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        self.self_attend(x, None)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        // self-attention: x feeds the queries, the keys and the values
        let (dx, dmem) = self.backward_parts(dy);
        dx + dmem
    }
}
