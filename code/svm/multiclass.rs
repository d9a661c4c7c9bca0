//! One-vs-one multi-class classification as libsvm (and so scikit-learn's `SVC`) does
//! it: a binary SVM for every pair of classes `(a, b)`, `a < b`, with `a` as the
//! positive class; a test point gets a vote from each pair, and the class with the most
//! votes wins, ties going to the class with the smaller index.

use anyhow::{bail, Context, Result};
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::Serialize;

use super::kernel::{Kernel, QMatrix};
use super::smo;
use super::Svc;

/// The binary SVM of one pair of classes.
#[derive(Clone, Debug, Serialize)]
pub struct PairModel {
    /// Index (into [`FittedSvc::classes`]) of the positive class.
    pub pos: usize,
    /// Index of the negative class.
    pub neg: usize,
    /// Its support vectors, as rows of [`FittedSvc::support_vectors`].
    pub sv: Vec<usize>,
    /// `a_i y_i` of each of them.
    pub coef: Vec<f64>,
    /// The offset: decision value `sum_i coef_i K(sv_i, x) - rho`, positive for `pos`.
    pub rho: f64,
    /// SMO steps taken.
    pub iterations: usize,
    /// Kernel rows computed and requested during training.
    pub kernel_rows: (u64, u64),
}

/// A fitted one-vs-one SVM.
#[derive(Clone, Debug)]
pub struct FittedSvc {
    /// The kernel, gamma resolved.
    pub kernel: Kernel,
    /// The class labels seen in training, ascending.
    pub classes: Vec<usize>,
    /// Training-row indices of the support vectors, grouped by class in `classes`
    /// order and in row order within a class (scikit-learn's `support_`).
    pub support: Vec<usize>,
    /// `(S, F)` those rows.
    pub support_vectors: Array2<f64>,
    /// Support vectors per class.
    pub n_support: Vec<usize>,
    /// The binary models in libsvm's order `(0,1), (0,2), ..., (1,2), ...`.
    pub pairs: Vec<PairModel>,
}

/// Trains every pair (in parallel) and collects the support vectors.
pub(super) fn fit_ovo(
    svc: &Svc,
    kernel: Kernel,
    x: &Array2<f64>,
    y: &[usize],
) -> Result<FittedSvc> {
    let mut classes: Vec<usize> = y.to_vec();
    classes.sort_unstable();
    classes.dedup();
    if classes.len() < 2 {
        bail!(
            "{} class(es) in the labels: a classifier needs at least two",
            classes.len()
        );
    }
    let k = classes.len();
    let rows_of: Vec<Vec<usize>> = classes
        .iter()
        .map(|&c| (0..y.len()).filter(|&i| y[i] == c).collect())
        .collect();
    let pair_list: Vec<(usize, usize)> = (0..k)
        .flat_map(|a| (a + 1..k).map(move |b| (a, b)))
        .collect();
    let x = x.as_standard_layout();
    let max_iter = 10_000_000usize;
    // (alpha over rows_of[a] ++ rows_of[b], rho, iterations, rows)
    let solved: Vec<Result<(Vec<f64>, smo::DualSolution)>> = pair_list
        .par_iter()
        .map(|&(a, b)| {
            let rows: Vec<usize> =
                rows_of[a].iter().chain(&rows_of[b]).copied().collect();
            let xp = x.select(Axis(0), &rows);
            let yp: Vec<f64> = (0..rows.len())
                .map(|t| if t < rows_of[a].len() { 1.0 } else { -1.0 })
                .collect();
            let mut q = QMatrix::new(xp.view(), &yp, kernel, svc.cache_mb);
            let sol = smo::solve(
                &mut q,
                &yp,
                svc.c,
                svc.eps,
                max_iter.max(100 * rows.len()),
            )
            .with_context(|| format!("classes {} vs {}", classes[a], classes[b]))?;
            Ok((yp, sol))
        })
        .collect();
    let solved: Vec<(Vec<f64>, smo::DualSolution)> =
        solved.into_iter().collect::<Result<_>>()?;
    // A training row is a support vector if any pair gives it a nonzero multiplier.
    let mut is_sv = vec![false; y.len()];
    for (&(a, b), (_, sol)) in pair_list.iter().zip(&solved) {
        for (t, &r) in rows_of[a].iter().chain(&rows_of[b]).enumerate() {
            if sol.alpha[t] > 0.0 {
                is_sv[r] = true;
            }
        }
    }
    let mut support = Vec::new();
    let mut n_support = Vec::with_capacity(k);
    for rows in &rows_of {
        let before = support.len();
        support.extend(rows.iter().copied().filter(|&r| is_sv[r]));
        n_support.push(support.len() - before);
    }
    let mut sv_of = vec![usize::MAX; y.len()];
    for (s, &r) in support.iter().enumerate() {
        sv_of[r] = s;
    }
    let pairs = pair_list
        .iter()
        .zip(solved)
        .map(|(&(a, b), (yp, sol))| {
            let mut sv = Vec::new();
            let mut coef = Vec::new();
            for (t, &r) in rows_of[a].iter().chain(&rows_of[b]).enumerate() {
                if sol.alpha[t] > 0.0 {
                    sv.push(sv_of[r]);
                    coef.push(sol.alpha[t] * yp[t]);
                }
            }
            PairModel {
                pos: a,
                neg: b,
                sv,
                coef,
                rho: sol.rho,
                iterations: sol.iterations,
                kernel_rows: sol.kernel_rows,
            }
        })
        .collect();
    Ok(FittedSvc {
        kernel,
        classes,
        support_vectors: x.select(Axis(0), &support),
        support,
        n_support,
        pairs,
    })
}

