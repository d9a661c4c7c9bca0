//! Zero padding as a layer of its own, and TensorFlow's "SAME" padding rule.
//!
//! A convolution layer pads the same number of zeros $P$ on every side. Networks trained
//! in TensorFlow (EfficientNet-Lite among them) use "SAME" padding instead: the output
//! has $\lceil n / s \rceil$ positions, and the zeros needed for that,
//!
//! $$P_\text{total} = \max\big((\lceil n/s \rceil - 1)\, s + k - n,\ 0\big),$$
//!
//! are split with the smaller half **before** and the larger **after**:
//! $P_\text{before} = \lfloor P_\text{total}/2 \rfloor$,
//! $P_\text{after} = P_\text{total} - P_\text{before}$. With stride 1 and an odd kernel
//! the total is $k - 1$, even, and the padding is the symmetric $k/2$ of a plain
//! convolution; with stride 2 the total is often odd, and the extra zero goes to the
//! bottom and the right. Ported weights expect exactly this: shifting the padding by one
//! pixel shifts every receptive field of the layer by one pixel.
//!
//! [`ZeroPad2d`] pads `(top, bottom, left, right)`; its gradient is the output gradient
//! with the padded border cropped (the zeros depend on nothing).

use ndarray::{s, Array4, ArrayD, Ix4};

use super::as_nchw;
use crate::nn::{Layer, Mode, Module, Param};

// ANCHOR: same_padding
/// TensorFlow's "SAME" padding of one axis: `(before, after)` zeros so that a window of
/// `kernel` moved by `stride` over `input` positions gives $\lceil n/s \rceil$ outputs.
/// The total is $\max((\lceil n/s \rceil - 1) s + k - n, 0)$, and `before` is its
/// smaller half.
///
/// Panics when the stride or the kernel is zero.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    assert!(
        stride > 0 && kernel > 0,
        "same_padding: stride {stride} and kernel {kernel} must be positive"
    );
    let out = input.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}
// ANCHOR_END: same_padding

// ANCHOR: zero_pad
/// Zero padding of the two spatial axes, possibly asymmetric.
///
/// # Shapes
/// - input: `(n, c, h, w)`
/// - output: `(n, c, top + h + bottom, left + w + right)`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZeroPad2d {
    /// Rows of zeros above.
    pub top: usize,
    /// Rows of zeros below.
    pub bottom: usize,
    /// Columns of zeros on the left.
    pub left: usize,
    /// Columns of zeros on the right.
    pub right: usize,
    /// The input shape of the last forward.
    in_dim: Option<(usize, usize, usize, usize)>,
}

impl ZeroPad2d {
    /// Padding `(top, bottom, left, right)`, PyTorch's `ZeroPad2d((left, right, top,
    /// bottom))` in our order.
    pub fn new(top: usize, bottom: usize, left: usize, right: usize) -> Self {
        ZeroPad2d {
            top,
            bottom,
            left,
            right,
            in_dim: None,
        }
    }

    /// The "SAME" padding ([`same_padding`]) of a square `kernel` with `stride` on an
    /// `(h, w)` input.
    pub fn same(h: usize, w: usize, kernel: usize, stride: usize) -> Self {
        let (top, bottom) = same_padding(h, kernel, stride);
        let (left, right) = same_padding(w, kernel, stride);
        Self::new(top, bottom, left, right)
    }

    /// The padded `(h, w)` of an `(h, w)` input.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (self.top + h + self.bottom, self.left + w + self.right)
    }
}

impl Module for ZeroPad2d {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for ZeroPad2d {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let x = as_nchw(x, None, "ZeroPad2d::forward");
        let (n, c, h, w) = x.dim();
        let (ho, wo) = self.out_hw(h, w);
        let mut y = Array4::zeros((n, c, ho, wo));
        y.slice_mut(s![.., .., self.top..self.top + h, self.left..self.left + w])
            .assign(&x);
        self.in_dim = Some((n, c, h, w));
        y.into_dyn()
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let (n, c, h, w) = self
            .in_dim
            .expect("ZeroPad2d::backward called before forward");
        let (ho, wo) = self.out_hw(h, w);
        let dy = match dy.view().into_dimensionality::<Ix4>() {
            Ok(v) if v.dim() == (n, c, ho, wo) => v,
            _ => panic!(
                "ZeroPad2d::backward: dy {:?} vs output shape {:?}",
                dy.shape(),
                (n, c, ho, wo)
            ),
        };
        // The zeros depend on nothing: dx is dy without the border.
        dy.slice(s![.., .., self.top..self.top + h, self.left..self.left + w])
            .to_owned()
            .into_dyn()
    }
}
// ANCHOR_END: zero_pad
