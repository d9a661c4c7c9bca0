//! Information theory on discrete distributions: entropy, cross-entropy, KL and
//! Jensen-Shannon divergences, mutual information and the information gain of a split.
//!
//! A distribution is a slice `p: &[f64]` of probabilities over outcomes `0..n`. All
//! quantities are in **nats** (natural logarithm); divide by `ln 2` for bits
//! ([`entropy_bits`], [`to_bits`]).
//!
//! # Definitions
//!
//! ```text
//! H(p)      = - Σ_i p_i ln p_i                      entropy
//! H(p, q)   = - Σ_i p_i ln q_i                      cross-entropy
//! KL(p‖q)   =   Σ_i p_i ln (p_i / q_i)              Kullback-Leibler divergence
//! JS(p, q)  = ½ KL(p‖m) + ½ KL(q‖m),  m = ½(p + q)  Jensen-Shannon divergence
//! I(X; Y)   = KL(p(x, y) ‖ p(x) p(y))               mutual information
//! ```
//!
//! **Conventions.** `0 · ln 0 = 0` (the limit of `t ln t` as `t → 0`), so outcomes with
//! `p_i = 0` contribute nothing to any sum weighted by `p_i`. If `q_i = 0` while
//! `p_i > 0`, the term `p_i ln(p_i / q_i)` is `+∞`: [`kl_divergence`] and
//! [`cross_entropy`] return `f64::INFINITY` in that case, explicitly, never NaN.
//!
//! **Errors.** Passing something that is not a distribution (a negative or non-finite
//! entry, a sum further than [`SUM_TOLERANCE`] from 1, an empty slice, or two slices of
//! different lengths) is a programmer error: the functions panic with a message that
//! names the argument and what is wrong with it. Data from outside (counts read from a
//! file) should go through [`normalize`], which returns a `Result`.
//!
//! # Identities the code relies on (and the tests check)
//!
//! **Decomposition.** Splitting `ln(1/q_i) = ln(1/p_i) + ln(p_i/q_i)` inside the sum
//! gives `H(p, q) = H(p) + KL(p‖q)`.
//!
//! **Gibbs' inequality**, `KL(p‖q) ≥ 0` with equality iff `p = q`. Using
//! `ln x ≤ x − 1` (equality only at `x = 1`) on the support `S = {i : p_i > 0}`:
//!
//! ```text
//! −KL(p‖q) = Σ_{i∈S} p_i ln(q_i/p_i) ≤ Σ_{i∈S} p_i (q_i/p_i − 1) = Σ_{i∈S} q_i − 1 ≤ 0,
//! ```
//!
//! with equality iff `q_i = p_i` on `S` and `q` puts no mass outside `S`, i.e. `p = q`.
//! Hence cross-entropy is minimised over `q` exactly at `q = p`, where it equals `H(p)`.
//!
//! **Maximum entropy.** `KL(p‖u) = ln n − H(p)` for the uniform `u_i = 1/n`, so Gibbs
//! gives `H(p) ≤ ln n`, with equality only for the uniform distribution.
//!
//! **Jensen-Shannon** is symmetric by construction. Both `p` and `q` are dominated by
//! `m` (`m_i ≥ p_i / 2`), so `ln(p_i/m_i) ≤ ln 2` and each KL term is at most `ln 2`:
//! `0 ≤ JS(p, q) ≤ ln 2`, with `JS = ln 2` iff `p` and `q` have disjoint supports.
//!
//! **Mutual information and information gain.** `I(X;Y) = H(Y) − H(Y|X)`, where
//! `H(Y|X) = Σ_x p(x) H(Y | X = x)`. For a decision-tree split that sends each example to
//! a branch `b`, the information gain about the label `y` is
//! `IG = H(y) − Σ_b (n_b/n) H(y | b)`, which is the mutual information between branch
//! and label under the empirical distribution: never negative, zero iff the branch
//! proportions of every label are the same.

