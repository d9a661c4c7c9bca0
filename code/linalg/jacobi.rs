//! The cyclic Jacobi eigenvalue algorithm for a symmetric matrix.
//!
//! # One rotation
//!
//! Pick an off-diagonal pair $(p, q)$, $p < q$, and the plane rotation $J$ that is the
//! identity except for $J_{pp} = J_{qq} = c$, $J_{pq} = s$, $J_{qp} = -s$, with
//! $c = \cos\varphi$, $s = \sin\varphi$. The similarity $A' = J^\top A J$ keeps the
//! eigenvalues and changes only rows and columns $p$ and $q$:
//!
//! $$a'_{kp} = c\,a_{kp} - s\,a_{kq}, \qquad a'_{kq} = s\,a_{kp} + c\,a_{kq}
//! \qquad (k \ne p, q),$$
//!
//! $$a'_{pq} = (c^2 - s^2)\,a_{pq} + cs\,(a_{pp} - a_{qq}).$$
//!
//! Choosing $\varphi$ to make $a'_{pq} = 0$ gives
//!
//! $$\theta \equiv \cot 2\varphi = \frac{a_{qq} - a_{pp}}{2 a_{pq}},$$
//!
//! and with $t = \tan\varphi$ the identity $\cot 2\varphi = (1 - t^2)/(2t)$ turns that
//! into $t^2 + 2\theta t - 1 = 0$. We take the smaller root,
//!
//! $$t = \frac{\operatorname{sgn}\theta}{|\theta| + \sqrt{\theta^2 + 1}}, \qquad
//! c = \frac{1}{\sqrt{t^2 + 1}}, \qquad s = t\,c,$$
//!
//! so that $|\varphi| \le \pi/4$: the rotation is as close to the identity as possible,
//! which is what makes the method converge (and this form never divides by a small
//! number or overflows: for huge $\theta$ it gives $t \approx 1/(2\theta)$). The two
//! diagonal entries become $a'_{pp} = a_{pp} - t\,a_{pq}$ and
//! $a'_{qq} = a_{qq} + t\,a_{pq}$.
//!
//! # Why it converges
//!
//! The rotation is orthogonal, so the Frobenius norm is unchanged, and the zeroed pair
//! moves its weight onto the diagonal: $\mathrm{off}(A')^2 = \mathrm{off}(A)^2 - 2a_{pq}^2$,
//! where $\mathrm{off}(A)^2 = \sum_{i \ne j} a_{ij}^2$. A later rotation may make $a_{pq}$
//! non-zero again, but the off-diagonal mass only ever decreases. One *sweep* visits every
//! pair once in row order; after a few sweeps convergence is quadratic (the off-diagonal
//! norm is roughly squared by each sweep), and six to ten sweeps are typical.
//!
//! Accumulating $V \leftarrow V J$ over all rotations gives the eigenvectors:
//! $V^\top A V = \Lambda$.
//!
//! # Stopping
//!
//! A pair is skipped when $|a_{pq}| \le \mathrm{tol}\,\sqrt{|a_{pp}\,a_{qq}|}$, a test
//! relative to the two diagonal entries, not to $\lVert A \rVert$ (Demmel and Veselić,
//! 1992): it lets Jacobi find small eigenvalues of a well-scaled positive definite matrix
//! to high *relative* accuracy, which QR-based LAPACK routines do not promise. The method
//! stops after the first sweep that skips every pair, or after `max_sweeps`.
//!
//! # Cost
//!
//! A rotation touches $O(n)$ entries of $A$ and of $V$, a sweep has $n(n-1)/2$ of them:
//! about $6n^3$ flops per sweep (rows of $A$ and of $V$), so ten sweeps cost about
//! $60n^3$, against about $9n^3$ for the tridiagonal QR algorithm with vectors (Golub and
//! Van Loan, §8.3) that LAPACK-style libraries use. Jacobi is simple, accurate, and
//! several times slower.

use ndarray::{Array1, Array2};

use super::Eigh;

