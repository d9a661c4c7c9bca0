//! Convolution and pooling layers from scratch, on the [`Layer`](crate::nn::Layer)
//! contract, in `f32`, NCHW layout (batch, channels, height, width).
//!
//! **Convolution.** With input $x \in \mathbb{R}^{N \times C \times H \times W}$, weights
//! $w \in \mathbb{R}^{C_o \times C \times K_h \times K_w}$ (the PyTorch and candle layout),
//! bias $b \in \mathbb{R}^{C_o}$, stride $s$ and zero padding $P$, let $\bar x$ be $x$
//! padded with $P$ zeros on every side of both spatial axes. The output is
//!
//! $$y_{n,o,i,j} = b_o + \sum_{c,p,q} w_{o,c,p,q}\, \bar x_{n,c,\,si+p,\,sj+q},
//! \qquad H_o = \left\lfloor \frac{H + 2P - K_h}{s} \right\rfloor + 1$$
//!
//! (and likewise $W_o$). Like every deep-learning library, this is a cross-correlation:
//! the kernel is not flipped. Given $\delta = \partial L/\partial y$, each weight and
//! each input pixel collects the products it took part in:
//!
//! $$\frac{\partial L}{\partial w_{o,c,p,q}} = \sum_{n,i,j} \delta_{n,o,i,j}\,
//! \bar x_{n,c,\,si+p,\,sj+q}, \qquad
//! \frac{\partial L}{\partial b_o} = \sum_{n,i,j} \delta_{n,o,i,j}, \qquad
//! \frac{\partial L}{\partial \bar x_{n,c,\,si+p,\,sj+q}} \mathrel{+}=
//! \sum_o w_{o,c,p,q}\,\delta_{n,o,i,j},$$
//!
//! and $\partial L/\partial x$ is $\partial L/\partial \bar x$ with the padding cropped.
//! [`conv::conv2d_direct`] and [`conv::conv2d_direct_backward`] are these sums as nested
//! loops: the definition.
//!
//! **im2col.** Copy every receptive field into a row of a matrix
//! $X_\text{col} \in \mathbb{R}^{N H_o W_o \times C K_h K_w}$ (row $(n,i,j)$, column
//! $(c,p,q)$) and reshape $w$ into $W_\text{mat} \in \mathbb{R}^{C_o \times C K_h K_w}$.
//! Then the convolution is one matrix product, exactly a [`Linear`](crate::nn::Linear)
//! layer applied to every receptive field,
//!
//! $$Y_\text{mat} = X_\text{col} W_\text{mat}^\top + b, \qquad
//! \frac{\partial L}{\partial W_\text{mat}} = \Delta^\top X_\text{col}, \qquad
//! \frac{\partial L}{\partial X_\text{col}} = \Delta\, W_\text{mat},$$
//!
//! with $\Delta$ the output gradient as an $N H_o W_o \times C_o$ matrix. The last one is
//! scattered back by **col2im**, which *adds* each entry to the pixel it was copied
//! from: a pixel in several receptive fields receives the sum, as in the direct formula.
//! [`Conv2d`] uses this path ([`im2col`]); the tests check it against the loops.
//!
//! **Pooling.** Max pooling takes the maximum of each $K_h \times K_w$ window; its
//! gradient is $\delta$ routed to the position of the maximum (the argmax), zero
//! elsewhere. Average pooling takes the mean; its gradient spreads $\delta / (K_h K_w)$
//! over the window. With overlapping windows (stride smaller than the kernel) the
//! contributions add up. [`GlobalAvgPool`] is the average over the whole $H \times W$
//! plane, and [`Flatten`] only reshapes, so its gradient is the reshaped $\delta$.

use ndarray::{Array1, Array4, ArrayD, ArrayView1, ArrayView4, Ix4};

pub mod batchnorm2d;
pub mod candle_twin;
pub mod conv;
pub mod depthwise;
pub mod im2col;
pub mod pad;
pub mod pool;
pub mod receptive;

pub use batchnorm2d::BatchNorm2d;
pub use conv::Conv2d;
pub use depthwise::GroupedConv2d;
pub use pad::ZeroPad2d;
pub use pool::{AvgPool2d, Flatten, GlobalAvgPool, MaxPool2d};

/// The output length $\lfloor (n + 2P - k)/s \rfloor + 1$ of a window of length `kernel`
/// sliding with `stride` over `input` positions padded with `padding` on each side.
///
/// Panics when the stride is zero or the padded input is shorter than the kernel.
pub fn out_size(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    assert!(stride > 0, "out_size: stride must be positive");
    assert!(
        kernel > 0 && input + 2 * padding >= kernel,
        "out_size: kernel {kernel} larger than input {input} padded by {padding}"
    );
    (input + 2 * padding - kernel) / stride + 1
}

/// Views `a` as NCHW, panicking with its shape (and `who`) when it is not 4-D or does not
/// have `channels` channels (when given).
pub(crate) fn as_nchw<'a>(
    a: &'a ArrayD<f32>,
    channels: Option<usize>,
    who: &str,
) -> ArrayView4<'a, f32> {
    let want = match channels {
        Some(c) => format!("(n, {c}, h, w)"),
        None => "(n, c, h, w)".to_string(),
    };
    match a.view().into_dimensionality::<Ix4>() {
        Ok(v) if channels.is_none_or(|c| v.shape()[1] == c) => v,
        _ => panic!("{who}: expected input {want}, got {:?}", a.shape()),
    }
}

/// Panics with the shapes unless `x` `(n, c, h, w)`, `w` `(c_out, c, kh, kw)` and `b`
/// `(c_out,)` fit together. Returns the output shape `(n, c_out, h_out, w_out)`.
pub(crate) fn check_conv_shapes(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    b: &ArrayView1<f32>,
    stride: usize,
    padding: usize,
) -> (usize, usize, usize, usize) {
    let (n, c, h, wd) = x.dim();
    let (co, ci, kh, kw) = w.dim();
    assert!(
        c == ci && b.len() == co,
        "conv2d: input {:?}, weight {:?} and bias {:?} do not fit",
        x.shape(),
        w.shape(),
        b.shape()
    );
    (
        n,
        co,
        out_size(h, kh, stride, padding),
        out_size(wd, kw, stride, padding),
    )
}

/// [`check_conv_shapes`] for a backward pass, plus `dy` against the output shape.
/// Returns the output shape `(n, c_out, h_out, w_out)`.
pub(crate) fn check_backward_shapes(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    dy: &ArrayView4<f32>,
    stride: usize,
    padding: usize,
) -> (usize, usize, usize, usize) {
    let zero_b = Array1::zeros(w.dim().0);
    let out = check_conv_shapes(x, w, &zero_b.view(), stride, padding);
    assert_eq!(
        dy.dim(),
        out,
        "conv2d backward: dy {:?} vs output shape {out:?}",
        dy.shape()
    );
    out
}

/// The gradients `(dx, dw, db)` of a convolution.
pub type ConvGrads = (Array4<f32>, Array4<f32>, Array1<f32>);
