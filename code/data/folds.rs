//! Splits for the statistical models of chapter 12: a stratified train/test split,
//! stratified k-fold cross-validation, row selection, and standardisation fitted on the
//! training rows only.
//!
//! Stratified means every class keeps (to within one row) its share in every part, so a
//! small test set or fold never loses a class by chance. Every split is seeded and
//! returns row indices, sorted, so the same seed gives the same rows on every machine.

use anyhow::{bail, Result};
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::tables::Table;

/// The rows of each class, in file order.
fn rows_by_class(labels: &[usize]) -> Vec<Vec<usize>> {
    let n_classes = labels.iter().max().map_or(0, |&m| m + 1);
    let mut by_class = vec![Vec::new(); n_classes];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y].push(i);
    }
    by_class
}

/// A stratified split of `labels` into `(train, test)` row indices with
/// `round(test_fraction * N)` test rows (at least one per class that has two rows),
/// the test rows of each class drawn at random with `seed`. Both lists are sorted.
///
/// Errors if `test_fraction` is not strictly between 0 and 1.
pub fn stratified_split(
    labels: &[usize],
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        bail!("test fraction {test_fraction} is not strictly between 0 and 1");
    }
    let n = labels.len();
    let want = (test_fraction * n as f64).round() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_class = rows_by_class(labels);
    // Each class's share of the test rows, rounded down, then the remainders go to the
    // classes with the largest fractional parts (largest remainder method).
    let exact: Vec<f64> = by_class
        .iter()
        .map(|rows| rows.len() as f64 * want as f64 / n as f64)
        .collect();
    let mut take: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..by_class.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    let mut short = want - take.iter().sum::<usize>();
    for &c in order.iter().cycle().take(order.len() * 2) {
        if short == 0 {
            break;
        }
        if take[c] < by_class[c].len() {
            take[c] += 1;
            short -= 1;
        }
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (rows, &k) in by_class.iter_mut().zip(&take) {
        let k = if rows.len() >= 2 {
            k.clamp(1, rows.len() - 1)
        } else {
            k
        };
        rows.shuffle(&mut rng);
        test.extend_from_slice(&rows[..k]);
        train.extend_from_slice(&rows[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

/// Stratified k-fold cross-validation: `k` disjoint validation folds covering every row
/// once, each class dealt round-robin over the folds after a seeded shuffle, so fold
/// sizes differ by at most one per class. Returns `(train, validation)` index lists,
/// sorted.
///
/// Errors if `k < 2` or `k` exceeds the number of rows.
pub fn stratified_kfold(
    labels: &[usize],
    k: usize,
    seed: u64,
) -> Result<Vec<(Vec<usize>, Vec<usize>)>> {
    if k < 2 || k > labels.len() {
        bail!("{k} folds for {} rows: need 2 <= k <= rows", labels.len());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of = vec![0usize; labels.len()];
    // Continue the round-robin from class to class, so the small classes do not all
    // land in the first folds.
    let mut next = 0;
    for mut rows in rows_by_class(labels) {
        rows.shuffle(&mut rng);
        for i in rows {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    Ok((0..k)
        .map(|f| {
            let (val, train): (Vec<usize>, Vec<usize>) =
                (0..labels.len()).partition(|&i| fold_of[i] == f);
            (train, val)
        })
        .collect())
}

impl Table {
    /// The rows `idx` of the table, in that order.
    pub fn select(&self, idx: &[usize]) -> Table {
        Table {
            features: self.features.select(Axis(0), idx),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
        }
    }
}

/// Per-feature standardisation, `(x - mean) / std`, with the mean and (population)
/// standard deviation of the rows it was fitted on; a constant feature keeps a scale
/// of 1 so it maps to 0 instead of dividing by zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// `(F,)` feature means.
    pub mean: Array1<f64>,
    /// `(F,)` feature scales.
    pub scale: Array1<f64>,
}

impl Standardizer {
    /// Fits on `(N, F)` rows (the training split only: fitting on the test rows leaks
    /// them into the model). Panics on zero rows.
    pub fn fit(x: &Array2<f64>) -> Standardizer {
        assert!(
            x.nrows() > 0,
            "Standardizer::fit: no rows in {:?}",
            x.shape()
        );
        let mean = x.mean_axis(Axis(0)).expect("rows");
        let scale = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 0.0 { s } else { 1.0 });
        Standardizer { mean, scale }
    }

    /// `(N, F)` rows standardised. Panics if `F` differs from the fitted one.
    pub fn transform(&self, x: &Array2<f64>) -> Array2<f64> {
        assert_eq!(
            x.ncols(),
            self.mean.len(),
            "Standardizer::transform: {:?} rows for {} features",
            x.shape(),
            self.mean.len()
        );
        (x - &self.mean) / &self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        // 60 / 30 / 10 rows of three classes, interleaved.
        (0..100)
            .map(|i| if i % 10 == 0 { 2 } else { i % 3 % 2 })
            .collect()
    }

    fn count(idx: &[usize], y: &[usize], c: usize) -> usize {
        idx.iter().filter(|&&i| y[i] == c).count()
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let y = labels();
        let (train, test) = stratified_split(&y, 0.25, 3).unwrap();
        assert_eq!(test.len(), 25);
        assert_eq!(train.len() + test.len(), y.len());
        assert!(train.iter().all(|i| test.binary_search(i).is_err()));
        for c in 0..3 {
            let share = count(&y, &(0..100).collect::<Vec<_>>(), c) as f64 * 0.25;
            assert!(
                (count(&test, &y, c) as f64 - share).abs() <= 1.0,
                "class {c}"
            );
        }
        assert_eq!(stratified_split(&y, 0.25, 3).unwrap().1, test);
        assert_ne!(stratified_split(&y, 0.25, 4).unwrap().1, test);
        assert!(stratified_split(&y, 1.0, 3).is_err());
    }

    #[test]
    fn kfold_covers_every_row_once_with_balanced_classes() {
        let y = labels();
        let folds = stratified_kfold(&y, 5, 0).unwrap();
        let mut seen = vec![0; y.len()];
        for (train, val) in &folds {
            assert_eq!(train.len() + val.len(), y.len());
            val.iter().for_each(|&i| seen[i] += 1);
            for c in 0..3 {
                let per_fold = count(&y, &(0..100).collect::<Vec<_>>(), c) as f64 / 5.0;
                assert!((count(val, &y, c) as f64 - per_fold).abs() <= 1.0);
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert!(stratified_kfold(&y, 1, 0).is_err());
    }

    #[test]
    fn standardizer_uses_training_statistics() {
        let x =
            Array2::from_shape_vec((3, 2), vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0]).unwrap();
        let s = Standardizer::fit(&x);
        let z = s.transform(&x);
        assert!((z[[0, 0]] + 1.224_744_871).abs() < 1e-8);
        assert_eq!(z.column(1).to_vec(), vec![0.0; 3]);
    }
}
