//! The framework twin: the same decompositions through `ndarray-linalg`, which calls
//! LAPACK (OpenBLAS here). Same types and conventions as the from-scratch versions
//! (descending order, eigenvectors as columns, thin SVD), so results compare directly.
//!
//! `dsyevd`-style routines first reduce $A$ to tridiagonal form with Householder
//! reflections ($\approx \tfrac{4}{3}n^3$ flops), then solve the tridiagonal problem and
//! back-transform the vectors; `dgesdd` does the same through a bidiagonal form. Their
//! eigenvalue errors are bounded by $O(\varepsilon)\lVert A \rVert$, *absolutely*: an
//! eigenvalue $10^{10}$ times smaller than $\lVert A\rVert$ may carry a relative error of
//! about $10^{-6}$, which is why the agreement tests measure small eigenvalues against
//! $\lVert A\rVert$.

use ndarray::{s, Array2};
use ndarray_linalg::{Eigh as _, SVD as _, UPLO};

use super::{Eigh, Svd};

// ANCHOR: lapack_eigh
/// All eigenpairs of the symmetric matrix `a` by LAPACK: eigenvalues descending,
/// eigenvectors as columns. Reads the lower triangle only.
///
/// # Panics
/// If `a` is not square, or if LAPACK reports a failure (it does for non-finite input).
pub fn eigh(a: &Array2<f64>) -> Eigh {
    assert_eq!(
        a.nrows(),
        a.ncols(),
        "lapack::eigh: shape {:?} is not square",
        a.dim()
    );
    let (values, vectors) = a
        .eigh(UPLO::Lower)
        .unwrap_or_else(|e| panic!("lapack::eigh on a {:?} matrix: {e}", a.dim()));
    // LAPACK sorts ascending; the book sorts descending.
    Eigh {
        values: values.slice(s![..;-1]).to_owned(),
        vectors: vectors.slice(s![.., ..;-1]).to_owned(),
    }
}
// ANCHOR_END: lapack_eigh

// ANCHOR: lapack_svd
/// Thin SVD of `a` by LAPACK: singular values descending, `u` of shape `(m, r)`, `vt` of
/// shape `(r, n)`, `r = min(m, n)`.
///
/// # Panics
/// If LAPACK reports a failure.
pub fn svd(a: &Array2<f64>) -> Svd {
    let (m, n) = a.dim();
    let r = m.min(n);
    let (u, s, vt) = a
        .svd(true, true)
        .unwrap_or_else(|e| panic!("lapack::svd on a {:?} matrix: {e}", a.dim()));
    let (u, vt) = (u.expect("asked for U"), vt.expect("asked for Vt"));
    // `svd` returns the full U (m x m) and Vt (n x n); keep the thin parts.
    Svd {
        u: u.slice(s![.., ..r]).to_owned(),
        s: s.slice(s![..r]).to_owned(),
        vt: vt.slice(s![..r, ..]).to_owned(),
    }
}
// ANCHOR_END: lapack_svd
