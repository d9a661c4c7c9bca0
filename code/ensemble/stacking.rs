//! Stacking: base models' out-of-fold class probabilities as the features of a
//! multinomial logistic regression (the meta-model).
//!
//! The meta-model must learn how far to trust each base model on rows that model did
//! not see: a forest's probabilities on its own training rows are close to certain, so
//! training the meta-model on them would teach it to trust the forest blindly. With
//! $k$-fold cross-fitting every training row gets probabilities from base models fitted
//! on the other folds; the base models are then refitted on every row for test time.
//!
//! With two classes a base model's two probabilities sum to one, so only the second is
//! kept (as scikit-learn does): the pair is collinear with the intercept, and the
//! penalty would otherwise split each weight between two copies of one feature.
//!
//! The meta-model minimises $\sum_i -\ln \mathrm{softmax}(W^\top z_i + b)_{y_i} +
//! \frac{1}{2C}\lVert W \rVert^2$ (scikit-learn's `LogisticRegression` objective, the
//! intercept not penalised) with L-BFGS: the gradient is $Z^\top(P - Y) + W/C$.

use anyhow::{bail, Result};
use serde::Serialize;

use super::boosting::softmax;
use super::forest::{FittedForest, Forest};
use super::tree::{argmax_rows, Columns, Feature};
use crate::data::folds::stratified_kfold;

/// Unfitted multinomial logistic regression.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogisticRegression {
    /// Inverse L2 strength (scikit-learn's `C`).
    pub c: f64,
    /// L-BFGS iterations at most.
    pub max_iter: usize,
    /// Stop when the gradient's largest entry is below this.
    pub tol: f64,
}

impl Default for LogisticRegression {
    fn default() -> Self {
        LogisticRegression {
            c: 1.0,
            max_iter: 200,
            tol: 1e-6,
        }
    }
}

/// A fitted multinomial logistic regression.
#[derive(Clone, Debug, Serialize)]
pub struct FittedLogistic {
    /// `(F + 1, k)` row-major weights, the intercepts in the last row.
    pub w: Vec<f64>,
    /// Features.
    pub n_features: usize,
    /// Classes.
    pub n_classes: usize,
}

impl LogisticRegression {
    /// The penalised loss and its gradient at `w`, for rows `x` (`(N, F)` row-major).
    fn loss_grad(
        &self,
        w: &[f64],
        x: &[f64],
        y: &[usize],
        f: usize,
        k: usize,
    ) -> (f64, Vec<f64>) {
        let mut grad = vec![0.0; w.len()];
        let mut loss = 0.0;
        for (row, &yi) in x.chunks(f).zip(y) {
            let mut z = w[f * k..].to_vec();
            for (j, &v) in row.iter().enumerate() {
                for (zc, wc) in z.iter_mut().zip(&w[j * k..(j + 1) * k]) {
                    *zc += v * wc;
                }
            }
            let p = softmax(&z);
            loss -= p[yi].max(1e-300).ln();
            for c in 0..k {
                let d = p[c] - f64::from(u8::from(c == yi));
                for (j, &v) in row.iter().enumerate() {
                    grad[j * k + c] += d * v;
                }
                grad[f * k + c] += d;
            }
        }
        for i in 0..f * k {
            loss += 0.5 * w[i] * w[i] / self.c;
            grad[i] += w[i] / self.c;
        }
        (loss, grad)
    }

    /// Fits on `(N, F)` row-major features with labels in `0..k`.
    pub fn fit(&self, x: &[f64], y: &[usize], k: usize) -> Result<FittedLogistic> {
        if y.is_empty() || !x.len().is_multiple_of(y.len()) {
            bail!("{} feature values for {} labels", x.len(), y.len());
        }
        if self.c.is_nan() || self.c <= 0.0 || k < 2 || y.iter().any(|&c| c >= k) {
            bail!(
                "need C > 0 (got {}) and labels in 0..{k} with k >= 2",
                self.c
            );
        }
        let f = x.len() / y.len();
        let w = lbfgs(
            |w| self.loss_grad(w, x, y, f, k),
            vec![0.0; (f + 1) * k],
            self.max_iter,
            self.tol,
        );
        Ok(FittedLogistic {
            w,
            n_features: f,
            n_classes: k,
        })
    }
}

/// Minimises `fg` (loss and gradient) from `w` with L-BFGS (memory 10) and a
/// backtracking line search on the Armijo condition.
fn lbfgs(
    fg: impl Fn(&[f64]) -> (f64, Vec<f64>),
    mut w: Vec<f64>,
    iters: usize,
    tol: f64,
) -> Vec<f64> {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let (mut loss, mut g) = fg(&w);
    let mut mem: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    for _ in 0..iters {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < tol {
            break;
        }
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(mem.len());
        for (s, yv, rho) in mem.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((s, yv, _)) = mem.last() {
            let gamma = dot(s, yv) / dot(yv, yv);
            q.iter_mut().for_each(|v| *v *= gamma);
        } else {
            let n = dot(&g, &g).sqrt().max(1e-12);
            q.iter_mut().for_each(|v| *v /= n);
        }
        for ((s, yv, rho), a) in mem.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(yv, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let d: Vec<f64> = q.iter().map(|v| -v).collect();
        let slope = dot(&g, &d);
        if slope >= 0.0 {
            mem.clear();
            continue;
        }
        let mut step = 1.0;
        let (w_new, l_new, g_new) = loop {
            let cand: Vec<f64> = w.iter().zip(&d).map(|(a, b)| a + step * b).collect();
            let (l, gr) = fg(&cand);
            if l <= loss + 1e-4 * step * slope || step < 1e-12 {
                break (cand, l, gr);
            }
            step *= 0.5;
        };
        let s: Vec<f64> = w_new.iter().zip(&w).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &yv);
        if sy > 1e-12 {
            mem.push((s, yv, 1.0 / sy));
            if mem.len() > 10 {
                mem.remove(0);
            }
        }
        let done = (loss - l_new).abs() <= 1e-12 * loss.abs().max(1.0);
        (w, loss, g) = (w_new, l_new, g_new);
        if done {
            break;
        }
    }
    w
}

