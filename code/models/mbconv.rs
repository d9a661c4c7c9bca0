//! The inverted-residual block of MobileNetV2 and EfficientNet-Lite (MBConv, without
//! squeeze-and-excitation, which the Lite variants drop).
//!
//! **The block.** With expansion ratio $e$, kernel $k$ and stride $s$, an input of $C_i$
//! channels goes through three convolutions, each followed by batch norm:
//!
//! $$x \xrightarrow[\text{expand}]{1\times1,\ C_i \to eC_i} \text{BN, ReLU6}
//! \xrightarrow[\text{filter}]{k\times k \text{ depthwise, stride } s} \text{BN, ReLU6}
//! \xrightarrow[\text{project}]{1\times1,\ eC_i \to C_o} \text{BN}
//! \;(+\,x \text{ if } s = 1,\ C_i = C_o).$$
//!
//! The expansion is skipped when $e = 1$. The block is *inverted* against ResNet's
//! bottleneck: it is narrow at its ends and wide in the middle, where the cheap
//! depthwise filter runs. The projection has **no** activation (a *linear bottleneck*):
//! the narrow output is a low-dimensional summary, and a ReLU there would zero part of it
//! for good. The skip joins the two narrow ends, so the stack of blocks carries its
//! residual stream at the narrow width.
//!
//! **Padding.** The depthwise filter uses TensorFlow's "SAME" padding: symmetric $k/2$
//! zeros in the convolution when $s = 1$; when $s = 2$ a [`ZeroPad2d`] in front, with
//! the extra zero at the bottom and right ([`same_padding`]), computed from the input
//! size at each forward pass, then a convolution without padding.
//!
//! **Backward.** The chain of layers in reverse; the skip adds the output gradient to
//! the gradient that comes out of the expansion, as in a residual block.
//!
//! **Names.** Parameters and buffers carry the names of the PyTorch modules, so a state
//! dict loads by name: `_expand_conv.weight`, `_bn0.{gamma,beta}` (PyTorch's `weight`
//! and `bias`), `_bn0.{running_mean,running_var}`, `_depthwise_conv.weight`, `_bn1.*`,
//! `_project_conv.weight`, `_bn2.*`. [`MbConv::fold_batchnorm`] turns the block into its
//! inference form: three convolutions with biases (`_expand_conv.bias`, ...) and no
//! batch norm.

use ndarray::ArrayD;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::count::Spec;
use crate::cnn::pad::same_padding;
use crate::cnn::{BatchNorm2d, GroupedConv2d, ZeroPad2d};
use crate::nn::{join, Activation, ActivationLayer, Layer, Mode, Module, Param};

/// The batch-norm $\epsilon$ of EfficientNet-Lite.
pub const BN_EPS: f32 = 1e-3;

// ANCHOR: mbconv_config
/// The shape of one MBConv block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MbConvConfig {
    /// Expansion ratio $e$: the hidden width is `e * c_in` (1: no expansion layer).
    pub expand_ratio: usize,
    /// Side of the depthwise kernel (3 or 5).
    pub kernel: usize,
    /// Stride of the depthwise convolution (1 or 2).
    pub stride: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
}
// ANCHOR_END: mbconv_config

impl MbConvConfig {
    /// Channels between the expansion and the projection, `expand_ratio * c_in`.
    pub fn hidden(&self) -> usize {
        self.expand_ratio * self.c_in
    }

    /// Whether the block adds its input to its output: stride 1 and `c_in == c_out`.
    pub fn has_skip(&self) -> bool {
        self.stride == 1 && self.c_in == self.c_out
    }
}

/// A convolution and the batch norm after it; `bn` is `None` once folded.
#[derive(Clone, Debug)]
pub struct ConvBn {
    /// The convolution (no bias until the batch norm is folded into it).
    pub conv: GroupedConv2d,
    /// Its batch norm, `None` after [`ConvBn::fold`].
    pub bn: Option<BatchNorm2d>,
}

