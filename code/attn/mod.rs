//! Attention from scratch: the masked softmax, scaled dot-product attention, masks,
//! multi-head attention and positional encodings (sinusoidal, learned, rotary).
//!
//! # The layer contract
//!
//! Sequences are batch-first, `(b, t, d)`, like the recurrent layers of [`crate::rnn`].
//! Inside attention a sequence is split into heads, `(b, heads, t, d_k)`. Masks are not
//! differentiated and reach a layer through its own typed method
//! ([`MultiHeadAttention::forward_masked`]); a second differentiable input (the memory a
//! cross-attention reads) through a pair of methods,
//! [`MultiHeadAttention::forward_cross`] and [`MultiHeadAttention::backward_cross`].
//!
//! # Softmax and its backward
//!
//! Over the last axis, $y_j = e^{s_j - m} / \sum_l e^{s_l - m}$ with $m = \max_l s_l$:
//! subtracting the row maximum changes nothing mathematically (it cancels between the
//! numerator and the denominator) and keeps every exponent $\le 0$, so nothing overflows.
//! A mask sets the masked scores to $-\infty$ before the softmax, so their weights are
//! exactly zero. A row whose every key is masked (a query in a padded position of a
//! batch) has no meaningful distribution; by convention its weights are **all zero**
//! rather than the $0/0 = $ NaN the formula gives, and no gradient flows through it.
//!
//! The Jacobian of the softmax is $\partial y_j / \partial s_i = y_j(\delta_{ij} - y_i)$,
//! so for $\bar y = \partial L / \partial y$
//!
//! $$\bar s_i = \sum_j \bar y_j\, y_j (\delta_{ij} - y_i) = y_i\Big(\bar y_i - \sum_j
//! y_j \bar y_j\Big),$$
//!
//! one dot product per row instead of a $t_k \times t_k$ matrix. A masked entry has
//! $y_i = 0$ and so receives $\bar s_i = 0$; a fully masked row receives zeros.
//!
//! # Scaled dot-product attention
//!
//! For one (batch, head) pair, queries $Q \in \mathbb R^{t_q \times d_k}$, keys
//! $K \in \mathbb R^{t_k \times d_k}$ and values $V \in \mathbb R^{t_k \times d_v}$:
//!
//! $$S = \frac{Q K^\top}{\sqrt{d_k}}, \qquad A = \operatorname{softmax}(S + M), \qquad
//! O = A V,$$
//!
//! $M$ being $0$ where a key may be seen and $-\infty$ where it may not. Each output row
//! is an average of the value rows, weighted by how well the query matches each key.
//! Backward, with $\bar O$ given, the two products give
//!
//! $$\bar A = \bar O V^\top, \qquad \bar V = A^\top \bar O, \qquad
//! \bar S = \operatorname{softmax\_backward}(A, \bar A), \qquad
//! \bar Q = \frac{\bar S K}{\sqrt{d_k}}, \qquad \bar K = \frac{\bar S^\top Q}{\sqrt{d_k}}.$$
//!
//! Each is one matrix product per (batch, head) on contiguous slices ([`sgemm`]). The
//! pairs are independent, so they are spread over the rayon threads ([`Schedule`]); each
//! is computed by the same code on either schedule, so the bits do not change.
//!
//! # Why $1/\sqrt{d_k}$
//!
//! If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
//! $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$ is a sum of $d_k$ independent terms of mean 0
//! and variance $\mathbb E[q_i^2]\mathbb E[k_i^2] = 1$: its variance is $d_k$. Unscaled
//! scores therefore spread like $\sqrt{d_k}$, the softmax of widely spread scores puts
//! almost all its weight on the largest one (it **saturates**), and a saturated softmax
//! has a Jacobian $y_j(\delta_{ij} - y_i)$ near zero: the gradient vanishes. Dividing by
//! $\sqrt{d_k}$ brings the variance back to 1 whatever the head width.
//!
//! # Heads: split and merge
//!
//! Multi-head attention projects $x$ `(b, t, d)` to $Q = x W_q^\top + b_q$ (and $K$, $V$
//! likewise), cuts the last axis into `heads` slices of width $d_k = d / \text{heads}$
//! and moves the head axis forward: `(b, t, d) -> (b, t, heads, d_k) -> (b, heads, t,
//! d_k)`. Attention runs per head; the outputs are merged by the inverse permutation and
//! projected by $W_o$. Split and merge are permutations of entries, so their backward
//! passes are each other: the gradient of a split is the merge of the gradient, and the
//! other way round.
//!
//! # Positions
//!
//! Attention is permutation-equivariant: shuffling the keys and values together shuffles
//! nothing in the output. Order enters through positional encodings: a fixed
//! [`SinusoidalEncoding`] or a [`LearnedEncoding`] added to the input, or rotary
//! encodings ([`Rope`]) that rotate each pair of dimensions of $q$ and $k$ by an angle
//! proportional to the position, $p\,\theta_i$ with $\theta_i = 10000^{-2i/d_k}$. Since
//! rotations preserve dot products up to their difference, $R_p q \cdot R_{p'} k =
//! q \cdot R_{p' - p} k$: the score depends on positions only through their offset.
//! A rotation is orthogonal, so its backward is the inverse rotation, $R_p^\top = R_{-p}$.

