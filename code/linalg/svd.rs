//! The singular value decomposition by one-sided Jacobi (Hestenes, 1958).
//!
//! # SVD and the eigendecomposition of $A^\top A$
//!
//! For $A \in \mathbb{R}^{m \times n}$ with thin SVD $A = U \Sigma V^\top$,
//!
//! $$A^\top A = V \Sigma U^\top U \Sigma V^\top = V \Sigma^2 V^\top,$$
//!
//! so the right singular vectors are the eigenvectors of $A^\top A$ and the singular
//! values are the square roots of its eigenvalues; likewise $A A^\top = U\Sigma^2U^\top$.
//! Forming $A^\top A$ squares the condition number, so singular values below about
//! $\sqrt{\varepsilon}\,\sigma_1$ lose their relative accuracy that way. One-sided Jacobi
//! gets the benefit without the loss.
//!
//! # One-sided Jacobi
//!
//! Apply the two-sided Jacobi method of [`jacobi`](super::jacobi) to $G = A^\top A$
//! *without forming it*: the entries it needs for a pair of columns $(i, j)$ are
//!
//! $$g_{ii} = \lVert a_i \rVert^2, \qquad g_{jj} = \lVert a_j \rVert^2, \qquad
//!   g_{ij} = a_i^\top a_j,$$
//!
//! and the rotation $J$ that zeroes $g_{ij}$ ([`jacobi_rotation`]) is applied to the
//! columns of $A$ itself, $A \leftarrow A J$, which makes $G \leftarrow J^\top G J$.
//! Accumulate $V \leftarrow V J$. When every pair of columns is orthogonal to the
//! tolerance, $A V = W$ has orthogonal columns $w_i$, and
//!
//! $$\sigma_i = \lVert w_i \rVert, \qquad u_i = w_i / \sigma_i, \qquad
//!   A = W V^\top = U \Sigma V^\top.$$
//!
//! The pair is skipped when $|a_i^\top a_j| \le \mathrm{tol}\,\sqrt{m}\,
//! \lVert a_i\rVert\lVert a_j\rVert$: the $\sqrt{m}$ is the rounding noise of an inner
//! product of length $m$ (LAPACK's `dgesvj` uses the same test).
//!
//! A wide matrix ($m < n$) is handled through its transpose: if
//! $A^\top = U' \Sigma V'^\top$ then $A = V' \Sigma U'^\top$.
//!
//! A column whose norm is zero to rounding ($\sigma_i \le \varepsilon \sigma_1$) has no
//! direction of its own; its $u_i$ is completed to an orthonormal set by Gram-Schmidt on
//! the unit vectors, which leaves $U\Sigma V^\top$ unchanged to rounding.

use ndarray::{Array1, Array2};

use super::jacobi::{jacobi_rotation, JacobiOptions};
use super::Svd;

/// Thin SVD of any `m x n` matrix by one-sided Jacobi, with the default
/// [`JacobiOptions`]: singular values descending.
///
/// # Panics
/// If `a` is empty or has a non-finite entry, or on non-convergence in `max_sweeps`.
pub fn svd_jacobi(a: &Array2<f64>) -> Svd {
    let opts = JacobiOptions::default();
    let (svd, sweeps) = svd_jacobi_with(a, &opts);
    assert!(
        sweeps.is_some(),
        "svd_jacobi: no convergence in {} sweeps for a {:?} matrix",
        opts.max_sweeps,
        a.dim()
    );
    svd
}