use anyhow::{bail, Result};

/// How far from 1 the sum of a distribution may be before it is rejected.
pub const SUM_TOLERANCE: f64 = 1e-9;

/// Panics unless `p` is a probability vector (see the module docs for what is checked).
pub fn assert_distribution(p: &[f64], name: &str) {
    assert!(
        !p.is_empty(),
        "{name} is empty: a distribution needs an outcome"
    );
    for (i, &x) in p.iter().enumerate() {
        assert!(
            x.is_finite() && x >= 0.0,
            "{name}[{i}] = {x}: probabilities must be finite and non-negative"
        );
    }
    let s: f64 = p.iter().sum();
    assert!(
        (s - 1.0).abs() <= SUM_TOLERANCE,
        "{name} sums to {s}, not 1 (tolerance {SUM_TOLERANCE}); normalise it first"
    );
}

fn assert_pair(p: &[f64], q: &[f64]) {
    assert!(
        p.len() == q.len(),
        "p has {} outcomes but q has {}: both must be over the same outcomes",
        p.len(),
        q.len()
    );
    assert_distribution(p, "p");
    assert_distribution(q, "q");
}

/// Counts (or any non-negative weights) scaled to sum to 1. An error if a weight is
/// negative or not finite, or if they are all zero.
pub fn normalize(weights: &[f64]) -> Result<Vec<f64>> {
    if let Some((i, w)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
    {
        bail!("weight {i} is {w}: weights must be finite and non-negative");
    }
    let s: f64 = weights.iter().sum();
    if s <= 0.0 {
        bail!(
            "all {} weights are zero: nothing to normalise",
            weights.len()
        );
    }
    Ok(weights.iter().map(|w| w / s).collect())
}

/// The distribution of counts: `counts[i] / Σ counts`. Panics if all counts are zero.
pub fn from_counts(counts: &[u64]) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    assert!(
        n > 0,
        "all {} counts are zero: no distribution",
        counts.len()
    );
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Converts nats to bits.
pub fn to_bits(nats: f64) -> f64 {
    nats / std::f64::consts::LN_2
}

// ANCHOR: entropy
/// Entropy `H(p) = −Σ p_i ln p_i` in nats, with `0 · ln 0 = 0`.
pub fn entropy(p: &[f64]) -> f64 {
    assert_distribution(p, "p");
    -p.iter()
        .filter(|&&pi| pi > 0.0)
        .map(|&pi| pi * pi.ln())
        .sum::<f64>()
}
// ANCHOR_END: entropy

/// Entropy in bits.
pub fn entropy_bits(p: &[f64]) -> f64 {
    to_bits(entropy(p))
}

/// Entropy of a Bernoulli(`p`) variable in nats (the binary entropy function).
pub fn bernoulli_entropy(p: f64) -> f64 {
    assert!(
        (0.0..=1.0).contains(&p),
        "Bernoulli parameter {p} is not in [0, 1]"
    );
    entropy(&[p, 1.0 - p])
}

// ANCHOR: cross_entropy
/// Cross-entropy `H(p, q) = −Σ p_i ln q_i` in nats: `+∞` if `q_i = 0` where `p_i > 0`.
pub fn cross_entropy(p: &[f64], q: &[f64]) -> f64 {
    assert_pair(p, q);
    let mut h = 0.0;
    for (&pi, &qi) in p.iter().zip(q) {
        if pi == 0.0 {
            continue; // 0 · ln q = 0, even for q = 0
        }
        if qi == 0.0 {
            return f64::INFINITY; // q says impossible, p says it happens
        }
        h -= pi * qi.ln();
    }
    h
}
// ANCHOR_END: cross_entropy

// ANCHOR: kl_divergence
/// Kullback-Leibler divergence `KL(p‖q) = Σ p_i ln(p_i / q_i)` in nats.
///
/// `+∞` when `q` has a zero where `p` does not (the support of `p` is not inside that
/// of `q`); never NaN. Tiny negative rounding (`-1e-17`) is clamped to 0.
pub fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    assert_pair(p, q);
    let mut d = 0.0;
    for (&pi, &qi) in p.iter().zip(q) {
        if pi == 0.0 {
            continue;
        }
        if qi == 0.0 {
            return f64::INFINITY;
        }
        d += pi * (pi / qi).ln();
    }
    d.max(0.0)
}
// ANCHOR_END: kl_divergence

