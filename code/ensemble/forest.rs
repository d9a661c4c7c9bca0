//! Bagging, random forests and extremely randomised trees: many trees, each fitted on a
//! perturbed copy of the data, their class shares averaged.
//!
//! Averaging $B$ predictors of variance $\sigma^2$ and pairwise correlation $\rho$ leaves
//! variance $\rho\sigma^2 + \frac{1-\rho}{B}\sigma^2$: more trees remove the second term
//! only, so the forest's randomness (a bootstrap sample per tree; $\sqrt F$ candidate
//! features per split) is there to lower $\rho$. A bootstrap sample leaves out about
//! $(1 - 1/N)^N \approx e^{-1} \approx 37\%$ of the rows; predicting each row with the
//! trees that never saw it gives the out-of-bag accuracy, a test estimate for free.
//!
//! Trees are fitted in parallel (rayon), tree `b` seeded with `seed + b`, so the forest
//! is the same on one thread or many.

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::tree::{
    argmax_rows, Columns, DecisionTree, Feature, FittedTree, MaxFeatures, Target,
};

// ANCHOR: forest_params
/// An unfitted ensemble of classification trees.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Forest {
    /// The trees' hyper-parameters (its seed is replaced by `seed + b` for tree `b`).
    pub tree: DecisionTree,
    /// Number of trees.
    pub n_trees: usize,
    /// Each tree sees a bootstrap sample (`N` rows drawn with replacement); without
    /// it, every tree sees every row.
    pub bootstrap: bool,
    /// Seed of the first tree.
    pub seed: u64,
}
// ANCHOR_END: forest_params

/// A fitted forest.
#[derive(Clone, Debug, Serialize)]
pub struct FittedForest {
    /// The trees.
    pub trees: Vec<FittedTree>,
    /// Number of classes.
    pub n_classes: usize,
    /// Out-of-bag accuracy over the rows left out by at least one tree (`None` without
    /// bootstrap).
    pub oob_accuracy: Option<f64>,
}

impl Forest {
    /// Bagged trees: bootstrap samples, every feature at every split.
    pub fn bagging(n_trees: usize, seed: u64) -> Self {
        Forest {
            tree: DecisionTree::default(),
            n_trees,
            bootstrap: true,
            seed,
        }
    }

    /// A random forest: bootstrap samples and $\lfloor\sqrt F\rfloor$ features per split.
    pub fn random(n_trees: usize, seed: u64) -> Self {
        Forest {
            tree: DecisionTree {
                max_features: MaxFeatures::Sqrt,
                ..Default::default()
            },
            ..Forest::bagging(n_trees, seed)
        }
    }

    /// Extremely randomised trees: every row, $\sqrt F$ features, one random threshold
    /// each.
    pub fn extra(n_trees: usize, seed: u64) -> Self {
        Forest {
            tree: DecisionTree {
                max_features: MaxFeatures::Sqrt,
                random_thresholds: true,
                ..Default::default()
            },
            bootstrap: false,
            ..Forest::bagging(n_trees, seed)
        }
    }

    // ANCHOR: forest_fit
    /// Fits the trees in parallel on `x` with labels `y` in `0..n_classes`.
    pub fn fit<T: Feature>(
        &self,
        x: &Columns<T>,
        y: &[usize],
        n_classes: usize,
    ) -> Result<FittedForest> {
        if self.n_trees == 0 {
            bail!("a forest needs n_trees >= 1");
        }
        let n = x.n_rows();
        // Tree b: its bootstrap counts (the rows it saw, with multiplicity as weight).
        let fitted: Vec<(FittedTree, Vec<f64>)> = (0..self.n_trees)
            .into_par_iter()
            .map(|b| {
                let seed = self.seed.wrapping_add(b as u64);
                let mut counts = vec![1.0; n];
                if self.bootstrap {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
                    counts.fill(0.0);
                    for _ in 0..n {
                        counts[rng.random_range(0..n)] += 1.0;
                    }
                }
                let rows: Vec<u32> = (0..n as u32)
                    .filter(|&i| counts[i as usize] > 0.0)
                    .collect();
                let tree = DecisionTree {
                    seed,
                    ..self.tree.clone()
                };
                tree.fit_weighted(x, Target::Classes(y, n_classes), &rows, &counts)
                    .map(|t| (t, counts))
            })
            .collect::<Result<_>>()?;
        let oob_accuracy = self
            .bootstrap
            .then(|| oob(&fitted, x, y, n_classes))
            .flatten();
        Ok(FittedForest {
            trees: fitted.into_iter().map(|(t, _)| t).collect(),
            n_classes,
            oob_accuracy,
        })
    }
    // ANCHOR_END: forest_fit
}

