//! Counting a network from its description: parameters and multiply-adds, layer by
//! layer, without building it.
//!
//! An architecture is described once as a list of named layers ([`Spec`]); [`count`]
//! propagates the input shape through the list and counts, layer by layer, the
//! parameters and the multiply-adds of one forward pass for one example. Only
//! convolutions and dense layers are counted as compute: a $k \times k$ convolution
//! from $C_i$ to $C_o$ channels with an $H_o \times W_o$ output performs
//! $C_o H_o W_o \cdot (C_i / g) k^2$ multiply-adds ($g$ groups), a dense layer
//! $d_i d_o$; activations, pooling and batch norm cost a few operations per value and
//! are left out, as is customary. Parameters are weights plus biases, and $\gamma$,
//! $\beta$ for batch norm.
//!
//! The descriptions of the networks the book builds sit here next to the counter
//! ([`lenet5_spec`], [`mnist_cnn_spec`], [`small_vgg_spec`], [`resnet_spec`]); the
//! tests check each against [`Module::n_params`](crate::nn::Module::n_params) of the
//! built network. AlexNet is a description only ([`alexnet_spec`]). The chapter 5
//! `architectures` experiment tabulates them, and `dlbook bench` turns the seed CNN's
//! multiply-adds into the FLOPs of a training step.

use serde::Serialize;

use super::mnist_cnn::{CnnConfig, Downsample};
use super::resnet::ResNetConfig;
use crate::report::{col, Format, Table, Value};

// ANCHOR: spec
/// One layer of an architecture's description. Layers without parameters or
/// multiply-adds that do not change the shape (activations, dropout, local response
/// normalisation) are left out of the descriptions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Spec {
    /// A `k x k` convolution to `c_out` channels.
    Conv {
        /// Output channels.
        c_out: usize,
        /// Kernel side.
        k: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
        /// Channel groups: each output sees `c_in / groups` input channels.
        groups: usize,
        /// Whether it has a bias.
        bias: bool,
    },
    /// Batch norm over the channels (`gamma`, `beta`).
    BatchNorm,
    /// Max pooling, `k x k` windows.
    MaxPool {
        /// Window side.
        k: usize,
        /// Stride.
        stride: usize,
    },
    /// Average pooling, `k x k` windows.
    AvgPool {
        /// Window side.
        k: usize,
        /// Stride.
        stride: usize,
    },
    /// Global average pooling: `(c, h, w)` to `(c, 1, 1)`.
    GlobalAvgPool,
    /// Flattening: `(c, h, w)` to `(c h w, 1, 1)`.
    Flatten,
    /// A dense layer with bias, on a flattened input.
    Linear {
        /// Output features.
        d_out: usize,
    },
    /// A basic block of two 3x3 convolutions with batch norm (no biases), and a
    /// projection shortcut (1x1 convolution and batch norm) when `residual` and the
    /// shape changes.
    Block {
        /// Output channels.
        c_out: usize,
        /// Stride of the first convolution.
        stride: usize,
        /// With a shortcut.
        residual: bool,
    },
}
// ANCHOR_END: spec

impl Spec {
    /// A convolution with bias and one group.
    pub fn conv(c_out: usize, k: usize, stride: usize, padding: usize) -> Self {
        Spec::Conv {
            c_out,
            k,
            stride,
            padding,
            groups: 1,
            bias: true,
        }
    }
}

/// The shape `(channels, height, width)` of one example; a vector of `d` features is
/// `(d, 1, 1)`.
pub type Shape = (usize, usize, usize);

/// What [`count`] found for one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerCount {
    /// The layer's name in the description.
    pub name: String,
    /// Shape of its output for one example.
    pub out: Shape,
    /// Parameters.
    pub params: usize,
    /// Multiply-adds for one example.
    pub macs: usize,
}

fn conv_counts(
    (c, h, w): Shape,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
    groups: usize,
    bias: bool,
) -> (Shape, usize, usize) {
    assert!(
        groups > 0 && c.is_multiple_of(groups) && c_out.is_multiple_of(groups),
        "count: {groups} groups do not divide {c} -> {c_out} channels"
    );
    let (ho, wo) = (
        crate::cnn::out_size(h, k, stride, padding),
        crate::cnn::out_size(w, k, stride, padding),
    );
    let weights = c_out * (c / groups) * k * k;
    let params = weights + if bias { c_out } else { 0 };
    ((c_out, ho, wo), params, weights * ho * wo)
}

