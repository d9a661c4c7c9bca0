//! Drift detection: has the data a model serves moved away from the data it was built on?
//!
//! Each test compares a *reference* sample (requests from a time the model was known to
//! work) with a *current* one (the latest requests), one feature at a time, or all the
//! features of an embedding at once.
//!
//! **Population stability index.** Cut the reference into $B$ bins at its own quantiles
//! (so each holds about $1/B$ of it), let $p_b$ and $q_b$ be the shares of the reference
//! and the current sample in bin $b$, and
//! $$\mathrm{PSI} = \sum_b (q_b - p_b) \ln\frac{q_b}{p_b},$$
//! the symmetrised Kullback-Leibler divergence $\mathrm{KL}(q\|p) + \mathrm{KL}(p\|q)$ of
//! the binned distributions. An empty bin would make it infinite, so shares below
//! $\varepsilon = 10^{-4}$ are raised to $\varepsilon$ ([`PSI_EPS`]). The usual reading:
//! below 0.1 stable, 0.1-0.2 a moderate shift, above 0.2 a large one.
//!
//! **Kolmogorov-Smirnov.** With empirical CDFs $F_n$ and $G_m$,
//! $D = \sup_t |F_n(t) - G_m(t)|$. Under the null (both samples from one continuous
//! distribution) every interleaving of the $n + m$ sorted values is equally likely: one
//! of the $\binom{n+m}{n}$ lattice paths from $(0, 0)$ to $(n, m)$, a step right for each
//! reference value and up for each current one. $D \ge d$ exactly when the path touches
//! a point with $|i/n - j/m| \ge d$, so the exact p-value is the share of paths that do:
//! a dynamic programme over the lattice ([`ks_2samp`]). For large samples
//! $\sqrt{nm/(n+m)}\,D$ tends to the Kolmogorov distribution,
//! $P(K > \lambda) = 2\sum_{k\ge1}(-1)^{k-1}e^{-2k^2\lambda^2}$, the asymptotic p-value.
//!
//! **Chi-square.** For categories (a model's predicted classes), the two samples' counts
//! form a $2 \times K$ table; under the null the expected count of cell $(r, k)$ is
//! $E_{rk} = n_r c_k / N$, and $X^2 = \sum (O - E)^2 / E$ is $\chi^2_{K-1}$ in the limit.
//!
//! **Wasserstein.** In one dimension the earth mover's distance is the area between the
//! CDFs, $W_1 = \int |F_n(t) - G_m(t)|\,dt$: in the feature's own units, and it does not
//! saturate as $D$ does.
//!
//! **Maximum mean discrepancy.** For vectors (an embedding), with a kernel $k$,
//! $\mathrm{MMD}^2 = E\,k(x, x') + E\,k(y, y') - 2E\,k(x, y)$, zero exactly when the
//! distributions agree (for a characteristic kernel such as the RBF
//! $k(a, b) = e^{-\|a - b\|^2 / 2\sigma^2}$). The unbiased estimate leaves out the
//! diagonal terms; $\sigma$ is the median pairwise distance of the pooled sample (the
//! median heuristic), and the p-value comes from permutations: shuffle the pooled sample,
//! split it, recompute, and count how often the shuffled statistic reaches the observed.

