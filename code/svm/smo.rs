//! Sequential minimal optimisation for the soft-margin dual, as libsvm's `Solver` does
//! it (without shrinking):
//!
//! minimise `f(a) = 1/2 a^T Q a - e^T a` subject to `y^T a = 0`, `0 <= a_i <= C`,
//!
//! two coordinates at a time, chosen by the second-order working-set selection of Fan,
//! Chen & Lin (2005, "WSS 3"), keeping the gradient `G = Q a - e` up to date after every
//! step, stopping when the maximal KKT violation `m(a) - M(a)` falls below `eps`.

use anyhow::{bail, Result};

use super::kernel::QMatrix;

/// libsvm's floor for a non-positive curvature `K_ii + K_jj - 2 K_ij`.
const TAU: f64 = 1e-12;

/// The solution of one binary dual.
#[derive(Clone, Debug)]
pub struct DualSolution {
    /// `(N,)` the multipliers `a_i` in `[0, C]`.
    pub alpha: Vec<f64>,
    /// The offset: the decision value is `sum_i a_i y_i K(x_i, x) - rho`.
    pub rho: f64,
    /// The dual objective `1/2 a^T Q a - e^T a` at the solution.
    pub objective: f64,
    /// SMO steps taken.
    pub iterations: usize,
    /// Kernel rows computed (cache misses) and requested.
    pub kernel_rows: (u64, u64),
}