/// Out-of-bag accuracy: each row predicted by the trees whose sample left it out.
fn oob<T: Feature>(
    fitted: &[(FittedTree, Vec<f64>)],
    x: &Columns<T>,
    y: &[usize],
    k: usize,
) -> Option<f64> {
    let n = x.n_rows();
    let votes = fitted
        .par_iter()
        .map(|(t, counts)| {
            let mut v = vec![0.0; n * k];
            for i in (0..n).filter(|&i| counts[i] == 0.0) {
                let leaf = t.leaf_at(x, i);
                for (a, b) in v[i * k..(i + 1) * k].iter_mut().zip(&leaf.value) {
                    *a += b;
                }
            }
            v
        })
        .reduce(|| vec![0.0; n * k], add);
    let (mut seen, mut right) = (0, 0);
    for (i, &yi) in y.iter().enumerate() {
        let row = &votes[i * k..(i + 1) * k];
        if row.iter().any(|&v| v > 0.0) {
            seen += 1;
            right += usize::from(argmax_rows(row, k)[0] == yi);
        }
    }
    (seen > 0).then(|| right as f64 / seen as f64)
}

fn add(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    for (x, y) in a.iter_mut().zip(&b) {
        *x += y;
    }
    a
}

impl FittedForest {
    /// Mean class shares over the first `n_trees` trees (all if larger): `(N, k)`
    /// row-major.
    pub fn predict_proba_first<T: Feature>(
        &self,
        x: &Columns<T>,
        n_trees: usize,
    ) -> Vec<f64> {
        let m = n_trees.clamp(1, self.trees.len());
        let sum = self.trees[..m]
            .par_iter()
            .map(|t| t.predict_values(x))
            .reduce(|| vec![0.0; x.n_rows() * self.n_classes], add);
        sum.into_iter().map(|v| v / m as f64).collect()
    }

    /// Mean class shares over all trees: `(N, k)` row-major.
    pub fn predict_proba<T: Feature>(&self, x: &Columns<T>) -> Vec<f64> {
        self.predict_proba_first(x, self.trees.len())
    }

    /// The class with the largest mean share.
    pub fn predict<T: Feature>(&self, x: &Columns<T>) -> Vec<usize> {
        argmax_rows(&self.predict_proba(x), self.n_classes)
    }

    /// Mean impurity-decrease importance over the trees (sums to one).
    pub fn importances(&self) -> Vec<f64> {
        let f = self.trees[0].n_features;
        let mut imp = vec![0.0; f];
        for t in &self.trees {
            for (a, b) in imp.iter_mut().zip(&t.importances) {
                *a += b / self.trees.len() as f64;
            }
        }
        imp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n: usize, seed: u64) -> (Columns<f64>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = ndarray::Array2::from_shape_fn((n, 4), |_| rng.random::<f64>());
        // Class depends on features 0 and 1 only; 2 and 3 are noise.
        let y = (0..n)
            .map(|i| usize::from(x[[i, 0]] + 0.5 * x[[i, 1]] > 0.75))
            .collect();
        (Columns::from_rows(x.view()), y)
    }

    #[test]
    fn a_forest_is_the_same_on_one_thread_and_finds_the_informative_features() {
        let (x, y) = blobs(300, 1);
        let f = Forest::random(20, 7);
        let a = f.fit(&x, &y, 2).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| f.fit(&x, &y, 2).unwrap());
        assert_eq!(a.trees, b.trees);
        let imp = a.importances();
        assert!(
            imp[0] > imp[2] && imp[0] > imp[3] && imp[1] > imp[3],
            "{imp:?}"
        );
        let oob = a.oob_accuracy.unwrap();
        assert!(oob > 0.85, "out-of-bag accuracy {oob}");
        let (xt, yt) = blobs(300, 2);
        let acc = a
            .predict(&xt)
            .iter()
            .zip(&yt)
            .filter(|(p, q)| p == q)
            .count();
        assert!(acc > 255, "{acc}/300");
    }

    #[test]
    fn zero_trees_is_an_error_and_extra_trees_see_every_row() {
        let (x, y) = blobs(50, 3);
        assert!(Forest::random(0, 0).fit(&x, &y, 2).is_err());
        let e = Forest::extra(3, 0).fit(&x, &y, 2).unwrap();
        assert!(e.oob_accuracy.is_none());
        assert!(e.trees.iter().all(|t| t.nodes[0].n_samples == 50));
    }
}