/// Tolerance and sweep limit of the Jacobi methods ([`eigh_jacobi_with`] and
/// [`svd_jacobi_with`](super::svd_jacobi_with)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JacobiOptions {
    /// A pair is rotated only if its coupling exceeds `tol` relative to its diagonal
    /// (see the module docs). Default: machine epsilon.
    pub tol: f64,
    /// Give up after this many sweeps. Default: 30 (convergence takes about 10).
    pub max_sweeps: usize,
}

impl Default for JacobiOptions {
    fn default() -> Self {
        JacobiOptions {
            tol: f64::EPSILON,
            max_sweeps: 30,
        }
    }
}

/// Relative tolerance of the symmetry check of [`eigh_jacobi`]:
/// $|a_{ij} - a_{ji}| \le 10^{-10} \max |a|$.
pub const SYMMETRY_TOL: f64 = 1e-10;

// ANCHOR: jacobi_rotation
/// The rotation `(c, s)` that zeroes $a_{pq}$ of the symmetric block
/// $\begin{pmatrix} a_{pp} & a_{pq} \\ a_{pq} & a_{qq} \end{pmatrix}$, with
/// $|\varphi| \le \pi/4$.
pub fn jacobi_rotation(app: f64, aqq: f64, apq: f64) -> (f64, f64) {
    let theta = (aqq - app) / (2.0 * apq);
    // For |theta| > 1e154, theta^2 overflows to inf and t becomes 0: the pair is
    // already decoupled to machine precision.
    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
    let c = 1.0 / (t * t + 1.0).sqrt();
    (c, t * c)
}
// ANCHOR_END: jacobi_rotation

// ANCHOR: jacobi_apply
/// Applies $A \leftarrow J^\top A J$ and $V^\top \leftarrow J^\top V^\top$ for the pair
/// `(p, q)`, `p < q`. `a` is the full symmetric `n x n` matrix, row-major; `vt` holds the
/// eigenvector estimates as rows, so both updates read and write whole rows.
fn rotate(a: &mut [f64], vt: &mut [f64], n: usize, p: usize, q: usize) {
    let (app, aqq, apq) = (a[p * n + p], a[q * n + q], a[p * n + q]);
    let (c, s) = jacobi_rotation(app, aqq, apq);
    let t = s / c;
    // Rows p and q: (J^T A) mixes them. For k != p, q that is already row p and q of
    // J^T A J, because right-multiplying by J only mixes columns p and q.
    let (head, tail) = a.split_at_mut(q * n);
    let (row_p, row_q) = (&mut head[p * n..p * n + n], &mut tail[..n]);
    for (x, y) in row_p.iter_mut().zip(row_q.iter_mut()) {
        let (akp, akq) = (*x, *y);
        *x = c * akp - s * akq;
        *y = s * akp + c * akq;
    }
    // The 2x2 block, with the cancellation-free formulas.
    row_p[p] = app - t * apq;
    row_q[q] = aqq + t * apq;
    row_p[q] = 0.0;
    row_q[p] = 0.0;
    // Columns p and q mirror rows p and q: A' stays exactly symmetric.
    for k in 0..n {
        a[k * n + p] = a[p * n + k];
        a[k * n + q] = a[q * n + k];
    }
    // V <- V J, i.e. rows p and q of V^T mix the same way.
    let (head, tail) = vt.split_at_mut(q * n);
    let (v_p, v_q) = (&mut head[p * n..p * n + n], &mut tail[..n]);
    for (x, y) in v_p.iter_mut().zip(v_q.iter_mut()) {
        let (vp, vq) = (*x, *y);
        *x = c * vp - s * vq;
        *y = s * vp + c * vq;
    }
}
// ANCHOR_END: jacobi_apply