impl FittedSvc {
    /// `(N, P)` the decision values of every pair for `x` `(N, F)`, in libsvm's pair
    /// order; positive means the pair's lower class. One kernel matrix against all the
    /// support vectors serves every pair. Panics if `F` differs from training.
    pub fn decision_ovo(&self, x: &Array2<f64>) -> Array2<f64> {
        assert_eq!(
            x.ncols(),
            self.support_vectors.ncols(),
            "FittedSvc: {:?} rows for a model of {} features",
            x.shape(),
            self.support_vectors.ncols()
        );
        let kx = self.kernel.matrix(x.view(), self.support_vectors.view()); // (N, S)
        let mut dec = Array2::<f64>::zeros((x.nrows(), self.pairs.len()));
        dec.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(kx.axis_iter(Axis(0)).into_par_iter())
            .for_each(|(mut d, k)| {
                for (p, m) in self.pairs.iter().enumerate() {
                    let s: f64 = m.sv.iter().zip(&m.coef).map(|(&s, &c)| c * k[s]).sum();
                    d[p] = s - m.rho;
                }
            });
        dec
    }

    /// scikit-learn's `decision_function` (`decision_function_shape="ovo"`): the
    /// one-vs-one values for three or more classes, and for two classes one column
    /// whose positive side is the second class (the negation of libsvm's value).
    pub fn decision_function(&self, x: &Array2<f64>) -> Array2<f64> {
        let dec = self.decision_ovo(x);
        if self.classes.len() == 2 {
            -dec
        } else {
            dec
        }
    }

    // ANCHOR: predict
    /// Class labels by one-vs-one voting, ties to the smaller class index.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<usize> {
        let dec = self.decision_ovo(x);
        let k = self.classes.len();
        dec.rows()
            .into_iter()
            .map(|d| {
                let mut votes = vec![0usize; k];
                for (p, m) in self.pairs.iter().enumerate() {
                    votes[if d[p] > 0.0 { m.pos } else { m.neg }] += 1;
                }
                // First class with the most votes, as libsvm's `>` scan does.
                let mut best = 0;
                for c in 1..k {
                    if votes[c] > votes[best] {
                        best = c;
                    }
                }
                self.classes[best]
            })
            .collect()
    }
    // ANCHOR_END: predict

    /// Accuracy of [`FittedSvc::predict`] against labels `y`.
    pub fn score(&self, x: &Array2<f64>, y: &[usize]) -> f64 {
        assert_eq!(
            x.nrows(),
            y.len(),
            "score: {:?} rows, {} labels",
            x.shape(),
            y.len()
        );
        let pred = self.predict(x);
        pred.iter().zip(y).filter(|(p, t)| p == t).count() as f64 / y.len().max(1) as f64
    }
}
