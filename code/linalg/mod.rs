//! Linear algebra from scratch: the symmetric eigendecomposition, the singular value
//! decomposition and principal component analysis, in `f64` on `ndarray`.
//!
//! | item | method | module |
//! |---|---|---|
//! | [`eigh_jacobi`] | cyclic Jacobi rotations, all eigenpairs | [`jacobi`] |
//! | [`top_k_power`] | power iteration with deflation, the top `k` | [`power`] |
//! | [`svd_jacobi`] | one-sided (Hestenes) Jacobi, thin SVD | [`svd`] |
//! | [`Pca`] | covariance, then [`eigh_jacobi`] | [`pca`] |
//! | [`lapack`] | the same decompositions through `ndarray-linalg` (LAPACK) | [`lapack`] |
//!
//! # The spectral theorem
//!
//! A real symmetric matrix $A = A^\top \in \mathbb{R}^{n\times n}$ has $n$ real
//! eigenvalues $\lambda_1 \ge \dots \ge \lambda_n$ and an orthonormal basis of
//! eigenvectors $v_1, \dots, v_n$:
//!
//! $$A = V \Lambda V^\top = \sum_i \lambda_i v_i v_i^\top, \qquad V^\top V = I.$$
//!
//! Every method here computes part of that factorisation. Eigenvectors are defined only
//! up to sign (and, for a repeated eigenvalue, only their span is), so results of two
//! methods are compared after [`normalize_signs`], or through the subspace they span
//! ([`subspace_distance`]) or the matrix they rebuild.
//!
//! Conventions: eigenvalues and singular values are sorted in descending order;
//! eigenvectors are the *columns* of [`Eigh::vectors`]; the SVD is thin,
//! $A = U\,\mathrm{diag}(s)\,V^\top$ with $U$ of shape $m\times r$, $V^\top$ of shape
//! $r\times n$, $r = \min(m, n)$.

use ndarray::{Array1, Array2, ArrayView2, Axis};

pub mod jacobi;
pub mod lapack;
pub mod pca;
pub mod power;
pub mod svd;

pub use jacobi::{eigh_jacobi, eigh_jacobi_with, jacobi_rotation, JacobiOptions};
pub use pca::{covariance, FittedPca, Pca, Solver};
pub use power::{top_k_power, PowerOptions, TopK};
pub use svd::{svd_jacobi, svd_jacobi_with};

/// A symmetric eigendecomposition $A = V \Lambda V^\top$.
///
/// # Shapes
/// `values`: `(n,)`, descending. `vectors`: `(n, k)`, column `i` belongs to `values[i]`
/// (`k = n` for a full decomposition, `k` for [`top_k_power`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Eigh {
    /// Eigenvalues, largest first.
    pub values: Array1<f64>,
    /// Orthonormal eigenvectors, one per column.
    pub vectors: Array2<f64>,
}

impl Eigh {
    /// $V \Lambda V^\top$: the matrix this decomposition stands for.
    pub fn reconstruct(&self) -> Array2<f64> {
        let scaled = &self.vectors * &self.values.view().insert_axis(Axis(0));
        scaled.dot(&self.vectors.t())
    }
}

/// A thin singular value decomposition $A = U\,\mathrm{diag}(s)\,V^\top$.
///
/// # Shapes
/// For `A` of shape `(m, n)` and `r = min(m, n)`: `u` is `(m, r)` with orthonormal
/// columns, `s` is `(r,)`, descending and non-negative, `vt` is `(r, n)` with orthonormal
/// rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Svd {
    /// Left singular vectors, one per column.
    pub u: Array2<f64>,
    /// Singular values, largest first.
    pub s: Array1<f64>,
    /// Right singular vectors, one per row.
    pub vt: Array2<f64>,
}

impl Svd {
    /// $U\,\mathrm{diag}(s)\,V^\top$: the matrix this decomposition stands for.
    pub fn reconstruct(&self) -> Array2<f64> {
        let us = &self.u * &self.s.view().insert_axis(Axis(0));
        us.dot(&self.vt)
    }
}

// ANCHOR: normalize_signs
/// Flips each column so that its entry of largest magnitude is positive. An eigenvector
/// is defined only up to sign; after this, two correct methods give the same vectors
/// (for simple eigenvalues whose vectors have a unique largest entry).
pub fn normalize_signs(vectors: &mut Array2<f64>) {
    for mut col in vectors.columns_mut() {
        let big =
            col.iter().copied().fold(
                0.0_f64,
                |m, x| {
                    if x.abs() > m.abs() {
                        x
                    } else {
                        m
                    }
                },
            );
        if big < 0.0 {
            col.mapv_inplace(|x| -x);
        }
    }
}
// ANCHOR_END: normalize_signs

/// [`normalize_signs`] for an SVD: flips column `i` of `u` by the sign of its largest
/// entry, and row `i` of `vt` with it, so that $U\,\mathrm{diag}(s)\,V^\top$ is unchanged.
pub fn normalize_svd_signs(svd: &mut Svd) {
    for i in 0..svd.s.len() {
        let col = svd.u.column(i);
        let big =
            col.iter()
                .copied()
                .fold(0.0_f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if big < 0.0 {
            svd.u.column_mut(i).mapv_inplace(|x| -x);
            svd.vt.row_mut(i).mapv_inplace(|x| -x);
        }
    }
}

/// The distance between the spans of the orthonormal columns of `a` and `b`: the sine
/// of the largest principal angle between them,
/// $\lVert (I - A A^\top) B \rVert_2$, the largest singular value of what is left of
/// $B$ after projecting it on the span of $A$. It is 0 for the same subspace whatever
/// basis each side picked, which is how vectors of a repeated eigenvalue are compared.
///
/// # Panics
/// If `a` and `b` do not have the same shape.
pub fn subspace_distance(a: ArrayView2<f64>, b: ArrayView2<f64>) -> f64 {
    assert_eq!(
        a.dim(),
        b.dim(),
        "subspace_distance: bases of shapes {:?} and {:?} differ",
        a.dim(),
        b.dim()
    );
    if a.ncols() == 0 {
        return 0.0;
    }
    // (n, k) - (n, k)(k, k)
    let resid = &b - &a.dot(&a.t().dot(&b));
    svd_jacobi(&resid).s[0]
}

/// The largest absolute entry of `a - b`, divided by the largest absolute entry of `b`
/// (or 1 if `b` is zero): a scale-free distance between two matrices.
///
/// # Panics
/// If the shapes differ.
pub fn max_rel_diff(a: ArrayView2<f64>, b: ArrayView2<f64>) -> f64 {
    assert_eq!(
        a.dim(),
        b.dim(),
        "max_rel_diff: shapes {:?} and {:?} differ",
        a.dim(),
        b.dim()
    );
    let scale = b.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0.0_f64, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// $\lVert Q^\top Q - I \rVert_{\max}$: how far the columns of `q` are from orthonormal.
pub fn orthogonality_error(q: ArrayView2<f64>) -> f64 {
    let g = q.t().dot(&q);
    let mut worst = 0.0_f64;
    for ((i, j), x) in g.indexed_iter() {
        let want = if i == j { 1.0 } else { 0.0 };
        worst = worst.max((x - want).abs());
    }
    worst
}
