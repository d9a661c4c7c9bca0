//! k-means: Lloyd's algorithm from k-means++ seeds, with restarts.
//!
//! # The objective and why Lloyd descends it
//!
//! k-means looks for $k$ centres $c_1, \dots, c_k$ minimising the *inertia*
//!
//! $$J(c, z) = \sum_{n} \lVert x_n - c_{z_n} \rVert^2 ,$$
//!
//! where $z_n$ is the cluster of sample $n$. Lloyd alternates two exact minimisations:
//! with the centres fixed, $J$ is smallest when every sample takes its nearest centre
//! (*assignment*); with the assignments fixed, $J$ is a sum of convex quadratics whose
//! minimiser is each cluster's mean, $c_j = \frac{1}{|S_j|}\sum_{n \in S_j} x_n$
//! (*update*). Neither step can raise $J$, and there are finitely many assignments, so
//! the iteration stops; it stops at a local minimum, which is why the start matters and
//! why we restart `n_init` times and keep the lowest inertia.
//!
//! # The assignment as a matrix product
//!
//! $\lVert x - c\rVert^2 = \lVert x\rVert^2 - 2\,x\cdot c + \lVert c\rVert^2$: for a block
//! of rows $X_b$ the cross terms are one product $X_b C^\top$, so the $O(Nkd)$ work of the
//! assignment runs at matrix-multiply speed; blocks of rows run in parallel. The data are
//! centred first (as scikit-learn does) so that the cancellation in this expansion loses
//! little precision.
//!
//! # k-means++
//!
//! The first centre is a uniformly drawn sample; each next one is drawn with probability
//! proportional to $D(x)^2$, the squared distance to the nearest centre chosen so far,
//! which makes the expected inertia of the seeds alone $O(\log k)$ times the optimum
//! (Arthur and Vassilvitskii, 2007). Like scikit-learn we draw $2 + \lfloor\ln k\rfloor$
//! candidates per step and keep the one that lowers the potential most ("greedy"
//! k-means++).
//!
//! # Empty clusters and convergence
//!
//! A cluster left with no sample has no mean. As scikit-learn does, it is re-seeded with
//! the sample farthest from its current centre (the one contributing most to $J$), which
//! is taken out of its old cluster. The iteration stops when no label changes, or when
//! the summed squared shift of the centres falls to `tol` times the mean per-feature
//! variance of the data (scikit-learn's scale-free tolerance).

use anyhow::{bail, Result};
use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Rows per block of the assignment product: a few hundred rows keep a block of `X`
/// and its distances in cache while leaving enough blocks for every thread.
const BLOCK_ROWS: usize = 256;

/// How the first centres are chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum KMeansInit {
    /// Greedy k-means++ seeding (the default).
    PlusPlus,
    /// These centres, `(k, d)`; with them the whole fit is deterministic.
    Given(Array2<f64>),
}

/// Unfitted k-means: its hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct KMeans {
    /// Number of clusters.
    pub k: usize,
    /// Number of restarts from different seeds; the lowest inertia is kept.
    pub n_init: usize,
    /// Most Lloyd iterations per restart.
    pub max_iter: usize,
    /// Tolerance on the summed squared centre shift, relative to the data's mean
    /// per-feature variance.
    pub tol: f64,
    /// How to start.
    pub init: KMeansInit,
    /// Seed of the k-means++ draws.
    pub seed: u64,
}

impl KMeans {
    /// k-means with `k` clusters and scikit-learn's defaults: one k-means++ start,
    /// 300 iterations, `tol = 1e-4`.
    pub fn new(k: usize) -> KMeans {
        KMeans {
            k,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            init: KMeansInit::PlusPlus,
            seed: 0,
        }
    }

    /// The same with `n_init` restarts.
    pub fn n_init(mut self, n_init: usize) -> KMeans {
        self.n_init = n_init;
        self
    }

    /// The same with this seed.
    pub fn seed(mut self, seed: u64) -> KMeans {
        self.seed = seed;
        self
    }

    /// The same starting from given centres `(k, d)`.
    pub fn init_centres(mut self, centres: Array2<f64>) -> KMeans {
        self.init = KMeansInit::Given(centres);
        self
    }

    /// The same with at most `max_iter` iterations per restart.
    pub fn max_iter(mut self, max_iter: usize) -> KMeans {
        self.max_iter = max_iter;
        self
    }

    /// The same with this tolerance.
    pub fn tol(mut self, tol: f64) -> KMeans {
        self.tol = tol;
        self
    }

