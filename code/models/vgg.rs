//! VGG (Simonyan and Zisserman, 2014): networks built from one repeated block, a few
//! 3x3 convolutions (padding 1, so the size is kept) followed by a 2x2 max pool.
//!
//! **Why 3x3.** Two stacked 3x3 convolutions see a 5x5 window of the input: each output
//! of the second reads 3x3 outputs of the first, each of which reads 3x3 inputs, and
//! the windows of neighbours overlap, so the field is $3 + (3 - 1) = 5$ pixels wide
//! (three of them: 7). With $C$ channels in and out, the two layers have
//! $2 \cdot 9 C^2 = 18 C^2$ weights where one 5x5 layer has $25 C^2$ (and three 3x3,
//! $27 C^2$, against $49 C^2$ for one 7x7), and they put a non-linearity between the
//! two halves of the field. Depth buys the same field with fewer parameters and more
//! non-linear decisions.
//!
//! The small VGG for MNIST has two blocks of two convolutions each:
//!
//! ```text
//! (n, 784) -> reshape (n, 1, 28, 28)
//! block1  conv 3x3 1 -> 16, ReLU, conv 3x3 16 -> 16, ReLU, max pool 2   (n, 16, 14, 14)
//! block2  conv 3x3 16 -> 32, ReLU, conv 3x3 32 -> 32, ReLU, max pool 2  (n, 32, 7, 7)
//! flatten                                                              (n, 1568)
//! fc1     1568 -> 128, ReLU
//! fc2     128 -> 10                                                    logits
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cnn::{Conv2d, Flatten, MaxPool2d};
use crate::nn::{Activation, ActivationLayer, Init, Linear, Named, Reshape};

// ANCHOR: vgg_block
/// A VGG block: `n_convs` 3x3 convolutions with padding 1 (the first `c_in -> c_out`,
/// the others `c_out -> c_out`), each followed by ReLU, then a 2x2 max pool with
/// stride 2. Layers are named `conv1`, `relu1`, ..., `pool`.
///
/// # Shapes
/// - input `(n, c_in, h, w)`; output `(n, c_out, h / 2, w / 2)` (rounded down).
pub fn vgg_block(c_in: usize, c_out: usize, n_convs: usize, rng: &mut impl Rng) -> Named {
    assert!(
        n_convs > 0,
        "vgg_block: a block needs at least one convolution"
    );
    let mut block = Named::new();
    for k in 1..=n_convs {
        let c = if k == 1 { c_in } else { c_out };
        block.push(
            &format!("conv{k}"),
            Conv2d::new(c, c_out, (3, 3), 1, 1, rng),
        );
        block.push(&format!("relu{k}"), ActivationLayer::new(Activation::Relu));
    }
    block.push("pool", MaxPool2d::new((2, 2), (2, 2)));
    block
}
// ANCHOR_END: vgg_block

// ANCHOR: small_vgg
/// The small VGG for MNIST (two blocks of two convolutions, 16 and 32 channels, then two
/// dense layers), He-normal weights from `seed`. Parameters `block1.conv1.weight`, ...,
/// `fc2.bias`.
///
/// # Shapes
/// - input `(n, 784)` or `(n, 1, 28, 28)`; output `(n, 10)` logits.
pub fn small_vgg(seed: u64) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    net.push("input", Reshape::new(&[1, 28, 28]));
    net.push("block1", vgg_block(1, 16, 2, &mut rng));
    net.push("block2", vgg_block(16, 32, 2, &mut rng));
    net.push("flatten", Flatten::new());
    net.push("fc1", Linear::new(32 * 7 * 7, 128, Init::He, &mut rng));
    net.push("relu", ActivationLayer::new(Activation::Relu));
    net.push("fc2", Linear::new(128, 10, Init::He, &mut rng));
    net
}
// ANCHOR_END: small_vgg
