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

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use ndarray::{ArrayD, ArrayViewMutD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::candle_mbconv::torch_name;
use super::mbconv::{lite0_blocks, MbConv, BN_EPS};
use super::pth::{read_pth, PthTensor};
use crate::cnn::depthwise::GroupedConv2d;
use crate::cnn::pad::{same_padding, ZeroPad2d};
use crate::cnn::{BatchNorm2d, GlobalAvgPool};
use crate::data::DataDir;
use crate::nn::activation::{Activation, ActivationLayer};
use crate::nn::linear::{Init, Linear};
use crate::nn::{Layer, Mode, Module, Named, Param};

/// Where the weights live in the data folder (`dlbook data fetch efficientnet_lite0`).
pub const WEIGHTS_FILE: &str = "efficientnet_lite0/efficientnet-lite0-57934424.pth";

/// Channels after the head convolution: the length of the feature vector.
pub const FEATURES: usize = 1280;

/// ImageNet classes.
pub const CLASSES: usize = 1000;

/// The input side the network was trained at.
pub const TRAIN_SIZE: usize = 224;

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

/// TensorFlow's "SAME" zero padding in front of a strided convolution, recomputed for
/// each input size (a 224-pixel input gets 0 rows on top and 1 at the bottom before the
/// 3x3 stride-2 stem; a 225-pixel one 1 and 1).
///
/// # Shapes
/// - input `(n, c, h, w)`, output `(n, c, h + top + bottom, w + left + right)`.
#[derive(Clone, Debug)]
pub struct SamePad2d {
    /// Kernel side of the convolution that follows.
    pub kernel: usize,
    /// Its stride.
    pub stride: usize,
    pad: ZeroPad2d,
}

impl SamePad2d {
    /// The padding for a `kernel x kernel` convolution with `stride`.
    pub fn new(kernel: usize, stride: usize) -> Self {
        SamePad2d {
            kernel,
            stride,
            pad: ZeroPad2d::new(0, 0, 0, 0),
        }
    }
}

impl Module for SamePad2d {
    fn visit_params(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for SamePad2d {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let (k, s) = (self.kernel, self.stride);
        let (top, bottom) = same_padding(x.shape()[2], k, s);
        let (left, right) = same_padding(x.shape()[3], k, s);
        self.pad = ZeroPad2d::new(top, bottom, left, right);
        self.pad.forward(x, mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.pad.backward(dy)
    }
}

// ANCHOR: lite0
/// EfficientNet-Lite0 from the book's layers, as a [`Named`] stack whose parameter and
/// buffer names are the PyTorch state dict's (batch norm's `gamma` and `beta` are
/// PyTorch's `weight` and `bias`, see [`torch_name`]): `_conv_stem`, `_bn0`, the blocks
/// `_blocks.0` to `_blocks.15`, `_conv_head`, `_bn1`, and the classifier `_fc`. Random
/// weights from `seed` (He-normal convolutions, fresh batch norms, a Xavier classifier
/// over `n_classes` outputs); [`load_imagenet`] puts the ImageNet weights in.
pub fn efficientnet_lite0(n_classes: usize, seed: u64) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    net.push("stem_pad", SamePad2d::new(3, 2));
    net.push(
        "_conv_stem",
        GroupedConv2d::new(3, 32, (3, 3), 2, 0, 1, false, &mut rng),
    );
    net.push("_bn0", BatchNorm2d::with_eps(32, BN_EPS));
    net.push("stem_act", ActivationLayer::new(Activation::Relu6));
    for (i, b) in lite0_blocks().into_iter().enumerate() {
        net.push(&format!("_blocks.{i}"), MbConv::new(b, &mut rng));
    }
    net.push(
        "_conv_head",
        GroupedConv2d::new(320, FEATURES, (1, 1), 1, 0, 1, false, &mut rng),
    );
    net.push("_bn1", BatchNorm2d::with_eps(FEATURES, BN_EPS));
    net.push("head_act", ActivationLayer::new(Activation::Relu6));
    net.push("pool", GlobalAvgPool::new());
    net.push(
        "_fc",
        Linear::new(FEATURES, n_classes, Init::Xavier, &mut rng),
    );
    net
}
// ANCHOR_END: lite0

/// Index of the first layer after the pooling: everything before it is the feature
/// extractor ([`FEATURES`] numbers per image).
pub fn classifier_index(net: &Named) -> usize {
    net.names()
        .iter()
        .position(|n| *n == "_fc")
        .expect("the network has `_fc`")
}

// ANCHOR: load_imagenet
/// Copies the ImageNet weights of `state` into `net` by name: every parameter and buffer
/// of `net` must be in `state` with the same shape (the classifier `_fc` only when
/// `with_classifier`), so a renamed or missing tensor is an error, not a silent random
/// weight.
pub fn load_imagenet(
    net: &mut Named,
    state: &[PthTensor],
    with_classifier: bool,
) -> Result<()> {
    let by_name: HashMap<&str, &ArrayD<f32>> = state
        .iter()
        .filter_map(|t| t.value.as_ref().map(|v| (t.name.as_str(), v)))
        .collect();
    let mut problems = vec![];
    let mut copy = |ours: &str, dest: ArrayViewMutD<'_, f32>| {
        if !with_classifier && ours.starts_with("_fc.") {
            return;
        }
        let theirs = torch_name(ours);
        match by_name.get(theirs.as_str()) {
            Some(v) if v.shape() == dest.shape() => {
                let mut dest = dest;
                dest.assign(v);
            }
            Some(v) => problems.push(format!(
                "{theirs}: {:?} in the file, {:?} here",
                v.shape(),
                dest.shape()
            )),
            None => problems.push(format!("{theirs}: not in the file")),
        }
    };
    net.visit_params("", &mut |name, p| copy(name, p.value.view_mut()));
    net.visit_buffers("", &mut |name, b| copy(name, b));
    ensure!(
        problems.is_empty(),
        "the weights do not fit the network: {}",
        problems.join("; ")
    );
    Ok(())
}
// ANCHOR_END: load_imagenet

/// The ImageNet-trained network: [`efficientnet_lite0`] with the weights of the data
/// folder's state dict.
pub fn pretrained(data: &DataDir) -> Result<Named> {
    let mut net = efficientnet_lite0(CLASSES, 0);
    load_imagenet(&mut net, &load_state_dict(data)?, true)?;
    Ok(net)
}