use anyhow::{ensure, Result};
use ndarray::{Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

mod monitor;

pub use monitor::{Detector, Monitor, MonitorConfig, Request, Signal};

/// The floor of a bin's share in the PSI: an empty bin counts as holding this share.
pub const PSI_EPS: f64 = 1e-4;

fn check_sample(name: &str, x: &[f64]) -> Result<()> {
    ensure!(!x.is_empty(), "the {name} sample is empty");
    ensure!(
        x.iter().all(|v| v.is_finite()),
        "the {name} sample holds a value that is not finite (NaN or infinite)"
    );
    Ok(())
}

fn sorted(x: &[f64]) -> Vec<f64> {
    let mut s = x.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

// ANCHOR: psi
/// The population stability index with `n_bins` reference-quantile bins.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Psi {
    /// Bins (at most; tied quantiles merge bins).
    pub n_bins: usize,
}

/// A [`Psi`] fitted to a reference sample: its bin edges and shares.
#[derive(Clone, Debug, PartialEq)]
pub struct FittedPsi {
    /// Inner edges, increasing: bin `b` holds `edges[b-1] <= x < edges[b]`.
    pub edges: Vec<f64>,
    /// The reference's share of each bin.
    pub shares: Vec<f64>,
}

impl Psi {
    /// Cuts `reference` at its quantiles `k / n_bins`. Errors on an empty or non-finite
    /// sample, or no bins.
    pub fn fit(&self, reference: &[f64]) -> Result<FittedPsi> {
        ensure!(
            self.n_bins >= 2,
            "PSI needs at least 2 bins, got {}",
            self.n_bins
        );
        check_sample("reference", reference)?;
        let s = sorted(reference);
        let mut edges: Vec<f64> = (1..self.n_bins)
            .map(|k| s[k * s.len() / self.n_bins])
            .collect();
        edges.dedup();
        let shares = bin_shares(&edges, reference);
        Ok(FittedPsi { edges, shares })
    }
}

impl FittedPsi {
    /// A PSI on bins of one's choosing: `edges` are the inner edges, increasing (as
    /// Evidently's equal-width bins, or a fixed grid shared by many monitors).
    pub fn from_edges(edges: Vec<f64>, reference: &[f64]) -> Result<FittedPsi> {
        check_sample("reference", reference)?;
        ensure!(
            edges.windows(2).all(|w| w[0] < w[1]) && edges.iter().all(|e| e.is_finite()),
            "PSI bin edges must be finite and increasing"
        );
        let shares = bin_shares(&edges, reference);
        Ok(FittedPsi { edges, shares })
    }
}

fn bin_shares(edges: &[f64], x: &[f64]) -> Vec<f64> {
    let mut counts = vec![0usize; edges.len() + 1];
    for v in x {
        counts[edges.partition_point(|e| e <= v)] += 1;
    }
    counts.iter().map(|&c| c as f64 / x.len() as f64).collect()
}

impl FittedPsi {
    /// The PSI of `current` against the reference.
    pub fn score(&self, current: &[f64]) -> Result<f64> {
        check_sample("current", current)?;
        let q = bin_shares(&self.edges, current);
        Ok(self
            .shares
            .iter()
            .zip(&q)
            .map(|(&p, &q)| {
                let (p, q) = (p.max(PSI_EPS), q.max(PSI_EPS));
                (q - p) * (q / p).ln()
            })
            .sum())
    }
}
// ANCHOR_END: psi

/// The two-sample Kolmogorov-Smirnov test's statistic and p-values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KsTest {
    /// $D = \sup_t |F_n(t) - G_m(t)|$.
    pub statistic: f64,
    /// $P(D \ge d)$ under the null, from the exact small-sample distribution.
    pub p_exact: f64,
    /// The Kolmogorov distribution's tail at $\sqrt{nm/(n+m)}\,d$.
    pub p_asymptotic: f64,
}

