//! Grouped and depthwise convolution.
//!
//! **Groups.** A convolution with $g$ groups cuts the $C_i$ input channels and the $C_o$
//! output channels into $g$ consecutive slices and convolves slice $\gamma$ of the input
//! only into slice $\gamma$ of the output: output channel $o$ belongs to group
//! $\gamma(o) = \lfloor o / (C_o/g) \rfloor$ and reads the $C_i/g$ input channels
//! $\gamma(o)\,C_i/g + c'$, $c' < C_i/g$. The weight keeps the PyTorch and candle layout
//! $w \in \mathbb{R}^{C_o \times (C_i/g) \times K_h \times K_w}$, and
//!
//! $$y_{n,o,i,j} = b_o + \sum_{c' < C_i/g}\sum_{p,q} w_{o,c',p,q}\,
//! \bar x_{n,\,\gamma(o) C_i/g + c',\,si+p,\,sj+q}.$$
//!
//! It is $g$ independent convolutions side by side, so the gradients are those of the
//! [module docs](super) group by group. $g = 1$ is the ordinary convolution; AlexNet's
//! two-GPU layers are $g = 2$.
//!
//! **Depthwise.** With $g = C_i = C_o$ every output channel filters its own input
//! channel with one $K_h \times K_w$ kernel: $y_{n,c,i,j} = b_c + \sum_{p,q}
//! w_{c,0,p,q}\,\bar x_{n,c,si+p,sj+q}$. Followed by a $1 \times 1$ convolution that
//! mixes the channels, it is the *depthwise separable* convolution of MobileNet and
//! EfficientNet: $K^2 C_i + C_i C_o$ multiply-adds per output pixel instead of
//! $K^2 C_i C_o$.
//!
//! [`grouped_conv2d_direct`] and [`grouped_conv2d_direct_backward`] are the sums as
//! loops, the definition. [`GroupedConv2d`] is the fast layer: a depthwise layer is
//! computed plane by plane (each output row is a sum of $K_h K_w$ scaled, shifted input
//! rows: contiguous loops the compiler vectorises, no im2col, in parallel over (image,
//! channel)); any other grouping by im2col and one matrix product per (image, group).

use ndarray::{
    s, Array1, Array2, Array4, ArrayD, ArrayView1, ArrayView2, ArrayView4, ArrayViewMut2,
};
use ndarray::{Ix1, Ix4, IxDyn};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::im2col::{
    col2im_rows_add, conv2d_im2col, conv2d_im2col_backward, im2col_rows_into,
};
use super::{as_nchw, out_size, BatchNorm2d, ConvGrads};
use crate::gemm::{sgemm, sgemm_serial};
use crate::nn::{join, Layer, Mode, Module, Param};

/// The padded-input index `s * i + p - padding` if it falls inside `0..len`.
#[inline]
fn src(i: usize, p: usize, stride: usize, padding: usize, len: usize) -> Option<usize> {
    (stride * i + p).checked_sub(padding).filter(|&v| v < len)
}

/// The output columns `j` whose input column `s j + q - padding` lies inside `0..w`:
/// the range `j0..j1` (every other `j` reads padding).
#[inline]
fn valid_cols(
    q: usize,
    stride: usize,
    padding: usize,
    w: usize,
    wo: usize,
) -> (usize, usize) {
    let j0 = padding.saturating_sub(q).div_ceil(stride);
    let j1 = (w + padding).saturating_sub(q).div_ceil(stride).min(wo);
    (j0.min(j1), j1)
}

/// Panics with the shapes unless `x` `(n, c_in, h, w)`, `w` `(c_out, c_in/g, kh, kw)`
/// and `b` `(c_out,)` fit together with `groups` groups. Returns the output shape.
fn check_grouped(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    c_out_bias: usize,
    stride: usize,
    padding: usize,
    groups: usize,
) -> (usize, usize, usize, usize) {
    let (n, c, h, wd) = x.dim();
    let (co, cig, kh, kw) = w.dim();
    assert!(
        groups > 0
            && c.is_multiple_of(groups)
            && co.is_multiple_of(groups)
            && cig * groups == c
            && c_out_bias == co,
        "grouped conv2d: input {:?}, weight {:?} and bias ({c_out_bias},) do not fit \
         {groups} groups",
        x.shape(),
        w.shape(),
    );
    (
        n,
        co,
        out_size(h, kh, stride, padding),
        out_size(wd, kw, stride, padding),
    )
}

