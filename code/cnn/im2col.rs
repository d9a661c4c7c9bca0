//! The fast path of convolution: im2col, one matrix product, col2im (see the [module
//! docs](super)).

use ndarray::{Array2, Array4, ArrayView1, ArrayView2, ArrayView4, ArrayViewMut2, Axis};

use super::{check_backward_shapes, check_conv_shapes, out_size, ConvGrads};

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

/// The output columns `j` whose input column `s j + q - padding` lies inside `0..w`:
/// the range `j0..j1` (every other `j` reads padding).
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

// ANCHOR: im2col_rows
/// im2col in the layout of the formulas, $X_\text{col}$ with one row per weight
/// `(c, p, q)` and one column per output position `(n, i, j)`, written into `cols`. A
/// row is a run of output rows `(n, i)`; for stride 1 each run is a slice of one input
/// row, so the copy is a `memcpy` with zeros at the padded ends.
///
/// # Shapes
/// - `x`: `(n, c, h, w)`; `cols`: `(c kh kw, n h_out w_out)`, standard layout, every
///   entry overwritten.
pub fn im2col_rows_into(
    x: &ArrayView4<f32>,
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
    cols: &mut ArrayViewMut2<f32>,
) {
    let (n, c, h, w) = x.dim();
    let (kh, kw) = kernel;
    let (ho, wo) = (
        out_size(h, kh, stride, padding),
        out_size(w, kw, stride, padding),
    );
    assert_eq!(
        cols.dim(),
        (c * kh * kw, n * ho * wo),
        "im2col_rows_into: cols {:?} vs x {:?} with kernel {kernel:?}",
        cols.shape(),
        x.shape()
    );
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let out = cols.as_slice_mut().expect("standard layout");
    // One chunk per (row (c, p, q), image n): the ho wo outputs of that image.
    for (k, dst) in out.chunks_exact_mut(ho * wo).enumerate() {
        let (row, s) = (k / n, k % n);
        let (ch, p, q) = (row / (kh * kw), row / kw % kh, row % kw);
        let plane = &xs[(s * c + ch) * h * w..][..h * w];
        let (j0, j1) = valid_cols(q, stride, padding, w, wo);
        for (i, dst) in dst.chunks_exact_mut(wo).enumerate() {
            let Some(r) = (stride * i + p).checked_sub(padding).filter(|&r| r < h) else {
                dst.fill(0.0); // a padding row
                continue;
            };
            let src = &plane[r * w..][..w];
            dst[..j0].fill(0.0);
            dst[j1..].fill(0.0);
            if stride == 1 {
                let t0 = j0 + q - padding;
                dst[j0..j1].copy_from_slice(&src[t0..t0 + (j1 - j0)]);
            } else {
                for (j, d) in dst.iter_mut().enumerate().take(j1).skip(j0) {
                    *d = src[stride * j + q - padding];
                }
            }
        }
    }
}
// ANCHOR_END: im2col_rows

// ANCHOR: col2im_rows
/// The adjoint of [`im2col_rows_into`]: adds every entry of `cols` to the pixel it was
/// copied from, into `x` (a flat `x_shape` tensor), in a fixed order.
///
/// # Shapes
/// - `cols`: `(c kh kw, n h_out w_out)`, `x_shape`: `(n, c, h, w)`, `x`: `n c h w`.
pub fn col2im_rows_add(
    cols: &ArrayView2<f32>,
    x_shape: (usize, usize, usize, usize),
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
    x: &mut [f32],
) {
    let (n, c, h, w) = x_shape;
    let (kh, kw) = kernel;
    let (ho, wo) = (
        out_size(h, kh, stride, padding),
        out_size(w, kw, stride, padding),
    );
    assert!(
        cols.dim() == (c * kh * kw, n * ho * wo) && x.len() == n * c * h * w,
        "col2im_rows_add: cols {:?} vs x {x_shape:?} ({} values) with kernel {kernel:?}",
        cols.shape(),
        x.len()
    );
    let cols = cols.as_standard_layout();
    let cs = cols.as_slice().expect("standard layout");
    for row in 0..c * kh * kw {
        let (ch, p, q) = (row / (kh * kw), row / kw % kh, row % kw);
        let (j0, j1) = valid_cols(q, stride, padding, w, wo);
        for s in 0..n {
            let src = &cs[(row * n + s) * ho * wo..][..ho * wo];
            let plane = &mut x[(s * c + ch) * h * w..][..h * w];
            for (i, src) in src.chunks_exact(wo).enumerate() {
                let Some(r) = (stride * i + p).checked_sub(padding).filter(|&r| r < h)
                else {
                    continue;
                };
                let dst = &mut plane[r * w..][..w];
                if stride == 1 {
                    let t0 = j0 + q - padding;
                    for (d, &v) in dst[t0..t0 + (j1 - j0)].iter_mut().zip(&src[j0..j1]) {
                        *d += v;
                    }
                } else {
                    for (j, &v) in src.iter().enumerate().take(j1).skip(j0) {
                        dst[stride * j + q - padding] += v;
                    }
                }
            }
        }
    }
}
// ANCHOR_END: col2im_rows

