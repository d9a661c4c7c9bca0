//! AdaBoost with the SAMME rule (Zhu et al., 2009): weak trees fitted one after the
//! other on reweighted rows, the rows the ensemble gets wrong weighing more each round.
//!
//! Round $m$ fits $h_m$ on weights $w_i$ (summing to one), measures its weighted error
//! $\varepsilon_m = \sum_i w_i [h_m(x_i) \ne y_i]$, gives it the vote
//!
//! $$\alpha_m = \eta\left(\ln\frac{1-\varepsilon_m}{\varepsilon_m} + \ln(K-1)\right)$$
//!
//! and multiplies the weight of every misclassified row by $e^{\alpha_m}$. The
//! $\ln(K-1)$ term is what makes it multi-class: a weak learner only has to beat
//! guessing ($\varepsilon < 1 - 1/K$), not $1/2$, for its vote to be positive. SAMME is
//! forward stagewise fitting of the exponential loss. The prediction is
//! $\arg\max_k \sum_m \alpha_m [h_m(x) = k]$.

use anyhow::{bail, Result};
use serde::Serialize;

use super::tree::{Columns, DecisionTree, Feature, FittedTree, Target};

/// Unfitted AdaBoost (SAMME).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdaBoost {
    /// The weak learner (a stump: `max_depth = Some(1)`).
    pub tree: DecisionTree,
    /// Rounds.
    pub n_rounds: usize,
    /// Shrinks every vote.
    pub lr: f64,
}

impl AdaBoost {
    /// `n_rounds` of stumps with learning rate 1 (scikit-learn's defaults use 50).
    pub fn stumps(n_rounds: usize) -> Self {
        AdaBoost {
            tree: DecisionTree {
                max_depth: Some(1),
                ..Default::default()
            },
            n_rounds,
            lr: 1.0,
        }
    }
}

/// A fitted AdaBoost ensemble.
#[derive(Clone, Debug, Serialize)]
pub struct FittedAdaBoost {
    /// The weak learners and their votes.
    pub rounds: Vec<(FittedTree, f64)>,
    /// Weighted training error of every round's learner.
    pub errors: Vec<f64>,
    /// Number of classes.
    pub n_classes: usize,
}

impl AdaBoost {
    // ANCHOR: samme
    /// Fits on `x` with labels in `0..n_classes` (at least two classes).
    pub fn fit<T: Feature>(
        &self,
        x: &Columns<T>,
        y: &[usize],
        k: usize,
    ) -> Result<FittedAdaBoost> {
        if self.n_rounds == 0 || self.lr.is_nan() || self.lr <= 0.0 {
            bail!(
                "AdaBoost needs n_rounds >= 1 and lr > 0 (got {}, {})",
                self.n_rounds,
                self.lr
            );
        }
        if k < 2 {
            bail!("AdaBoost needs at least two classes, got {k}");
        }
        let n = x.n_rows();
        let rows: Vec<u32> = (0..n as u32).collect();
        let mut w = vec![1.0 / n as f64; n];
        let (mut rounds, mut errors) = (Vec::new(), Vec::new());
        for _ in 0..self.n_rounds {
            let h = self
                .tree
                .fit_weighted(x, Target::Classes(y, k), &rows, &w)?;
            let miss: Vec<bool> =
                h.predict(x).iter().zip(y).map(|(p, t)| p != t).collect();
            let err = w
                .iter()
                .zip(&miss)
                .filter(|(_, &m)| m)
                .map(|(w, _)| w)
                .sum::<f64>()
                / w.iter().sum::<f64>();
            errors.push(err);
            if err <= 0.0 {
                // A perfect learner: it decides alone (any positive vote does).
                rounds.push((h, 1.0));
                break;
            }
            if err >= 1.0 - 1.0 / k as f64 {
                // No better than guessing: its vote would be <= 0; stop here.
                if rounds.is_empty() {
                    bail!(
                        "the first weak learner is no better than chance (error {err})"
                    );
                }
                break;
            }
            let alpha = self.lr * (((1.0 - err) / err).ln() + (k as f64 - 1.0).ln());
            for (wi, &m) in w.iter_mut().zip(&miss) {
                if m {
                    *wi *= alpha.exp();
                }
            }
            let total: f64 = w.iter().sum();
            w.iter_mut().for_each(|wi| *wi /= total);
            rounds.push((h, alpha));
        }
        Ok(FittedAdaBoost {
            rounds,
            errors,
            n_classes: k,
        })
    }
    // ANCHOR_END: samme
}

impl FittedAdaBoost {
    /// The weighted vote for each class: `(N, k)` row-major.
    pub fn decision<T: Feature>(&self, x: &Columns<T>) -> Vec<f64> {
        let k = self.n_classes;
        let mut votes = vec![0.0; x.n_rows() * k];
        for (h, alpha) in &self.rounds {
            for (i, c) in h.predict(x).into_iter().enumerate() {
                votes[i * k + c] += alpha;
            }
        }
        votes
    }

    /// The class with the largest vote.
    pub fn predict<T: Feature>(&self, x: &Columns<T>) -> Vec<usize> {
        super::tree::argmax_rows(&self.decision(x), self.n_classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boosted_stumps_fit_a_diagonal_boundary_a_single_stump_cannot() {
        // y = [x0 > x1] on a grid: one axis-aligned cut gets ~75%, many cuts do better.
        let n = 20;
        let mut vals = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            for j in 0..n {
                vals.push([i as f64, j as f64 + 0.5]);
                y.push(usize::from(i as f64 > j as f64 + 0.5));
            }
        }
        let x = ndarray::Array2::from_shape_fn((n * n, 2), |(r, c)| vals[r][c]);
        let x = Columns::from_rows(x.view());
        let acc = |p: Vec<usize>| {
            p.iter().zip(&y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
        };
        let one = AdaBoost::stumps(1).fit(&x, &y, 2).unwrap();
        let many = AdaBoost::stumps(200).fit(&x, &y, 2).unwrap();
        assert!(acc(one.predict(&x)) < 0.8);
        assert!(acc(many.predict(&x)) > 0.95, "{}", acc(many.predict(&x)));
        assert!(AdaBoost {
            lr: 0.0,
            ..AdaBoost::stumps(3)
        }
        .fit(&x, &y, 2)
        .is_err());
    }
}
