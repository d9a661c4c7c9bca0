//! Receptive fields: which input pixels a unit of a convolutional network can see,
//! computed analytically from the window geometry and measured on real layers.
//!
//! **The recurrence.** Take a stack of window layers (convolutions and poolings), layer
//! $l$ with kernel $k_l$, stride $s_l$ and zero padding $p_l$, the same on both axes.
//! Along one axis, describe the units of layer $l$ by three numbers: the *jump* $j_l$,
//! the distance in input pixels between the fields of two neighbouring units; the
//! *size* $r_l$ of one field; and the *start* $a_l$, the input index of the first pixel
//! of the field of unit 0 (negative when the field hangs over the padding). The input
//! itself is layer 0: $j_0 = 1$, $r_0 = 1$, $a_0 = 0$.
//!
//! Unit $i$ of layer $l$ reads units $s_l i - p_l, \dots, s_l i - p_l + k_l - 1$ of
//! layer $l-1$. Neighbouring units of layer $l-1$ are $j_{l-1}$ input pixels apart, so
//! moving one unit along layer $l$ moves $s_l$ units along layer $l-1$, and the $k_l$
//! fields it reads span $k_l - 1$ jumps plus one field:
//!
//! $$j_l = j_{l-1}\, s_l, \qquad r_l = r_{l-1} + (k_l - 1)\, j_{l-1}, \qquad
//! a_l = a_{l-1} - p_l\, j_{l-1}.$$
//!
//! Unit $i$ of layer $l$ then sees input pixels $a_l + i j_l, \dots,
//! a_l + i j_l + r_l - 1$, centred on $a_l + i j_l + (r_l - 1)/2$. Unrolled,
//! $r_L = 1 + \sum_l (k_l - 1) \prod_{m<l} s_m$: each layer adds its kernel minus one,
//! times the product of all strides below it, which is why stride and pooling make
//! fields grow fast and stride-1 $3\times3$ layers make them grow by 2 each.
//!
//! **Borders.** The formula counts padding positions as if they were pixels. A padded
//! zero carries no signal, so the field of a border unit is the interval *clipped* to
//! the image, $[\max(0, \text{first}), \min(H - 1, \text{last})]$ ([`Field::clipped`]).
//!
//! **Holes.** The interval is exact when every kernel is at least its stride
//! ($k_l \ge s_l$): then $r_l \ge j_l$, so the fields of neighbouring units touch or
//! overlap and their union has no gap. A layer with $k_l < s_l$ (a $1\times1$ stride-2
//! convolution) skips pixels, and the interval is only an upper bound.
//!
//! **Measuring it.** [`probe`] builds the stack from the real layers ([`Conv2d`],
//! [`MaxPool2d`], [`AvgPool2d`], ReLU) with every weight 1 and every bias 0.
//! [`impulse_fields`] feeds it one image per input pixel, zero everywhere except that
//! pixel. Every path from the pixel to a unit multiplies positive numbers, a zero input
//! stays exactly zero, and a max over zeros and one positive value is that value, so a
//! unit is non-zero exactly when the pixel is in its field: no cancellation can hide a
//! pixel, and no tolerance is needed. [`gradient_field`] measures the other way round:
//! back-propagate a one-hot `dy` and take the support of `dx`. Through convolutions and
//! average pooling that is the field again; through max pooling the gradient follows
//! only the argmax of each window, so it reaches a subset of the field: the pixels that
//! *did* matter for this input, not all that *can*.

use ndarray::{s, Array2, Array3, Array4, ArrayD, Axis};
use serde::Serialize;

use super::{out_size, AvgPool2d, Conv2d, MaxPool2d};
use crate::nn::{Activation, ActivationLayer, Layer, Mode, Named};

/// One window layer of a stack, square: kernel, stride and (for convolutions) padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// A convolution (followed by a ReLU in [`probe`]).
    Conv {
        /// Kernel side $k$.
        kernel: usize,
        /// Stride $s$.
        stride: usize,
        /// Zero padding $p$ on each side.
        padding: usize,
    },
    /// Max pooling (no padding).
    MaxPool {
        /// Window side $k$.
        kernel: usize,
        /// Stride $s$.
        stride: usize,
    },
    /// Average pooling (no padding).
    AvgPool {
        /// Window side $k$.
        kernel: usize,
        /// Stride $s$.
        stride: usize,
    },
}