use ndarray::{s, Array2, Array3, Array4, ArrayD, ArrayView2, ArrayViewMut2, Axis, Ix4};
use rayon::prelude::*;

use crate::gemm::sgemm;

pub mod block;
pub mod candle_twin;
pub mod mha;
pub mod position;

pub use mha::{MhaConfig, MultiHeadAttention};
pub use position::{LearnedEncoding, Rope, SinusoidalEncoding};

// ANCHOR: masked_softmax
/// How scores are masked before a softmax.
#[derive(Clone, Copy, Debug)]
pub enum ScoreMask<'a> {
    /// `true` where the entry may be attended to, `false` where it is masked.
    Keep(&'a ArrayD<bool>),
    /// Added to the scores: `0.0` to keep, `f32::NEG_INFINITY` to mask (any finite value
    /// shifts the score).
    Add(&'a ArrayD<f32>),
}

/// The softmax of one row in place, masked entries already at $-\infty$: subtracts the
/// row maximum; a row with no finite entry becomes all zeros.
fn softmax_row(row: &mut [f32]) {
    let m = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if m == f32::NEG_INFINITY {
        row.fill(0.0); // every key masked: zeros, not 0/0
        return;
    }
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - m).exp(); // exp(-inf) = 0 for masked entries
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// The softmax over the last axis of `scores`, with masked entries getting weight zero
/// and a fully masked row all zeros.
///
/// # Shapes
/// - `scores`: any shape `(..., n)`; a mask has the same shape.
/// - output: the shape of `scores`.
pub fn masked_softmax(scores: &ArrayD<f32>, mask: Option<ScoreMask<'_>>) -> ArrayD<f32> {
    let mut y = scores.as_standard_layout().into_owned();
    match mask {
        None => {}
        Some(ScoreMask::Keep(k)) => {
            assert_eq!(
                k.shape(),
                scores.shape(),
                "masked_softmax: mask {:?} vs scores {:?}",
                k.shape(),
                scores.shape()
            );
            y.zip_mut_with(k, |v, &keep| {
                if !keep {
                    *v = f32::NEG_INFINITY
                }
            });
        }
        Some(ScoreMask::Add(a)) => {
            assert_eq!(
                a.shape(),
                scores.shape(),
                "masked_softmax: additive mask {:?} vs scores {:?}",
                a.shape(),
                scores.shape()
            );
            y.zip_mut_with(a, |v, &m| *v += m);
        }
    }
    let n = *scores
        .shape()
        .last()
        .expect("masked_softmax: a 0-d scores array");
    if n > 0 {
        let flat = y.as_slice_mut().expect("standard layout");
        flat.chunks_mut(n).for_each(softmax_row);
    }
    y
}

/// The backward of the softmax over the last axis: $\bar s = y \odot (\bar y - \langle
/// y, \bar y\rangle)$ row by row, given the softmax output `y` and `dy` = d loss / d `y`.
///
/// # Shapes
/// - `y`, `dy`: the same shape `(..., n)`; output: that shape.
pub fn softmax_backward(y: &ArrayD<f32>, dy: &ArrayD<f32>) -> ArrayD<f32> {
    assert_eq!(
        y.shape(),
        dy.shape(),
        "softmax_backward: y {:?} vs dy {:?}",
        y.shape(),
        dy.shape()
    );
    let mut ds = dy.as_standard_layout().into_owned();
    let y = y.as_standard_layout();
    let n = *y.shape().last().expect("softmax_backward: 0-d");
    if n > 0 {
        let ys = y.as_slice().expect("standard layout");
        let dss = ds.as_slice_mut().expect("standard layout");
        softmax_backward_rows(ys, dss, n);
    }
    ds
}

/// [`softmax_backward`] on flat rows of width `n`: `d` holds $\bar y$ and becomes
/// $\bar s$.
fn softmax_backward_rows(y: &[f32], d: &mut [f32], n: usize) {
    for (yr, dr) in y.chunks(n).zip(d.chunks_mut(n)) {
        let dot: f32 = yr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
        dr.iter_mut()
            .zip(yr)
            .for_each(|(g, &yv)| *g = yv * (*g - dot));
    }
}
// ANCHOR_END: masked_softmax

// ANCHOR: mask
/// Which keys each query may attend to, `true` = allowed.
///
/// # Shapes
/// - `keep`: `(b, t_q, t_k)`, shared by every head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// `(b, t_q, t_k)`: `keep[[n, i, j]]` is whether query `i` of sequence `n` sees key `j`.
    pub keep: Array3<bool>,
}