impl ConvBn {
    fn new(conv: GroupedConv2d) -> Self {
        let c = conv.c_out();
        ConvBn {
            conv,
            bn: Some(BatchNorm2d::with_eps(c, BN_EPS)),
        }
    }

    /// Folds the batch norm into the convolution (a no-op when already folded).
    pub fn fold(&mut self) {
        if let Some(bn) = self.bn.take() {
            self.conv.fold_batchnorm(&bn);
        }
    }

    fn visit(
        &mut self,
        conv: &str,
        bn: &str,
        prefix: &str,
        f: &mut dyn FnMut(&str, &mut Param),
    ) {
        self.conv.visit_params(&join(prefix, conv), f);
        if let Some(b) = &mut self.bn {
            b.visit_params(&join(prefix, bn), f);
        }
    }

    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let y = self.conv.forward(x, mode);
        match &mut self.bn {
            Some(bn) => bn.forward(&y, mode),
            None => y,
        }
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        match &mut self.bn {
            Some(bn) => self.conv.backward(&bn.backward(dy)),
            None => self.conv.backward(dy),
        }
    }
}

// ANCHOR: mbconv
/// The MBConv block of EfficientNet-Lite: optional 1x1 expansion + BN + ReLU6, depthwise
/// `k x k` with stride `s` ("SAME" padding) + BN + ReLU6, 1x1 projection + BN, and the
/// identity skip when the shape is kept. Batch norms have $\epsilon = 10^{-3}$
/// ([`BN_EPS`]); convolutions have no bias.
///
/// # Shapes
/// - input `(n, c_in, h, w)`; output `(n, c_out, ⌈h/s⌉, ⌈w/s⌉)`.
#[derive(Clone, Debug)]
pub struct MbConv {
    /// The block's shape.
    pub config: MbConvConfig,
    /// `_expand_conv` and `_bn0`: 1x1, `c_in -> e c_in` (none when `e = 1`).
    pub expand: Option<ConvBn>,
    /// The activation after the expansion.
    pub act0: ActivationLayer,
    /// The "SAME" zero padding in front of a stride-2 depthwise convolution.
    pub pad: Option<ZeroPad2d>,
    /// `_depthwise_conv` and `_bn1`: `k x k` depthwise, stride `s`.
    pub depthwise: ConvBn,
    /// The activation after the depthwise convolution.
    pub act1: ActivationLayer,
    /// `_project_conv` and `_bn2`: 1x1, `e c_in -> c_out`, no activation after it.
    pub project: ConvBn,
}
// ANCHOR_END: mbconv

impl MbConv {
    /// A block of this shape, He-normal convolutions from `rng`, fresh batch norms
    /// ($\gamma = 1$, $\beta = 0$, running mean 0 and variance 1).
    pub fn new(config: MbConvConfig, rng: &mut impl Rng) -> Self {
        let MbConvConfig {
            expand_ratio,
            kernel: k,
            stride,
            c_in,
            c_out,
        } = config;
        assert!(
            expand_ratio >= 1 && k % 2 == 1 && (stride == 1 || stride == 2),
            "MbConv: expand ratio {expand_ratio}, kernel {k} and stride {stride}: want \
             e >= 1, an odd kernel and stride 1 or 2"
        );
        let hidden = config.hidden();
        let expand = (expand_ratio != 1).then(|| {
            ConvBn::new(GroupedConv2d::new(
                c_in,
                hidden,
                (1, 1),
                1,
                0,
                1,
                false,
                rng,
            ))
        });
        // Stride 1: SAME is the symmetric k/2; stride 2: an explicit ZeroPad2d.
        let padding = if stride == 1 { k / 2 } else { 0 };
        let depthwise =
            ConvBn::new(GroupedConv2d::depthwise(hidden, k, stride, padding, rng));
        let project = ConvBn::new(GroupedConv2d::new(
            hidden,
            c_out,
            (1, 1),
            1,
            0,
            1,
            false,
            rng,
        ));
        MbConv {
            config,
            expand,
            act0: ActivationLayer::new(Activation::Relu6),
            pad: (stride != 1).then(|| ZeroPad2d::new(0, 0, 0, 0)),
            depthwise,
            act1: ActivationLayer::new(Activation::Relu6),
            project,
        }
    }