/// [`check_grouped`] for a backward pass, plus `dy` against the output shape.
fn check_grouped_backward(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    dy: &ArrayView4<f32>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> (usize, usize, usize, usize) {
    let out = check_grouped(x, w, w.dim().0, stride, padding, groups);
    assert_eq!(
        dy.dim(),
        out,
        "grouped conv2d backward: dy {:?} vs output shape {out:?}",
        dy.shape()
    );
    out
}

// ANCHOR: grouped_direct
/// The grouped convolution as its definition: output channel `o` of group
/// `γ = o / (c_out/g)` sums over the `c_in/g` input channels of that group,
/// $y_{n,o,i,j} = b_o + \sum_{c',p,q} w_{o,c',p,q}\,\bar x_{n,\gamma C_i/g + c',si+p,sj+q}$.
///
/// # Shapes
/// - `x`: `(n, c_in, h, w)`, `w`: `(c_out, c_in / groups, kh, kw)`, `b`: `(c_out,)`
/// - output: `(n, c_out, h_out, w_out)`, `h_out = (h + 2 padding - kh) / stride + 1`
pub fn grouped_conv2d_direct(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    b: &ArrayView1<f32>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Array4<f32> {
    let (n, co, ho, wo) = check_grouped(x, w, b.len(), stride, padding, groups);
    let (_, _, h, wd) = x.dim();
    let (_, cig, kh, kw) = w.dim();
    let cog = co / groups;
    let mut y = Array4::zeros((n, co, ho, wo));
    for s in 0..n {
        for o in 0..co {
            let c0 = (o / cog) * cig; // the first input channel of o's group
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = b[o];
                    for c in 0..cig {
                        for p in 0..kh {
                            let Some(r) = src(i, p, stride, padding, h) else {
                                continue;
                            };
                            for q in 0..kw {
                                if let Some(t) = src(j, q, stride, padding, wd) {
                                    acc += w[[o, c, p, q]] * x[[s, c0 + c, r, t]];
                                }
                            }
                        }
                    }
                    y[[s, o, i, j]] = acc;
                }
            }
        }
    }
    y
}
// ANCHOR_END: grouped_direct