impl Mask {
    /// The padding mask of sequences of lengths `lengths` (`(b,)`): keys at positions
    /// `>= lengths[n]` are masked for every query.
    pub fn padding(lengths: &[usize], t_q: usize, t_k: usize) -> Self {
        for &l in lengths {
            assert!(
                l <= t_k,
                "Mask::padding: length {l} longer than the {t_k} keys"
            );
        }
        Mask {
            keep: Array3::from_shape_fn((lengths.len(), t_q, t_k), |(n, _, j)| {
                j < lengths[n]
            }),
        }
    }

    /// The causal mask of `b` sequences of `t` steps: query `i` sees keys `j <= i`.
    pub fn causal(b: usize, t: usize) -> Self {
        Mask {
            keep: Array3::from_shape_fn((b, t, t), |(_, i, j)| j <= i),
        }
    }

    /// Both masks at once: a key is allowed where both allow it.
    pub fn and(&self, other: &Mask) -> Mask {
        assert_eq!(
            self.keep.shape(),
            other.keep.shape(),
            "Mask::and: {:?} vs {:?}",
            self.keep.shape(),
            other.keep.shape()
        );
        let mut keep = self.keep.clone();
        keep.zip_mut_with(&other.keep, |a, &b| *a = *a && b);
        Mask { keep }
    }

    /// `(b, t_q, t_k)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.keep.dim()
    }

    /// The additive form: `0` where allowed, $-\infty$ where masked, `(b, t_q, t_k)`.
    pub fn additive(&self) -> Array3<f32> {
        self.keep.mapv(|k| if k { 0.0 } else { f32::NEG_INFINITY })
    }
}
// ANCHOR_END: mask

/// `a` as `(b, heads, t, d)`, panicking with `who` and the shape otherwise.
fn as4<'a, S: ndarray::Data<Elem = f32>>(
    a: &'a ndarray::ArrayBase<S, ndarray::IxDyn>,
    who: &str,
    what: &str,
) -> ndarray::ArrayView4<'a, f32> {
    a.view().into_dimensionality::<Ix4>().unwrap_or_else(|_| {
        panic!(
            "{who}: {what} must be (b, heads, t, d), got {:?}",
            a.shape()
        )
    })
}

/// The result of scaled dot-product attention: the output and the attention weights,
/// which the backward pass needs and figures show.
#[derive(Clone, Debug)]
pub struct Attended {
    /// $O = A V$, `(b, heads, t_q, d_v)`.
    pub out: ArrayD<f32>,
    /// $A$, `(b, heads, t_q, t_k)`.
    pub weights: ArrayD<f32>,
}