// ANCHOR: js_divergence
/// Jensen-Shannon divergence `½ KL(p‖m) + ½ KL(q‖m)` with `m = ½(p + q)`, in nats.
/// Symmetric, always finite, and at most `ln 2`.
pub fn js_divergence(p: &[f64], q: &[f64]) -> f64 {
    assert_pair(p, q);
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    // m_i ≥ p_i/2 > 0 wherever p_i > 0, so neither KL below can be infinite.
    let half = |a: &[f64]| -> f64 {
        a.iter()
            .zip(&m)
            .filter(|(ai, _)| **ai > 0.0)
            .map(|(ai, mi)| ai * (ai / mi).ln())
            .sum()
    };
    (0.5 * half(p) + 0.5 * half(q)).clamp(0.0, std::f64::consts::LN_2)
}
// ANCHOR_END: js_divergence

/// A joint distribution `p(x, y)` as rows `x` of columns `y`: checks that it is
/// rectangular and sums to 1, and returns its number of columns.
fn assert_joint(joint: &[Vec<f64>]) -> usize {
    assert!(!joint.is_empty(), "the joint distribution has no rows");
    let n_y = joint[0].len();
    for (x, row) in joint.iter().enumerate() {
        assert!(
            row.len() == n_y,
            "joint row {x} has {} columns but row 0 has {n_y}",
            row.len()
        );
    }
    let flat: Vec<f64> = joint.iter().flatten().copied().collect();
    assert_distribution(&flat, "joint");
    n_y
}

/// The marginals `(p(x), p(y))` of a joint distribution given as rows `x`, columns `y`.
pub fn marginals(joint: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n_y = assert_joint(joint);
    let px: Vec<f64> = joint.iter().map(|r| r.iter().sum()).collect();
    let py: Vec<f64> = (0..n_y).map(|y| joint.iter().map(|r| r[y]).sum()).collect();
    (px, py)
}

// ANCHOR: conditional_entropy
/// Conditional entropy `H(Y|X) = Σ_x p(x) H(Y | X = x)` in nats, for a joint
/// distribution given as rows `x`, columns `y`. Rows with `p(x) = 0` contribute 0.
pub fn conditional_entropy(joint: &[Vec<f64>]) -> f64 {
    assert_joint(joint);
    let mut h = 0.0;
    for row in joint {
        let px: f64 = row.iter().sum();
        for &pxy in row.iter().filter(|&&v| v > 0.0) {
            h -= pxy * (pxy / px).ln(); // p(x, y) ln p(y | x)
        }
    }
    h.max(0.0)
}
// ANCHOR_END: conditional_entropy

// ANCHOR: mutual_information
/// Mutual information `I(X;Y) = KL(p(x,y) ‖ p(x)p(y)) = H(Y) − H(Y|X)` in nats, for a
/// joint distribution given as rows `x`, columns `y`.
pub fn mutual_information(joint: &[Vec<f64>]) -> f64 {
    let (px, py) = marginals(joint);
    let mut i = 0.0;
    for (row, &pxi) in joint.iter().zip(&px) {
        for (&pxy, &pyj) in row.iter().zip(&py) {
            if pxy > 0.0 {
                // p(x,y) > 0 implies p(x), p(y) > 0: never infinite.
                i += pxy * (pxy / (pxi * pyj)).ln();
            }
        }
    }
    i.max(0.0)
}
// ANCHOR_END: mutual_information

