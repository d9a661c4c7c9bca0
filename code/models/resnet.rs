//! Residual networks (He et al., 2015): the basic block, a plain twin without the
//! shortcut, and a small ResNet for MNIST.
//!
//! **The block.** A basic block computes a residual branch
//! $F(x) = \mathrm{BN}_2(W_2 * \mathrm{ReLU}(\mathrm{BN}_1(W_1 *_s x)))$ (two 3x3
//! convolutions, the first with stride $s$) and adds a shortcut $S(x)$ before the last
//! ReLU:
//!
//! $$z = F(x) + S(x), \qquad y = \mathrm{ReLU}(z).$$
//!
//! The shortcut is the identity $S(x) = x$ when the branch keeps the shape; when it
//! changes (stride $s > 1$ or more channels) it is a projection, a 1x1 convolution with
//! stride $s$ followed by batch norm. The plain block is the same without $S$:
//! $y = \mathrm{ReLU}(F(x))$.
//!
//! **Backward.** The sum copies its gradient to both terms, so with
//! $\delta = \partial L/\partial z = \partial L / \partial y \odot \mathbb{1}_{z > 0}$,
//!
//! $$\frac{\partial L}{\partial x} = \Big(\frac{\partial F}{\partial x}\Big)^{\!\top}
//! \delta + \Big(\frac{\partial S}{\partial x}\Big)^{\!\top} \delta
//! \;\overset{S = I}{=}\; \Big(I + \frac{\partial F}{\partial x}\Big)^{\!\top} \delta.$$
//!
//! Through a stack of $L$ identity blocks the Jacobian is a product of factors
//! $(I + J_l)$. Expanded, it contains the identity itself plus every product of a
//! subset of the $J_l$: even when every $J_l$ is small (the plain network's product
//! $\prod_l J_l$ would vanish) the gradient reaching the first layer keeps the term $I$,
//! the loss gradient at the top delivered unchanged. A block only has to learn the
//! *residual* $F(x) = H(x) - x$ of the mapping $H$ it stands for, and $F = 0$ (the
//! identity) is easy to represent: a deep residual network is at least as easy to
//! train as a shallower one, which is the point of the design.
//!
//! Convolutions followed by batch norm carry no bias: batch norm subtracts the channel
//! mean, so a bias would cancel, and its $\beta$ takes the role. [`ConvNoBias`] wraps a
//! [`Conv2d`] and hides its (zero, never trained) bias from the parameter list.

use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cnn::{BatchNorm2d, Conv2d, GlobalAvgPool};
use crate::nn::{
    join, Activation, ActivationLayer, Init, Layer, Linear, Mode, Module, Named, Param,
    Reshape,
};

/// A convolution without a bias, for use before batch norm: a [`Conv2d`] whose zero bias
/// is not a parameter (no optimizer sees it, it is not counted).
///
/// # Shapes
/// - as [`Conv2d`]; parameter `weight`: `(c_out, c_in, k, k)`.
#[derive(Clone, Debug)]
pub struct ConvNoBias(pub Conv2d);

impl ConvNoBias {
    /// A `c_in -> c_out` convolution with a `k x k` kernel, He-normal from `rng`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        rng: &mut impl Rng,
    ) -> Self {
        ConvNoBias(Conv2d::new(c_in, c_out, (k, k), stride, padding, rng))
    }
}

impl Module for ConvNoBias {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight"), &mut self.0.weight);
    }
}

impl Layer for ConvNoBias {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.0.forward(x, mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let dx = self.0.backward(dy);
        // The bias is not a parameter: drop what backward accumulated for it.
        self.0.bias.grad.fill(0.0);
        dx
    }
}

/// A projection shortcut: a 1x1 convolution with the block's stride, then batch norm.
#[derive(Clone, Debug)]
pub struct Projection {
    /// The 1x1 convolution, `(c_out, c_in, 1, 1)`.
    pub conv: ConvNoBias,
    /// Its batch norm.
    pub bn: BatchNorm2d,
}