/// The gradients of scaled dot-product attention with respect to its three inputs.
#[derive(Clone, Debug)]
pub struct AttentionGrads {
    /// `(b, heads, t_q, d_k)`.
    pub dq: ArrayD<f32>,
    /// `(b, heads, t_k, d_k)`.
    pub dk: ArrayD<f32>,
    /// `(b, heads, t_k, d_v)`.
    pub dv: ArrayD<f32>,
}

/// Checks the shapes of `q`, `k`, `v` (and `mask`) against each other, naming them.
fn check_qkv(q: &ArrayD<f32>, k: &ArrayD<f32>, v: &ArrayD<f32>, mask: Option<&Mask>) {
    let who = "scaled_dot_product_attention";
    let (q, k, v) = (as4(q, who, "q"), as4(k, who, "k"), as4(v, who, "v"));
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    assert!(
        qs[0] == ks[0] && ks[0] == vs[0] && qs[1] == ks[1] && ks[1] == vs[1],
        "{who}: q {qs:?}, k {ks:?} and v {vs:?} disagree on (b, heads)"
    );
    assert!(
        qs[3] == ks[3],
        "{who}: q {qs:?} and k {ks:?} disagree on d_k"
    );
    assert!(
        ks[2] == vs[2],
        "{who}: k {ks:?} and v {vs:?} disagree on t_k"
    );
    if let Some(m) = mask {
        assert_eq!(
            m.shape(),
            (qs[0], qs[2], ks[2]),
            "{who}: mask {:?} vs (b, t_q, t_k) of q {qs:?} and k {ks:?}",
            m.shape()
        );
    }
}

// ANCHOR: sdpa
/// How the (batch, head) pairs of attention are scheduled: each pair is independent
/// work, computed by the same code either way, so both give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Schedule {
    /// One pair after another on the calling thread.
    Serial,
    /// The pairs spread over the rayon threads.
    #[default]
    Parallel,
}

/// Scaled dot-product attention $O = \operatorname{softmax}(Q K^\top / \sqrt{d_k} + M)
/// V$, per (batch, head), the pairs spread over the rayon threads.
///
/// # Shapes
/// - `q`: `(b, heads, t_q, d_k)`, `k`: `(b, heads, t_k, d_k)`, `v`: `(b, heads, t_k, d_v)`;
/// - `mask`: `(b, t_q, t_k)`, the same for every head;
/// - output `out`: `(b, heads, t_q, d_v)`, `weights`: `(b, heads, t_q, t_k)`.
pub fn scaled_dot_product_attention(
    q: &ArrayD<f32>,
    k: &ArrayD<f32>,
    v: &ArrayD<f32>,
    mask: Option<&Mask>,
) -> Attended {
    scaled_dot_product_attention_with(q, k, v, mask, Schedule::Parallel)
}