/// The joint distribution of two label sequences of equal length: rows are values of
/// `x` (`0..n_x`), columns values of `y` (`0..n_y`). Panics on a value out of range.
pub fn joint_from_pairs(
    x: &[usize],
    y: &[usize],
    n_x: usize,
    n_y: usize,
) -> Vec<Vec<f64>> {
    assert!(
        x.len() == y.len() && !x.is_empty(),
        "x has {} values and y has {}: need the same, non-zero number",
        x.len(),
        y.len()
    );
    let mut counts = vec![vec![0u64; n_y]; n_x];
    for (&a, &b) in x.iter().zip(y) {
        assert!(
            a < n_x && b < n_y,
            "pair ({a}, {b}) is outside {n_x} x {n_y}"
        );
        counts[a][b] += 1;
    }
    let n = x.len() as f64;
    counts
        .iter()
        .map(|r| r.iter().map(|&c| c as f64 / n).collect())
        .collect()
}

// ANCHOR: information_gain
/// Information gain of a split, in nats: `H(labels) − Σ_b (n_b/n) H(labels | branch b)`.
///
/// `labels[i] < n_classes` is the class of example `i` and `branch[i] < n_branches` the
/// branch the split sends it to. Equal to the mutual information of branch and label
/// under the empirical distribution.
pub fn information_gain(
    labels: &[usize],
    branch: &[usize],
    n_classes: usize,
    n_branches: usize,
) -> f64 {
    let joint = joint_from_pairs(branch, labels, n_branches, n_classes);
    let (_, p_label) = marginals(&joint);
    entropy(&p_label) - conditional_entropy(&joint)
}
// ANCHOR_END: information_gain

/// Discretises a continuous density on a uniform grid of cell midpoints: probabilities
/// proportional to `density(x_i)`. Used to compare discrete divergences with the
/// closed forms of continuous ones.
pub fn discretize(density: impl Fn(f64) -> f64, lo: f64, hi: f64, n: usize) -> Vec<f64> {
    assert!(
        hi > lo && n > 0,
        "need lo < hi and n > 0, got [{lo}, {hi}], n = {n}"
    );
    let h = (hi - lo) / n as f64;
    let w: Vec<f64> = (0..n).map(|i| density(lo + (i as f64 + 0.5) * h)).collect();
    normalize(&w).expect("a density is non-negative and not zero everywhere")
}

/// The Gaussian density `N(mu, sigma²)` at `x`.
pub fn gaussian_pdf(x: f64, mu: f64, sigma: f64) -> f64 {
    let z = (x - mu) / sigma;
    (-0.5 * z * z).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
}

/// Closed form `KL(N(m1, s1²) ‖ N(m2, s2²)) = ln(s2/s1) + (s1² + (m1−m2)²)/(2 s2²) − ½`.
pub fn gaussian_kl(m1: f64, s1: f64, m2: f64, s2: f64) -> f64 {
    (s2 / s1).ln() + (s1 * s1 + (m1 - m2).powi(2)) / (2.0 * s2 * s2) - 0.5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cases() {
        assert_eq!(entropy(&[1.0, 0.0]), 0.0);
        assert!((entropy_bits(&[0.5, 0.5]) - 1.0).abs() < 1e-15);
        assert_eq!(kl_divergence(&[0.5, 0.5], &[1.0, 0.0]), f64::INFINITY);
        assert_eq!(
            kl_divergence(&[1.0, 0.0], &[0.5, 0.5]),
            std::f64::consts::LN_2
        );
        assert!(normalize(&[0.0, 0.0]).is_err());
        assert!(normalize(&[1.0, -1.0]).is_err());
    }

    #[test]
    #[should_panic(expected = "p has 2 outcomes but q has 3")]
    fn length_mismatch_panics() {
        kl_divergence(&[0.5, 0.5], &[0.2, 0.3, 0.5]);
    }
}