impl FittedLogistic {
    /// Class probabilities of `(N, F)` row-major rows: `(N, k)` row-major.
    pub fn predict_proba(&self, x: &[f64]) -> Vec<f64> {
        let (f, k) = (self.n_features, self.n_classes);
        assert_eq!(
            x.len() % f,
            0,
            "{} values are not rows of {f} features",
            x.len()
        );
        x.chunks(f)
            .flat_map(|row| {
                let mut z = self.w[f * k..].to_vec();
                for (j, &v) in row.iter().enumerate() {
                    for (zc, wc) in z.iter_mut().zip(&self.w[j * k..(j + 1) * k]) {
                        *zc += v * wc;
                    }
                }
                softmax(&z)
            })
            .collect()
    }

    /// The most likely class of each row.
    pub fn predict(&self, x: &[f64]) -> Vec<usize> {
        argmax_rows(&self.predict_proba(x), self.n_classes)
    }
}

// ANCHOR: stacking_params
/// Unfitted stacking of forests into a logistic regression.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stacking {
    /// The base models.
    pub bases: Vec<Forest>,
    /// Folds of the out-of-fold predictions.
    pub n_folds: usize,
    /// The meta-model.
    pub meta: LogisticRegression,
    /// Seed of the folds.
    pub seed: u64,
}
// ANCHOR_END: stacking_params

/// A fitted stack.
#[derive(Clone, Debug)]
pub struct FittedStacking {
    /// The base models refitted on every training row.
    pub bases: Vec<FittedForest>,
    /// The meta-model over their concatenated probabilities.
    pub meta: FittedLogistic,
}

impl Stacking {
    // ANCHOR: stacking_fit
    /// Fits: out-of-fold probabilities of every base model, the meta-model on them, and
    /// every base model again on all rows.
    pub fn fit<T: Feature>(
        &self,
        x: &Columns<T>,
        y: &[usize],
        k: usize,
    ) -> Result<FittedStacking> {
        if self.bases.is_empty() {
            bail!("stacking needs at least one base model");
        }
        let (n, m, kw) = (x.n_rows(), self.bases.len(), kept(k));
        let mut z = vec![0.0; n * m * kw]; // (N, M kw): model b's columns at b kw..
        for (train, val) in stratified_kfold(y, self.n_folds, self.seed)? {
            let (xt, yt): (Columns<T>, Vec<usize>) =
                (x.select(&train), train.iter().map(|&i| y[i]).collect());
            let xv = x.select(&val);
            for (b, base) in self.bases.iter().enumerate() {
                let p = base.fit(&xt, &yt, k)?.predict_proba(&xv);
                for (r, &i) in val.iter().enumerate() {
                    z[i * m * kw + b * kw..i * m * kw + (b + 1) * kw]
                        .copy_from_slice(&p[(r + 1) * k - kw..(r + 1) * k]);
                }
            }
        }
        let meta = self.meta.fit(&z, y, k)?;
        let bases = self
            .bases
            .iter()
            .map(|b| b.fit(x, y, k))
            .collect::<Result<_>>()?;
        Ok(FittedStacking { bases, meta })
    }
    // ANCHOR_END: stacking_fit
}

/// Probability columns kept per base model: the last one only with two classes, all
/// `k` otherwise.
fn kept(k: usize) -> usize {
    if k == 2 {
        1
    } else {
        k
    }
}

impl FittedStacking {
    /// The meta-model's features for `x`: the base models' probabilities side by side
    /// (with two classes, each model's probability of class 1 only).
    pub fn features<T: Feature>(&self, x: &Columns<T>) -> Vec<f64> {
        let k = self.meta.n_classes;
        let kw = kept(k);
        let ps: Vec<Vec<f64>> = self.bases.iter().map(|b| b.predict_proba(x)).collect();
        (0..x.n_rows())
            .flat_map(|i| {
                ps.iter()
                    .flat_map(move |p| p[(i + 1) * k - kw..(i + 1) * k].iter().copied())
            })
            .collect()
    }

    /// The meta-model's class for every row.
    pub fn predict<T: Feature>(&self, x: &Columns<T>) -> Vec<usize> {
        self.meta.predict(&self.features(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_regression_reaches_a_stationary_point_of_its_loss() {
        // Three overlapping classes on a line: the optimum is interior (finite weights).
        let x: Vec<f64> = (0..60)
            .map(|i| 0.6 * (i as f64 / 10.0).sin() + (i % 3) as f64)
            .collect();
        let y: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let lr = LogisticRegression::default();
        let fit = lr.fit(&x, &y, 3).unwrap();
        let (_, g) = lr.loss_grad(&fit.w, &x, &y, 1, 3);
        assert!(g.iter().all(|v| v.abs() < 1e-4), "{g:?}");
        let acc = fit
            .predict(&x)
            .iter()
            .zip(&y)
            .filter(|(a, b)| a == b)
            .count();
        // Chance is 20/60; the middle class overlaps both others on one feature, so a
        // penalised linear model gets most rows, not all.
        assert!(acc >= 40, "{acc}/60");
        assert!(LogisticRegression { c: 0.0, ..lr }.fit(&x, &y, 3).is_err());
    }
}