// ANCHOR: count
/// Propagates `input` through `layers` and counts, per layer, the output shape, the
/// parameters and the multiply-adds for one example.
///
/// Panics naming the layer and shape when a layer does not fit its input (a kernel
/// larger than the padded map, a dense layer on an unflattened map).
pub fn count(input: Shape, layers: &[(String, Spec)]) -> Vec<LayerCount> {
    let mut shape = input;
    let mut out = Vec::with_capacity(layers.len());
    for (name, spec) in layers {
        let (c, h, w) = shape;
        let (next, params, macs) = match *spec {
            Spec::Conv {
                c_out,
                k,
                stride,
                padding,
                groups,
                bias,
            } => conv_counts(shape, c_out, k, stride, padding, groups, bias),
            Spec::BatchNorm => (shape, 2 * c, 0),
            Spec::MaxPool { k, stride } | Spec::AvgPool { k, stride } => {
                let s = |n| crate::cnn::out_size(n, k, stride, 0);
                ((c, s(h), s(w)), 0, 0)
            }
            Spec::GlobalAvgPool => ((c, 1, 1), 0, 0),
            Spec::Flatten => ((c * h * w, 1, 1), 0, 0),
            Spec::Linear { d_out } => {
                assert!(
                    h == 1 && w == 1,
                    "count: {name} is a dense layer on an unflattened {shape:?}"
                );
                ((d_out, 1, 1), c * d_out + d_out, c * d_out)
            }
            Spec::Block {
                c_out,
                stride,
                residual,
            } => {
                let (s1, p1, m1) = conv_counts(shape, c_out, 3, stride, 1, 1, false);
                let (s2, p2, m2) = conv_counts(s1, c_out, 3, 1, 1, 1, false);
                let (mut p, mut m) = (p1 + p2 + 4 * c_out, m1 + m2);
                if residual && (stride != 1 || c != c_out) {
                    let (_, ps, ms) = conv_counts(shape, c_out, 1, stride, 0, 1, false);
                    p += ps + 2 * c_out;
                    m += ms;
                }
                (s2, p, m)
            }
        };
        out.push(LayerCount {
            name: name.clone(),
            out: next,
            params,
            macs,
        });
        shape = next;
    }
    out
}
// ANCHOR_END: count

/// Total parameters and multiply-adds of a description.
pub fn totals(counts: &[LayerCount]) -> (usize, usize) {
    counts
        .iter()
        .fold((0, 0), |(p, m), l| (p + l.params, m + l.macs))
}

fn named(layers: Vec<(&str, Spec)>) -> Vec<(String, Spec)> {
    layers
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect()
}

/// LeNet-5 as built by [`lenet5`](super::lenet::lenet5), for a `(1, 28, 28)` input.
pub fn lenet5_spec() -> Vec<(String, Spec)> {
    named(vec![
        ("conv1", Spec::conv(6, 5, 1, 2)),
        ("pool1", Spec::AvgPool { k: 2, stride: 2 }),
        ("conv2", Spec::conv(16, 5, 1, 0)),
        ("pool2", Spec::AvgPool { k: 2, stride: 2 }),
        ("flatten", Spec::Flatten),
        ("fc1", Spec::Linear { d_out: 120 }),
        ("fc2", Spec::Linear { d_out: 84 }),
        ("fc3", Spec::Linear { d_out: 10 }),
    ])
}

/// The MNIST CNN [`mnist_cnn`](super::mnist_cnn()) builds from `config`, for
/// `(1, 28, 28)`, with the same layer names (activations and dropout left out).
pub fn mnist_cnn_spec(config: &CnnConfig) -> Vec<(String, Spec)> {
    let stride = match config.downsample {
        Downsample::MaxPool => 1,
        Downsample::StridedConv => 2,
    };
    let mut layers = vec![];
    for (k, c_out) in [32, 64].into_iter().take(config.n_conv).enumerate() {
        let i = k + 1;
        layers.push((format!("conv{i}"), Spec::conv(c_out, 3, stride, 0)));
        if config.batch_norm {
            layers.push((format!("bn{i}"), Spec::BatchNorm));
        }
        if config.downsample == Downsample::MaxPool {
            layers.push((format!("pool{i}"), Spec::MaxPool { k: 2, stride: 2 }));
        }
    }
    layers.extend(named(vec![
        ("flatten", Spec::Flatten),
        (
            "fc1",
            Spec::Linear {
                d_out: config.hidden,
            },
        ),
        ("fc2", Spec::Linear { d_out: 10 }),
    ]));
    layers
}

/// The seed CNN ([`mnist_cnn_spec`] of the default configuration), for `(1, 28, 28)`.
pub fn seed_cnn_spec() -> Vec<(String, Spec)> {
    mnist_cnn_spec(&CnnConfig::default())
}

