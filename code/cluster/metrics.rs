//! How good is a clustering: with the true classes (adjusted Rand index, normalised
//! mutual information) and without them (inertia, silhouette).
//!
//! # Silhouette
//!
//! For sample $i$ in cluster $A$, let $a(i)$ be its mean distance to the other members
//! of $A$ and $b(i)$ the smallest, over the other clusters $B$, of its mean distance to
//! the members of $B$. Then
//!
//! $$s(i) = \frac{b(i) - a(i)}{\max(a(i), b(i))} \in [-1, 1],$$
//!
//! near 1 when $i$ sits well inside its cluster, near 0 on a border, negative when it is
//! closer to another cluster. A sample alone in its cluster has $s = 0$ (Rousseeuw's
//! convention, and scikit-learn's). The score is the mean of $s(i)$; it costs all
//! $N^2/2$ distances.
//!
//! # Adjusted Rand index
//!
//! Over the $\binom{N}{2}$ pairs of samples, count those placed together in both
//! labelings ($TP$), apart in both ($TN$), and the two kinds of disagreement ($FP$,
//! $FN$). The Rand index $(TP + TN)/\binom N2$ is high even for random labelings; the
//! adjusted index subtracts its expectation under random labelings with the same
//! cluster sizes and rescales so that 1 is perfect agreement and 0 is chance:
//!
//! $$\mathrm{ARI} = \frac{2\,(TP\cdot TN - FN\cdot FP)}
//!   {(TP + FN)(FN + TN) + (TP + FP)(FP + TN)} .$$
//!
//! # Normalised mutual information
//!
//! With $p_{uv}$ the fraction of samples with class $u$ and cluster $v$,
//! $I(U;V) = \sum_{uv} p_{uv}\ln\frac{p_{uv}}{p_u p_v}$, and
//! $\mathrm{NMI} = I(U;V) \big/ \tfrac12\big(H(U) + H(V)\big)$ (the arithmetic mean,
//! scikit-learn's default). It is 1 for identical partitions and 0 for independent ones,
//! but unlike ARI it is not corrected for chance: many small clusters raise it.

use ndarray::Array2;
use rayon::prelude::*;

/// Relabels `labels` as `0..m` in order of first appearance; returns the new labels and
/// `m`.
fn compact(labels: &[i64]) -> (Vec<usize>, usize) {
    let mut seen: std::collections::HashMap<i64, usize> = Default::default();
    let out = labels
        .iter()
        .map(|l| {
            let m = seen.len();
            *seen.entry(*l).or_insert(m)
        })
        .collect();
    (out, seen.len())
}

/// The contingency table `(classes, clusters)` of two labelings of the same samples.
///
/// # Panics
/// If the labelings have different lengths.
pub fn contingency(a: &[i64], b: &[i64]) -> Array2<u64> {
    assert_eq!(
        a.len(),
        b.len(),
        "contingency: {} labels against {}",
        a.len(),
        b.len()
    );
    let (a, na) = compact(a);
    let (b, nb) = compact(b);
    let mut t = Array2::<u64>::zeros((na, nb));
    for (&i, &j) in a.iter().zip(&b) {
        t[[i, j]] += 1;
    }
    t
}

/// Labels as the signed integers the metrics take (DBSCAN's noise is `-1`).
pub fn as_i64(labels: &[usize]) -> Vec<i64> {
    labels.iter().map(|&l| l as i64).collect()
}

// ANCHOR: ari
/// The adjusted Rand index of two labelings: 1 for the same partition, about 0 for
/// chance agreement (it can be negative).
///
/// # Panics
/// If the labelings have different lengths.
pub fn adjusted_rand_index(a: &[i64], b: &[i64]) -> f64 {
    let t = contingency(a, b);
    let n = a.len() as i128;
    let sum_sq: i128 = t.iter().map(|&v| (v as i128) * (v as i128)).sum();
    let rows: Vec<i128> = t.rows().into_iter().map(|r| r.sum() as i128).collect();
    let cols: Vec<i128> = t.columns().into_iter().map(|c| c.sum() as i128).collect();
    let sq = |v: &[i128]| v.iter().map(|x| x * x).sum::<i128>();
    // Ordered pair counts (twice the unordered ones), in exact integers.
    let tp = sum_sq - n;
    let fp = sq(&cols) - sum_sq;
    let fn_ = sq(&rows) - sum_sq;
    let tn = n * n - fp - fn_ - sum_sq;
    if fn_ == 0 && fp == 0 {
        return 1.0;
    }
    let (tp, fp, fn_, tn) = (tp as f64, fp as f64, fn_ as f64, tn as f64);
    2.0 * (tp * tn - fn_ * fp) / ((tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn))
}
// ANCHOR_END: ari