/// [`scaled_dot_product_attention`] with the (batch, head) pairs scheduled by `schedule`.
///
/// # Shapes
/// - as in [`scaled_dot_product_attention`].
pub fn scaled_dot_product_attention_with(
    q: &ArrayD<f32>,
    k: &ArrayD<f32>,
    v: &ArrayD<f32>,
    mask: Option<&Mask>,
    schedule: Schedule,
) -> Attended {
    check_qkv(q, k, v, mask);
    let (q, k, v) = (
        q.as_standard_layout(),
        k.as_standard_layout(),
        v.as_standard_layout(),
    );
    let (b, h, t_q, d_k) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (t_k, d_v) = (k.shape()[2], v.shape()[3]);
    let (q4, k4, v4) = (as4(&q, "", ""), as4(&k, "", ""), as4(&v, "", ""));
    let scale = 1.0 / (d_k as f32).sqrt();
    let mut a = Array4::<f32>::zeros((b, h, t_q, t_k));
    let mut out = Array4::<f32>::zeros((b, h, t_q, d_v));
    // One (batch, head) pair: its scores and weights `a_p` (t_q, t_k), its output
    // `o_p` (t_q, d_v).
    let pair = |i: usize, a_p: &mut [f32], o_p: &mut [f32]| {
        let (n, hd) = (i / h, i % h);
        let mut s = ArrayViewMut2::from_shape((t_q, t_k), a_p).expect("(t_q, t_k)");
        // S = Q K^T / sqrt(d_k)
        sgemm(
            scale,
            &q4.slice(s![n, hd, .., ..]),
            &k4.slice(s![n, hd, .., ..]).t(),
            0.0,
            &mut s,
        );
        if let Some(m) = mask {
            s.zip_mut_with(&m.keep.slice(s![n, .., ..]), |v, &keep| {
                if !keep {
                    *v = f32::NEG_INFINITY
                }
            });
        }
        s.as_slice_mut()
            .expect("contiguous")
            .chunks_mut(t_k.max(1))
            .for_each(softmax_row);
        // O = A V
        let mut o = ArrayViewMut2::from_shape((t_q, d_v), o_p).expect("(t_q, d_v)");
        sgemm(1.0, &s.view(), &v4.slice(s![n, hd, .., ..]), 0.0, &mut o);
    };
    let (a_s, o_s) = (
        a.as_slice_mut().expect("standard layout"),
        out.as_slice_mut().expect("standard layout"),
    );
    let (a_len, o_len) = (t_q * t_k, t_q * d_v);
    if schedule == Schedule::Parallel && a_len > 0 && o_len > 0 {
        a_s.par_chunks_mut(a_len)
            .zip(o_s.par_chunks_mut(o_len))
            .enumerate()
            .for_each(|(i, (a_p, o_p))| pair(i, a_p, o_p));
    } else {
        for i in 0..b * h {
            let (a_p, o_p) = (
                &mut a_s[i * a_len..(i + 1) * a_len],
                &mut o_s[i * o_len..(i + 1) * o_len],
            );
            pair(i, a_p, o_p);
        }
    }
    Attended {
        out: out.into_dyn(),
        weights: a.into_dyn(),
    }
}

/// The backward of [`scaled_dot_product_attention`]: given the inputs, the weights
/// of the forward pass and `dout` = d loss / d out, returns dq, dk, dv.
///
/// # Shapes
/// - as in [`scaled_dot_product_attention`]; `dout` is the shape of its `out`.
pub fn scaled_dot_product_attention_backward(
    q: &ArrayD<f32>,
    k: &ArrayD<f32>,
    v: &ArrayD<f32>,
    weights: &ArrayD<f32>,
    dout: &ArrayD<f32>,
) -> AttentionGrads {
    scaled_dot_product_attention_backward_with(q, k, v, weights, dout, Schedule::Parallel)
}