/// The shortcut of a block.
#[derive(Clone, Debug)]
pub enum Shortcut {
    /// No shortcut: the plain block.
    None,
    /// $S(x) = x$.
    Identity,
    /// $S(x) = \mathrm{BN}(W_s *_s x)$.
    Projection(Box<Projection>),
}

// ANCHOR: basic_block
/// A basic block, conv3x3(stride s)-BN-ReLU-conv3x3-BN, plus a shortcut, then ReLU.
/// Parameters: `conv1.weight`, `bn1.{gamma,beta}`, `conv2.weight`, `bn2.*`, and for a
/// projection `shortcut.conv.weight`, `shortcut.bn.*`.
///
/// # Shapes
/// - input `(n, c_in, h, w)`; output `(n, c_out, h', w')`,
///   $h' = \lfloor (h - 1)/s \rfloor + 1$ (the 3x3 convolutions are padded by 1).
#[derive(Clone, Debug)]
pub struct BasicBlock {
    /// First 3x3 convolution, stride `s`.
    pub conv1: ConvNoBias,
    /// Its batch norm.
    pub bn1: BatchNorm2d,
    /// The activation between the convolutions (and after the sum).
    pub act1: ActivationLayer,
    /// Second 3x3 convolution, stride 1.
    pub conv2: ConvNoBias,
    /// Its batch norm.
    pub bn2: BatchNorm2d,
    /// The shortcut (none for the plain block).
    pub shortcut: Shortcut,
    /// The activation after the sum.
    pub act2: ActivationLayer,
}

impl BasicBlock {
    /// A residual block `c_in -> c_out` with stride `stride`: identity shortcut when the
    /// shape is kept, projection otherwise. He-normal weights from `rng`.
    pub fn residual(
        c_in: usize,
        c_out: usize,
        stride: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let mut b = Self::plain(c_in, c_out, stride, rng);
        b.shortcut = if stride == 1 && c_in == c_out {
            Shortcut::Identity
        } else {
            Shortcut::Projection(Box::new(Projection {
                conv: ConvNoBias::new(c_in, c_out, 1, stride, 0, rng),
                bn: BatchNorm2d::new(c_out),
            }))
        };
        b
    }

    /// The same block without a shortcut: $y = \mathrm{ReLU}(F(x))$.
    pub fn plain(c_in: usize, c_out: usize, stride: usize, rng: &mut impl Rng) -> Self {
        BasicBlock {
            conv1: ConvNoBias::new(c_in, c_out, 3, stride, 1, rng),
            bn1: BatchNorm2d::new(c_out),
            act1: ActivationLayer::new(Activation::Relu),
            conv2: ConvNoBias::new(c_out, c_out, 3, 1, 1, rng),
            bn2: BatchNorm2d::new(c_out),
            shortcut: Shortcut::None,
            act2: ActivationLayer::new(Activation::Relu),
        }
    }

    /// The block with `kind` in place of both ReLUs (the gradient checks use a smooth
    /// activation, whose finite differences cross no kink).
    pub fn with_activation(mut self, kind: Activation) -> Self {
        self.act1 = ActivationLayer::new(kind);
        self.act2 = ActivationLayer::new(kind);
        self
    }

    /// Whether the block has a shortcut.
    pub fn is_residual(&self) -> bool {
        !matches!(self.shortcut, Shortcut::None)
    }
}

impl Module for BasicBlock {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.conv1.visit_params(&join(prefix, "conv1"), f);
        self.bn1.visit_params(&join(prefix, "bn1"), f);
        self.conv2.visit_params(&join(prefix, "conv2"), f);
        self.bn2.visit_params(&join(prefix, "bn2"), f);
        if let Shortcut::Projection(s) = &mut self.shortcut {
            let p = join(prefix, "shortcut");
            s.conv.visit_params(&join(&p, "conv"), f);
            s.bn.visit_params(&join(&p, "bn"), f);
        }
    }
}