/// The KS statistic of two samples (ties handled by stepping over equal values at once).
pub fn ks_statistic(x: &[f64], y: &[f64]) -> Result<f64> {
    check_sample("reference", x)?;
    check_sample("current", y)?;
    let (x, y) = (sorted(x), sorted(y));
    let (n, m) = (x.len() as f64, y.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < x.len() && j < y.len() {
        let t = x[i].min(y[j]);
        while i < x.len() && x[i] <= t {
            i += 1;
        }
        while j < y.len() && y[j] <= t {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    Ok(d)
}

// ANCHOR: ks_exact
/// $P(D_{n,m} \ge d)$ under the null: the share of lattice paths from $(0,0)$ to
/// $(n,m)$ that touch $|i/n - j/m| \ge d$. A path is a random interleaving, so from
/// $(i, j)$ the next value is a reference one with probability $(n-i)/(n-i+m-j)$; the
/// programme carries the probability of reaching each point without having touched the
/// boundary, and adds what steps onto it to the answer. $d$ is first rounded to the
/// lattice of possible values, multiples of $1/\mathrm{lcm}(n, m)$, as scipy does.
pub fn ks_exact_p(n: usize, m: usize, d: f64) -> f64 {
    let g = gcd(n, m);
    let lcm = (n / g) as f64 * m as f64;
    let h = (d * lcm).round() as i128;
    if h <= 0 {
        return 1.0;
    }
    // |i/n - j/m| >= h / lcm  <=>  |i m - j n| >= h g.
    let outside =
        |i: usize, j: usize| ((i * m) as i128 - (j * n) as i128).abs() >= h * g as i128;
    let mut p_out = 0.0;
    let mut row = vec![0.0f64; m + 1]; // row[j]: mass at (i, j)
    row[0] = 1.0;
    for i in 0..=n {
        let mut next = vec![0.0f64; m + 1];
        for j in 0..=m {
            let mass = row[j];
            if mass == 0.0 {
                continue;
            }
            let left = (n - i + m - j) as f64;
            if i < n {
                let p = mass * (n - i) as f64 / left;
                if outside(i + 1, j) {
                    p_out += p;
                } else {
                    next[j] += p;
                }
            }
            if j < m {
                let p = mass * (m - j) as f64 / left;
                if outside(i, j + 1) {
                    p_out += p;
                } else {
                    row[j + 1] += p;
                }
            }
        }
        row = next;
    }
    p_out.min(1.0)
}
// ANCHOR_END: ks_exact

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

// ANCHOR: kolmogorov
/// The Kolmogorov distribution's tail $P(K > \lambda)$: the alternating series for
/// $\lambda \ge 1$, and for small $\lambda$ its Jacobi-theta twin
/// $1 - \frac{\sqrt{2\pi}}{\lambda}\sum_{k\ge1} e^{-(2k-1)^2\pi^2/8\lambda^2}$, which
/// converges fast where the first does not.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.0 {
        let pi2 = std::f64::consts::PI.powi(2);
        let s: f64 = (1..=20)
            .map(|k| {
                (-((2 * k - 1) as f64).powi(2) * pi2 / (8.0 * lambda * lambda)).exp()
            })
            .sum();
        return 1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * s;
    }
    let s: f64 = (1..=100)
        .map(|k| {
            let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
            sign * (-2.0 * (k * k) as f64 * lambda * lambda).exp()
        })
        .sum();
    (2.0 * s).clamp(0.0, 1.0)
}
// ANCHOR_END: kolmogorov

/// The two-sample KS test of `reference` against `current`. Errors on an empty or
/// non-finite sample.
pub fn ks_2samp(reference: &[f64], current: &[f64]) -> Result<KsTest> {
    let d = ks_statistic(reference, current)?;
    let (n, m) = (reference.len(), current.len());
    let en = (n * m) as f64 / (n + m) as f64;
    Ok(KsTest {
        statistic: d,
        p_exact: ks_exact_p(n, m, d),
        p_asymptotic: kolmogorov_sf(en.sqrt() * d),
    })
}

/// A chi-square test of homogeneity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ChiSquare {
    /// $X^2$.
    pub statistic: f64,
    /// Degrees of freedom: categories seen in either sample, minus one.
    pub df: usize,
    /// $P(\chi^2_{df} \ge X^2)$.
    pub p_value: f64,
}

