//! Pooling and reshaping layers: [`MaxPool2d`], [`AvgPool2d`], [`GlobalAvgPool`],
//! [`Flatten`]. None has parameters.

use ndarray::{Array2, Array4, ArrayD, Axis, IxDyn};
use rayon::prelude::*;

use super::{as_nchw, out_size};
use crate::nn::{Layer, Mode, Module, Param};

// ANCHOR: maxpool
/// Max pooling over `kernel` windows moved by `stride` (no padding).
///
/// The backward pass routes each output gradient to the argmax of its window. **Ties**:
/// when several entries of a window share the maximum, the first one in row-major order
/// (smallest row, then smallest column) receives the whole gradient, as in PyTorch; the
/// others get zero. (Any convex combination of the tied entries is a valid subgradient.)
/// NaN entries are never selected. With overlapping windows (`stride < kernel`) an
/// entry that is the maximum of several windows receives the sum of their gradients.
///
/// # Shapes
/// - input: `(n, c, h, w)`
/// - output: `(n, c, h_out, w_out)`, `h_out = (h - kh) / sh + 1`
#[derive(Clone, Debug)]
pub struct MaxPool2d {
    /// Window `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Step `(sh, sw)`.
    pub stride: (usize, usize),
    /// Input shape and where each output's gradient goes.
    cache: Option<(Vec<usize>, Routes)>,
}

/// Where the gradient of each output of a [`MaxPool2d`] goes, in row-major output order.
#[derive(Clone, Debug)]
enum Routes {
    /// The flat row-major input index of the argmax.
    Flat(Vec<usize>),
    /// 2x2 windows at stride 2: the argmax's place in its window, `2 row + column`, one
    /// byte instead of eight.
    Quad(Vec<u8>),
}

impl MaxPool2d {
    /// Max pooling with this window and stride.
    pub fn new(kernel: (usize, usize), stride: (usize, usize)) -> Self {
        MaxPool2d {
            kernel,
            stride,
            cache: None,
        }
    }

    /// For each output of the last forward pass (in row-major order), the flat row-major
    /// index into the input of the entry its gradient is routed to; `None` before any
    /// forward pass.
    pub fn argmax(&self) -> Option<Vec<usize>> {
        let (shape, routes) = self.cache.as_ref()?;
        Some(match routes {
            Routes::Flat(arg) => arg.clone(),
            Routes::Quad(code) => {
                let (h, w) = (shape[2], shape[3]);
                let (ho, wo) = (h / 2, w / 2);
                let at = |k: usize, c: u8| {
                    let (plane, i, j) = (k / (ho * wo), k % (ho * wo) / wo, k % wo);
                    let (r, t) = (usize::from(c >> 1), usize::from(c & 1));
                    plane * h * w + (2 * i + r) * w + 2 * j + t
                };
                code.iter().enumerate().map(|(k, &c)| at(k, c)).collect()
            }
        })
    }
}
// ANCHOR_END: maxpool