impl Layer for BasicBlock {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let h = self.conv1.forward(x, mode);
        let h = self.act1.forward(&self.bn1.forward(&h, mode), mode);
        let f = self.bn2.forward(&self.conv2.forward(&h, mode), mode);
        let z = match &mut self.shortcut {
            Shortcut::None => f,
            Shortcut::Identity => {
                assert_eq!(
                    f.shape(),
                    x.shape(),
                    "BasicBlock: identity shortcut needs the branch {:?} to keep the \
                     input shape {:?}",
                    f.shape(),
                    x.shape()
                );
                f + x
            }
            Shortcut::Projection(s) => f + s.bn.forward(&s.conv.forward(x, mode), mode),
        };
        self.act2.forward(&z, mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let dz = self.act2.backward(dy); // dL/dz, the gradient of the sum
        let dh = self.conv2.backward(&self.bn2.backward(&dz));
        let dh = self.bn1.backward(&self.act1.backward(&dh));
        let dx_branch = self.conv1.backward(&dh);
        // The sum sends dz down both paths; their input gradients add up.
        match &mut self.shortcut {
            Shortcut::None => dx_branch,
            Shortcut::Identity => dx_branch + &dz,
            Shortcut::Projection(s) => dx_branch + s.conv.backward(&s.bn.backward(&dz)),
        }
    }
}
// ANCHOR_END: basic_block

/// The stem, stages and head of a small ResNet (or its plain twin) for MNIST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Channels of the stem and of the first stage.
    pub width: usize,
    /// Stride of the 3x3 stem convolution (2 takes 28x28 to 14x14).
    pub stem_stride: usize,
    /// Blocks per stage; every stage after the first doubles the channels and starts
    /// with a stride-2 block (a projection shortcut in the residual network).
    pub blocks: Vec<usize>,
    /// Shortcuts on (ResNet) or off (the plain network of the same depth).
    pub residual: bool,
}

impl ResNetConfig {
    /// The small ResNet of the chapter: stem 16 channels at 14x14, one identity block,
    /// one projection block to 32 channels at 7x7.
    pub fn small() -> Self {
        ResNetConfig {
            width: 16,
            stem_stride: 2,
            blocks: vec![1, 1],
            residual: true,
        }
    }

    /// Convolution layers on the longest path: the stem and two per block.
    pub fn depth(&self) -> usize {
        1 + 2 * self.blocks.iter().sum::<usize>()
    }
}

// ANCHOR: resnet
/// A small ResNet (or, with `residual: false`, the plain network of the same depth)
/// for MNIST, He-normal weights from `seed`:
///
/// ```text
/// (n, 784) -> reshape (n, 1, 28, 28)
/// stem      conv 3x3 stride s, 1 -> width, BN, ReLU       (n, width, 28/s, 28/s)
/// stage 1   blocks[0] basic blocks, width                 (same)
/// stage k   blocks[k-1] blocks, width 2^(k-1), first stride 2 (halves h and w)
/// gap       global average pool                           (n, channels)
/// fc        channels -> 10                                logits
/// ```
///
/// Blocks are named `block1`, `block2`, ... in order: `block2.shortcut.conv.weight`.
///
/// # Shapes
/// - input `(n, 784)` or `(n, 1, 28, 28)`; output `(n, 10)`.
pub fn resnet(config: &ResNetConfig, seed: u64) -> Named {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Named::new();
    net.push("input", Reshape::new(&[1, 28, 28]));
    let mut c = config.width;
    net.push(
        "stem",
        ConvNoBias::new(1, c, 3, config.stem_stride, 1, &mut rng),
    );
    net.push("stem_bn", BatchNorm2d::new(c));
    net.push("stem_relu", ActivationLayer::new(Activation::Relu));
    let mut k = 0;
    for (stage, &n_blocks) in config.blocks.iter().enumerate() {
        for b in 0..n_blocks {
            let (c_out, stride) = if stage > 0 && b == 0 {
                (2 * c, 2)
            } else {
                (c, 1)
            };
            k += 1;
            let block = if config.residual {
                BasicBlock::residual(c, c_out, stride, &mut rng)
            } else {
                BasicBlock::plain(c, c_out, stride, &mut rng)
            };
            net.push(&format!("block{k}"), block);
            c = c_out;
        }
    }
    net.push("gap", GlobalAvgPool::new());
    net.push("fc", Linear::new(c, 10, Init::He, &mut rng));
    net
}
// ANCHOR_END: resnet