    // ANCHOR: kmeans_fit
    /// Fits the centres to the rows of `x` `(N, d)`.
    ///
    /// Errors on bad hyper-parameters (`k = 0`, `k > N`, `n_init = 0`, a negative
    /// tolerance, given centres of the wrong shape) and on non-finite data.
    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedKMeans> {
        let (n, d) = x.dim();
        check_params(self, n, d)?;
        check_finite(x)?;
        // Centring changes no distance but keeps ||x||^2 - 2x.c + ||c||^2 accurate.
        let mean = x.mean_axis(Axis(0)).expect("n > 0");
        let xc = x - &mean;
        let x_sq: Array1<f64> = xc.rows().into_iter().map(|r| r.dot(&r)).collect();
        let tol = mean_variance(&xc) * self.tol;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut best: Option<FittedKMeans> = None;
        let n_init = if matches!(self.init, KMeansInit::Given(_)) {
            1
        } else {
            self.n_init
        };
        for _ in 0..n_init {
            let centres = match &self.init {
                KMeansInit::Given(c) => c - &mean,
                KMeansInit::PlusPlus => plus_plus(&xc, &x_sq, self.k, &mut rng),
            };
            let run = lloyd(&xc, &x_sq, centres, self.max_iter, tol);
            if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
                best = Some(run);
            }
        }
        let mut best = best.expect("n_init >= 1");
        best.centres += &mean;
        Ok(best)
    }
    // ANCHOR_END: kmeans_fit
}

/// A fitted k-means: its centres, the training labels and their inertia.
#[derive(Clone, Debug, PartialEq)]
pub struct FittedKMeans {
    /// The centres, `(k, d)`.
    pub centres: Array2<f64>,
    /// The cluster of every training row.
    pub labels: Vec<usize>,
    /// Sum of squared distances of the training rows to their centres.
    pub inertia: f64,
    /// Lloyd iterations of the kept restart.
    pub n_iter: usize,
}

impl FittedKMeans {
    /// The nearest centre of every row of `x` `(M, d)`.
    ///
    /// # Panics
    /// If `x` does not have the centres' `d` columns.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<usize> {
        assert_eq!(
            x.ncols(),
            self.centres.ncols(),
            "predict: x is {:?} but the centres are {:?}",
            x.dim(),
            self.centres.dim()
        );
        let x_sq: Array1<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
        assign(&x.view(), &x_sq, &self.centres).0
    }
}

fn check_params(p: &KMeans, n: usize, d: usize) -> Result<()> {
    if p.k == 0 {
        bail!("k-means needs k >= 1 clusters, got k = 0");
    }
    if p.k > n {
        bail!("k-means with k = {} needs at least k samples, got {n}", p.k);
    }
    if p.n_init == 0 {
        bail!("k-means needs n_init >= 1 restarts, got 0");
    }
    if p.tol.is_nan() || p.tol < 0.0 {
        bail!("k-means needs a tolerance >= 0, got {}", p.tol);
    }
    if let KMeansInit::Given(c) = &p.init {
        if c.dim() != (p.k, d) {
            bail!(
                "initial centres are {:?}, expected (k, d) = ({}, {d})",
                c.dim(),
                p.k
            );
        }
        check_finite(c)?;
    }
    Ok(())
}

