//! The element-wise and per-sequence kernels of [`Gpt`](super::Gpt): layer norm without
//! bias, the tanh GELU, and causal self-attention computed on the lower triangle only.
//!
//! Every kernel works on flat row-major rows and is parallel over fixed chunks of rows
//! (or over sequences), and every reduction across chunks is summed in chunk order: the
//! same bits on one thread or two.

use ndarray::{s, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::gemm::sgemm_serial;
use crate::rnn::tanh_fast;

/// Rows per parallel chunk of the row-wise kernels.
const ROWS: usize = 256;

/// $\epsilon$ of every layer norm (PyTorch's default).
pub const LN_EPS: f32 = 1e-5;

// ANCHOR: layer_norm
/// Layer norm of each row of `x` with weight `gamma` and no bias: writes
/// $\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}$ into `xhat`, $1/\sqrt{\sigma^2 +
/// \epsilon}$ into `rstd` and $\gamma \odot \hat x$ into `y`.
///
/// # Shapes
/// - `x`, `xhat`, `y`: `n * d` (rows of width `d`); `gamma`: `d`; `rstd`: `n`.
pub fn layer_norm(
    x: &[f32],
    gamma: &[f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
    y: &mut [f32],
) {
    let d = gamma.len();
    assert!(
        x.len() == xhat.len() && x.len() == y.len() && x.len() == rstd.len() * d,
        "layer_norm: x {} xhat {} y {} rstd {} with d = {d}",
        x.len(),
        xhat.len(),
        y.len(),
        rstd.len()
    );
    x.par_chunks(ROWS * d)
        .zip(xhat.par_chunks_mut(ROWS * d))
        .zip(rstd.par_chunks_mut(ROWS).zip(y.par_chunks_mut(ROWS * d)))
        .for_each(|((x, xh), (rs, y))| {
            for (((xr, xhr), r), yr) in x
                .chunks(d)
                .zip(xh.chunks_mut(d))
                .zip(rs.iter_mut())
                .zip(y.chunks_mut(d))
            {
                let mean = xr.iter().sum::<f32>() / d as f32;
                let var =
                    xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                *r = 1.0 / (var + LN_EPS).sqrt();
                for (((h, &v), o), &g) in xhr.iter_mut().zip(xr).zip(yr).zip(gamma) {
                    *h = (v - mean) * *r;
                    *o = *h * g;
                }
            }
        });
}

/// The backward of [`layer_norm`]: with $g = \gamma \odot \bar y$, writes
/// $\bar x = \frac{s}{D}\big(D g - \sum g - \hat x \sum g \hat x\big)$ into `dx` (or adds
/// it, when `accumulate`), and adds $\sum_n \bar y_n \odot \hat x_n$ to `dgamma`.
///
/// # Shapes
/// - `dy`, `xhat`, `dx`: `n * d`; `rstd`: `n`; `gamma`, `dgamma`: `d`.
pub fn layer_norm_backward(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dx: &mut [f32],
    accumulate: bool,
) {
    let d = gamma.len();
    assert!(
        dy.len() == xhat.len() && dy.len() == dx.len() && dy.len() == rstd.len() * d,
        "layer_norm_backward: dy {} xhat {} dx {} rstd {} with d = {d}",
        dy.len(),
        xhat.len(),
        dx.len(),
        rstd.len()
    );
    let partial: Vec<Vec<f32>> = dy
        .par_chunks(ROWS * d)
        .zip(xhat.par_chunks(ROWS * d))
        .zip(rstd.par_chunks(ROWS).zip(dx.par_chunks_mut(ROWS * d)))
        .map(|((dy, xh), (rs, dx))| {
            let mut dg = vec![0.0f32; d];
            let mut g = vec![0.0f32; d];
            for (((dyr, xhr), &r), dxr) in
                dy.chunks(d).zip(xh.chunks(d)).zip(rs).zip(dx.chunks_mut(d))
            {
                let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
                for j in 0..d {
                    dg[j] += dyr[j] * xhr[j];
                    g[j] = dyr[j] * gamma[j];
                    sum_g += g[j];
                    sum_gx += g[j] * xhr[j];
                }
                let k = r / d as f32;
                for j in 0..d {
                    let v = k * (d as f32 * g[j] - sum_g - xhr[j] * sum_gx);
                    if accumulate {
                        dxr[j] += v;
                    } else {
                        dxr[j] = v;
                    }
                }
            }
            dg
        })
        .collect();
    // Chunk partials summed in order: the same bits whatever the thread count.
    for dg in partial {
        dgamma.iter_mut().zip(dg).for_each(|(a, b)| *a += b);
    }
}
// ANCHOR_END: layer_norm

// ANCHOR: gelu
/// $\sqrt{2/\pi}$.
const GELU_C: f32 = 0.797_884_6;

/// GELU and its derivative at `x`: with $t = \tanh(c\,(x + 0.044715 x^3))$,
/// $\tfrac12 x (1 + t)$ and $\tfrac12(1 + t) + \tfrac12 x (1 - t^2)\, c\,(1 + 3 \cdot
/// 0.044715 x^2)$, with the vectorisable [`tanh_fast`].
#[inline(always)]
fn gelu_and_slope(x: f32) -> (f32, f32) {
    let t = tanh_fast(GELU_C * (x + 0.044715 * x * x * x));
    let dt = (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
    (0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * dt)
}

/// The tanh approximation of GELU, $\tfrac12 f\,(1 + \tanh(c\,(f + 0.044715 f^3)))$,
/// element-wise from `f` into `g`.
///
/// # Shapes
/// - `f`, `g`: the same length.
pub fn gelu(f: &[f32], g: &mut [f32]) {
    assert_eq!(f.len(), g.len(), "gelu: f {} vs g {}", f.len(), g.len());
    f.par_chunks(1 << 14)
        .zip(g.par_chunks_mut(1 << 14))
        .for_each(|(f, g)| {
            for (&x, y) in f.iter().zip(g) {
                *y = gelu_and_slope(x).0;
            }
        });
}

/// [`gelu`] for training: writes GELU of `f` into `g` and replaces `f` by the slope
/// GELU$'(f)$, all the backward pass needs of it. Computing the slope here, where the
/// $\tanh$ is at hand, saves evaluating it a second time in the backward pass.
///
/// # Shapes
/// - `f`, `g`: the same length.
pub fn gelu_keep_slope(f: &mut [f32], g: &mut [f32]) {
    assert_eq!(f.len(), g.len(), "gelu: f {} vs g {}", f.len(), g.len());
    f.par_chunks_mut(1 << 14)
        .zip(g.par_chunks_mut(1 << 14))
        .for_each(|(f, g)| {
            for (x, y) in f.iter_mut().zip(g) {
                (*y, *x) = gelu_and_slope(*x);
            }
        });
}

/// The backward of [`gelu_keep_slope`] in place: `d` holds $\bar g$ and becomes
/// $\bar f = \bar g \cdot \mathrm{GELU}'(f)$, given the kept `slope`.
///
/// # Shapes
/// - `slope`, `d`: the same length.
pub fn gelu_backward(slope: &[f32], d: &mut [f32]) {
    assert_eq!(
        slope.len(),
        d.len(),
        "gelu_backward: slope {} vs d {}",
        slope.len(),
        d.len()
    );
    slope
        .par_chunks(1 << 14)
        .zip(d.par_chunks_mut(1 << 14))
        .for_each(|(s, d)| d.iter_mut().zip(s).for_each(|(g, &k)| *g *= k));
}
// ANCHOR_END: gelu

/// Query rows per block of the causal attention: scores are computed for each block of
/// queries against the keys up to the block's last query only.
pub const ATT_BLOCK: usize = 32;

/// The row blocks `[i0, i1)` of `t` queries.
fn blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(ATT_BLOCK)
        .map(move |i0| (i0, (i0 + ATT_BLOCK).min(t)))
}

// ANCHOR: causal_attention
/// Causal self-attention of every head of one sequence, reading $Q, K, V$ in place from
/// the fused projection `qkv` and writing the merged heads into `out`.
///
/// For each head and each block of query rows $[i_0, i_1)$, the scores $S = Q K^\top /
/// \sqrt{d_k}$ are computed against keys $0..i_1$ only (the keys after $i_1$ are masked
/// for every query of the block), the softmax of row $i$ runs over keys $0..=i$ and the
/// weights after $i$ are zero: about half of the products of the full $t \times t$
/// scores are never done.
///
/// # Shapes
/// - `qkv`: `(t, 3 d)`, the columns $[Q \mid K \mid V]$, head $h$ at `h d_k..(h+1) d_k`
///   of each;
/// - `att`: `heads * t * t`, the weights $A$ of each head (entries above the diagonal
///   are zero);
/// - `out`: `(t, d)`, head $h$'s $A V$ at columns `h d_k..(h+1) d_k`.
pub fn causal_attention(
    qkv: ArrayView2<f32>,
    heads: usize,
    att: &mut [f32],
    mut out: ArrayViewMut2<f32>,
) {
    let (t, d3) = qkv.dim();
    let d = d3 / 3;
    assert!(
        d3 == 3 * d
            && d.is_multiple_of(heads)
            && out.dim() == (t, d)
            && att.len() == heads * t * t,
        "causal_attention: qkv {:?}, out {:?}, att {} with {heads} heads",
        qkv.shape(),
        out.shape(),
        att.len()
    );
    let dk = d / heads;
    let scale = 1.0 / (dk as f32).sqrt();
    for (h, a) in att.chunks_mut(t * t).enumerate() {
        let q = qkv.slice(s![.., h * dk..(h + 1) * dk]);
        let k = qkv.slice(s![.., d + h * dk..d + (h + 1) * dk]);
        let v = qkv.slice(s![.., 2 * d + h * dk..2 * d + (h + 1) * dk]);
        let mut a2 = ArrayViewMut2::from_shape((t, t), a).expect("t x t weights");
        for (i0, i1) in blocks(t) {
            // S[i0..i1, 0..i1] = Q[i0..i1] K[0..i1]^T / sqrt(d_k)
            sgemm_serial(
                scale,
                &q.slice(s![i0..i1, ..]),
                &k.slice(s![0..i1, ..]).t(),
                0.0,
                &mut a2.slice_mut(s![i0..i1, 0..i1]),
            );
            for i in i0..i1 {
                let row = &mut a2.row_mut(i).into_slice().expect("row-major")[..i1];
                let (seen, later) = row.split_at_mut(i + 1);
                later.fill(0.0);
                let m = seen.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let mut sum = 0.0;
                for x in seen.iter_mut() {
                    *x = (*x - m).exp();
                    sum += *x;
                }
                let inv = 1.0 / sum;
                seen.iter_mut().for_each(|x| *x *= inv);
            }
            // O[i0..i1] = A[i0..i1, 0..i1] V[0..i1]
            sgemm_serial(
                1.0,
                &a2.slice(s![i0..i1, 0..i1]),
                &v.slice(s![0..i1, ..]),
                0.0,
                &mut out.slice_mut(s![i0..i1, h * dk..(h + 1) * dk]),
            );
        }
    }
}

/// The backward of [`causal_attention`] for one sequence: given `qkv`, the weights
/// `att` and `dout` = d loss / d `out`, writes d loss / d `qkv` into `dqkv`. `scratch`
/// holds $t \times t$ numbers.
///
/// With $\bar A = \bar O V^\top$, $\bar V = A^\top \bar O$, $\bar S = A \odot (\bar A -
/// \operatorname{rowsum}(A \odot \bar A))$, $\bar Q = \bar S K / \sqrt{d_k}$ and $\bar K =
/// \bar S^\top Q / \sqrt{d_k}$, each product restricted to the blocks of the lower
/// triangle, where $A$ and $\bar S$ can be non-zero.
///
/// # Shapes
/// - as [`causal_attention`]; `dout`: `(t, d)`; `dqkv`: `(t, 3 d)`; `scratch`: `t * t`.
pub fn causal_attention_backward(
    qkv: ArrayView2<f32>,
    heads: usize,
    att: &[f32],
    dout: ArrayView2<f32>,
    mut dqkv: ArrayViewMut2<f32>,
    scratch: &mut [f32],
) {
    let (t, d3) = qkv.dim();
    let d = d3 / 3;
    assert!(
        dout.dim() == (t, d) && dqkv.dim() == (t, d3) && att.len() == heads * t * t,
        "causal_attention_backward: qkv {:?}, dout {:?}, dqkv {:?}, att {}",
        qkv.shape(),
        dout.shape(),
        dqkv.shape(),
        att.len()
    );
    let dk = d / heads;
    let scale = 1.0 / (dk as f32).sqrt();
    let mut ds = ArrayViewMut2::from_shape((t, t), &mut scratch[..t * t]).expect("t x t");
    for (h, a) in att.chunks(t * t).enumerate() {
        let a2 = ArrayView2::from_shape((t, t), a).expect("t x t weights");
        let (cq, ck, cv) = (h * dk, d + h * dk, 2 * d + h * dk);
        let q = qkv.slice(s![.., cq..cq + dk]);
        let k = qkv.slice(s![.., ck..ck + dk]);
        let v = qkv.slice(s![.., cv..cv + dk]);
        let dob = dout.slice(s![.., h * dk..(h + 1) * dk]);
        for (i0, i1) in blocks(t) {
            // dA[i0..i1, 0..i1] = dO[i0..i1] V[0..i1]^T
            sgemm_serial(
                1.0,
                &dob.slice(s![i0..i1, ..]),
                &v.slice(s![0..i1, ..]).t(),
                0.0,
                &mut ds.slice_mut(s![i0..i1, 0..i1]),
            );
            for i in i0..i1 {
                let ar = &a[i * t..=i * t + i];
                let dr = &mut ds.row_mut(i).into_slice().expect("row-major")[..i1];
                let dot: f32 = ar.iter().zip(dr.iter()).map(|(x, y)| x * y).sum();
                for (g, &y) in dr.iter_mut().zip(ar) {
                    *g = y * (*g - dot);
                }
                dr[i + 1..].fill(0.0);
            }
            // dQ[i0..i1] = dS[i0..i1, 0..i1] K[0..i1] / sqrt(d_k)
            sgemm_serial(
                scale,
                &ds.slice(s![i0..i1, 0..i1]),
                &k.slice(s![0..i1, ..]),
                0.0,
                &mut dqkv.slice_mut(s![i0..i1, cq..cq + dk]),
            );
        }
        for (j0, j1) in blocks(t) {
            // keys j0..j1 are seen by queries j0..t only
            // dK[j0..j1] = dS[j0..t, j0..j1]^T Q[j0..t] / sqrt(d_k)
            sgemm_serial(
                scale,
                &ds.slice(s![j0..t, j0..j1]).t(),
                &q.slice(s![j0..t, ..]),
                0.0,
                &mut dqkv.slice_mut(s![j0..j1, ck..ck + dk]),
            );
            // dV[j0..j1] = A[j0..t, j0..j1]^T dO[j0..t]
            sgemm_serial(
                1.0,
                &a2.slice(s![j0..t, j0..j1]).t(),
                &dob.slice(s![j0..t, ..]),
                0.0,
                &mut dqkv.slice_mut(s![j0..j1, cv..cv + dk]),
            );
        }
    }
}
// ANCHOR_END: causal_attention