// ANCHOR: chi_square
/// Chi-square test that two samples of categories (counts per category, in the same
/// order) come from one distribution. Categories empty in both are left out. Errors
/// on counts of different lengths, an empty sample, or fewer than two categories seen.
pub fn chi_square(reference: &[u64], current: &[u64]) -> Result<ChiSquare> {
    ensure!(
        reference.len() == current.len(),
        "chi-square: {} reference categories but {} current ones",
        reference.len(),
        current.len()
    );
    let (nr, nc): (u64, u64) = (reference.iter().sum(), current.iter().sum());
    ensure!(nr > 0 && nc > 0, "chi-square: a sample has no counts");
    let total = (nr + nc) as f64;
    let (mut x2, mut k) = (0.0, 0);
    for (&a, &b) in reference.iter().zip(current) {
        let c = (a + b) as f64;
        if c == 0.0 {
            continue;
        }
        k += 1;
        for (o, n) in [(a, nr), (b, nc)] {
            let e = n as f64 * c / total;
            x2 += (o as f64 - e).powi(2) / e;
        }
    }
    ensure!(
        k >= 2,
        "chi-square: fewer than two categories hold any counts"
    );
    Ok(ChiSquare {
        statistic: x2,
        df: k - 1,
        p_value: crate::tsa::chi2_sf(x2, (k - 1) as f64),
    })
}
// ANCHOR_END: chi_square

// ANCHOR: wasserstein
/// The 1-D Wasserstein (earth mover's) distance $\int |F_n - G_m|$: summed over the
/// gaps between consecutive pooled values, where both CDFs are constant.
pub fn wasserstein(reference: &[f64], current: &[f64]) -> Result<f64> {
    check_sample("reference", reference)?;
    check_sample("current", current)?;
    let (x, y) = (sorted(reference), sorted(current));
    let mut all = [x.as_slice(), y.as_slice()].concat();
    all.sort_by(f64::total_cmp);
    let (n, m) = (x.len() as f64, y.len() as f64);
    let mut w = 0.0;
    for pair in all.windows(2) {
        let f = x.partition_point(|v| *v <= pair[0]) as f64 / n;
        let g = y.partition_point(|v| *v <= pair[0]) as f64 / m;
        w += (f - g).abs() * (pair[1] - pair[0]);
    }
    Ok(w)
}
// ANCHOR_END: wasserstein

// ANCHOR: permutation_p
/// A permutation p-value for any two-sample statistic `stat` (larger = more different):
/// $(1 + \#\{\text{shuffles with } stat \ge \text{observed}\}) / (1 + \text{shuffles})$,
/// shuffling the pooled sample with `seed`. How a distance with no known null
/// distribution (the Wasserstein distance) becomes a test.
pub fn permutation_p(
    reference: &[f64],
    current: &[f64],
    n_permutations: usize,
    seed: u64,
    stat: impl Fn(&[f64], &[f64]) -> Result<f64>,
) -> Result<f64> {
    let observed = stat(reference, current)?;
    let mut pooled = [reference, current].concat();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hits = 0;
    for _ in 0..n_permutations {
        pooled.shuffle(&mut rng);
        let (a, b) = pooled.split_at(reference.len());
        if stat(a, b)? >= observed {
            hits += 1;
        }
    }
    Ok((1 + hits) as f64 / (1 + n_permutations) as f64)
}
// ANCHOR_END: permutation_p

/// The MMD permutation test's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Mmd {
    /// Shuffles of the pooled sample.
    pub n_permutations: usize,
    /// Seed of the shuffles.
    pub seed: u64,
}

/// The outcome of an MMD test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MmdTest {
    /// The unbiased estimate of $\mathrm{MMD}^2$.
    pub mmd2: f64,
    /// The RBF bandwidth $\sigma$ (the median pairwise distance of the pooled sample).
    pub bandwidth: f64,
    /// $(1 + \#\{\text{shuffles at least as large}\}) / (1 + \text{shuffles})$.
    pub p_value: f64,
}