/// Errors if `x` holds a NaN or an infinity.
pub(crate) fn check_finite(x: &Array2<f64>) -> Result<()> {
    if let Some((pos, v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        bail!("the data hold a non-finite value {v} at (row, column) {pos:?}");
    }
    Ok(())
}

fn mean_variance(xc: &Array2<f64>) -> f64 {
    // The data are centred, so each column's variance is its mean square.
    xc.iter().map(|v| v * v).sum::<f64>() / xc.len() as f64
}

// ANCHOR: kmeans_assign
/// The nearest centre of every row and its squared distance, by blocks of rows in
/// parallel, each block's cross terms one matrix product.
fn assign(
    x: &ArrayView2<f64>,
    x_sq: &Array1<f64>,
    c: &Array2<f64>,
) -> (Vec<usize>, Vec<f64>) {
    let c_sq: Array1<f64> = c.rows().into_iter().map(|r| r.dot(&r)).collect();
    let n = x.nrows();
    let blocks: Vec<(Vec<usize>, Vec<f64>)> = (0..n.div_ceil(BLOCK_ROWS))
        .into_par_iter()
        .map(|b| {
            let (lo, hi) = (b * BLOCK_ROWS, ((b + 1) * BLOCK_ROWS).min(n));
            let xc = x.slice(s![lo..hi, ..]).dot(&c.t()); // (rows, k)
            let mut labels = Vec::with_capacity(hi - lo);
            let mut dist = Vec::with_capacity(hi - lo);
            for (i, row) in xc.rows().into_iter().enumerate() {
                let (mut best, mut best_d) = (0, f64::INFINITY);
                for (j, &dot) in row.iter().enumerate() {
                    let d = c_sq[j] - 2.0 * dot;
                    if d < best_d {
                        (best, best_d) = (j, d);
                    }
                }
                labels.push(best);
                dist.push((best_d + x_sq[lo + i]).max(0.0));
            }
            (labels, dist)
        })
        .collect();
    let mut labels = Vec::with_capacity(n);
    let mut dist = Vec::with_capacity(n);
    for (l, d) in blocks {
        labels.extend(l);
        dist.extend(d);
    }
    (labels, dist)
}
// ANCHOR_END: kmeans_assign

// ANCHOR: kmeans_lloyd
/// Lloyd's iterations from `centres`, in the centred coordinates of `x`.
fn lloyd(
    x: &Array2<f64>,
    x_sq: &Array1<f64>,
    mut centres: Array2<f64>,
    max_iter: usize,
    tol: f64,
) -> FittedKMeans {
    let n = x.nrows();
    let mut old_labels = vec![usize::MAX; n];
    let mut labels = old_labels.clone();
    let mut n_iter = 0;
    let mut strict = false;
    for it in 0..max_iter {
        n_iter = it + 1;
        let (new_labels, dist) = assign(&x.view(), x_sq, &centres);
        labels = new_labels;
        let new_centres = update(x, &mut labels, &dist, &centres);
        let shift: f64 = (&new_centres - &centres).iter().map(|v| v * v).sum();
        centres = new_centres;
        if labels == old_labels {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
        old_labels.clone_from(&labels);
    }
    if !strict {
        // The centres moved after the last assignment: assign once more so that the
        // labels and the inertia describe the centres returned.
        labels = assign(&x.view(), x_sq, &centres).0;
    }
    let inertia = inertia(x, &centres, &labels);
    FittedKMeans {
        centres,
        labels,
        inertia,
        n_iter,
    }
}

/// The means of the clusters; an empty cluster takes the sample farthest from its
/// centre (its label is changed in `labels`).
fn update(
    x: &Array2<f64>,
    labels: &mut [usize],
    dist: &[f64],
    old: &Array2<f64>,
) -> Array2<f64> {
    let (k, d) = old.dim();
    let mut sums = Array2::<f64>::zeros((k, d));
    let mut counts = vec![0usize; k];
    for (row, &l) in x.rows().into_iter().zip(labels.iter()) {
        sums.row_mut(l).scaled_add(1.0, &row);
        counts[l] += 1;
    }
    let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
    if !empty.is_empty() {
        let mut far: Vec<usize> = (0..x.nrows()).collect();
        // Farthest first; ties by index so the choice does not depend on the sort.
        far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
        for (&j, &i) in empty.iter().zip(far.iter()) {
            let from = labels[i];
            sums.row_mut(from).scaled_add(-1.0, &x.row(i));
            counts[from] -= 1;
            sums.row_mut(j).assign(&x.row(i));
            counts[j] = 1;
            labels[i] = j;
        }
    }
    for (mut row, &c) in sums.rows_mut().into_iter().zip(&counts) {
        if c > 0 {
            row /= c as f64;
        }
    }
    sums
}
// ANCHOR_END: kmeans_lloyd

/// The inertia of `labels` under `centres`: summed squared distances, computed
/// directly (not by the expansion) so that it is exact to rounding.
pub fn inertia(x: &Array2<f64>, centres: &Array2<f64>, labels: &[usize]) -> f64 {
    assert_eq!(
        x.nrows(),
        labels.len(),
        "inertia: x is {:?} but there are {} labels",
        x.dim(),
        labels.len()
    );
    x.rows()
        .into_iter()
        .zip(labels)
        .map(|(r, &l)| {
            r.iter()
                .zip(centres.row(l).iter())
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        })
        .sum()
}

// ANCHOR: kmeans_plusplus
/// Greedy k-means++ seeds: each new centre is the best (lowest potential) of
/// `2 + ln k` candidates drawn with probability proportional to `D(x)^2`.
fn plus_plus(
    x: &Array2<f64>,
    x_sq: &Array1<f64>,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Array2<f64> {
    let (n, d) = x.dim();
    let trials = 2 + (k as f64).ln() as usize;
    let mut centres = Array2::<f64>::zeros((k, d));
    let first = rng.random_range(0..n);
    centres.row_mut(0).assign(&x.row(first));
    let mut closest = sq_dist_to(x, x_sq, &x.slice(s![first..first + 1, ..]).to_owned());
    let mut pot: f64 = closest.column(0).sum();
    let mut closest: Vec<f64> = closest.column_mut(0).to_vec();
    for c in 1..k {
        let mut cum = Vec::with_capacity(n);
        let mut acc = 0.0;
        for &v in &closest {
            acc += v;
            cum.push(acc);
        }
        let ids: Vec<usize> = (0..trials)
            .map(|_| {
                let r = rng.random::<f64>() * pot;
                cum.partition_point(|&v| v < r).min(n - 1)
            })
            .collect();
        let cand = x.select(Axis(0), &ids);
        let dc = sq_dist_to(x, x_sq, &cand); // (n, trials)
        let mut best = (f64::INFINITY, 0, Vec::new());
        for t in 0..trials {
            let mins: Vec<f64> = closest
                .iter()
                .zip(dc.column(t))
                .map(|(&a, &b)| a.min(b))
                .collect();
            let p: f64 = mins.iter().sum();
            if p < best.0 {
                best = (p, t, mins);
            }
        }
        centres.row_mut(c).assign(&x.row(ids[best.1]));
        (pot, closest) = (best.0, best.2);
    }
    centres
}
// ANCHOR_END: kmeans_plusplus

/// Squared distances `(n, m)` from the rows of `x` to the rows of `c`.
fn sq_dist_to(x: &Array2<f64>, x_sq: &Array1<f64>, c: &Array2<f64>) -> Array2<f64> {
    let c_sq: Array1<f64> = c.rows().into_iter().map(|r| r.dot(&r)).collect();
    let mut d = x.dot(&c.t()); // (n, m)
    d.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (x_sq[i] - 2.0 * *v + c_sq[j]).max(0.0);
            }
        });
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn blobs() -> Array2<f64> {
        array![
            [0.0, 0.0],
            [0.1, 0.0],
            [0.0, 0.1],
            [5.0, 5.0],
            [5.1, 5.0],
            [5.0, 5.1]
        ]
    }

    #[test]
    fn two_blobs_are_found_from_any_seed() {
        for seed in 0..5 {
            let f = KMeans::new(2).seed(seed).fit(&blobs()).unwrap();
            assert_eq!(f.labels[0], f.labels[1]);
            assert_eq!(f.labels[0], f.labels[2]);
            assert_eq!(f.labels[3], f.labels[5]);
            assert_ne!(f.labels[0], f.labels[3]);
            assert!(
                (f.inertia - 4.0 * 0.1 * 0.1 * 2.0 / 3.0).abs() < 1e-12,
                "{}",
                f.inertia
            );
        }
    }

    #[test]
    fn an_empty_cluster_takes_the_farthest_point() {
        // The third centre is far from everything: no sample picks it first.
        let init = array![[0.0, 0.0], [5.0, 5.0], [100.0, 100.0]];
        let f = KMeans::new(3).init_centres(init).fit(&blobs()).unwrap();
        let mut used = f.labels.clone();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 3, "every cluster is used: {:?}", f.labels);
        assert!(f.centres.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn bad_hyper_parameters_are_errors() {
        let x = blobs();
        assert!(KMeans::new(0).fit(&x).is_err());
        assert!(KMeans::new(7).fit(&x).is_err());
        assert!(KMeans::new(2).n_init(0).fit(&x).is_err());
        assert!(KMeans::new(2).tol(-1.0).fit(&x).is_err());
        assert!(KMeans::new(2)
            .init_centres(Array2::zeros((3, 2)))
            .fit(&x)
            .is_err());
        let mut bad = x.clone();
        bad[[1, 1]] = f64::NAN;
        assert!(KMeans::new(2).fit(&bad).is_err());
    }

    #[test]
    fn predict_agrees_with_the_training_labels() {
        let x = blobs();
        let f = KMeans::new(2).seed(3).fit(&x).unwrap();
        assert_eq!(f.predict(&x), f.labels);
    }
}