/// Solves the C-SVC dual of `q` (labels `y` in `{-1, +1}`) to KKT tolerance `eps`.
/// Errors if it has not converged after `max_iter` steps.
pub fn solve(
    q: &mut QMatrix,
    y: &[f64],
    c: f64,
    eps: f64,
    max_iter: usize,
) -> Result<DualSolution> {
    let n = y.len();
    let qd = q.diag().to_vec();
    let mut alpha = vec![0.0; n];
    // a = 0, so G = Q a - e = -e.
    let mut g = vec![-1.0; n];
    let upper = |a: f64| a >= c;
    let lower = |a: f64| a <= 0.0;
    let mut iter = 0;
    loop {
        // ANCHOR: select
        // Working-set selection, libsvm's select_working_set: i maximises -y_i G_i over
        // the indices that may move up (I_up) ...
        let mut gmax = f64::NEG_INFINITY;
        let mut gmax2 = f64::NEG_INFINITY;
        let mut i_sel = usize::MAX;
        for t in 0..n {
            if y[t] > 0.0 {
                if !upper(alpha[t]) && -g[t] >= gmax {
                    gmax = -g[t];
                    i_sel = t;
                }
            } else if !lower(alpha[t]) && g[t] >= gmax {
                gmax = g[t];
                i_sel = t;
            }
        }
        // ... and j, among the violators in I_low, gives the largest decrease of the
        // objective along the two-coordinate direction (second-order information).
        let mut j_sel = usize::MAX;
        let mut obj_diff_min = f64::INFINITY;
        if i_sel != usize::MAX {
            let yi = y[i_sel];
            let qi = q.row(i_sel);
            for t in 0..n {
                let (grad_diff, quad) = if y[t] > 0.0 {
                    if lower(alpha[t]) {
                        continue;
                    }
                    gmax2 = gmax2.max(g[t]);
                    (gmax + g[t], qd[i_sel] + qd[t] - 2.0 * yi * qi[t] as f64)
                } else {
                    if upper(alpha[t]) {
                        continue;
                    }
                    gmax2 = gmax2.max(-g[t]);
                    (gmax - g[t], qd[i_sel] + qd[t] + 2.0 * yi * qi[t] as f64)
                };
                if grad_diff > 0.0 {
                    let obj_diff =
                        -(grad_diff * grad_diff) / if quad > 0.0 { quad } else { TAU };
                    if obj_diff <= obj_diff_min {
                        j_sel = t;
                        obj_diff_min = obj_diff;
                    }
                }
            }
        }
        if gmax + gmax2 < eps || j_sel == usize::MAX {
            break;
        }
        // ANCHOR_END: select
        if iter >= max_iter {
            bail!(
                "SMO did not reach the KKT tolerance {eps} in {max_iter} steps \
                 (violation {:.3e}): scale the features or lower C",
                gmax + gmax2
            );
        }
        iter += 1;
        // ANCHOR: update
        let (i, j) = (i_sel, j_sel);
        let (qi, qj) = q.rows2(i, j);
        let (old_i, old_j) = (alpha[i], alpha[j]);
        // The two-variable subproblem, solved analytically then clipped to the box
        // (libsvm's update, with C_i = C_j = C).
        if y[i] != y[j] {
            let quad = qd[i] + qd[j] + 2.0 * qi[j] as f64;
            let quad = if quad > 0.0 { quad } else { TAU };
            let delta = (-g[i] - g[j]) / quad;
            let diff = alpha[i] - alpha[j];
            alpha[i] += delta;
            alpha[j] += delta;
            if diff > 0.0 {
                if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = diff;
                }
            } else if alpha[i] < 0.0 {
                alpha[i] = 0.0;
                alpha[j] = -diff;
            }
            if diff > 0.0 {
                if alpha[i] > c {
                    alpha[i] = c;
                    alpha[j] = c - diff;
                }
            } else if alpha[j] > c {
                alpha[j] = c;
                alpha[i] = c + diff;
            }
        } else {
            let quad = qd[i] + qd[j] - 2.0 * qi[j] as f64;
            let quad = if quad > 0.0 { quad } else { TAU };
            let delta = (g[i] - g[j]) / quad;
            let sum = alpha[i] + alpha[j];
            alpha[i] -= delta;
            alpha[j] += delta;
            if sum > c {
                if alpha[i] > c {
                    alpha[i] = c;
                    alpha[j] = sum - c;
                }
            } else if alpha[j] < 0.0 {
                alpha[j] = 0.0;
                alpha[i] = sum;
            }
            if sum > c {
                if alpha[j] > c {
                    alpha[j] = c;
                    alpha[i] = sum - c;
                }
            } else if alpha[i] < 0.0 {
                alpha[i] = 0.0;
                alpha[j] = sum;
            }
        }
        // Gradient maintenance: only two coordinates of a moved, so G changes by two
        // columns of Q.
        let (di, dj) = (alpha[i] - old_i, alpha[j] - old_j);
        for k in 0..n {
            g[k] += qi[k] as f64 * di + qj[k] as f64 * dj;
        }
        // ANCHOR_END: update
    }
    let rho = rho_of(&alpha, &g, y, c);
    // f(a) = 1/2 a^T Q a - e^T a = 1/2 a^T (G - e) since G = Q a - e.
    let objective = alpha
        .iter()
        .zip(&g)
        .map(|(a, gi)| a * (gi - 1.0))
        .sum::<f64>()
        / 2.0;
    Ok(DualSolution {
        alpha,
        rho,
        objective,
        iterations: iter,
        kernel_rows: (q.misses, q.requests),
    })
}

/// The offset from the KKT conditions (libsvm's `calculate_rho`): every free support
/// vector satisfies `y_i G_i = rho` exactly at the optimum, so their mean; with none free,
/// the midpoint of the interval the bounded ones allow.
// ANCHOR: rho
fn rho_of(alpha: &[f64], g: &[f64], y: &[f64], c: f64) -> f64 {
    let (mut ub, mut lb) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut n_free, mut sum_free) = (0usize, 0.0);
    for t in 0..alpha.len() {
        let yg = y[t] * g[t];
        if alpha[t] >= c {
            if y[t] < 0.0 {
                ub = ub.min(yg);
            } else {
                lb = lb.max(yg);
            }
        } else if alpha[t] <= 0.0 {
            if y[t] > 0.0 {
                ub = ub.min(yg);
            } else {
                lb = lb.max(yg);
            }
        } else {
            n_free += 1;
            sum_free += yg;
        }
    }
    if n_free > 0 {
        sum_free / n_free as f64
    } else {
        (ub + lb) / 2.0
    }
}
// ANCHOR_END: rho