// ANCHOR: mmd
impl Mmd {
    /// Tests `x` (n × d) against `y` (m × d). Errors on mismatched widths, fewer than two
    /// rows in a sample, or non-finite values.
    pub fn test(&self, x: ArrayView2<f64>, y: ArrayView2<f64>) -> Result<MmdTest> {
        ensure!(
            x.ncols() == y.ncols(),
            "MMD: the samples have {} and {} features",
            x.ncols(),
            y.ncols()
        );
        ensure!(
            x.nrows() >= 2 && y.nrows() >= 2,
            "MMD needs two rows per sample"
        );
        ensure!(
            x.iter().chain(y.iter()).all(|v| v.is_finite()),
            "MMD: a sample holds a value that is not finite"
        );
        let (n, total) = (x.nrows(), x.nrows() + y.nrows());
        let pooled = ndarray::concatenate![ndarray::Axis(0), x, y];
        // d2[(a, b)] = |p_a - p_b|^2 through the Gram matrix.
        let gram = pooled.dot(&pooled.t());
        let d2 = Array2::from_shape_fn((total, total), |(a, b)| {
            (gram[(a, a)] + gram[(b, b)] - 2.0 * gram[(a, b)]).max(0.0)
        });
        let mut dists: Vec<f64> = (0..total)
            .flat_map(|a| (a + 1..total).map(move |b| (a, b)))
            .map(|(a, b)| d2[(a, b)].sqrt())
            .collect();
        let mid = dists.len() / 2;
        let (_, median, _) = dists.select_nth_unstable_by(mid, f64::total_cmp);
        let sigma = if *median > 0.0 { *median } else { 1.0 };
        let k = d2.mapv(|v| (-v / (2.0 * sigma * sigma)).exp());
        let order: Vec<usize> = (0..total).collect();
        let observed = mmd2_unbiased(&k, &order, n);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut shuffled = order;
        let mut hits = 0;
        for _ in 0..self.n_permutations {
            shuffled.shuffle(&mut rng);
            if mmd2_unbiased(&k, &shuffled, n) >= observed {
                hits += 1;
            }
        }
        Ok(MmdTest {
            mmd2: observed,
            bandwidth: sigma,
            p_value: (1 + hits) as f64 / (1 + self.n_permutations) as f64,
        })
    }
}

/// The unbiased $\mathrm{MMD}^2$ of the first `n` indices of `idx` against the rest,
/// from the pooled kernel matrix `k`.
fn mmd2_unbiased(k: &Array2<f64>, idx: &[usize], n: usize) -> f64 {
    let (a, b) = idx.split_at(n);
    let within = |s: &[usize]| {
        let mut t = 0.0;
        for (u, &i) in s.iter().enumerate() {
            for &j in &s[u + 1..] {
                t += k[(i, j)];
            }
        }
        2.0 * t / (s.len() * (s.len() - 1)) as f64
    };
    let cross: f64 = a
        .iter()
        .map(|&i| b.iter().map(|&j| k[(i, j)]).sum::<f64>())
        .sum();
    within(a) + within(b) - 2.0 * cross / (a.len() * b.len()) as f64
}
// ANCHOR_END: mmd

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ks_of_tiny_samples_counts_paths() {
        // n = m = 2: of the 6 interleavings, 2 (xxyy and yyxx) reach D = 1.
        assert!((ks_exact_p(2, 2, 1.0) - 2.0 / 6.0).abs() < 1e-15);
        assert_eq!(ks_exact_p(2, 2, 0.0), 1.0);
    }

    #[test]
    fn empty_or_mismatched_inputs_are_errors() {
        assert!(ks_2samp(&[], &[1.0]).is_err());
        assert!(wasserstein(&[f64::NAN], &[1.0]).is_err());
        assert!(chi_square(&[1, 2], &[1]).is_err());
        assert!(Psi { n_bins: 10 }.fit(&[]).is_err());
        let x = Array2::<f64>::zeros((3, 2));
        let y = Array2::<f64>::zeros((3, 3));
        assert!(Mmd {
            n_permutations: 10,
            seed: 0
        }
        .test(x.view(), y.view())
        .is_err());
    }
}