    /// The block with `kind` in place of both ReLU6 (the finite-difference checks use a
    /// smooth activation, whose differences cross no kink).
    pub fn with_activation(mut self, kind: Activation) -> Self {
        self.act0 = ActivationLayer::new(kind);
        self.act1 = ActivationLayer::new(kind);
        self
    }

    // ANCHOR: mbconv_fold
    /// The inference form: folds each batch norm into the convolution before it
    /// ([`GroupedConv2d::fold_batchnorm`]). The block then computes, in any mode, what
    /// it computed in evaluation mode, with three convolutions instead of three
    /// convolutions and three batch norms; its parameters become `_expand_conv.weight`,
    /// `_expand_conv.bias`, `_depthwise_conv.weight`, ... and it has no buffers.
    pub fn fold_batchnorm(&mut self) {
        if let Some(e) = &mut self.expand {
            e.fold();
        }
        self.depthwise.fold();
        self.project.fold();
    }
    // ANCHOR_END: mbconv_fold

    /// Whether the batch norms have been folded into the convolutions.
    pub fn is_folded(&self) -> bool {
        self.depthwise.bn.is_none()
    }
}

impl Module for MbConv {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        if let Some(e) = &mut self.expand {
            e.visit("_expand_conv", "_bn0", prefix, f);
        }
        self.depthwise.visit("_depthwise_conv", "_bn1", prefix, f);
        self.project.visit("_project_conv", "_bn2", prefix, f);
    }

    fn visit_buffers(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>),
    ) {
        let parts = [
            ("_bn0", self.expand.as_mut().and_then(|e| e.bn.as_mut())),
            ("_bn1", self.depthwise.bn.as_mut()),
            ("_bn2", self.project.bn.as_mut()),
        ];
        for (name, bn) in parts {
            if let Some(bn) = bn {
                bn.visit_buffers(&join(prefix, name), f);
            }
        }
    }
}

// ANCHOR: mbconv_layer
impl Layer for MbConv {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let mut h = match &mut self.expand {
            Some(e) => self.act0.forward(&e.forward(x, mode), mode),
            None => x.clone(),
        };
        if let Some(pad) = &mut self.pad {
            // "SAME" for this input size: the extra zero goes to the bottom and right.
            let (k, s) = (self.config.kernel, self.config.stride);
            let (top, bottom) = same_padding(h.shape()[2], k, s);
            let (left, right) = same_padding(h.shape()[3], k, s);
            *pad = ZeroPad2d::new(top, bottom, left, right);
            h = pad.forward(&h, mode);
        }
        let h = self.act1.forward(&self.depthwise.forward(&h, mode), mode);
        let y = self.project.forward(&h, mode); // linear bottleneck: no activation
        if self.config.has_skip() {
            y + x
        } else {
            y
        }
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let dh = self.project.backward(dy);
        let mut dh = self.depthwise.backward(&self.act1.backward(&dh));
        if let Some(pad) = &mut self.pad {
            dh = pad.backward(&dh);
        }
        let dx = match &mut self.expand {
            Some(e) => e.backward(&self.act0.backward(&dh)),
            None => dh,
        };
        // The skip sends dy straight to the input.
        if self.config.has_skip() {
            dx + dy
        } else {
            dx
        }
    }
}
// ANCHOR_END: mbconv_layer