impl Window {
    /// A convolution.
    pub fn conv(kernel: usize, stride: usize, padding: usize) -> Self {
        Window::Conv {
            kernel,
            stride,
            padding,
        }
    }

    /// `(kernel, stride, padding)`.
    pub fn geometry(self) -> (usize, usize, usize) {
        match self {
            Window::Conv {
                kernel,
                stride,
                padding,
            } => (kernel, stride, padding),
            Window::MaxPool { kernel, stride } | Window::AvgPool { kernel, stride } => {
                (kernel, stride, 0)
            }
        }
    }

    /// A short description, e.g. `conv 3x3/1 pad 1`, `max pool 2x2/2`.
    pub fn name(self) -> String {
        let (k, s, p) = self.geometry();
        match self {
            Window::Conv { .. } if p > 0 => format!("conv {k}x{k}/{s} pad {p}"),
            Window::Conv { .. } => format!("conv {k}x{k}/{s}"),
            Window::MaxPool { .. } => format!("max pool {k}x{k}/{s}"),
            Window::AvgPool { .. } => format!("avg pool {k}x{k}/{s}"),
        }
    }
}

/// The receptive field of the units of one layer, along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Field {
    /// $r$: pixels one unit sees (before clipping at the border).
    pub size: usize,
    /// $j$: input pixels between the fields of neighbouring units.
    pub jump: usize,
    /// $a$: input index of the first pixel of unit 0's field (negative over padding).
    pub start: i64,
    /// Units of this layer along the axis.
    pub units: usize,
}

impl Field {
    /// The first and last input index of unit `i`'s field, unclipped (may fall in the
    /// padding).
    pub fn span(&self, i: usize) -> (i64, i64) {
        let first = self.start + (i * self.jump) as i64;
        (first, first + self.size as i64 - 1)
    }

    /// The input position unit `i` is centred on.
    pub fn centre(&self, i: usize) -> f64 {
        let (a, b) = self.span(i);
        (a + b) as f64 / 2.0
    }

    /// The pixels of unit `i`'s field inside an input of `len` pixels: the span clipped
    /// to `0..len`.
    pub fn clipped(&self, i: usize, len: usize) -> std::ops::Range<usize> {
        let (a, b) = self.span(i);
        let lo = a.clamp(0, len as i64) as usize;
        let hi = (b + 1).clamp(0, len as i64) as usize;
        lo..hi.max(lo)
    }

    /// The field of unit `(i, j)` on a `side x side` input as a mask (square windows,
    /// so both axes share this `Field`).
    pub fn mask(&self, i: usize, j: usize, side: usize) -> Array2<bool> {
        let (rows, cols) = (self.clipped(i, side), self.clipped(j, side));
        Array2::from_shape_fn((side, side), |(a, b)| {
            rows.contains(&a) && cols.contains(&b)
        })
    }
}

// ANCHOR: receptive_fields
/// The receptive field after each layer of `stack` on an input of `input` pixels per
/// side, by the recurrence $j_l = j_{l-1} s_l$, $r_l = r_{l-1} + (k_l - 1) j_{l-1}$,
/// $a_l = a_{l-1} - p_l j_{l-1}$, starting from $j_0 = r_0 = 1$, $a_0 = 0$.
pub fn receptive_fields(stack: &[Window], input: usize) -> Vec<Field> {
    let mut f = Field {
        size: 1,
        jump: 1,
        start: 0,
        units: input,
    };
    let mut out = Vec::with_capacity(stack.len());
    for w in stack {
        let (k, s, p) = w.geometry();
        f = Field {
            size: f.size + (k - 1) * f.jump,
            jump: f.jump * s,
            start: f.start - (p * f.jump) as i64,
            units: out_size(f.units, k, s, p),
        };
        out.push(f);
    }
    out
}
// ANCHOR_END: receptive_fields

