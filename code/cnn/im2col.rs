//! The fast path of convolution: im2col, one matrix product, col2im (see the [module
//! docs](super)).

use ndarray::{Array2, Array4, ArrayView1, ArrayView4, Axis};

use super::conv::{check_backward_shapes, check_conv_shapes, ConvGrads};
use super::out_size;

// ANCHOR: im2col
/// Copies every receptive field of the zero-padded `x` into a row: row
/// `(n, i, j)` (in that order) holds `x̄[n, c, s i + p, s j + q]` at column `(c, p, q)`.
///
/// # Shapes
/// - `x`: `(n, c, h, w)`, `kernel`: `(kh, kw)`
/// - output: `(n h_out w_out, c kh kw)`
pub fn im2col(
    x: &ArrayView4<f32>,
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
) -> Array2<f32> {
    let (n, c, h, w) = x.dim();
    let (kh, kw) = kernel;
    let (ho, wo) = (
        out_size(h, kh, stride, padding),
        out_size(w, kw, stride, padding),
    );
    let mut cols = Array2::zeros((n * ho * wo, c * kh * kw));
    for s in 0..n {
        for i in 0..ho {
            for j in 0..wo {
                let mut row = cols.row_mut((s * ho + i) * wo + j);
                for ch in 0..c {
                    for p in 0..kh {
                        let Some(r) =
                            (stride * i + p).checked_sub(padding).filter(|&r| r < h)
                        else {
                            continue; // a padding row: stays zero
                        };
                        for q in 0..kw {
                            if let Some(t) =
                                (stride * j + q).checked_sub(padding).filter(|&t| t < w)
                            {
                                row[(ch * kh + p) * kw + q] = x[[s, ch, r, t]];
                            }
                        }
                    }
                }
            }
        }
    }
    cols
}
// ANCHOR_END: im2col

// ANCHOR: col2im
/// The adjoint of [`im2col`]: adds each entry of `cols` to the pixel of an
/// `x_shape` tensor it was copied from (entries that came from padding are dropped).
///
/// # Shapes
/// - `cols`: `(n h_out w_out, c kh kw)`, `x_shape`: `(n, c, h, w)`
/// - output: `x_shape`
pub fn col2im(
    cols: &Array2<f32>,
    x_shape: (usize, usize, usize, usize),
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
) -> Array4<f32> {
    let (n, c, h, w) = x_shape;
    let (kh, kw) = kernel;
    let (ho, wo) = (
        out_size(h, kh, stride, padding),
        out_size(w, kw, stride, padding),
    );
    assert_eq!(
        cols.dim(),
        (n * ho * wo, c * kh * kw),
        "col2im: cols {:?} vs x {x_shape:?} with kernel {kernel:?}",
        cols.shape()
    );
    let mut x = Array4::zeros(x_shape);
    for s in 0..n {
        for i in 0..ho {
            for j in 0..wo {
                let row = cols.row((s * ho + i) * wo + j);
                for ch in 0..c {
                    for p in 0..kh {
                        let Some(r) =
                            (stride * i + p).checked_sub(padding).filter(|&r| r < h)
                        else {
                            continue;
                        };
                        for q in 0..kw {
                            if let Some(t) =
                                (stride * j + q).checked_sub(padding).filter(|&t| t < w)
                            {
                                x[[s, ch, r, t]] += row[(ch * kh + p) * kw + q];
                            }
                        }
                    }
                }
            }
        }
    }
    x
}
// ANCHOR_END: col2im

/// `w` `(c_out, c_in, kh, kw)` as the `(c_out, c_in kh kw)` matrix.
fn w_mat(w: &ArrayView4<f32>) -> Array2<f32> {
    let (co, ci, kh, kw) = w.dim();
    w.to_owned()
        .into_shape_with_order((co, ci * kh * kw))
        .expect("standard layout")
}

/// The convolution as im2col + GEMM, the function [`Conv2d`](super::Conv2d) computes.
///
/// # Shapes
/// - as [`conv2d_direct`](super::conv::conv2d_direct)
pub fn conv2d_im2col(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    b: &ArrayView1<f32>,
    stride: usize,
    padding: usize,
) -> Array4<f32> {
    let (n, co, ho, wo) = check_conv_shapes(x, w, b, stride, padding);
    let (_, _, kh, kw) = w.dim();
    let cols = im2col(x, (kh, kw), stride, padding);
    let y = cols.dot(&w_mat(w).t()) + b.insert_axis(Axis(0));
    y.into_shape_with_order((n, ho, wo, co))
        .expect("standard layout")
        .permuted_axes([0, 3, 1, 2])
        .as_standard_layout()
        .into_owned()
}

/// The backward pass by im2col + GEMM: `(dx, dw, db)`.
///
/// # Shapes
/// - as [`conv2d_direct_backward`](super::conv::conv2d_direct_backward)
pub fn conv2d_im2col_backward(
    x: &ArrayView4<f32>,
    w: &ArrayView4<f32>,
    dy: &ArrayView4<f32>,
    stride: usize,
    padding: usize,
) -> ConvGrads {
    let out = check_backward_shapes(x, w, dy, stride, padding);
    let (n, co, ho, wo) = out;
    let (_, _, kh, kw) = w.dim();
    let cols = im2col(x, (kh, kw), stride, padding);
    let delta = dy
        .permuted_axes([0, 2, 3, 1])
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n * ho * wo, co))
        .expect("standard layout");
    let dw = delta
        .t()
        .dot(&cols)
        .into_shape_with_order(w.dim())
        .expect("standard layout");
    let db = delta.sum_axis(Axis(0));
    let dx = col2im(&delta.dot(&w_mat(w)), x.dim(), (kh, kw), stride, padding);
    (dx, dw, db)
}