/// [`col2im_rows_add`] into a new tensor.
///
/// # Shapes
/// - `cols`: `(c kh kw, n h_out w_out)`, `x_shape`: `(n, c, h, w)`; output: `x_shape`.
pub fn col2im_rows(
    cols: &ArrayView2<f32>,
    x_shape: (usize, usize, usize, usize),
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
) -> Array4<f32> {
    let mut x = Array4::zeros(x_shape);
    let xs = x.as_slice_mut().expect("fresh array");
    col2im_rows_add(cols, x_shape, kernel, stride, padding, xs);
    x
}

/// The GEMM output $Y_\text{mat}$ `(c_out, n hw)` of `n` images as NCHW, with the bias
/// added on the way, written into `out`: `out[s, o, :] = y_mat[o, s hw ..] + b[o]`.
///
/// # Shapes
/// - `y_mat`: `(c_out, n hw)`, `b`: `(c_out,)`, `out`: `n c_out hw` values.
pub fn rows_to_nchw_into(
    y_mat: &ArrayView2<f32>,
    b: &ArrayView1<f32>,
    n: usize,
    out: &mut [f32],
) {
    let (co, nhw) = y_mat.dim();
    assert!(
        b.len() == co && n > 0 && nhw % n == 0 && out.len() == co * nhw,
        "rows_to_nchw_into: y_mat {:?}, bias {:?}, n {n}, out {}",
        y_mat.shape(),
        b.shape(),
        out.len()
    );
    let hw = nhw / n;
    let y_mat = y_mat.as_standard_layout();
    let ys = y_mat.as_slice().expect("standard layout");
    for (s, img) in out.chunks_exact_mut(co * hw).enumerate() {
        for (o, dst) in img.chunks_exact_mut(hw).enumerate() {
            let bo = b[o];
            for (d, &v) in dst.iter_mut().zip(&ys[o * nhw + s * hw..][..hw]) {
                *d = v + bo;
            }
        }
    }
}

/// The output gradient of a convolution, NCHW, as the matrix $\Delta$
/// `(c_out, n h_out w_out)` (the layout of [`im2col_rows_into`]'s columns) written into
/// `delta`; adds its row sums, $\partial L/\partial b$, to `db`.
///
/// # Shapes
/// - `dy`: `(n, c_out, ho, wo)`; `delta`: `(c_out, n ho wo)`; `db`: `c_out` values.
pub fn nchw_to_rows(
    dy: &ArrayView4<f32>,
    delta: &mut ArrayViewMut2<f32>,
    db: &mut [f32],
) {
    let (n, co, ho, wo) = dy.dim();
    let hw = ho * wo;
    assert!(
        delta.dim() == (co, n * hw) && db.len() == co,
        "nchw_to_rows: delta {:?} and db ({}) vs dy {:?}",
        delta.shape(),
        db.len(),
        dy.shape()
    );
    let dy = dy.as_standard_layout();
    let ds = dy.as_slice().expect("standard layout");
    let out = delta.as_slice_mut().expect("standard layout");
    for ((o, row), db) in out.chunks_exact_mut(n * hw).enumerate().zip(db) {
        for (s, dst) in row.chunks_exact_mut(hw).enumerate() {
            dst.copy_from_slice(&ds[(s * co + o) * hw..][..hw]);
            *db += dst.iter().sum::<f32>();
        }
    }
}