/// [`scaled_dot_product_attention_backward`] with the (batch, head) pairs scheduled by
/// `schedule`.
///
/// # Shapes
/// - as in [`scaled_dot_product_attention_backward`].
pub fn scaled_dot_product_attention_backward_with(
    q: &ArrayD<f32>,
    k: &ArrayD<f32>,
    v: &ArrayD<f32>,
    weights: &ArrayD<f32>,
    dout: &ArrayD<f32>,
    schedule: Schedule,
) -> AttentionGrads {
    let who = "scaled_dot_product_attention_backward";
    check_qkv(q, k, v, None);
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let want_a = [qs[0], qs[1], qs[2], ks[2]];
    assert_eq!(
        weights.shape(),
        want_a,
        "{who}: weights {:?} vs (b, heads, t_q, t_k) {want_a:?}",
        weights.shape()
    );
    let want_o = [qs[0], qs[1], qs[2], vs[3]];
    assert_eq!(
        dout.shape(),
        want_o,
        "{who}: dout {:?} vs out {want_o:?}",
        dout.shape()
    );
    let (q, k, v) = (
        q.as_standard_layout(),
        k.as_standard_layout(),
        v.as_standard_layout(),
    );
    let (a, d_o) = (weights.as_standard_layout(), dout.as_standard_layout());
    let (q4, k4, v4) = (as4(&q, "", ""), as4(&k, "", ""), as4(&v, "", ""));
    let (a4, do4) = (as4(&a, "", ""), as4(&d_o, "", ""));
    let (b, h, t_q, d_k) = (qs[0], qs[1], qs[2], qs[3]);
    let (t_k, d_v) = (ks[2], vs[3]);
    let scale = 1.0 / (d_k as f32).sqrt();
    let mut dq = Array4::<f32>::zeros((b, h, t_q, d_k));
    let mut dk = Array4::<f32>::zeros((b, h, t_k, d_k));
    let mut dv = Array4::<f32>::zeros((b, h, t_k, d_v));
    // One (batch, head) pair: its dq (t_q, d_k), dk (t_k, d_k), dv (t_k, d_v).
    let pair = |i: usize, dq_p: &mut [f32], dk_p: &mut [f32], dv_p: &mut [f32]| {
        let (n, hd) = (i / h, i % h);
        let an = a4.slice(s![n, hd, .., ..]);
        let don = do4.slice(s![n, hd, .., ..]);
        let vn = v4.slice(s![n, hd, .., ..]);
        let mut ds = Array2::<f32>::zeros((t_q, t_k));
        // dA = dO V^T, dV = A^T dO
        sgemm(1.0, &don, &vn.t(), 0.0, &mut ds.view_mut());
        let mut dv_n = ArrayViewMut2::from_shape((t_k, d_v), dv_p).expect("(t_k, d_v)");
        sgemm(1.0, &an.t(), &don, 0.0, &mut dv_n);
        // dS = softmax backward; the 1/sqrt(d_k) of S folds into the next products
        let an_std = an.as_standard_layout();
        softmax_backward_rows(
            an_std.as_slice().expect("contiguous"),
            ds.as_slice_mut().expect("contiguous"),
            t_k.max(1),
        );
        let dsv: ArrayView2<f32> = ds.view();
        // dQ = dS K / sqrt(d_k), dK = dS^T Q / sqrt(d_k)
        let mut dq_n = ArrayViewMut2::from_shape((t_q, d_k), dq_p).expect("(t_q, d_k)");
        sgemm(scale, &dsv, &k4.slice(s![n, hd, .., ..]), 0.0, &mut dq_n);
        let mut dk_n = ArrayViewMut2::from_shape((t_k, d_k), dk_p).expect("(t_k, d_k)");
        sgemm(
            scale,
            &dsv.t(),
            &q4.slice(s![n, hd, .., ..]),
            0.0,
            &mut dk_n,
        );
    };
    let (dq_s, dk_s, dv_s) = (
        dq.as_slice_mut().expect("standard layout"),
        dk.as_slice_mut().expect("standard layout"),
        dv.as_slice_mut().expect("standard layout"),
    );
    let (q_len, k_len, v_len) = (t_q * d_k, t_k * d_k, t_k * d_v);
    if schedule == Schedule::Parallel && q_len > 0 && k_len > 0 && v_len > 0 {
        dq_s.par_chunks_mut(q_len)
            .zip(dk_s.par_chunks_mut(k_len))
            .zip(dv_s.par_chunks_mut(v_len))
            .enumerate()
            .for_each(|(i, ((dq_p, dk_p), dv_p))| pair(i, dq_p, dk_p, dv_p));
    } else {
        for i in 0..b * h {
            pair(
                i,
                &mut dq_s[i * q_len..(i + 1) * q_len],
                &mut dk_s[i * k_len..(i + 1) * k_len],
                &mut dv_s[i * v_len..(i + 1) * v_len],
            );
        }
    }
    AttentionGrads {
        dq: dq.into_dyn(),
        dk: dk.into_dyn(),
        dv: dv.into_dyn(),
    }
}
// ANCHOR_END: sdpa

