//! Model selection: grid search over `C x gamma` scored by stratified k-fold
//! cross-validation (the folds from [`crate::data::folds::stratified_kfold`]).
//! Features are used as given: standardise them before, on the training rows only.

use anyhow::Result;
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::Serialize;

use super::{Gamma, Svc};
use crate::data::folds::stratified_kfold;

/// The cross-validated accuracy of every `(C, gamma)` pair.
#[derive(Clone, Debug, Serialize)]
pub struct GridSearch {
    /// The values of C (rows of `mean_accuracy`).
    pub cs: Vec<f64>,
    /// The values of gamma (columns).
    pub gammas: Vec<f64>,
    /// `[c][gamma]` mean validation accuracy over the folds.
    pub mean_accuracy: Vec<Vec<f64>>,
    /// `[c][gamma]` standard deviation of the fold accuracies.
    pub std_accuracy: Vec<Vec<f64>>,
    /// `(c index, gamma index)` of the best mean accuracy (first on ties, the smallest
    /// C then the smallest gamma, as scikit-learn's `GridSearchCV` ranks).
    pub best: (usize, usize),
}

impl GridSearch {
    /// The best `C`.
    pub fn best_c(&self) -> f64 {
        self.cs[self.best.0]
    }

    /// The best `gamma`.
    pub fn best_gamma(&self) -> f64 {
        self.gammas[self.best.1]
    }
}

/// Scores `base` with every `C` in `cs` and `gamma` in `gammas` by `k`-fold stratified
/// cross-validation on `(x, y)` with fold seed `seed`; every cell and fold in parallel.
/// Errors on an empty grid, a bad `k`, or a fit that fails.
pub fn grid_search(
    base: &Svc,
    x: &Array2<f64>,
    y: &[usize],
    cs: &[f64],
    gammas: &[f64],
    k: usize,
    seed: u64,
) -> Result<GridSearch> {
    if cs.is_empty() || gammas.is_empty() {
        anyhow::bail!("an empty grid: give at least one C and one gamma");
    }
    let folds = stratified_kfold(y, k, seed)?;
    let jobs: Vec<(usize, usize, usize)> = (0..cs.len())
        .flat_map(|ci| {
            (0..gammas.len()).flat_map(move |gi| (0..k).map(move |f| (ci, gi, f)))
        })
        .collect();
    let bar = crate::progress::bar(jobs.len() as u64, "grid search");
    let acc: Vec<f64> = jobs
        .par_iter()
        .map(|&(ci, gi, f)| {
            let (train, val) = &folds[f];
            let svc = Svc {
                c: cs[ci],
                gamma: Gamma::Value(gammas[gi]),
                ..base.clone()
            };
            let ytr: Vec<usize> = train.iter().map(|&i| y[i]).collect();
            let yva: Vec<usize> = val.iter().map(|&i| y[i]).collect();
            let model = svc.fit(&x.select(Axis(0), train), &ytr)?;
            let a = model.score(&x.select(Axis(0), val), &yva);
            bar.inc(1);
            Ok(a)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let mut mean_accuracy = vec![vec![0.0; gammas.len()]; cs.len()];
    let mut std_accuracy = mean_accuracy.clone();
    let mut best = (0, 0);
    for ci in 0..cs.len() {
        for gi in 0..gammas.len() {
            let start = (ci * gammas.len() + gi) * k;
            let a = &acc[start..start + k];
            let m = a.iter().sum::<f64>() / k as f64;
            let v = a.iter().map(|v| (v - m).powi(2)).sum::<f64>() / k as f64;
            mean_accuracy[ci][gi] = m;
            std_accuracy[ci][gi] = v.sqrt();
            if m > mean_accuracy[best.0][best.1] {
                best = (ci, gi);
            }
        }
    }
    Ok(GridSearch {
        cs: cs.to_vec(),
        gammas: gammas.to_vec(),
        mean_accuracy,
        std_accuracy,
        best,
    })
}