// ANCHOR: eigh_jacobi
/// All eigenpairs of a symmetric matrix by cyclic Jacobi, with the default
/// [`JacobiOptions`]: eigenvalues descending, eigenvectors as columns.
///
/// # Panics
/// If `a` is not square, has a non-finite entry, is not symmetric to [`SYMMETRY_TOL`]
/// (the message names the worst entry), or has not converged after `max_sweeps`.
pub fn eigh_jacobi(a: &Array2<f64>) -> Eigh {
    let (eigh, sweeps) = eigh_jacobi_with(a, &JacobiOptions::default());
    assert!(
        sweeps.is_some(),
        "eigh_jacobi: no convergence in {} sweeps for a {:?} matrix",
        JacobiOptions::default().max_sweeps,
        a.dim()
    );
    eigh
}

/// [`eigh_jacobi`] with explicit options. Returns the decomposition and the number of
/// sweeps it took, or `None` if it stopped at `opts.max_sweeps` without converging (the
/// result is then the best estimate so far).
///
/// The input is symmetrised as $(A + A^\top)/2$, so entries that differ by rounding do
/// not matter; a genuinely non-symmetric input panics.
///
/// # Panics
/// As [`eigh_jacobi`], except for non-convergence.
pub fn eigh_jacobi_with(a: &Array2<f64>, opts: &JacobiOptions) -> (Eigh, Option<usize>) {
    let n = check_symmetric(a, "eigh_jacobi");
    // Row-major working copy, exactly symmetric.
    let mut w: Vec<f64> = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            w.push(0.5 * (a[[i, j]] + a[[j, i]]));
        }
    }
    let mut vt = vec![0.0; n * n];
    for i in 0..n {
        vt[i * n + i] = 1.0;
    }
    let mut converged = None;
    for sweep in 1..=opts.max_sweeps {
        let mut rotations = 0;
        for p in 0..n {
            for q in p + 1..n {
                let apq = w[p * n + q];
                let scale = (w[p * n + p] * w[q * n + q]).abs().sqrt();
                if apq.abs() <= opts.tol * scale || apq.abs() < f64::MIN_POSITIVE {
                    continue;
                }
                rotate(&mut w, &mut vt, n, p, q);
                rotations += 1;
            }
        }
        if rotations == 0 {
            converged = Some(sweep);
            break;
        }
    }
    let values: Vec<f64> = (0..n).map(|i| w[i * n + i]).collect();
    (sorted(&values, &vt, n), converged)
}
// ANCHOR_END: eigh_jacobi

/// Checks that `a` is square, finite and symmetric to [`SYMMETRY_TOL`]; returns `n`.
pub(crate) fn check_symmetric(a: &Array2<f64>, who: &str) -> usize {
    let (n, m) = a.dim();
    assert_eq!(
        n,
        m,
        "{who}: needs a square matrix, got shape {:?}",
        a.dim()
    );
    let mut scale = 0.0_f64;
    for (idx, x) in a.indexed_iter() {
        assert!(
            x.is_finite(),
            "{who}: entry {idx:?} of the {n}x{n} matrix is {x}"
        );
        scale = scale.max(x.abs());
    }
    let mut worst = (0.0, 0, 0);
    for i in 0..n {
        for j in 0..i {
            let d = (a[[i, j]] - a[[j, i]]).abs();
            if d > worst.0 {
                worst = (d, i, j);
            }
        }
    }
    let (d, i, j) = worst;
    assert!(
        d <= SYMMETRY_TOL * scale,
        "{who}: needs a symmetric matrix, but in the {n}x{n} input \
         |a[{i},{j}] - a[{j},{i}]| = {d:e} > {SYMMETRY_TOL:e} * max|a| = {:e}",
        SYMMETRY_TOL * scale
    );
    n
}

/// Eigenpairs sorted by descending eigenvalue, vectors as columns. `vt` holds the vectors
/// as rows (`n x n`, row-major) in the order of `values`.
fn sorted(values: &[f64], vt: &[f64], n: usize) -> Eigh {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
    let vals = Array1::from_iter(order.iter().map(|&i| values[i]));
    let mut vecs = Array2::zeros((n, order.len()));
    for (col, &i) in order.iter().enumerate() {
        for k in 0..n {
            vecs[[k, col]] = vt[i * n + k];
        }
    }
    Eigh {
        values: vals,
        vectors: vecs,
    }
}