/// `(b, t, heads * d_k)` to `(b, heads, t, d_k)` (a copy in standard layout).
///
/// # Shapes
/// - input `(b, t, d)` with `d` divisible by `heads`; output `(b, heads, t, d / heads)`.
pub fn split_heads(x: &ArrayD<f32>, heads: usize) -> ArrayD<f32> {
    let x3 = x
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap_or_else(|_| {
            panic!("split_heads: expected (b, t, d), got {:?}", x.shape())
        });
    let (b, t, d) = x3.dim();
    assert!(
        heads > 0 && d.is_multiple_of(heads),
        "split_heads: d = {d} of {:?} not divisible by {heads} heads",
        x.shape()
    );
    let x4 = x3
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((b, t, heads, d / heads))
        .expect("sizes match");
    x4.permuted_axes([0, 2, 1, 3])
        .as_standard_layout()
        .into_owned()
        .into_dyn()
}

/// `(b, heads, t, d_k)` to `(b, t, heads * d_k)`, the inverse of [`split_heads`].
///
/// # Shapes
/// - input `(b, heads, t, d_k)`; output `(b, t, heads d_k)`.
pub fn merge_heads(x: &ArrayD<f32>) -> ArrayD<f32> {
    let x4 = as4(x, "merge_heads", "x");
    let (b, h, t, dk) = x4.dim();
    x4.permuted_axes([0, 2, 1, 3])
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((b, t, h * dk))
        .expect("sizes match")
        .into_dyn()
}

/// The mask broadcast over heads as an array of the shape of the weights,
/// `(b, heads, t_q, t_k)`: for the twin and for [`masked_softmax`] on 4-d scores.
pub fn mask_for_heads(mask: &Mask, heads: usize) -> ArrayD<bool> {
    let (b, tq, tk) = mask.shape();
    mask.keep
        .view()
        .insert_axis(Axis(1))
        .broadcast((b, heads, tq, tk))
        .expect("broadcast over heads")
        .to_owned()
        .into_dyn()
}

// ANCHOR: scale_stats
/// What the $1/\sqrt{d_k}$ scaling does to scores, measured over random draws.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScaleStats {
    /// The head width $d_k$.
    pub d_k: usize,
    /// The variance of $q \cdot k$ over the draws.
    pub var_raw: f64,
    /// The variance of $q \cdot k / \sqrt{d_k}$.
    pub var_scaled: f64,
    /// The mean over draws of the largest softmax weight of `t_k` unscaled scores.
    pub max_weight_raw: f64,
    /// The same for the scaled scores.
    pub max_weight_scaled: f64,
}

/// Draws `draws` queries and `t_k` keys per draw with independent standard-normal entries
/// of width `d_k`, and measures the variance of their dot products, unscaled and scaled,
/// and how peaked the softmax over the `t_k` keys is, unscaled and scaled.
pub fn scale_stats(
    d_k: usize,
    t_k: usize,
    draws: usize,
    rng: &mut impl rand::Rng,
) -> ScaleStats {
    use rand_distr::{Distribution, StandardNormal};
    let scale = 1.0 / (d_k as f64).sqrt();
    let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0usize);
    let (mut max_raw, mut max_scaled) = (0.0f64, 0.0f64);
    let mut q = vec![0.0f64; d_k];
    let mut scores = vec![0.0f64; t_k];
    let peak = |s: &[f64], c: f64| {
        let m = s.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v * c));
        let z: f64 = s.iter().map(|&v| (v * c - m).exp()).sum();
        1.0 / z // the largest weight is exp(m - m) / z
    };
    for _ in 0..draws {
        q.iter_mut().for_each(|v| *v = StandardNormal.sample(rng));
        for s in scores.iter_mut() {
            *s = q
                .iter()
                .map(|&qi| {
                    let k: f64 = StandardNormal.sample(rng);
                    qi * k
                })
                .sum::<f64>();
            sum += *s;
            sum_sq += *s * *s;
            n += 1;
        }
        max_raw += peak(&scores, 1.0);
        max_scaled += peak(&scores, scale);
    }
    let mean = sum / n as f64;
    let var_raw = sum_sq / n as f64 - mean * mean;
    ScaleStats {
        d_k,
        var_raw,
        var_scaled: var_raw * scale * scale,
        max_weight_raw: max_raw / draws as f64,
        max_weight_scaled: max_scaled / draws as f64,
    }
}
// ANCHOR_END: scale_stats