// ANCHOR: lite0_stages
/// EfficientNet-Lite0's stages of MBConv blocks: `(repeats, kernel, stride, expand
/// ratio, c_in, c_out)`. The first block of a stage has the stage's stride and `c_in`;
/// the others stride 1 and `c_out -> c_out`. Between the stem (3x3 stride 2, 3 -> 32,
/// BN, ReLU6) and the head (1x1, 320 -> 1280, BN, ReLU6, global average pool, dense
/// 1280 -> 1000).
pub const LITE0_STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
// ANCHOR_END: lite0_stages

/// The 16 MBConv blocks of EfficientNet-Lite0 in order ([`LITE0_STAGES`] expanded),
/// `_blocks.0` to `_blocks.15` in the PyTorch state dict.
pub fn lite0_blocks() -> Vec<MbConvConfig> {
    let mut blocks = vec![];
    for (repeats, kernel, stride, expand_ratio, c_in, c_out) in LITE0_STAGES {
        for i in 0..repeats {
            blocks.push(MbConvConfig {
                expand_ratio,
                kernel,
                stride: if i == 0 { stride } else { 1 },
                c_in: if i == 0 { c_in } else { c_out },
                c_out,
            });
        }
    }
    blocks
}

// ANCHOR: mbconv_spec
/// The description of one block for [`count`](super::count::count), its layers named as
/// in the state dict under `prefix`. With `standard`, the depthwise convolution is
/// replaced by the full `k x k` convolution of the same width (one group): the
/// standard-convolution equivalent of the block. "SAME" padding is written as the
/// symmetric `k / 2`, which gives the same output size ($\lceil n/s \rceil$) on the even
/// map sides of a 224 x 224 input, so the same counts.
pub fn mbconv_spec(
    config: &MbConvConfig,
    prefix: &str,
    standard: bool,
) -> Vec<(String, Spec)> {
    let hid = config.hidden();
    let conv = |c_out, k, stride, groups| Spec::Conv {
        c_out,
        k,
        stride,
        padding: k / 2,
        groups,
        bias: false,
    };
    let mut layers = vec![];
    let mut push = |name: &str, spec| layers.push((join(prefix, name), spec));
    if config.expand_ratio != 1 {
        push("_expand_conv", conv(hid, 1, 1, 1));
        push("_bn0", Spec::BatchNorm);
    }
    let groups = if standard { 1 } else { hid };
    push(
        "_depthwise_conv",
        conv(hid, config.kernel, config.stride, groups),
    );
    push("_bn1", Spec::BatchNorm);
    push("_project_conv", conv(config.c_out, 1, 1, 1));
    push("_bn2", Spec::BatchNorm);
    layers
}
// ANCHOR_END: mbconv_spec

/// The description of the whole EfficientNet-Lite0 for a `(3, 224, 224)` image, with
/// the state dict's names (`_conv_stem`, `_bn0`, `_blocks.i.*`, `_conv_head`, `_bn1`,
/// `_fc`); with `standard`, every block's depthwise convolution is a full one
/// ([`mbconv_spec`]).
pub fn lite0_spec(standard: bool) -> Vec<(String, Spec)> {
    let conv = |c_out, k, stride| Spec::Conv {
        c_out,
        k,
        stride,
        padding: k / 2,
        groups: 1,
        bias: false,
    };
    let mut layers = vec![
        ("_conv_stem".to_string(), conv(32, 3, 2)),
        ("_bn0".to_string(), Spec::BatchNorm),
    ];
    for (i, b) in lite0_blocks().iter().enumerate() {
        layers.extend(mbconv_spec(b, &format!("_blocks.{i}"), standard));
    }
    layers.extend([
        ("_conv_head".to_string(), conv(1280, 1, 1)),
        ("_bn1".to_string(), Spec::BatchNorm),
        ("_avg_pooling".to_string(), Spec::GlobalAvgPool),
        ("_fc".to_string(), Spec::Linear { d_out: 1000 }),
    ]);
    layers
}
