//! The seed model of the course, an MNIST classifier:
//!
//! ```text
//! (n, 784) -> reshape (n, 1, 28, 28)
//! conv1  3x3, 1 -> 32, ReLU      (n, 32, 26, 26)
//! pool1  max 2x2, stride 2       (n, 32, 13, 13)
//! conv2  3x3, 32 -> 64, ReLU     (n, 64, 11, 11)
//! pool2  max 2x2, stride 2       (n, 64, 5, 5)
//! flatten                        (n, 1600)
//! fc1    1600 -> 128, ReLU, dropout 0.5
//! fc2    128 -> 10               logits (softmax is in the loss)
//! ```
//!
//! [`CnnConfig`] also describes the variants the ablations train: without dropout, with
//! strided convolutions instead of pooling, with one convolution, with batch norm after
//! each convolution.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cnn::receptive::Window;
use crate::cnn::{out_size, BatchNorm2d, Conv2d, Flatten, MaxPool2d};
use crate::nn::dropout::Dropout;
use crate::nn::{Activation, ActivationLayer, Init, Linear, Named, Reshape};

/// How the model shrinks its feature maps between convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Downsample {
    /// A 2x2 max pool with stride 2 after each convolution (the seed).
    MaxPool,
    /// No pooling: each convolution has stride 2 instead.
    StridedConv,
}

/// The architecture of the seed CNN and its ablation variants.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    /// Convolution layers: 1 (32 filters) or 2 (32 then 64 filters).
    pub n_conv: usize,
    /// Pooling or strided convolutions.
    pub downsample: Downsample,
    /// Dropout probability before the last layer (0 turns it off).
    pub dropout: f32,
    /// Batch norm between each convolution and its ReLU.
    pub batch_norm: bool,
    /// Units of the hidden dense layer.
    pub hidden: usize,
}

impl Default for CnnConfig {
    /// The seed model exactly.
    fn default() -> Self {
        CnnConfig {
            n_conv: 2,
            downsample: Downsample::MaxPool,
            dropout: 0.5,
            batch_norm: false,
            hidden: 128,
        }
    }
}

impl CnnConfig {
    /// A short name for tables, e.g. `2 conv, max pool, dropout 0.5`.
    pub fn name(&self) -> String {
        let mut s = format!(
            "{} conv, {}",
            self.n_conv,
            match self.downsample {
                Downsample::MaxPool => "max pool",
                Downsample::StridedConv => "strided conv",
            }
        );
        if self.batch_norm {
            s.push_str(", batch norm");
        }
        if self.dropout > 0.0 {
            s.push_str(&format!(", dropout {}", self.dropout));
        } else {
            s.push_str(", no dropout");
        }
        s
    }
}

// ANCHOR: mnist_cnn
/// The MNIST CNN described by `config`, with He-normal weights drawn from `seed` (and
/// dropout masks seeded from it too). With `CnnConfig::default()` this is the seed model:
/// parameters `conv1.{weight,bias}`, `conv2.*`, `fc1.*`, `fc2.*`.
///
/// # Shapes
/// - input: `(n, 784)` pixels in `[0, 1]`, or `(n, 1, 28, 28)`; output: `(n, 10)` logits.
pub fn mnist_cnn(config: &CnnConfig, seed: u64) -> Named {
    assert!(
        (1..=2).contains(&config.n_conv),
        "mnist_cnn: n_conv must be 1 or 2, got {}",
        config.n_conv
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    net.push("input", Reshape::new(&[1, 28, 28]));
    let (mut c, mut side) = (1, 28);
    for (k, c_out) in [32, 64].into_iter().take(config.n_conv).enumerate() {
        let i = k + 1;
        let stride = match config.downsample {
            Downsample::MaxPool => 1,
            Downsample::StridedConv => 2,
        };
        net.push(
            &format!("conv{i}"),
            Conv2d::new(c, c_out, (3, 3), stride, 0, &mut rng),
        );
        side = out_size(side, 3, stride, 0);
        if config.batch_norm {
            net.push(&format!("bn{i}"), BatchNorm2d::new(c_out));
        }
        net.push(&format!("relu{i}"), ActivationLayer::new(Activation::Relu));
        if config.downsample == Downsample::MaxPool {
            net.push(&format!("pool{i}"), MaxPool2d::new((2, 2), (2, 2)));
            side = out_size(side, 2, 2, 0);
        }
        c = c_out;
    }
    net.push("flatten", Flatten::new());
    let d = c * side * side;
    net.push("fc1", Linear::new(d, config.hidden, Init::He, &mut rng));
    net.push("relu3", ActivationLayer::new(Activation::Relu));
    if config.dropout > 0.0 {
        net.push("dropout", Dropout::new(config.dropout, seed ^ 0xD80B));
    }
    net.push("fc2", Linear::new(config.hidden, 10, Init::He, &mut rng));
    net
}
// ANCHOR_END: mnist_cnn

// ANCHOR: seed_windows
/// The window layers of the CNN [`mnist_cnn()`]
/// builds for `config`, by layer name. The seed (`CnnConfig::default()`) has `conv1`
/// 3x3/1, `pool1` max 2x2/2, `conv2` 3x3/1, `pool2` max 2x2/2; the strided variant has
/// 3x3/2 convolutions and no pools. With `padding` the convolutions are padded (the
/// model itself has none).
pub fn model_windows(config: &CnnConfig, padding: usize) -> Vec<(String, Window)> {
    let mut out = vec![];
    for i in 1..=config.n_conv {
        match config.downsample {
            Downsample::MaxPool => {
                out.push((format!("conv{i}"), Window::conv(3, 1, padding)));
                let pool = Window::MaxPool {
                    kernel: 2,
                    stride: 2,
                };
                out.push((format!("pool{i}"), pool));
            }
            Downsample::StridedConv => {
                out.push((format!("conv{i}"), Window::conv(3, 2, padding)))
            }
        }
    }
    out
}
// ANCHOR_END: seed_windows

/// The window layers of the seed CNN ([`model_windows`] of the default config).
pub fn seed_windows(padding: usize) -> Vec<(String, Window)> {
    model_windows(&CnnConfig::default(), padding)
}
