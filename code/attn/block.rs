//! A pre-norm attention block, the model of section 10.3's lookup task
//! ([`crate::seq::lookup`]): $h = x + \operatorname{MHA}(\operatorname{LN}_1(x))$,
//! $y = h + \operatorname{MLP}(\operatorname{LN}_2(h))$, with a handle through which a figure
//! reads the attention weights of the last evaluation-mode pass.

use std::sync::{Arc, Mutex};

use ndarray::{ArrayD, IxDyn};
use rand::Rng;

use super::{MhaConfig, MultiHeadAttention};
use crate::nn::layernorm::LayerNorm;
use crate::nn::{
    Activation, ActivationLayer, Init, Layer, Linear, Mode, Module, Named, Param,
};

/// Where a block leaves the attention weights of its last evaluation-mode forward pass,
/// `(b, heads, t, t)`: the model is a [`Named`] stack of boxed layers, so a figure reads
/// the weights through this shared handle rather than through the layer.
pub type WeightsTap = Arc<Mutex<Option<ArrayD<f32>>>>;

/// Layer norm over the last axis of `(b, t, d)`: [`LayerNorm`] on the `b t` rows.
#[derive(Clone, Debug)]
struct SeqNorm {
    norm: LayerNorm,
    shape: Vec<usize>,
}

impl SeqNorm {
    fn new(d: usize) -> Self {
        SeqNorm {
            norm: LayerNorm::new(d),
            shape: vec![],
        }
    }

    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let d = *x.shape().last().expect("SeqNorm: a 0-d input");
        self.shape = x.shape().to_vec();
        let rows = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[x.len() / d.max(1), d])) // (b t, d)
            .expect("sizes match");
        let y = self.norm.forward(&rows, mode);
        y.into_shape_with_order(IxDyn(&self.shape))
            .expect("(b, t, d)")
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let d = *self.shape.last().expect("SeqNorm::backward before forward");
        let rows = dy
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[dy.len() / d.max(1), d])) // (b t, d)
            .expect("dy has the shape of the output");
        let dx = self.norm.backward(&rows);
        dx.into_shape_with_order(IxDyn(&self.shape))
            .expect("(b, t, d)")
    }
}

// ANCHOR: attn_block
/// A pre-norm attention block: $h = x + \operatorname{MHA}(\operatorname{LN}_1(x))$,
/// $y = h + W_2 \operatorname{relu}(W_1 \operatorname{LN}_2(h))$, the MLP `4 d` wide.
/// Parameters: `norm1`, `attn`, `norm2`, `mlp.fc1`, `mlp.fc2`.
///
/// # Shapes
/// - input `x`: `(b, t, d_model)`; output: `(b, t, d_model)`.
pub struct AttnBlock {
    norm1: SeqNorm,
    /// The attention layer.
    pub attn: MultiHeadAttention,
    norm2: SeqNorm,
    /// The MLP, `fc1`, `relu`, `fc2`.
    pub mlp: Named,
    tap: Option<WeightsTap>,
}

impl AttnBlock {
    /// A block of `n_heads` heads over `d_model`, weights drawn from `rng`; with `tap`,
    /// every evaluation-mode forward pass leaves its attention weights there.
    pub fn new(
        d_model: usize,
        n_heads: usize,
        tap: Option<WeightsTap>,
        rng: &mut impl Rng,
    ) -> Self {
        let attn = MultiHeadAttention::new(MhaConfig::new(d_model, n_heads), rng);
        let mut mlp = Named::new();
        mlp.push("fc1", Linear::new(d_model, 4 * d_model, Init::He, rng));
        mlp.push("relu", ActivationLayer::new(Activation::Relu));
        mlp.push("fc2", Linear::new(4 * d_model, d_model, Init::Xavier, rng));
        AttnBlock {
            norm1: SeqNorm::new(d_model),
            attn,
            norm2: SeqNorm::new(d_model),
            mlp,
            tap,
        }
    }
}

impl Module for AttnBlock {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.norm1
            .norm
            .visit_params(&crate::nn::join(prefix, "norm1"), f);
        self.attn.visit_params(&crate::nn::join(prefix, "attn"), f);
        self.norm2
            .norm
            .visit_params(&crate::nn::join(prefix, "norm2"), f);
        self.mlp.visit_params(&crate::nn::join(prefix, "mlp"), f);
    }
}

impl Layer for AttnBlock {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let h = x + &self.attn.forward(&self.norm1.forward(x, mode), mode);
        if let (Mode::Eval, Some(tap)) = (mode, &self.tap) {
            *tap.lock().unwrap_or_else(|p| p.into_inner()) =
                self.attn.last_weights().cloned();
        }
        let m = self.mlp.forward(&self.norm2.forward(&h, mode), mode);
        h + m
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        // each residual passes dy straight through and adds its branch's gradient
        let dh = dy + &self.norm2.backward(&self.mlp.backward(dy));
        let da = self.norm1.backward(&self.attn.backward(&dh));
        dh + da
    }
}
// ANCHOR_END: attn_block

/// Layer norm over the last axis of `(b, t, d)` as a layer of its own (the model's last normalisation).
pub struct SeqNormLayer(SeqNorm);

impl SeqNormLayer {
    /// Layer norm over the last axis, `d` wide.
    pub fn new(d: usize) -> Self {
        SeqNormLayer(SeqNorm::new(d))
    }
}

impl Module for SeqNormLayer {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.0.norm.visit_params(prefix, f);
    }
}

impl Layer for SeqNormLayer {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.0.forward(x, mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.0.backward(dy)
    }
}