/// The backward pass of [`grouped_conv2d_direct`] as loops: every product of the
/// forward pass sends $\delta\,\bar x$ to its weight and $\delta\, w$ to its pixel.
/// Returns `(dx, dw, db)`.
///
/// # Shapes
/// - `x`: `(n, c_in, h, w)`, `w`: `(c_out, c_in / groups, kh, kw)`,
///   `dy`: `(n, c_out, h_out, w_out)`
/// - `dx` like `x`, `dw` like `w`, `db`: `(c_out,)`
pub fn grouped_conv2d_direct_backward(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    dy: &ArrayView4<f32>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> ConvGrads {
    let out = check_grouped_backward(x, w, dy, stride, padding, groups);
    let (n, co, ho, wo) = out;
    let (_, _, h, wd) = x.dim();
    let (_, cig, kh, kw) = w.dim();
    let cog = co / groups;
    let mut dx = Array4::zeros(x.raw_dim());
    let mut dw = Array4::zeros(w.raw_dim());
    let mut db = Array1::zeros(co);
    for s in 0..n {
        for o in 0..co {
            let c0 = (o / cog) * cig;
            for i in 0..ho {
                for j in 0..wo {
                    let d = dy[[s, o, i, j]];
                    db[o] += d;
                    for c in 0..cig {
                        for p in 0..kh {
                            let Some(r) = src(i, p, stride, padding, h) else {
                                continue;
                            };
                            for q in 0..kw {
                                if let Some(t) = src(j, q, stride, padding, wd) {
                                    dw[[o, c, p, q]] += d * x[[s, c0 + c, r, t]];
                                    dx[[s, c0 + c, r, t]] += d * w[[o, c, p, q]];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// The grouped convolution as one im2col + matrix product per group (chapter 4's
/// [`conv2d_im2col`] on each group's channels): the way a
/// library without a depthwise kernel computes it, and the baseline of `dlbook bench
/// --name depthwise`.
///
/// # Shapes
/// - as [`grouped_conv2d_direct`]
pub fn grouped_conv2d_im2col(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    b: &ArrayView1<f32>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Array4<f32> {
    let (n, co, ho, wo) = check_grouped(x, w, b.len(), stride, padding, groups);
    let (cig, cog) = (w.dim().1, co / groups);
    let mut y = Array4::zeros((n, co, ho, wo));
    for g in 0..groups {
        let (xs, os) = (g * cig..(g + 1) * cig, g * cog..(g + 1) * cog);
        let y_g = conv2d_im2col(
            &x.slice(s![.., xs, .., ..]),
            &w.slice(s![os.clone(), .., .., ..]),
            &b.slice(s![os.clone()]),
            stride,
            padding,
        );
        y.slice_mut(s![.., os, .., ..]).assign(&y_g);
    }
    y
}

/// The backward pass of [`grouped_conv2d_im2col`], group by group: `(dx, dw, db)`.
///
/// # Shapes
/// - as [`grouped_conv2d_direct_backward`]
pub fn grouped_conv2d_im2col_backward(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    dy: &ArrayView4<f32>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> ConvGrads {
    let out = check_grouped_backward(x, w, dy, stride, padding, groups);
    let (cig, cog) = (w.dim().1, out.1 / groups);
    let mut dx = Array4::zeros(x.raw_dim());
    let mut dw = Array4::zeros(w.raw_dim());
    let mut db = Array1::zeros(out.1);
    for g in 0..groups {
        let (xs, os) = (g * cig..(g + 1) * cig, g * cog..(g + 1) * cog);
        let (dx_g, dw_g, db_g) = conv2d_im2col_backward(
            &x.slice(s![.., xs.clone(), .., ..]),
            &w.slice(s![os.clone(), .., .., ..]),
            &dy.slice(s![.., os.clone(), .., ..]),
            stride,
            padding,
        );
        dx.slice_mut(s![.., xs, .., ..]).assign(&dx_g);
        dw.slice_mut(s![os.clone(), .., .., ..]).assign(&dw_g);
        db.slice_mut(s![os]).assign(&db_g);
    }
    (dx, dw, db)
}

// ANCHOR: depthwise_plane
/// One output plane of a depthwise convolution: `y` (`ho x wo`, filled with the bias)
/// plus the `kh x kw` kernel `k` slid over the input plane `x` (`h x w`). For each
/// kernel entry `(p, q)` an output row gains `k[p, q]` times a shifted input row: with
/// stride 1 both rows are contiguous, a loop the compiler turns into vector
/// instructions.
#[allow(clippy::too_many_arguments)]
fn depthwise_plane(
    x: &[f32],
    (h, w): (usize, usize),
    k: &[f32],
    (kh, kw): (usize, usize),
    stride: usize,
    padding: usize,
    y: &mut [f32],
    wo: usize,
) {
    for (i, y_row) in y.chunks_exact_mut(wo).enumerate() {
        for p in 0..kh {
            let Some(r) = src(i, p, stride, padding, h) else {
                continue; // a padding row
            };
            let x_row = &x[r * w..][..w];
            for q in 0..kw {
                let wq = k[p * kw + q];
                let (j0, j1) = valid_cols(q, stride, padding, w, wo);
                if j0 == j1 {
                    continue;
                }
                let t0 = stride * j0 + q - padding;
                let ys = &mut y_row[j0..j1];
                if stride == 1 {
                    for (y, &x) in ys.iter_mut().zip(&x_row[t0..]) {
                        *y += wq * x;
                    }
                } else {
                    for (y, &x) in ys.iter_mut().zip(x_row[t0..].iter().step_by(stride)) {
                        *y += wq * x;
                    }
                }
            }
        }
    }
}
// ANCHOR_END: depthwise_plane

/// The backward pass of [`depthwise_plane`] for one (input plane, output plane) pair:
/// adds $\partial L/\partial x$ into `dx` (when given) and returns the `kh kw` kernel
/// gradient, each entry the dot product of an output-gradient row with a shifted input
/// row.
#[allow(clippy::too_many_arguments)]
fn depthwise_plane_backward(
    x: &[f32],
    (h, w): (usize, usize),
    k: &[f32],
    (kh, kw): (usize, usize),
    stride: usize,
    padding: usize,
    dy: &[f32],
    wo: usize,
    mut dx: Option<&mut [f32]>,
    dk: &mut [f32],
) {
    for (i, dy_row) in dy.chunks_exact(wo).enumerate() {
        for p in 0..kh {
            let Some(r) = src(i, p, stride, padding, h) else {
                continue;
            };
            let x_row = &x[r * w..][..w];
            for q in 0..kw {
                let (j0, j1) = valid_cols(q, stride, padding, w, wo);
                if j0 == j1 {
                    continue;
                }
                let t0 = stride * j0 + q - padding;
                let ds = &dy_row[j0..j1];
                let wq = k[p * kw + q];
                let dx_row = dx.as_deref_mut().map(|dx| &mut dx[r * w..][..w]);
                if stride == 1 {
                    // Contiguous slices: a dot product and an axpy.
                    dk[p * kw + q] += dot(ds, &x_row[t0..t0 + ds.len()]);
                    if let Some(dx_row) = dx_row {
                        for (dxv, &d) in dx_row[t0..t0 + ds.len()].iter_mut().zip(ds) {
                            *dxv += wq * d;
                        }
                    }
                } else {
                    let mut acc = 0.0f32;
                    for (&d, &x) in ds.iter().zip(x_row[t0..].iter().step_by(stride)) {
                        acc += d * x;
                    }
                    dk[p * kw + q] += acc;
                    if let Some(dx_row) = dx_row {
                        for (dxv, &d) in dx_row[t0..].iter_mut().step_by(stride).zip(ds) {
                            *dxv += wq * d;
                        }
                    }
                }
            }
        }
    }
}

/// $\sum_i a_i b_i$ with eight partial sums, added in a fixed order: the compiler can
/// keep them in one vector register (a single running sum would force one addition
/// after the other), and the result does not depend on the number of threads.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

// ANCHOR: grouped_layer
/// A grouped 2-D convolution layer (cross-correlation, zero padding), with an optional
/// bias. Depthwise layers (one input channel per group) run plane by plane in parallel
/// over (image, channel); other groupings by im2col and one matrix product per (image,
/// group). A layer without a bias has no `bias` parameter at all, so its parameter count
/// is PyTorch's `bias=False` count.
///
/// # Shapes
/// - input `x`: `(n, c_in, h, w)`
/// - output `y`: `(n, c_out, h_out, w_out)`, `h_out = (h + 2 padding - kh) / stride + 1`
/// - `weight`: `(c_out, c_in / groups, kh, kw)`, `bias`: `(c_out,)`
#[derive(Clone, Debug)]
pub struct GroupedConv2d {
    /// Weights, `(c_out, c_in / groups, kh, kw)`.
    pub weight: Param,
    /// Bias, `(c_out,)`, if the layer has one.
    pub bias: Option<Param>,
    /// Step between receptive fields, on both axes.
    pub stride: usize,
    /// Zeros added on each side of both spatial axes.
    pub padding: usize,
    /// Channel groups: `c_in` and `c_out` are multiples of it.
    pub groups: usize,
    /// The input of the last forward.
    cache: Option<Array4<f32>>,
}
// ANCHOR_END: grouped_layer

impl GroupedConv2d {
    /// A `c_in -> c_out` convolution in `groups` groups with a `(kh, kw)` kernel,
    /// He-normal weights ($\sigma^2 = 2 / (k_h k_w\, c_\text{in}/g)$, the fan-in of one
    /// output) from `rng`, and a zero bias if `bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize),
        stride: usize,
        padding: usize,
        groups: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        assert!(
            groups > 0 && c_in.is_multiple_of(groups) && c_out.is_multiple_of(groups),
            "GroupedConv2d: {groups} groups do not divide {c_in} -> {c_out} channels"
        );
        let fan_in = (c_in / groups) * kernel.0 * kernel.1;
        let std = (2.0 / fan_in as f32).sqrt();
        let normal = Normal::new(0.0f32, std).expect("a finite, positive std");
        let w = Array4::from_shape_fn((c_out, c_in / groups, kernel.0, kernel.1), |_| {
            normal.sample(rng)
        });
        let b = bias.then(|| Array1::zeros(c_out));
        Self::from_weights(w, b, stride, padding, groups)
    }

    /// A depthwise `k x k` convolution over `c` channels (`groups = c`), no bias.
    pub fn depthwise(
        c: usize,
        k: usize,
        stride: usize,
        padding: usize,
        rng: &mut impl Rng,
    ) -> Self {
        Self::new(c, c, (k, k), stride, padding, c, false, rng)
    }

    /// A layer with these weights `(c_out, c_in / groups, kh, kw)` and bias `(c_out,)`.
    pub fn from_weights(
        weight: Array4<f32>,
        bias: Option<Array1<f32>>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Self {
        let co = weight.dim().0;
        assert!(
            groups > 0 && co.is_multiple_of(groups),
            "GroupedConv2d: weight {:?} does not split into {groups} groups",
            weight.shape()
        );
        if let Some(b) = &bias {
            assert_eq!(
                b.len(),
                co,
                "GroupedConv2d: weight {:?} and bias {:?} disagree on c_out",
                weight.shape(),
                b.shape()
            );
        }
        assert!(stride > 0, "GroupedConv2d: stride must be positive");
        GroupedConv2d {
            weight: Param::new(weight.into_dyn()),
            bias: bias.map(|b| Param::new(b.into_dyn())),
            stride,
            padding,
            groups,
            cache: None,
        }
    }

    /// The weights as a 4-D view.
    pub fn w(&self) -> ArrayView4<'_, f32> {
        self.weight
            .value
            .view()
            .into_dimensionality::<Ix4>()
            .expect("weight is 4-D")
    }

    /// The bias as a 1-D array (zeros when the layer has none).
    pub fn b(&self) -> Array1<f32> {
        match &self.bias {
            Some(b) => b
                .value
                .view()
                .into_dimensionality::<Ix1>()
                .expect("bias is 1-D")
                .to_owned(),
            None => Array1::zeros(self.c_out()),
        }
    }

    /// Input channels.
    pub fn c_in(&self) -> usize {
        self.weight.value.shape()[1] * self.groups
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.weight.value.shape()[0]
    }

    /// Whether every group has one input channel (depthwise, possibly with several
    /// output channels per input channel): the plane-by-plane path.
    pub fn is_depthwise(&self) -> bool {
        self.weight.value.shape()[1] == 1
    }

    /// The output `(h_out, w_out)` for an `(h, w)` input.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let (_, _, kh, kw) = self.w().dim();
        (
            out_size(h, kh, self.stride, self.padding),
            out_size(w, kw, self.stride, self.padding),
        )
    }

    // ANCHOR: fold_grouped
    /// Folds the inference-mode batch norm `bn` that follows this layer into its weights
    /// and bias ([`BatchNorm2d::fold_into`]); the layer gains a bias if it had none.
    /// Afterwards this layer alone computes what the pair computed in evaluation mode.
    pub fn fold_batchnorm(&mut self, bn: &BatchNorm2d) {
        let mut b = self.b();
        bn.fold_into(&mut self.weight.value, &mut b);
        self.bias = Some(Param::new(b.into_dyn()));
    }
    // ANCHOR_END: fold_grouped

    /// The forward pass of `x` (standard layout).
    fn output(&self, x: &ArrayView4<f32>) -> ArrayD<f32> {
        let (n, c, h, wd) = x.dim();
        let w = self.w();
        let (co, cig, kh, kw) = w.dim();
        let (ho, wo) = self.out_hw(h, wd);
        let (g, cog, hw) = (self.groups, co / self.groups, ho * wo);
        let xs = x.as_slice().expect("standard layout");
        let ws = self.weight.value.as_slice().expect("standard layout");
        let b = self.b();
        let (s, p) = (self.stride, self.padding);
        let mut y = vec![0.0f32; n * co * hw];
        if self.is_depthwise() {
            // One task per (image, output channel): its plane, from its input plane.
            y.par_chunks_mut(hw).enumerate().for_each(|(t, y)| {
                let (img, o) = (t / co, t % co);
                let ci = o / cog; // the group's single input channel
                y.fill(b[o]);
                let x = &xs[(img * c + ci) * h * wd..][..h * wd];
                let k = &ws[o * kh * kw..][..kh * kw];
                depthwise_plane(x, (h, wd), k, (kh, kw), s, p, y, wo);
            });
        } else {
            // One task per (image, group): its output channels are one contiguous
            // (c_out/g, ho wo) block of y, W_g X_col of the group's input channels.
            let k = cig * kh * kw;
            let gemm = gemm_for(n * g);
            y.par_chunks_mut(cog * hw).enumerate().for_each(|(t, y)| {
                let (img, grp) = (t / g, t % g);
                let x_g = x.slice(s![img..img + 1, grp * cig..(grp + 1) * cig, .., ..]);
                let w_g =
                    ArrayView2::from_shape((cog, k), &ws[grp * cog * k..][..cog * k])
                        .expect("contiguous weights");
                let mut y_mat = ArrayViewMut2::from_shape((cog, hw), y).expect("sizes");
                with_cols(&x_g, (kh, kw), s, p, |cols| {
                    gemm(1.0, &w_g, cols, 0.0, &mut y_mat);
                });
                for (mut row, &bo) in y_mat
                    .rows_mut()
                    .into_iter()
                    .zip(&b.as_slice().expect("contiguous")[grp * cog..])
                {
                    row += bo;
                }
            });
        }
        ArrayD::from_shape_vec(IxDyn(&[n, co, ho, wo]), y).expect("sizes match")
    }

    /// The backward pass: accumulates `dW` (and `db`), and returns `dx` if `want_dx`.
    /// Every task returns its share of `dW`; the shares are added in task order, so the
    /// sums do not depend on the number of threads.
    fn gradients(&mut self, dy: &ArrayD<f32>, want_dx: bool) -> Option<ArrayD<f32>> {
        let x = self
            .cache
            .as_ref()
            .expect("GroupedConv2d::backward called before forward");
        let (n, c, h, wd) = x.dim();
        let w = self.w();
        let (co, cig, kh, kw) = w.dim();
        let (ho, wo) = self.out_hw(h, wd);
        let dy4 = match dy.view().into_dimensionality::<Ix4>() {
            Ok(v) if v.dim() == (n, co, ho, wo) => v,
            _ => panic!(
                "GroupedConv2d::backward: dy {:?} vs output shape {:?}",
                dy.shape(),
                (n, co, ho, wo)
            ),
        };
        let dy4 = dy4.as_standard_layout();
        let ds = dy4.as_slice().expect("standard layout");
        let xs = x.as_slice().expect("standard layout");
        let ws = self.weight.value.as_slice().expect("standard layout");
        let (g, cog, hw, k) = (self.groups, co / self.groups, ho * wo, cig * kh * kw);
        let (s, p) = (self.stride, self.padding);
        // One task per (image, group); its input channels are a contiguous block of dx.
        let per_task = cig * h * wd;
        let mut dx = vec![0.0f32; if want_dx { n * c * h * wd } else { 0 }];
        let mut dx_blocks: Vec<&mut [f32]> = dx.chunks_mut(per_task).collect();
        dx_blocks.resize_with(n * g, Default::default); // empty without dx
        let depthwise = self.is_depthwise();
        let gemm = gemm_for(n * g);
        let shares: Vec<Vec<f32>> = dx_blocks
            .into_par_iter()
            .enumerate()
            .map(|(t, dx)| {
                let (img, grp) = (t / g, t % g);
                let dy_g = &ds[(img * co + grp * cog) * hw..][..cog * hw];
                let mut dw = vec![0.0f32; cog * k];
                if depthwise {
                    let x = &xs[(img * c + grp) * h * wd..][..h * wd];
                    let mut dx = (!dx.is_empty()).then_some(dx);
                    for (o, dk) in dw.chunks_exact_mut(kh * kw).enumerate() {
                        let ko = &ws[(grp * cog + o) * kh * kw..][..kh * kw];
                        let dy = &dy_g[o * hw..][..hw];
                        let dx = dx.as_deref_mut();
                        depthwise_plane_backward(
                            x,
                            (h, wd),
                            ko,
                            (kh, kw),
                            s,
                            p,
                            dy,
                            wo,
                            dx,
                            dk,
                        );
                    }
                } else {
                    let x_g =
                        x.slice(s![img..img + 1, grp * cig..(grp + 1) * cig, .., ..]);
                    let w_g =
                        ArrayView2::from_shape((cog, k), &ws[grp * cog * k..][..cog * k])
                            .expect("contiguous weights");
                    let delta = ArrayView2::from_shape((cog, hw), dy_g).expect("sizes");
                    let mut dw_m =
                        ArrayViewMut2::from_shape((cog, k), &mut dw[..]).expect("sizes");
                    // dW_g = Delta X_col^T
                    with_cols(&x_g, (kh, kw), s, p, |cols| {
                        gemm(1.0, &delta, &cols.t(), 0.0, &mut dw_m);
                    });
                    if !dx.is_empty() {
                        // dX_col = W_g^T Delta, scattered back by col2im
                        let mut dcols = Array2::zeros((k, hw));
                        gemm(1.0, &w_g.t(), &delta, 0.0, &mut dcols.view_mut());
                        col2im_rows_add(
                            &dcols.view(),
                            (1, cig, h, wd),
                            (kh, kw),
                            s,
                            p,
                            dx,
                        );
                    }
                }
                dw
            })
            .collect();
        let grad = self
            .weight
            .grad
            .as_slice_mut()
            .expect("contiguous gradient");
        for (t, share) in shares.iter().enumerate() {
            let grp = t % g;
            for (gv, d) in grad[grp * cog * k..][..cog * k].iter_mut().zip(share) {
                *gv += d;
            }
        }
        if let Some(bias) = &mut self.bias {
            // db_o = the sum of the output gradient over images and positions.
            for (o, gb) in bias.grad.iter_mut().enumerate() {
                for img in 0..n {
                    *gb += ds[(img * co + o) * hw..][..hw].iter().sum::<f32>();
                }
            }
        }
        want_dx.then(|| {
            ArrayD::from_shape_vec(IxDyn(&[n, c, h, wd]), dx).expect("sizes match")
        })
    }
}

/// The matrix product for `tasks` parallel (image, group) tasks: with fewer tasks than
/// threads (a 1x1 convolution on one image) each product is itself split over the
/// threads, by blocks of its output ([`sgemm`]: the sums, and so the bits, do not depend
/// on the number of threads); otherwise every task runs its product on its own thread.
fn gemm_for(
    tasks: usize,
) -> fn(f32, &ArrayView2<f32>, &ArrayView2<f32>, f32, &mut ArrayViewMut2<f32>) {
    if tasks < rayon::current_num_threads() {
        sgemm
    } else {
        sgemm_serial
    }
}

/// Calls `f` with the column matrix $X_\text{col}$ `(c kh kw, h_out w_out)` of one image
/// `x` `(1, c, h, w)`. A 1x1 kernel with stride 1 and no padding reads every pixel once,
/// in order: then $X_\text{col}$ is the image itself, `(c, h w)`, and nothing is copied.
fn with_cols(
    x: &ArrayView4<f32>,
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
    f: impl FnOnce(&ArrayView2<f32>),
) {
    let (n, c, h, w) = x.dim();
    debug_assert_eq!(n, 1, "with_cols: one image");
    if kernel == (1, 1) && stride == 1 && padding == 0 {
        if let Some(xs) = x.as_slice() {
            f(&ArrayView2::from_shape((c, h * w), xs).expect("sizes match"));
            return;
        }
    }
    let (ho, wo) = (
        out_size(h, kernel.0, stride, padding),
        out_size(w, kernel.1, stride, padding),
    );
    let mut cols = Array2::zeros((c * kernel.0 * kernel.1, ho * wo));
    im2col_rows_into(x, kernel, stride, padding, &mut cols.view_mut());
    f(&cols.view());
}

impl Module for GroupedConv2d {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight"), &mut self.weight);
        if let Some(b) = &mut self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}

impl Layer for GroupedConv2d {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let x = as_nchw(x, Some(self.c_in()), "GroupedConv2d::forward");
        let x = x.as_standard_layout().into_owned();
        let y = self.output(&x.view());
        self.cache = Some(x);
        y
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.gradients(dy, true).expect("dx was asked for")
    }

    // The input is moved into the cache instead of copied.
    fn forward_owned(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        if !x.is_standard_layout() || x.ndim() != 4 {
            return self.forward(&x, mode);
        }
        let y = self.output(&as_nchw(&x, Some(self.c_in()), "GroupedConv2d::forward"));
        self.cache = Some(x.into_dimensionality().expect("4-D"));
        y
    }

    // The first layer: no dx.
    fn backward_params(&mut self, dy: ArrayD<f32>) {
        self.gradients(&dy, false);
    }
}
