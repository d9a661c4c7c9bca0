//! EfficientNet-Lite0 (Tan and Le, 2019; the "Lite" variant for mobile and edge
//! devices): the ImageNet-trained network that chapter 6 reuses.
//!
//! The network is a 3x3 stride-2 stem convolution (3 -> 32 channels), sixteen
//! inverted-residual blocks ([`MBConv`](super::mbconv)) in seven stages, a 1x1 head
//! convolution to 1280 channels, global average pooling and a linear classifier over the
//! 1000 ImageNet classes. Every convolution is followed by batch norm and ReLU6 (the
//! blocks' last, projecting convolution by batch norm only). "Lite" is EfficientNet-B0
//! without squeeze-and-excitation, with ReLU6 instead of swish, and with stem and head
//! kept at B0's width: changes that make it fast and easy to quantise on phones.
//!
//! The weights are TensorFlow's, converted to PyTorch: so convolutions pad the TensorFlow
//! way ("SAME": a stride-2 layer pads one more row and column at the bottom and right
//! than at the top and left) and batch norm uses $\epsilon = 10^{-3}$.

use anyhow::{Context, Result};

use crate::data::DataDir;

use super::pth::{read_pth, PthTensor};

/// Where the weights live in the data folder (`dlbook data fetch efficientnet_lite0`).
pub const WEIGHTS_FILE: &str = "efficientnet_lite0/efficientnet-lite0-57934424.pth";

/// Batch norm's $\epsilon$ in the TensorFlow-trained weights.
pub const BN_EPS: f64 = 1e-3;

/// Channels after the head convolution: the length of the feature vector.
pub const FEATURES: usize = 1280;

/// ImageNet classes.
pub const CLASSES: usize = 1000;

/// The input side the network was trained at.
pub const TRAIN_SIZE: usize = 224;

// ANCHOR: stages
/// One stage of blocks: `(repeats, kernel, stride of the first block, expansion ratio,
/// c_in, c_out)`, as in the reference implementation's block strings
/// (`r2_k3_s22_e6_i16_o24` is two 3x3 blocks, the first with stride 2, expansion 6,
/// 16 -> 24 channels).
pub const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
// ANCHOR_END: stages

/// One inverted-residual block's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockArgs {
    /// Expansion ratio of the first 1x1 convolution (1: no expansion layer).
    pub expand: usize,
    /// Side of the depthwise kernel.
    pub kernel: usize,
    /// Stride of the depthwise convolution.
    pub stride: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
}

impl BlockArgs {
    /// Whether the input is added to the output (same shape in and out).
    pub fn has_skip(&self) -> bool {
        self.stride == 1 && self.c_in == self.c_out
    }
}

/// The sixteen blocks, in order: each stage's first block has the stage's stride and
/// input width, the repeats stride 1 and the output width.
pub fn blocks() -> Vec<BlockArgs> {
    let mut out = vec![];
    for (repeats, kernel, stride, expand, c_in, c_out) in STAGES {
        for r in 0..repeats {
            out.push(BlockArgs {
                expand,
                kernel,
                stride: if r == 0 { stride } else { 1 },
                c_in: if r == 0 { c_in } else { c_out },
                c_out,
            });
        }
    }
    out
}

/// TensorFlow's "SAME" padding of one axis: the `(before, after)` zeros that make a
/// stride-`s` window of `kernel` give $\lceil n / s \rceil$ outputs, the extra zero (when
/// the total is odd) after.
pub fn same_padding(n: usize, kernel: usize, stride: usize) -> (usize, usize) {
    assert!(
        stride > 0 && kernel > 0,
        "same_padding: kernel {kernel}, stride {stride}"
    );
    let out = n.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(n);
    (total / 2, total - total / 2)
}

/// The input normalisation the weights expect: a pixel value $v \in [0, 1]$ becomes
/// $(255 v - 127) / 128$, about $[-1, 1]$ (TensorFlow's `MEAN_RGB = 127`,
/// `STDDEV_RGB = 128` for the Lite models).
pub fn normalize(v: f32) -> f32 {
    (255.0 * v - 127.0) / 128.0
}

/// Reads the ImageNet weights from the data folder, checked against their sha256.
pub fn load_state_dict(data: &DataDir) -> Result<Vec<PthTensor>> {
    let path = data.verified(WEIGHTS_FILE)?;
    read_pth(&path).context("reading EfficientNet-Lite0's weights")
}