fn entropy(counts: &[u64], n: f64) -> f64 {
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// The normalised mutual information of two labelings, normalised by the arithmetic mean
/// of their entropies.
///
/// # Panics
/// If the labelings have different lengths.
pub fn normalized_mutual_info(a: &[i64], b: &[i64]) -> f64 {
    let t = contingency(a, b);
    let (na, nb) = t.dim();
    // Two one-cluster labelings are the same partition (scikit-learn's convention).
    if (na == 1 && nb == 1) || a.is_empty() {
        return 1.0;
    }
    let n = a.len() as f64;
    let rows: Vec<u64> = t.rows().into_iter().map(|r| r.sum()).collect();
    let cols: Vec<u64> = t.columns().into_iter().map(|c| c.sum()).collect();
    let mut mi = 0.0;
    for ((i, j), &c) in t.indexed_iter() {
        if c > 0 {
            let c = c as f64;
            mi += c / n * (c * n / (rows[i] as f64 * cols[j] as f64)).ln();
        }
    }
    let mi = mi.max(0.0);
    let h = 0.5 * (entropy(&rows, n) + entropy(&cols, n));
    if mi == 0.0 {
        return 0.0;
    }
    mi / h.max(f64::EPSILON)
}

// ANCHOR: silhouette
/// The silhouette of every sample under `labels` (Euclidean distance): `(b - a) /
/// max(a, b)`, and 0 for a sample alone in its cluster.
///
/// # Panics
/// If `labels` does not have one label per row of `x`, or there are fewer than 2 or more
/// than `N - 1` clusters (the silhouette is undefined there).
pub fn silhouette_samples(x: &Array2<f64>, labels: &[usize]) -> Vec<f64> {
    let n = x.nrows();
    assert_eq!(
        n,
        labels.len(),
        "silhouette: x is {:?} with {} labels",
        x.dim(),
        labels.len()
    );
    let (lab, k) = compact(&as_i64(labels));
    assert!(
        (2..n).contains(&k),
        "silhouette needs 2 <= clusters <= N - 1, got {k} clusters of {n} samples"
    );
    let mut sizes = vec![0usize; k];
    for &l in &lab {
        sizes[l] += 1;
    }
    (0..n)
        .into_par_iter()
        .map(|i| {
            // Summed distance from i to every cluster.
            let mut sums = vec![0.0; k];
            let xi = x.row(i);
            for (j, xj) in x.rows().into_iter().enumerate() {
                let d2: f64 = xi
                    .iter()
                    .zip(xj.iter())
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum();
                sums[lab[j]] += d2.sqrt();
            }
            let own = lab[i];
            if sizes[own] == 1 {
                return 0.0;
            }
            let a = sums[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own)
                .map(|c| sums[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            (b - a) / a.max(b)
        })
        .collect()
}
// ANCHOR_END: silhouette

/// The mean silhouette of `labels` on `x`.
///
/// # Panics
/// As [`silhouette_samples`].
pub fn silhouette_score(x: &Array2<f64>, labels: &[usize]) -> f64 {
    let s = silhouette_samples(x, labels);
    s.iter().sum::<f64>() / s.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn identical_partitions_score_one_whatever_the_names() {
        let a = [0, 0, 1, 1, 2, 2];
        let b = [5, 5, 3, 3, 9, 9];
        assert_eq!(adjusted_rand_index(&a, &b), 1.0);
        assert!((normalized_mutual_info(&a, &b) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn ari_of_a_known_pair() {
        // Two of four pairs split differently: TP=0... computed by hand from pair counts:
        // a = {0,1},{2,3}; b = {0},{1,2},{3}: ordered TP=0, FN=4, FP=2, TN=6.
        let ari = adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 1, 2]);
        let expect =
            2.0 * (0.0 * 6.0 - 4.0 * 2.0) / ((0.0 + 4.0) * (4.0 + 6.0) + 2.0 * 8.0);
        assert!((ari - expect).abs() < 1e-15, "{ari} vs {expect}");
        assert!(ari < 0.0);
    }

    #[test]
    fn silhouette_of_two_far_pairs_is_near_one() {
        let x = array![[0.0], [1.0], [100.0], [101.0]];
        let s = silhouette_samples(&x, &[0, 0, 1, 1]);
        // Sample 0: a = 1, b = (100 + 101) / 2.
        assert!((s[0] - (1.0 - 1.0 / 100.5)).abs() < 1e-12);
        assert!(silhouette_score(&x, &[0, 0, 1, 1]) > 0.98);
        // Swapping one label makes those samples negative.
        assert!(silhouette_samples(&x, &[0, 1, 0, 1])[0] < 0.0);
    }
}
