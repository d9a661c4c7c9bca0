//! LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998), adapted to 28x28 MNIST digits.
//!
//! The original read 32x32 images; padding the first convolution by 2 gives the same
//! 28x28 first feature maps on MNIST's 28x28 digits. Its ideas are the template of every
//! CNN since: local receptive fields, shared weights, and subsampling between
//! convolutions, so that feature maps get fewer and smaller while channels get more.
//!
//! ```text
//! (n, 784) -> reshape (n, 1, 28, 28)
//! conv1  5x5, pad 2, 1 -> 6, tanh    (n, 6, 28, 28)
//! pool1  average 2x2, stride 2       (n, 6, 14, 14)
//! conv2  5x5, 6 -> 16, tanh          (n, 16, 10, 10)
//! pool2  average 2x2, stride 2       (n, 16, 5, 5)
//! flatten                            (n, 400)
//! fc1    400 -> 120, tanh
//! fc2    120 -> 84, tanh
//! fc3    84 -> 10                    logits
//! ```
//!
//! Two simplifications, as in most modern re-implementations: the subsampling layers
//! are plain averages (the original multiplied them by a trained coefficient and added
//! a bias), and conv2 connects every input map to every output map (the original used
//! a hand-made table of 60 connections to break symmetry); the output is a linear layer
//! under a softmax instead of radial basis functions.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cnn::{AvgPool2d, Conv2d, Flatten};
use crate::nn::{Activation, ActivationLayer, Init, Linear, Named, Reshape};

// ANCHOR: lenet5
/// LeNet-5 for 28x28 digits, weights drawn from `seed` (Xavier for the tanh layers,
/// He-normal for the convolutions): parameters `conv1.{weight,bias}`, `conv2.*`,
/// `fc1.*`, `fc2.*`, `fc3.*`.
///
/// # Shapes
/// - input `(n, 784)` or `(n, 1, 28, 28)`; output `(n, 10)` logits.
pub fn lenet5(seed: u64) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tanh = || ActivationLayer::new(Activation::Tanh);
    let mut net = Named::new();
    net.push("input", Reshape::new(&[1, 28, 28]));
    net.push("conv1", Conv2d::new(1, 6, (5, 5), 1, 2, &mut rng));
    net.push("tanh1", tanh());
    net.push("pool1", AvgPool2d::new((2, 2), (2, 2)));
    net.push("conv2", Conv2d::new(6, 16, (5, 5), 1, 0, &mut rng));
    net.push("tanh2", tanh());
    net.push("pool2", AvgPool2d::new((2, 2), (2, 2)));
    net.push("flatten", Flatten::new());
    net.push("fc1", Linear::new(400, 120, Init::Xavier, &mut rng));
    net.push("tanh3", tanh());
    net.push("fc2", Linear::new(120, 84, Init::Xavier, &mut rng));
    net.push("tanh4", tanh());
    net.push("fc3", Linear::new(84, 10, Init::Xavier, &mut rng));
    net
}
// ANCHOR_END: lenet5
