//! Convolution: the direct nested loops (the definition) and the [`Conv2d`] layer, which
//! computes the same function by im2col and a matrix product (see the [module
//! docs](super)).

use std::cell::RefCell;

use ndarray::{
    s, Array1, Array2, Array4, ArrayD, ArrayView1, ArrayView2, ArrayView4, ArrayViewMut2,
    Ix1, Ix4, IxDyn,
};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::im2col::{col2im_rows_add, im2col_rows_into, nchw_to_rows, rows_to_nchw_into};
use super::{as_nchw, check_backward_shapes, check_conv_shapes, out_size, ConvGrads};
use crate::gemm::sgemm_serial;
use crate::nn::{join, Layer, Mode, Module, Param};

/// The padded-input index `s * i + p - padding` if it falls inside `0..len`.
#[inline]
fn src(i: usize, p: usize, stride: usize, padding: usize, len: usize) -> Option<usize> {
    (stride * i + p).checked_sub(padding).filter(|&v| v < len)
}

// ANCHOR: conv2d_direct
/// The convolution as its definition: $y_{n,o,i,j} = b_o + \sum_{c,p,q} w_{o,c,p,q}\,
/// \bar x_{n,c,si+p,sj+q}$, with $\bar x$ zero-padded by `padding`.
///
/// # Shapes
/// - `x`: `(n, c_in, h, w)`, `w`: `(c_out, c_in, kh, kw)`, `b`: `(c_out,)`
/// - output: `(n, c_out, h_out, w_out)`, `h_out = (h + 2 padding - kh) / stride + 1`
pub fn conv2d_direct(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    b: &ArrayView1<f32>,
    stride: usize,
    padding: usize,
) -> Array4<f32> {
    let (n, co, ho, wo) = check_conv_shapes(x, w, b, stride, padding);
    let (_, ci, h, wd) = x.dim();
    let (_, _, kh, kw) = w.dim();
    let mut y = Array4::zeros((n, co, ho, wo));
    for s in 0..n {
        for o in 0..co {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = b[o];
                    for c in 0..ci {
                        for p in 0..kh {
                            let Some(r) = src(i, p, stride, padding, h) else {
                                continue;
                            };
                            for q in 0..kw {
                                if let Some(t) = src(j, q, stride, padding, wd) {
                                    acc += w[[o, c, p, q]] * x[[s, c, r, t]];
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
// ANCHOR_END: conv2d_direct

// ANCHOR: conv2d_direct_backward
/// The backward pass of [`conv2d_direct`] as loops: every product
/// $w_{o,c,p,q}\,\bar x_{n,c,si+p,sj+q}$ of the forward pass sends
/// $\delta_{n,o,i,j}\,\bar x$ to the weight and $\delta_{n,o,i,j}\, w$ to the pixel.
/// Returns `(dx, dw, db)`.
///
/// # Shapes
/// - `x`: `(n, c_in, h, w)`, `w`: `(c_out, c_in, kh, kw)`,
///   `dy`: `(n, c_out, h_out, w_out)`
/// - `dx` like `x`, `dw` like `w`, `db`: `(c_out,)`
pub fn conv2d_direct_backward(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    dy: &ArrayView4<f32>,
    stride: usize,
    padding: usize,
) -> ConvGrads {
    let out = check_backward_shapes(x, w, dy, stride, padding);
    let (n, co, ho, wo) = out;
    let (_, ci, h, wd) = x.dim();
    let (_, _, kh, kw) = w.dim();
    let mut dx = Array4::zeros(x.raw_dim());
    let mut dw = Array4::zeros(w.raw_dim());
    let mut db = Array1::zeros(co);
    for s in 0..n {
        for o in 0..co {
            for i in 0..ho {
                for j in 0..wo {
                    let d = dy[[s, o, i, j]];
                    db[o] += d;
                    for c in 0..ci {
                        for p in 0..kh {
                            let Some(r) = src(i, p, stride, padding, h) else {
                                continue;
                            };
                            for q in 0..kw {
                                if let Some(t) = src(j, q, stride, padding, wd) {
                                    dw[[o, c, p, q]] += d * x[[s, c, r, t]];
                                    dx[[s, c, r, t]] += d * w[[o, c, p, q]];
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
// ANCHOR_END: conv2d_direct_backward

/// An NCHW shape `(n, c, h, w)`.
pub type Nchw = (usize, usize, usize, usize);

/// A 2-D convolution layer (cross-correlation, zero padding), computed by im2col + GEMM
/// (OpenBLAS), with the column matrix laid out as in the formulas,
/// $Y_\text{mat} = W_\text{mat} X_\text{col}$. The batch is cut into blocks of images
/// whose column matrix fits in cache, processed in parallel.
///
/// # Shapes
/// - input `x`: `(n, c_in, h, w)`
/// - output `y`: `(n, c_out, h_out, w_out)`, `h_out = (h + 2 padding - kh) / stride + 1`
/// - `weight`: `(c_out, c_in, kh, kw)`, `bias`: `(c_out,)`
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Weights, `(c_out, c_in, kh, kw)`.
    pub weight: Param,
    /// Bias, `(c_out,)`.
    pub bias: Param,
    /// Step between receptive fields, on both axes.
    pub stride: usize,
    /// Zeros added on each side of both spatial axes.
    pub padding: usize,
    /// The input of the last forward.
    cache: Option<Array4<f32>>,
}

/// Floats of $X_\text{col}$ per block of images: a block's column matrix (about 512
/// KiB) stays in a core's L2 cache while it is multiplied.
const BLOCK_FLOATS: usize = 1 << 17;

thread_local! {
    /// This thread's two work buffers, reused by every block of every convolution.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((vec![], vec![])) };
}

/// Runs `f` on two work slices of `a` and `b` floats, this thread's buffers grown if
/// needed: a block allocates and zeroes nothing. They hold what the last block left, so
/// `f` must write every entry before reading it (im2col, `nchw_to_rows` and a GEMM with
/// `beta = 0` all do).
fn with_buffers<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let (x, y) = &mut *bufs;
            for (buf, len) in [(&mut *x, a), (&mut *y, b)] {
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
            }
            f(&mut x[..a], &mut y[..b])
        }
        // Only if `f` itself ended up here again (it does not): fresh buffers.
        Err(_) => f(&mut vec![0.0; a], &mut vec![0.0; b]),
    })
}

/// `buf` as a `(rows, cols)` matrix.
fn view2(buf: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), buf).expect("buffer length is rows * cols")
}

impl Conv2d {
    /// A `c_in -> c_out` convolution with a `(kh, kw)` kernel, He-normal weights
    /// ($\sigma^2 = 2 / (c_\text{in} k_h k_w)$, the fan-in of one output) from `rng`,
    /// zero bias.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize),
        stride: usize,
        padding: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let fan_in = c_in * kernel.0 * kernel.1;
        let std = (2.0 / fan_in as f32).sqrt();
        let normal = Normal::new(0.0f32, std).expect("a finite, positive std");
        let w = Array4::from_shape_fn((c_out, c_in, kernel.0, kernel.1), |_| {
            normal.sample(rng)
        });
        Self::from_weights(w, Array1::zeros(c_out), stride, padding)
    }

    /// A layer with these weights `(c_out, c_in, kh, kw)` and bias `(c_out,)`.
    pub fn from_weights(
        weight: Array4<f32>,
        bias: Array1<f32>,
        stride: usize,
        padding: usize,
    ) -> Self {
        assert_eq!(
            weight.dim().0,
            bias.len(),
            "Conv2d: weight {:?} and bias {:?} disagree on c_out",
            weight.shape(),
            bias.shape()
        );
        assert!(stride > 0, "Conv2d: stride must be positive");
        Conv2d {
            weight: Param::new(weight.into_dyn()),
            bias: Param::new(bias.into_dyn()),
            stride,
            padding,
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

    /// The bias as a 1-D view.
    pub fn b(&self) -> ArrayView1<'_, f32> {
        self.bias
            .value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("bias is 1-D")
    }

    /// Input channels.
    pub fn c_in(&self) -> usize {
        self.weight.value.shape()[1]
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.weight.value.shape()[0]
    }

    /// Images per block, for `floats_per_image` floats of $X_\text{col}$ per image.
    fn images_per_block(&self, floats_per_image: usize) -> usize {
        (BLOCK_FLOATS / floats_per_image.max(1)).max(1)
    }

    /// The weights as the `(c_out, c_in kh kw)` matrix $W_\text{mat}$ (a view).
    fn w_mat(&self) -> ArrayView2<'_, f32> {
        let co = self.c_out();
        let k = self.weight.value.len() / co;
        self.weight
            .value
            .view()
            .into_shape_with_order((co, k))
            .expect("contiguous weight")
    }
}

impl Module for Conv2d {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }
}

// ANCHOR: conv2d_layer
impl Conv2d {
    /// The forward pass on `x` `(n, c_in, h, w)`, without caching anything.
    fn output(&self, x: &ArrayView4<f32>) -> ArrayD<f32> {
        let (n, co, ho, wo) =
            check_conv_shapes(x, &self.w(), &self.b(), self.stride, self.padding);
        let (_, ci, kh, kw) = self.w().dim();
        let (k, hw) = (ci * kh * kw, ho * wo);
        let nb = self.images_per_block(k * hw);
        let (w_mat, b) = (self.w_mat(), self.b());
        let mut y = vec![0.0f32; n * co * hw];
        // Blocks of images, in parallel; each block's X_col stays in cache.
        y.par_chunks_mut(nb * co * hw)
            .enumerate()
            .for_each(|(blk, y)| {
                let s0 = blk * nb;
                let m = y.len() / (co * hw); // images in this block
                let x = x.slice(s![s0..s0 + m, .., .., ..]);
                with_buffers(k * m * hw, co * m * hw, |cols, y_mat| {
                    let mut cols = view2(cols, k, m * hw); // X_col (c kh kw, m ho wo)
                    let (kernel, s, p) = ((kh, kw), self.stride, self.padding);
                    im2col_rows_into(&x, kernel, s, p, &mut cols);
                    let mut y_mat = view2(y_mat, co, m * hw); // W_mat X_col
                    sgemm_serial(1.0, &w_mat, &cols.view(), 0.0, &mut y_mat);
                    // (c_out, m, ho wo) -> (m, c_out, ho, wo), plus the bias
                    rows_to_nchw_into(&y_mat.view(), &b, m, y);
                });
            });
        ArrayD::from_shape_vec(IxDyn(&[n, co, ho, wo]), y).expect("sizes match")
    }

    /// The backward pass: accumulates `dW` and `db`, and returns `dx` if `want_dx`.
    fn gradients(&mut self, dy: &ArrayD<f32>, want_dx: bool) -> Option<ArrayD<f32>> {
        let x = self
            .cache
            .as_ref()
            .expect("Conv2d::backward called before forward");
        let (n, ci, h, wd) = x.dim();
        let (co, _, kh, kw) = self.w().dim();
        let (ho, wo) = (
            out_size(h, kh, self.stride, self.padding),
            out_size(wd, kw, self.stride, self.padding),
        );
        let dy4 = match dy.view().into_dimensionality::<Ix4>() {
            Ok(v) if v.dim() == (n, co, ho, wo) => v,
            _ => panic!(
                "Conv2d::backward: dy {:?} vs output shape {:?}",
                dy.shape(),
                (n, co, ho, wo)
            ),
        };
        let (k, hw) = (ci * kh * kw, ho * wo);
        let nb = self.images_per_block(k * hw);
        let w_mat = self.w_mat();
        let per_image = ci * h * wd;
        let mut dx = vec![0.0f32; if want_dx { n * per_image } else { 0 }];
        let mut dx_blocks: Vec<&mut [f32]> = dx.chunks_mut(nb * per_image).collect();
        dx_blocks.resize_with(n.div_ceil(nb), Default::default); // empty without dx
                                                                 // Per block of images: its X_col again (cheaper than keeping the whole batch's),
                                                                 // its Delta, its share of dW and db, and its dx. Shares are added in block order,
                                                                 // so the sums do not depend on the number of threads.
        let shares: Vec<(Array2<f32>, Vec<f32>)> = dx_blocks
            .into_par_iter()
            .enumerate()
            .map(|(blk, dx)| {
                let s0 = blk * nb;
                let m = nb.min(n - s0);
                let x = x.slice(s![s0..s0 + m, .., .., ..]);
                with_buffers(k * m * hw, co * m * hw, |cols, delta| {
                    let mut cols = view2(cols, k, m * hw);
                    let (kernel, s, p) = ((kh, kw), self.stride, self.padding);
                    im2col_rows_into(&x, kernel, s, p, &mut cols);
                    // (m, c_out, ho, wo) -> Delta (c_out, m ho wo); its row sums are db
                    let mut delta = view2(delta, co, m * hw);
                    let mut db = vec![0.0f32; co];
                    let dy = dy4.slice(s![s0..s0 + m, .., .., ..]);
                    nchw_to_rows(&dy, &mut delta, &mut db);
                    // dW_mat = Delta X_col^T
                    let mut dw = Array2::zeros((co, k));
                    sgemm_serial(1.0, &delta.view(), &cols.t(), 0.0, &mut dw.view_mut());
                    if want_dx {
                        // dX_col = W_mat^T Delta, scattered back into dx by col2im
                        sgemm_serial(1.0, &w_mat.t(), &delta.view(), 0.0, &mut cols);
                        let shape = (m, ci, h, wd);
                        col2im_rows_add(&cols.view(), shape, kernel, s, p, dx);
                    }
                    (dw, db)
                })
            })
            .collect();
        let mut dw_total = self
            .weight
            .grad
            .view_mut()
            .into_shape_with_order((co, k))
            .expect("contiguous gradient");
        for (dw, db) in shares {
            dw_total += &dw;
            for (g, d) in self.bias.grad.iter_mut().zip(db) {
                *g += d;
            }
        }
        want_dx.then(|| {
            ArrayD::from_shape_vec(IxDyn(&[n, ci, h, wd]), dx).expect("sizes match")
        })
    }
}

impl Layer for Conv2d {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let x = as_nchw(x, Some(self.c_in()), "Conv2d::forward");
        let y = self.output(&x);
        self.cache = Some(x.as_standard_layout().into_owned());
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
        let y = self.output(&as_nchw(&x, Some(self.c_in()), "Conv2d::forward"));
        self.cache = Some(x.into_dimensionality().expect("4-D"));
        y
    }

    // The first layer: no dX_col product, no col2im.
    fn backward_params(&mut self, dy: ArrayD<f32>) {
        self.gradients(&dy, false);
    }
}
// ANCHOR_END: conv2d_layer