/// The stack as real layers, with `channels` channels after a grey input: each
/// convolution has every weight 1 and bias 0 and is followed by a ReLU. Layer names are
/// `l1`, `l2`, ... for the windows (`r1`, ... for the ReLUs).
pub fn probe(stack: &[Window], channels: usize) -> Named {
    let mut net = Named::new();
    let mut c = 1;
    for (i, w) in stack.iter().enumerate() {
        let name = format!("l{}", i + 1);
        match *w {
            Window::Conv {
                kernel,
                stride,
                padding,
            } => {
                let weight = Array4::ones((channels, c, kernel, kernel));
                let bias = ndarray::Array1::zeros(channels);
                net.push(&name, Conv2d::from_weights(weight, bias, stride, padding));
                net.push(
                    &format!("r{}", i + 1),
                    ActivationLayer::new(Activation::Relu),
                );
                c = channels;
            }
            Window::MaxPool { kernel, stride } => {
                net.push(&name, MaxPool2d::new((kernel, kernel), (stride, stride)))
            }
            Window::AvgPool { kernel, stride } => {
                net.push(&name, AvgPool2d::new((kernel, kernel), (stride, stride)))
            }
        }
    }
    net
}

// ANCHOR: impulse_fields
/// Measures the field of every unit of every window layer of `net` (built by [`probe`])
/// on a `side x side` grey input: one impulse image per pixel, and unit $(i, j)$ of a
/// layer sees pixel $p$ when its channel-0 output for impulse $p$ is non-zero.
///
/// Returns, per window layer (`l1`, `l2`, ...), a `(side², h_l, w_l)` array: entry
/// `[p, i, j]` says whether pixel `p = row * side + col` is in the field of unit
/// `(i, j)`.
pub fn impulse_fields(net: &mut Named, side: usize) -> Vec<(String, Array3<bool>)> {
    let n_pix = side * side;
    let mut out: Vec<(String, Array3<bool>)> = vec![];
    for start in (0..n_pix).step_by(128) {
        let end = (start + 128).min(n_pix);
        let mut x = ArrayD::zeros(vec![end - start, 1, side, side]);
        for p in start..end {
            x[[p - start, 0, p / side, p % side]] = 1.0;
        }
        let outs = net.forward_all(&x, Mode::Eval);
        let windows = outs.into_iter().filter(|(n, _)| n.starts_with('l'));
        for (k, (name, y)) in windows.enumerate() {
            let seen = y.index_axis(Axis(1), 0).mapv(|v| v != 0.0); // (batch, h_l, w_l)
            let seen = seen.into_dimensionality::<ndarray::Ix3>().expect("NCHW");
            if k == out.len() {
                let (_, h, w) = seen.dim();
                out.push((name, Array3::from_elem((n_pix, h, w), false)));
            }
            out[k].1.slice_mut(s![start..end, .., ..]).assign(&seen);
        }
    }
    out
}
// ANCHOR_END: impulse_fields

/// The measured field of unit `(i, j)` of one layer of [`impulse_fields`], as a
/// `side x side` mask.
pub fn measured_mask(
    fields: &Array3<bool>,
    i: usize,
    j: usize,
    side: usize,
) -> Array2<bool> {
    Array2::from_shape_fn((side, side), |(a, b)| fields[[a * side + b, i, j]])
}

// ANCHOR: gradient_field
/// The support of $\partial y_{0,0,i,j} / \partial x$ for the last layer of `net` on
/// input `x` `(1, 1, side, side)`: back-propagate a one-hot `dy` and keep the pixels
/// whose gradient is non-zero.
pub fn gradient_field(
    net: &mut Named,
    x: &ArrayD<f32>,
    i: usize,
    j: usize,
) -> Array2<bool> {
    let y = net.forward(x, Mode::Eval);
    let mut dy = ArrayD::zeros(y.raw_dim());
    dy[[0, 0, i, j]] = 1.0;
    let dx = net.backward(&dy);
    let (h, w) = (x.shape()[2], x.shape()[3]);
    Array2::from_shape_fn((h, w), |(a, b)| dx[[0, 0, a, b]] != 0.0)
}
// ANCHOR_END: gradient_field

/// Parameters (weights, no bias) of `n` stacked `k x k` convolutions with `c` channels
/// in and out: $n k^2 c^2$. Three $3\times3$ layers see a $7\times7$ field with
/// $27 c^2$ weights; one $7\times7$ layer needs $49 c^2$.
pub fn stack_weights(n: usize, k: usize, c: usize) -> usize {
    n * k * k * c * c
}