impl Module for MaxPool2d {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

// ANCHOR: max_pool_2x2
/// The common case of [`MaxPool2d`], 2x2 windows with stride 2, on one `(h, w)` plane:
/// the same selection (first maximum in row-major order, NaN never selected), without
/// the general loop's bookkeeping, and with the argmax kept as its place in the window
/// (`2 row + column`, one byte).
fn max_pool_2x2(plane: &[f32], w: usize, y: &mut [f32], code: &mut [u8]) {
    let wo = w / 2;
    let rows = y.chunks_exact_mut(wo).zip(code.chunks_exact_mut(wo));
    for (i, (y, code)) in rows.enumerate() {
        let top = &plane[2 * i * w..][..2 * wo];
        let bottom = &plane[(2 * i + 1) * w..][..2 * wo];
        let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        for ((y, code), (t, b)) in y.iter_mut().zip(code.iter_mut()).zip(windows) {
            let (mut best, mut at) = (f32::NEG_INFINITY, 0u8);
            // Strict `>` as selects: the first maximum wins, and no branch mispredicts.
            for (v, place) in [(t[0], 0u8), (t[1], 1), (b[0], 2), (b[1], 3)] {
                let take = v > best;
                best = if take { v } else { best };
                at = if take { place } else { at };
            }
            *y = best;
            *code = at;
        }
    }
}
// ANCHOR_END: max_pool_2x2

/// The output shape of a pooling window over `(n, c, h, w)`.
fn pool_out(
    dim: (usize, usize, usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
) -> (usize, usize, usize, usize) {
    let (n, c, h, w) = dim;
    (
        n,
        c,
        out_size(h, kernel.0, stride.0, 0),
        out_size(w, kernel.1, stride.1, 0),
    )
}

/// Panics with the shapes unless `dy` has shape `want`.
fn expect_dy(dy: &ArrayD<f32>, want: &[usize], who: &str) {
    assert_eq!(
        dy.shape(),
        want,
        "{who}: dy {:?} vs output shape {want:?}",
        dy.shape()
    );
}

impl Layer for MaxPool2d {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let x4 = as_nchw(x, None, "MaxPool2d::forward");
        let (n, c, h, w) = x4.dim();
        let out = pool_out(x4.dim(), self.kernel, self.stride);
        let ((kh, kw), (sh, sw)) = (self.kernel, self.stride);
        let x4 = x4.as_standard_layout();
        let xs = x4.as_slice().expect("standard layout");
        let plane_out = out.2 * out.3;
        let mut y = vec![0.0f32; n * c * plane_out];
        let po = plane_out.max(1);
        if (kh, kw, sh, sw) == (2, 2, 2, 2) {
            let mut code = vec![0u8; y.len()];
            // One (image, channel) plane per task.
            y.par_chunks_mut(po)
                .zip(code.par_chunks_mut(po))
                .enumerate()
                .for_each(|(pl, (y, code))| {
                    max_pool_2x2(&xs[pl * h * w..][..h * w], w, y, code);
                });
            self.cache = Some((x.shape().to_vec(), Routes::Quad(code)));
            let shape = IxDyn(&[out.0, out.1, out.2, out.3]);
            return ArrayD::from_shape_vec(shape, y).expect("sizes");
        }
        let mut arg = vec![0usize; y.len()];
        // One (image, channel) plane per task; outputs in row-major order.
        y.par_chunks_mut(po)
            .zip(arg.par_chunks_mut(po))
            .enumerate()
            .for_each(|(pl, (y, arg))| {
                let base = pl * h * w;
                let plane = &xs[base..base + h * w];
                for i in 0..out.2 {
                    for j in 0..out.3 {
                        let (r0, c0) = (i * sh, j * sw);
                        let (mut best, mut at) = (f32::NEG_INFINITY, r0 * w + c0);
                        for r in r0..r0 + kh {
                            let row = &plane[r * w + c0..][..kw];
                            for (t, &v) in row.iter().enumerate() {
                                // Strict `>`: the first maximum in row-major order wins
                                // ties. Written as selects, so no branch mispredicts.
                                let take = v > best;
                                best = if take { v } else { best };
                                at = if take { r * w + c0 + t } else { at };
                            }
                        }
                        y[i * out.3 + j] = best;
                        arg[i * out.3 + j] = base + at;
                    }
                }
            });
        self.cache = Some((x.shape().to_vec(), Routes::Flat(arg)));
        ArrayD::from_shape_vec(IxDyn(&[out.0, out.1, out.2, out.3]), y).expect("sizes")
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let (shape, arg) = self
            .cache
            .as_ref()
            .expect("MaxPool2d::backward called before forward");
        let out = pool_out(
            (shape[0], shape[1], shape[2], shape[3]),
            self.kernel,
            self.stride,
        );
        expect_dy(dy, &[out.0, out.1, out.2, out.3], "MaxPool2d::backward");
        let dy = dy.as_standard_layout();
        let ds = dy.as_slice().expect("standard layout");
        let (plane_in, plane_out) = (shape[2] * shape[3], (out.2 * out.3).max(1));
        let mut dx = vec![0.0f32; shape.iter().product()];
        let dx_planes = dx.par_chunks_mut(plane_in.max(1));
        // Each plane's argmaxes lie in that plane: one task per plane, no races.
        match arg {
            Routes::Flat(arg) => dx_planes
                .zip(ds.par_chunks(plane_out).zip(arg.par_chunks(plane_out)))
                .enumerate()
                .for_each(|(pl, (dx, (ds, arg)))| {
                    for (&k, &d) in arg.iter().zip(ds) {
                        dx[k - pl * plane_in] += d;
                    }
                }),
            Routes::Quad(code) => {
                let w = shape[3];
                dx_planes
                    .zip(ds.par_chunks(plane_out).zip(code.par_chunks(plane_out)))
                    .for_each(|(dx, (ds, code))| {
                        let rows = ds.chunks_exact(out.3).zip(code.chunks_exact(out.3));
                        for (i, (ds, code)) in rows.enumerate() {
                            // The two input rows of this row of windows.
                            let pair = &mut dx[2 * i * w..][..2 * w];
                            for (j, (&c, &d)) in code.iter().zip(ds).enumerate() {
                                let (r, t) = (usize::from(c >> 1), usize::from(c & 1));
                                pair[r * w + 2 * j + t] += d;
                            }
                        }
                    });
            }
        }
        ArrayD::from_shape_vec(IxDyn(shape), dx).expect("sizes match")
    }
}

// ANCHOR: avgpool
/// Average pooling over `kernel` windows moved by `stride` (no padding): every window's
/// mean; the backward pass spreads $\delta / (k_h k_w)$ over the window.
///
/// # Shapes
/// - input: `(n, c, h, w)`
/// - output: `(n, c, h_out, w_out)`, `h_out = (h - kh) / sh + 1`
#[derive(Clone, Debug)]
pub struct AvgPool2d {
    /// Window `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Step `(sh, sw)`.
    pub stride: (usize, usize),
    in_shape: Option<(usize, usize, usize, usize)>,
}

impl AvgPool2d {
    /// Average pooling with this window and stride.
    pub fn new(kernel: (usize, usize), stride: (usize, usize)) -> Self {
        AvgPool2d {
            kernel,
            stride,
            in_shape: None,
        }
    }
}
// ANCHOR_END: avgpool

impl Module for AvgPool2d {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for AvgPool2d {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let x4 = as_nchw(x, None, "AvgPool2d::forward");
        let out = pool_out(x4.dim(), self.kernel, self.stride);
        let (kh, kw) = self.kernel;
        let scale = 1.0 / (kh * kw) as f32;
        let y = Array4::from_shape_fn(out, |(s, ch, i, j)| {
            let (r0, c0) = (i * self.stride.0, j * self.stride.1);
            let mut acc = 0.0f32;
            for r in r0..r0 + kh {
                for t in c0..c0 + kw {
                    acc += x4[[s, ch, r, t]];
                }
            }
            acc * scale
        });
        self.in_shape = Some(x4.dim());
        y.into_dyn()
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let dim = self
            .in_shape
            .expect("AvgPool2d::backward called before forward");
        let out = pool_out(dim, self.kernel, self.stride);
        expect_dy(dy, &[out.0, out.1, out.2, out.3], "AvgPool2d::backward");
        let (kh, kw) = self.kernel;
        let scale = 1.0 / (kh * kw) as f32;
        let mut dx = Array4::zeros(dim);
        for ((s, ch, i, j), &d) in dy
            .view()
            .into_dimensionality::<ndarray::Ix4>()
            .expect("4-D")
            .indexed_iter()
        {
            let (r0, c0) = (i * self.stride.0, j * self.stride.1);
            for r in r0..r0 + kh {
                for t in c0..c0 + kw {
                    dx[[s, ch, r, t]] += d * scale;
                }
            }
        }
        dx.into_dyn()
    }
}

/// Global average pooling: the mean of each channel's `h × w` plane.
///
/// # Shapes
/// - input: `(n, c, h, w)`
/// - output: `(n, c)`
#[derive(Clone, Debug, Default)]
pub struct GlobalAvgPool {
    in_shape: Option<(usize, usize, usize, usize)>,
}

impl GlobalAvgPool {
    /// A global average pool.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for GlobalAvgPool {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for GlobalAvgPool {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let x4 = as_nchw(x, None, "GlobalAvgPool::forward");
        let (n, c, h, w) = x4.dim();
        let y = x4
            .to_owned()
            .into_shape_with_order((n, c, h * w))
            .expect("standard layout")
            .mean_axis(Axis(2))
            .expect("h w > 0");
        self.in_shape = Some((n, c, h, w));
        y.into_dyn()
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let (n, c, h, w) = self
            .in_shape
            .expect("GlobalAvgPool::backward called before forward");
        expect_dy(dy, &[n, c], "GlobalAvgPool::backward");
        let scale = 1.0 / (h * w) as f32;
        Array4::from_shape_fn((n, c, h, w), |(s, ch, _, _)| dy[[s, ch]] * scale)
            .into_dyn()
    }
}

/// Flattens every sample: `(n, d1, d2, ...)` to `(n, d1 d2 ...)` in row-major order
/// (for NCHW, channel by channel), the bridge from convolutions to [`Linear`] layers.
///
/// [`Linear`]: crate::nn::Linear
///
/// # Shapes
/// - input: `(n, ...)` with at least one axis
/// - output: `(n, product of the other axes)`
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    in_shape: Option<Vec<usize>>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for Flatten {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for Flatten {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        assert!(
            x.ndim() >= 1,
            "Flatten::forward: expected (n, ...), got {:?}",
            x.shape()
        );
        let n = x.shape()[0];
        let d = x.shape()[1..].iter().product::<usize>();
        self.in_shape = Some(x.shape().to_vec());
        let y: Array2<f32> = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, d))
            .expect("standard layout");
        y.into_dyn()
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let shape = self
            .in_shape
            .as_ref()
            .expect("Flatten::backward called before forward");
        let want = [shape[0], shape[1..].iter().product::<usize>()];
        expect_dy(dy, &want, "Flatten::backward");
        dy.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(shape))
            .expect("sizes match")
    }
}