// ANCHOR: svd_jacobi
/// [`svd_jacobi`] with explicit options. Returns the SVD and the number of sweeps, or
/// `None` if it stopped at `opts.max_sweeps` without converging.
///
/// # Panics
/// If `a` is empty or has a non-finite entry.
pub fn svd_jacobi_with(a: &Array2<f64>, opts: &JacobiOptions) -> (Svd, Option<usize>) {
    let (m, n) = a.dim();
    assert!(
        m > 0 && n > 0,
        "svd_jacobi: empty matrix of shape {:?}",
        a.dim()
    );
    assert!(
        a.iter().all(|x| x.is_finite()),
        "svd_jacobi: the {m}x{n} matrix has a non-finite entry"
    );
    // Work on a tall matrix T (len x r, len >= r), stored as its r columns, one per row
    // of `cols`, so rotations read and write contiguous memory.
    let tall = m >= n;
    let t = if tall { a.t().to_owned() } else { a.to_owned() }; // (r, len)
    let (r, len) = t.dim();
    let mut cols: Vec<f64> = t.iter().copied().collect();
    let mut v = vec![0.0; r * r]; // rows of V: v[i] is column i of V
    for i in 0..r {
        v[i * r + i] = 1.0;
    }
    let tol = opts.tol * (len as f64).sqrt();
    let mut converged = None;
    for sweep in 1..=opts.max_sweeps {
        let mut rotations = 0;
        for i in 0..r {
            for j in i + 1..r {
                let (ci, cj) = (&cols[i * len..][..len], &cols[j * len..][..len]);
                let (alpha, beta, gamma) = dots(ci, cj);
                if gamma.abs() <= tol * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                let (c, s) = jacobi_rotation(alpha, beta, gamma);
                rotate_rows(&mut cols, len, i, j, c, s);
                rotate_rows(&mut v, r, i, j, c, s);
                rotations += 1;
            }
        }
        if rotations == 0 {
            converged = Some(sweep);
            break;
        }
    }
    // sigma_i = |w_i|, u_i = w_i / sigma_i, sorted by sigma descending.
    let sigma: Vec<f64> = (0..r)
        .map(|i| {
            cols[i * len..][..len]
                .iter()
                .map(|x| x * x)
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mut order: Vec<usize> = (0..r).collect();
    order.sort_by(|&i, &j| sigma[j].total_cmp(&sigma[i]));
    let s = Array1::from_iter(order.iter().map(|&i| sigma[i]));
    let mut w = Array2::<f64>::zeros((len, r)); // left vectors of T, as columns
    let mut vv = Array2::<f64>::zeros((r, r)); // right vectors of T, as columns
    let floor = f64::EPSILON * s[0];
    let mut missing = vec![];
    for (k, &i) in order.iter().enumerate() {
        if s[k] > floor && s[k] > 0.0 {
            for p in 0..len {
                w[[p, k]] = cols[i * len + p] / s[k];
            }
        } else {
            missing.push(k);
        }
        for p in 0..r {
            vv[[p, k]] = v[i * r + p];
        }
    }
    complete_orthonormal(&mut w, &missing);
    let svd = if tall {
        Svd {
            u: w,
            s,
            vt: vv.t().to_owned(),
        }
    } else {
        // A^T = W S VV^T, so A = VV S W^T.
        Svd {
            u: vv,
            s,
            vt: w.t().to_owned(),
        }
    };
    (svd, converged)
}
// ANCHOR_END: svd_jacobi

/// $\lVert x\rVert^2$, $\lVert y\rVert^2$ and $x^\top y$ in one pass.
fn dots(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let (mut a, mut b, mut g) = (0.0, 0.0, 0.0);
    for (p, q) in x.iter().zip(y) {
        a += p * p;
        b += q * q;
        g += p * q;
    }
    (a, b, g)
}

/// Rows `i < j` of the row-major `rows x len` matrix `m` become
/// `c m_i - s m_j` and `s m_i + c m_j`.
fn rotate_rows(m: &mut [f64], len: usize, i: usize, j: usize, c: f64, s: f64) {
    let (head, tail) = m.split_at_mut(j * len);
    let (ri, rj) = (&mut head[i * len..i * len + len], &mut tail[..len]);
    for (x, y) in ri.iter_mut().zip(rj.iter_mut()) {
        let (p, q) = (*x, *y);
        *x = c * p - s * q;
        *y = s * p + c * q;
    }
}

/// Fills the columns `missing` of `w` (currently zero) with unit vectors orthogonal to
/// all other columns, by Gram-Schmidt (twice) on the standard basis.
fn complete_orthonormal(w: &mut Array2<f64>, missing: &[usize]) {
    let (len, r) = w.dim();
    let mut candidate = 0;
    for &k in missing {
        while candidate < len {
            let mut x = Array1::<f64>::zeros(len);
            x[candidate] = 1.0;
            candidate += 1;
            for _ in 0..2 {
                for other in 0..r {
                    if other == k || (missing.contains(&other) && other > k) {
                        continue;
                    }
                    let col = w.column(other);
                    let proj = col.dot(&x);
                    x.scaled_add(-proj, &col);
                }
            }
            let norm = x.dot(&x).sqrt();
            if norm > 0.5 {
                w.column_mut(k).assign(&(x / norm));
                break;
            }
        }
    }
}
