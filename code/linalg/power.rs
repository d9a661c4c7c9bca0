//! Power iteration with deflation: the top `k` eigenpairs of a symmetric matrix.
//!
//! # Why it converges, and how fast
//!
//! Write the start vector in the eigenbasis, $x_0 = \sum_i c_i v_i$. Then
//!
//! $$A^t x_0 = \sum_i c_i \lambda_i^t v_i
//!   = c_1 \lambda_1^t \Big( v_1 + \sum_{i \ge 2} \frac{c_i}{c_1}
//!     \Big(\frac{\lambda_i}{\lambda_1}\Big)^t v_i \Big).$$
//!
//! If $|\lambda_1| > |\lambda_2|$ and $c_1 \ne 0$ (true with probability one for a random
//! start), every other term shrinks at least like $|\lambda_2/\lambda_1|^t$: after
//! normalisation the angle between $x_t$ and $v_1$ has $\tan\angle(x_t, v_1) \le
//! |\lambda_2/\lambda_1|^t \tan\angle(x_0, v_1)$. The Rayleigh quotient
//! $x_t^\top A x_t$ converges twice as fast for a symmetric matrix, like
//! $|\lambda_2/\lambda_1|^{2t}$, because its error is quadratic in the vector's error.
//! A small gap $\lambda_1 - \lambda_2$ means slow convergence.
//!
//! Power iteration finds the eigenvalue of largest *magnitude*; for a positive
//! semi-definite matrix such as a covariance that is the largest one.
//!
//! # Deflation
//!
//! Once $v_1, \dots, v_{j-1}$ are found, iterating with the deflated matrix
//! $(I - V_{j-1}V_{j-1}^\top) A (I - V_{j-1}V_{j-1}^\top)$ finds $v_j$: its spectrum is
//! $A$'s with the found eigenvalues replaced by zeros. We never form it; projecting each
//! iterate onto the orthogonal complement of the found vectors is the same thing, and
//! keeps the vectors orthonormal.
//!
//! # Stopping
//!
//! Iteration $j$ stops when the residual of the deflated matrix,
//! $\lVert P A x - \lambda x \rVert$ with $P = I - V_{j-1}V_{j-1}^\top$, is at most
//! $\mathrm{tol}\cdot|\lambda|$, or after `max_iters`. The eigenvalue's error is then
//! about the squared residual divided by the gap to the next eigenvalue.

use ndarray::{s, Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::Eigh;

/// Options of [`top_k_power`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerOptions {
    /// Seed of the random start vectors.
    pub seed: u64,
    /// Iteration limit per eigenpair.
    pub max_iters: usize,
    /// Relative residual at which an eigenpair is accepted (0 runs `max_iters`).
    pub tol: f64,
}

impl Default for PowerOptions {
    fn default() -> Self {
        PowerOptions {
            seed: 0,
            max_iters: 10_000,
            tol: 1e-12,
        }
    }
}

/// The result of [`top_k_power`]: the eigenpairs and what each one cost.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// The `k` eigenpairs found, in the order found (descending magnitude).
    pub eigh: Eigh,
    /// Iterations spent on each eigenpair.
    pub iters: Vec<usize>,
    /// Whether each eigenpair met the tolerance before `max_iters`.
    pub converged: Vec<bool>,
}

// ANCHOR: top_k_power
/// The `k` eigenpairs of largest magnitude of the symmetric matrix `a`, by power
/// iteration on the deflated matrix, from seeded random start vectors.
///
/// # Panics
/// If `a` is not square and symmetric (as [`eigh_jacobi`](super::eigh_jacobi)), or if
/// `k > n`.
pub fn top_k_power(a: &Array2<f64>, k: usize, opts: &PowerOptions) -> TopK {
    let n = super::jacobi::check_symmetric(a, "top_k_power");
    assert!(
        k <= n,
        "top_k_power: k = {k} > n = {n} for shape {:?}",
        a.dim()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut vectors = Array2::<f64>::zeros((n, k));
    let mut values = Array1::<f64>::zeros(k);
    let (mut iters, mut converged) = (vec![0; k], vec![false; k]);
    for j in 0..k {
        let mut x: Array1<f64> =
            (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        deflate(&mut x, &vectors, j);
        x /= x.dot(&x).sqrt();
        let mut lambda = 0.0;
        for it in 1..=opts.max_iters {
            // y = P A x with P the projector away from the found vectors: the deflated
            // matrix at work. Its residual, not A's, is the stopping test; A's would
            // include the found vectors' own residuals and never fall below them.
            let mut y = a.dot(&x);
            deflate(&mut y, &vectors, j);
            lambda = x.dot(&y);
            let resid = (&y - &(lambda * &x)).mapv(|r| r * r).sum().sqrt();
            iters[j] = it;
            if resid <= opts.tol * lambda.abs() {
                converged[j] = true;
                break;
            }
            let norm = y.dot(&y).sqrt();
            if norm == 0.0 {
                // A is zero on what is left: any unit vector there is an eigenvector.
                converged[j] = true;
                break;
            }
            x = y / norm;
        }
        vectors.column_mut(j).assign(&x);
        values[j] = lambda;
    }
    TopK {
        eigh: Eigh { values, vectors },
        iters,
        converged,
    }
}

/// Removes from `x` its components along the first `j` columns of `v` (twice: one
/// classical Gram-Schmidt pass loses orthogonality when `x` is nearly in their span).
fn deflate(x: &mut Array1<f64>, v: &Array2<f64>, j: usize) {
    if j == 0 {
        return;
    }
    let found = v.slice(s![.., ..j]);
    for _ in 0..2 {
        let coef = found.t().dot(x);
        *x -= &found.dot(&coef);
    }
}
// ANCHOR_END: top_k_power