/// The small VGG of [`small_vgg`](super::vgg::small_vgg), for `(1, 28, 28)`.
pub fn small_vgg_spec() -> Vec<(String, Spec)> {
    named(vec![
        ("block1.conv1", Spec::conv(16, 3, 1, 1)),
        ("block1.conv2", Spec::conv(16, 3, 1, 1)),
        ("block1.pool", Spec::MaxPool { k: 2, stride: 2 }),
        ("block2.conv1", Spec::conv(32, 3, 1, 1)),
        ("block2.conv2", Spec::conv(32, 3, 1, 1)),
        ("block2.pool", Spec::MaxPool { k: 2, stride: 2 }),
        ("flatten", Spec::Flatten),
        ("fc1", Spec::Linear { d_out: 128 }),
        ("fc2", Spec::Linear { d_out: 10 }),
    ])
}

/// The network [`resnet`](super::resnet::resnet) builds from `config`, for `(1, 28, 28)`.
pub fn resnet_spec(config: &ResNetConfig) -> Vec<(String, Spec)> {
    let mut c = config.width;
    let mut layers = vec![
        (
            "stem".to_string(),
            Spec::Conv {
                c_out: c,
                k: 3,
                stride: config.stem_stride,
                padding: 1,
                groups: 1,
                bias: false,
            },
        ),
        ("stem_bn".to_string(), Spec::BatchNorm),
    ];
    let mut k = 0;
    for (stage, &n) in config.blocks.iter().enumerate() {
        for b in 0..n {
            let (c_out, stride) = if stage > 0 && b == 0 {
                (2 * c, 2)
            } else {
                (c, 1)
            };
            k += 1;
            layers.push((
                format!("block{k}"),
                Spec::Block {
                    c_out,
                    stride,
                    residual: config.residual,
                },
            ));
            c = c_out;
        }
    }
    layers.push(("gap".into(), Spec::GlobalAvgPool));
    layers.push(("fc".into(), Spec::Linear { d_out: 10 }));
    layers
}

// ANCHOR: alexnet
/// AlexNet (Krizhevsky, Sutskever and Hinton, 2012) for a `(3, 224, 224)` image, in the
/// paper's two-GPU layout (conv2, conv4, conv5 in two groups). Overlapping 3x3 max pools
/// with stride 2; ReLU after every layer, dropout before fc7 and fc8, and local
/// response normalisation after conv1 and conv2 have no parameters and are left out.
pub fn alexnet_spec() -> Vec<(String, Spec)> {
    let grouped = |c_out, k, padding| Spec::Conv {
        c_out,
        k,
        stride: 1,
        padding,
        groups: 2,
        bias: true,
    };
    named(vec![
        ("conv1", Spec::conv(96, 11, 4, 2)),
        ("pool1", Spec::MaxPool { k: 3, stride: 2 }),
        ("conv2", grouped(256, 5, 2)),
        ("pool2", Spec::MaxPool { k: 3, stride: 2 }),
        ("conv3", Spec::conv(384, 3, 1, 1)),
        ("conv4", grouped(384, 3, 1)),
        ("conv5", grouped(256, 3, 1)),
        ("pool5", Spec::MaxPool { k: 3, stride: 2 }),
        ("flatten", Spec::Flatten),
        ("fc6", Spec::Linear { d_out: 4096 }),
        ("fc7", Spec::Linear { d_out: 4096 }),
        ("fc8", Spec::Linear { d_out: 1000 }),
    ])
}
// ANCHOR_END: alexnet

/// The parameter count AlexNet's paper states: "60 million parameters".
pub const ALEXNET_PUBLISHED_PARAMS: f64 = 60e6;

/// An integer with thousands separators: `60,965,224`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A table of `counts`, one row per layer (name, output shape, parameters,
/// multiply-adds) and a `total` row, under the table name `name`.
pub fn layer_table(name: &str, caption: String, counts: &[LayerCount]) -> Table {
    let mut rows: Vec<Vec<Value>> = counts
        .iter()
        .map(|l| {
            vec![
                Value::from(l.name.as_str()),
                Value::from(format!("{} x {} x {}", l.out.0, l.out.1, l.out.2)),
                Value::from(thousands(l.params)),
                Value::from(thousands(l.macs)),
            ]
        })
        .collect();
    let (p, m) = totals(counts);
    rows.push(vec![
        "total".into(),
        "".into(),
        thousands(p).into(),
        thousands(m).into(),
    ]);
    Table {
        name: name.into(),
        caption,
        columns: vec![
            col("layer", Format::Int),
            col("output (c x h x w)", Format::Int),
            col("parameters", Format::Int),
            col("multiply-adds", Format::Int),
        ],
        rows,
    }
}
