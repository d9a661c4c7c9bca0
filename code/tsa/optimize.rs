//! BFGS with central-difference gradients: the optimiser under the ARIMA fits.
//!
//! BFGS keeps an estimate $H$ of the *inverse* Hessian, steps along $-Hg$ with a
//! backtracking (Armijo) line search, and updates $H$ from the step $s$ and the change
//! in gradient $y$: $H \leftarrow (I-\rho sy^\top)H(I-\rho ys^\top) + \rho ss^\top$ with
//! $\rho = 1/y^\top s$, skipped when $y^\top s \le 0$ (no positive curvature to learn).
//! Gradients are central differences with a step relative to each coordinate: the
//! likelihoods here are smooth and cost microseconds, so two evaluations per coordinate
//! are cheaper than deriving the Kalman filter's analytic gradient.

/// Where BFGS stopped.
#[derive(Clone, Debug)]
pub struct Minimum {
    /// The minimiser.
    pub x: Vec<f64>,
    /// The objective there.
    pub f: f64,
    /// Iterations taken.
    pub iterations: usize,
    /// Whether the gradient test was met (else the iteration cap or a stalled line
    /// search stopped it).
    pub converged: bool,
}

/// The central-difference gradient of `f` at `x`.
pub fn numerical_gradient(f: &mut impl FnMut(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let h = 1e-6 * x[i].abs().max(1.0);
            xp[i] = x[i] + h;
            let fp = f(&xp);
            xp[i] = x[i] - h;
            let fm = f(&xp);
            xp[i] = x[i];
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

// ANCHOR: bfgs
/// Minimises `f` from `x0` by BFGS; stops when the largest gradient component is below
/// `gtol` or after `max_iter` iterations. Non-finite objective values count as +inf,
/// so the line search backs away from them.
pub fn bfgs(
    mut f: impl FnMut(&[f64]) -> f64,
    x0: &[f64],
    gtol: f64,
    max_iter: usize,
) -> Minimum {
    let n = x0.len();
    let mut obj = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    let mut x = x0.to_vec();
    let mut fx = obj(&x);
    let mut g = numerical_gradient(&mut obj, &x);
    let mut h: Vec<f64> = (0..n * n)
        .map(|ij| if ij / n == ij % n { 1.0 } else { 0.0 })
        .collect();
    let mut converged = false;
    let mut it = 0;
    while it < max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < gtol {
            converged = true;
            break;
        }
        it += 1;
        let mut d: Vec<f64> = (0..n)
            .map(|i| -(0..n).map(|j| h[i * n + j] * g[j]).sum::<f64>())
            .collect();
        let mut slope: f64 = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        if slope >= 0.0 {
            // H lost positive definiteness to rounding: restart from steepest descent.
            h = (0..n * n)
                .map(|ij| if ij / n == ij % n { 1.0 } else { 0.0 })
                .collect();
            d = g.iter().map(|v| -v).collect();
            slope = -g.iter().map(|v| v * v).sum::<f64>();
        }
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let xn: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a + step * b).collect();
            let fnew = obj(&xn);
            if fnew <= fx + 1e-4 * step * slope {
                accepted = Some((xn, fnew));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fnew)) = accepted else { break };
        let gn = numerical_gradient(&mut obj, &xn);
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let ys: f64 = y.iter().zip(&s).map(|(a, b)| a * b).sum();
        if ys > 1e-12 {
            let rho = 1.0 / ys;
            let hy: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|j| h[i * n + j] * y[j]).sum())
                .collect();
            let yhy: f64 = y.iter().zip(&hy).map(|(a, b)| a * b).sum();
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] += -rho * (hy[i] * s[j] + s[i] * hy[j])
                        + (rho * rho * yhy + rho) * s[i] * s[j];
                }
            }
        }
        let small = (fx - fnew).abs() <= 1e-14 * fx.abs().max(1.0);
        x = xn;
        fx = fnew;
        g = gn;
        if small {
            converged = g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < gtol.sqrt();
            break;
        }
    }
    Minimum {
        x,
        f: fx,
        iterations: it,
        converged,
    }
}
// ANCHOR_END: bfgs

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfgs_finds_the_rosenbrock_minimum() {
        let m = bfgs(
            |x| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2),
            &[-1.2, 1.0],
            1e-6,
            500,
        );
        assert!(
            (m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4,
            "{:?}",
            m.x
        );
    }
}
