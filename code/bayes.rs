//! Bayesian inference: Bayes' rule on discrete hypotheses (a diagnostic test), the
//! Beta-Binomial conjugate model with credible intervals, and a grid posterior that
//! checks the closed forms numerically.
//!
//! # Bayes' rule
//!
//! For hypotheses `h` with prior `P(h)` and data `D` with likelihood `P(D | h)`:
//!
//! ```text
//! P(h | D) = P(D | h) P(h) / Σ_h' P(D | h') P(h')
//! ```
//!
//! A diagnostic test with sensitivity `se = P(+ | disease)` and specificity
//! `sp = P(− | healthy)`, applied where the prevalence is `π`, gives
//!
//! ```text
//! P(disease | +) = se π / (se π + (1 − sp)(1 − π)).
//! ```
//!
//! In odds form, `odds(disease | +) = odds(π) · LR+` with the likelihood ratio
//! `LR+ = se / (1 − sp)`. When `π` is small, the false positives `(1 − sp)(1 − π)` from
//! the many healthy people outnumber the true positives `se π`: the base-rate effect.
//!
//! # Beta-Binomial
//!
//! With a `Beta(α, β)` prior on a success probability `θ`, density
//! `θ^(α−1) (1−θ)^(β−1) / B(α, β)`, and `k` successes in `n` Bernoulli trials
//! (likelihood `∝ θ^k (1−θ)^(n−k)`), the posterior is proportional to
//! `θ^(α+k−1) (1−θ)^(β+n−k−1)`, which is again a Beta:
//!
//! ```text
//! θ | k, n ~ Beta(α + k, β + n − k).
//! ```
//!
//! So `α` and `β` act as pseudo-counts of prior successes and failures. For
//! `Beta(a, b)`: mean `a/(a+b)`, mode `(a−1)/(a+b−2)` (for `a, b > 1`), variance
//! `ab / ((a+b)² (a+b+1))`. The posterior mean is a weighted average of the prior mean
//! and the observed frequency,
//!
//! ```text
//! (α + k)/(α + β + n) = w · α/(α+β) + (1 − w) · k/n,   w = (α+β)/(α+β+n),
//! ```
//!
//! so the prior's weight fades as `n` grows. Updating is sequential: the posterior after
//! one batch is the prior for the next, and the order of the data does not matter.
//!
//! # Credible intervals
//!
//! The equal-tailed `1 − γ` interval is `[F⁻¹(γ/2), F⁻¹(1 − γ/2)]`, where `F` is the Beta
//! CDF, the regularized incomplete beta function
//! `I_x(a, b) = B(x; a, b) / B(a, b)`, `B(x; a, b) = ∫_0^x t^(a−1)(1−t)^(b−1) dt`.
//!
//! * [`ln_gamma`]: Lanczos approximation (g = 7, 9 coefficients) with the reflection
//!   formula below ½; relative error about 1e-15 for the arguments used here.
//! * [`reg_inc_beta`]: the continued fraction
//!   `I_x(a,b) = x^a (1−x)^b / (a B(a,b)) · 1/(1+ d_1/(1+ d_2/(1+ …)))` with
//!   `d_{2m+1} = −(a+m)(a+b+m) x / ((a+2m)(a+2m+1))`,
//!   `d_{2m} = m(b−m) x / ((a+2m−1)(a+2m))`, evaluated by the modified Lentz method to a
//!   relative change below 1e-15. It converges fast for `x < (a+1)/(a+b+2)`; above
//!   that the symmetry `I_x(a,b) = 1 − I_{1−x}(b,a)` is used.
//! * [`inv_reg_inc_beta`]: Newton's method on `I_x(a,b) − p` (the derivative is the
//!   Beta density), safeguarded by a bisection bracket so that it always converges;
//!   it stops when a step is below `1e-15 · min(x, 1 − x)`, or when the bracket is that
//!   narrow. The tests check it against closed forms (Beta(a,1), Beta(1,b), arcsine)
//!   to 1e-10 in `x`, and by round trips `I_x(a,b) ≈ p` to 1e-11 absolute and 1e-10
//!   relative to the tail mass `min(p, 1 − p)`. The one limit is the resolution of f64
//!   near 1: a quantile within about 1e-14 of 1 cannot be told apart from its
//!   neighbours, so work with `1 − θ ~ Beta(b, a)` there.
//!
//! The highest-posterior-density (HPD) interval is the shortest interval of the given
//! mass; for a unimodal density its ends have equal density. [`Beta::hpd_interval`]
//! finds it by a golden-section search over the mass left of the interval.

use rand::Rng;

// ---------------------------------------------------------------------------------------
// Discrete Bayes' rule and the diagnostic test

// ANCHOR: bayes_rule
/// Posterior over discrete hypotheses: `prior[i] · likelihood[i]`, normalised.
///
/// Panics if the lengths differ, a value is negative, or the evidence
/// `Σ prior[i] · likelihood[i]` is zero (the data is impossible under every hypothesis).
pub fn bayes_rule(prior: &[f64], likelihood: &[f64]) -> Vec<f64> {
    assert!(
        prior.len() == likelihood.len(),
        "{} prior probabilities but {} likelihoods",
        prior.len(),
        likelihood.len()
    );
    crate::info::assert_distribution(prior, "prior");
    assert!(
        likelihood.iter().all(|l| l.is_finite() && *l >= 0.0),
        "likelihoods must be finite and non-negative: {likelihood:?}"
    );
    let joint: Vec<f64> = prior.iter().zip(likelihood).map(|(p, l)| p * l).collect();
    let evidence: f64 = joint.iter().sum();
    assert!(
        evidence > 0.0,
        "the data has probability 0 under every hypothesis"
    );
    joint.iter().map(|j| j / evidence).collect()
}
// ANCHOR_END: bayes_rule

// ANCHOR: diagnostic_test
/// A binary diagnostic test.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DiagnosticTest {
    /// `P(+ | disease)`, the true-positive rate.
    pub sensitivity: f64,
    /// `P(− | healthy)`, the true-negative rate.
    pub specificity: f64,
}

impl DiagnosticTest {
    /// A test with these rates; panics unless both are in `[0, 1]`.
    pub fn new(sensitivity: f64, specificity: f64) -> Self {
        for (name, v) in [("sensitivity", sensitivity), ("specificity", specificity)] {
            assert!((0.0..=1.0).contains(&v), "{name} {v} is not in [0, 1]");
        }
        DiagnosticTest {
            sensitivity,
            specificity,
        }
    }

    /// `P(disease | +)` at this prevalence (the positive predictive value).
    pub fn p_disease_given_positive(&self, prevalence: f64) -> f64 {
        let prior = [prevalence, 1.0 - prevalence];
        bayes_rule(&prior, &[self.sensitivity, 1.0 - self.specificity])[0]
    }

    /// `P(disease | −)` at this prevalence (one minus the negative predictive value).
    pub fn p_disease_given_negative(&self, prevalence: f64) -> f64 {
        let prior = [prevalence, 1.0 - prevalence];
        bayes_rule(&prior, &[1.0 - self.sensitivity, self.specificity])[0]
    }

    /// `P(+)`: the fraction of everyone tested who tests positive.
    pub fn p_positive(&self, prevalence: f64) -> f64 {
        self.sensitivity * prevalence + (1.0 - self.specificity) * (1.0 - prevalence)
    }

    /// The positive likelihood ratio `se / (1 − sp)` (`∞` for a perfect specificity).
    pub fn lr_positive(&self) -> f64 {
        self.sensitivity / (1.0 - self.specificity)
    }
}
// ANCHOR_END: diagnostic_test

/// The odds `p / (1 − p)` of a probability.
pub fn odds(p: f64) -> f64 {
    p / (1.0 - p)
}

/// The probability `o / (1 + o)` of odds `o`.
pub fn prob_from_odds(o: f64) -> f64 {
    o / (1.0 + o)
}

// ---------------------------------------------------------------------------------------
// Special functions

const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

// ANCHOR: ln_gamma
/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7; relative error about 1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    assert!(x > 0.0, "ln_gamma needs x > 0, got {x}");
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + LANCZOS_G + 0.5;
    let mut a = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}
// ANCHOR_END: ln_gamma

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b)`.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// Continued fraction of the incomplete beta (modified Lentz), for `x < (a+1)/(a+b+2)`.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let fix = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / fix(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step d_{2m}.
        let aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 / fix(1.0 + aa * d);
        c = fix(1.0 + aa / c);
        h *= d * c;
        // Odd step d_{2m+1}.
        let aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 / fix(1.0 + aa * d);
        c = fix(1.0 + aa / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            return h;
        }
    }
    panic!("incomplete beta continued fraction did not converge for a={a}, b={b}, x={x}")
}

// ANCHOR: reg_inc_beta
/// The regularized incomplete beta `I_x(a, b)`: the CDF of `Beta(a, b)` at `x`.
pub fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    assert!(
        a > 0.0 && b > 0.0,
        "Beta parameters must be > 0, got a={a}, b={b}"
    );
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    // x^a (1−x)^b / B(a, b), in logs so large a, b do not overflow.
    let front = (a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b)).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}
// ANCHOR_END: reg_inc_beta

// ANCHOR: inv_reg_inc_beta
/// The `x` with `I_x(a, b) = p`: the quantile function of `Beta(a, b)`.
///
/// Safeguarded Newton: each iterate narrows a bracket `[lo, hi]` that contains the root,
/// and a Newton step that would leave it is replaced by bisection.
pub fn inv_reg_inc_beta(a: f64, b: f64, p: f64) -> f64 {
    assert!((0.0..=1.0).contains(&p), "probability {p} is not in [0, 1]");
    if p == 0.0 {
        return 0.0;
    }
    if p == 1.0 {
        return 1.0;
    }
    let dist = Beta::new(a, b);
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    let mut x = dist.mean();
    for _ in 0..500 {
        let f = reg_inc_beta(a, b, x) - p;
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let newton = x - f / dist.pdf(x);
        let next = if newton > lo && newton < hi && newton.is_finite() {
            newton
        } else {
            0.5 * (lo + hi)
        };
        // Relative to the nearer end: near 1 the tail mass depends on 1 − x.
        let tol = 1e-15 * next.min(1.0 - next).max(1e-300);
        if (next - x).abs() <= tol || hi - lo <= tol {
            return next;
        }
        x = next;
    }
    x
}
// ANCHOR_END: inv_reg_inc_beta

// ---------------------------------------------------------------------------------------
// The Beta distribution and conjugate updating

// ANCHOR: beta
/// The `Beta(alpha, beta)` distribution on `[0, 1]`, used both as a prior and as a
/// posterior for a success probability.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Beta {
    /// Shape `α > 0`: prior pseudo-count of successes.
    pub alpha: f64,
    /// Shape `β > 0`: prior pseudo-count of failures.
    pub beta: f64,
}

/// A prior on a success probability: a [`Beta`] (the name says the role).
pub type BetaPrior = Beta;

impl Beta {
    /// `Beta(alpha, beta)`; panics unless both are finite and > 0.
    pub fn new(alpha: f64, beta: f64) -> Self {
        assert!(
            alpha > 0.0 && beta > 0.0 && alpha.is_finite() && beta.is_finite(),
            "Beta parameters must be finite and > 0, got alpha={alpha}, beta={beta}"
        );
        Beta { alpha, beta }
    }

    /// The uniform prior `Beta(1, 1)`.
    pub fn uniform() -> Self {
        Beta::new(1.0, 1.0)
    }

    /// Jeffreys' prior `Beta(½, ½)`, invariant under reparametrisation.
    pub fn jeffreys() -> Self {
        Beta::new(0.5, 0.5)
    }

    /// The Beta with this mean and strength `alpha + beta` (its pseudo-sample size).
    pub fn from_mean_strength(mean: f64, strength: f64) -> Self {
        Beta::new(mean * strength, (1.0 - mean) * strength)
    }

    /// The posterior after `successes` out of `trials`: `Beta(α + k, β + n − k)`.
    pub fn posterior(&self, successes: u64, trials: u64) -> Beta {
        assert!(
            successes <= trials,
            "{successes} successes out of {trials} trials is impossible"
        );
        Beta::new(
            self.alpha + successes as f64,
            self.beta + (trials - successes) as f64,
        )
    }

    /// `α / (α + β)`.
    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// `(α − 1)/(α + β − 2)`, the maximum of the density; `None` unless `α, β > 1`
    /// (otherwise the density is largest at an end, or is U-shaped).
    pub fn mode(&self) -> Option<f64> {
        (self.alpha > 1.0 && self.beta > 1.0)
            .then(|| (self.alpha - 1.0) / (self.alpha + self.beta - 2.0))
    }

    /// `αβ / ((α + β)² (α + β + 1))`.
    pub fn variance(&self) -> f64 {
        let s = self.alpha + self.beta;
        self.alpha * self.beta / (s * s * (s + 1.0))
    }

    /// The log density at `x` (`−∞` outside `[0, 1]`).
    pub fn ln_pdf(&self, x: f64) -> f64 {
        if !(0.0..=1.0).contains(&x) {
            return f64::NEG_INFINITY;
        }
        // (c · ln t) with the convention 0 · ln 0 = 0, so Beta(1, b) is finite at 0.
        let term = |c: f64, t: f64| if c == 0.0 { 0.0 } else { c * t.ln() };
        term(self.alpha - 1.0, x) + term(self.beta - 1.0, 1.0 - x)
            - ln_beta(self.alpha, self.beta)
    }

    /// The density at `x`.
    pub fn pdf(&self, x: f64) -> f64 {
        self.ln_pdf(x).exp()
    }

    /// `P(θ ≤ x)`.
    pub fn cdf(&self, x: f64) -> f64 {
        reg_inc_beta(self.alpha, self.beta, x)
    }

    /// The `p`-quantile.
    pub fn quantile(&self, p: f64) -> f64 {
        inv_reg_inc_beta(self.alpha, self.beta, p)
    }

    /// The equal-tailed credible interval of mass `level` (e.g. 0.95).
    pub fn credible_interval(&self, level: f64) -> (f64, f64) {
        assert!(level > 0.0 && level < 1.0, "level {level} is not in (0, 1)");
        let tail = 0.5 * (1.0 - level);
        (self.quantile(tail), self.quantile(1.0 - tail))
    }

    /// The highest-density interval of mass `level`: the shortest one. Panics for a
    /// U-shaped density (`α < 1` and `β < 1`), whose highest-density set is not an
    /// interval.
    pub fn hpd_interval(&self, level: f64) -> (f64, f64) {
        assert!(level > 0.0 && level < 1.0, "level {level} is not in (0, 1)");
        assert!(
            self.alpha >= 1.0 || self.beta >= 1.0,
            "Beta({}, {}) is U-shaped: its HPD set is two intervals",
            self.alpha,
            self.beta
        );
        let ends = |t: f64| (self.quantile(t), self.quantile(t + level));
        let width = |t: f64| {
            let (l, u) = ends(t);
            u - l
        };
        // Golden-section search for the mass t left of the interval; the width is
        // unimodal in t for a unimodal (or monotone) density.
        let r = 0.5 * (5f64.sqrt() - 1.0);
        let (mut a, mut b) = (0.0, 1.0 - level);
        let mut c = b - r * (b - a);
        let mut d = a + r * (b - a);
        let (mut fc, mut fd) = (width(c), width(d));
        while b - a > 1e-12 {
            if fc < fd {
                b = d;
                d = c;
                fd = fc;
                c = b - r * (b - a);
                fc = width(c);
            } else {
                a = c;
                c = d;
                fc = fd;
                d = a + r * (b - a);
                fd = width(d);
            }
        }
        ends(0.5 * (a + b))
    }

    /// A sample, by the ratio of two Gamma variates (rand_distr's Beta sampler).
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        use rand_distr::Distribution;
        rand_distr::Beta::new(self.alpha, self.beta)
            .expect("parameters were checked in Beta::new")
            .sample(rng)
    }
}
// ANCHOR_END: beta

/// The Binomial probability `C(n, k) θ^k (1 − θ)^(n − k)`.
pub fn binomial_pmf(k: u64, n: u64, theta: f64) -> f64 {
    assert!(k <= n, "k = {k} > n = {n}");
    assert!((0.0..=1.0).contains(&theta), "θ = {theta} is not in [0, 1]");
    let (kf, nf) = (k as f64, n as f64);
    let ln_choose = ln_gamma(nf + 1.0) - ln_gamma(kf + 1.0) - ln_gamma(nf - kf + 1.0);
    let term = |c: f64, t: f64| if c == 0.0 { 0.0 } else { c * t.ln() };
    (ln_choose + term(kf, theta) + term(nf - kf, 1.0 - theta)).exp()
}

// ---------------------------------------------------------------------------------------
// Grid posterior: the check that needs no algebra

// ANCHOR: grid_posterior
/// A posterior over `θ ∈ [0, 1]` on a grid of `m` cells, each cell's mass taken as
/// prior × likelihood at its midpoint, normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct GridPosterior {
    /// Cell midpoints `(i + ½)/m`.
    pub theta: Vec<f64>,
    /// Probability mass of each cell; sums to 1.
    pub mass: Vec<f64>,
}

impl GridPosterior {
    /// The posterior for `ln_prior` (a log density, up to a constant) after `successes`
    /// out of `trials`, on `cells` cells. Works for any prior, conjugate or not.
    pub fn new(
        ln_prior: impl Fn(f64) -> f64,
        successes: u64,
        trials: u64,
        cells: usize,
    ) -> Self {
        assert!(
            successes <= trials && cells > 0,
            "need k <= n and cells > 0"
        );
        let (k, f) = (successes as f64, (trials - successes) as f64);
        let theta: Vec<f64> = (0..cells)
            .map(|i| (i as f64 + 0.5) / cells as f64)
            .collect();
        // Work in logs: θ^k underflows for large k.
        let ln_w: Vec<f64> = theta
            .iter()
            .map(|&t| ln_prior(t) + k * t.ln() + f * (1.0 - t).ln())
            .collect();
        let max = ln_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = ln_w.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = w.iter().sum();
        let mass = w.iter().map(|x| x / total).collect();
        GridPosterior { theta, mass }
    }

    /// `Σ θ_i m_i`.
    pub fn mean(&self) -> f64 {
        self.theta.iter().zip(&self.mass).map(|(t, m)| t * m).sum()
    }

    /// `Σ (θ_i − mean)² m_i`.
    pub fn variance(&self) -> f64 {
        let mu = self.mean();
        self.theta
            .iter()
            .zip(&self.mass)
            .map(|(t, m)| (t - mu).powi(2) * m)
            .sum()
    }

    /// The `p`-quantile, interpolating linearly inside the cell where the cumulative
    /// mass crosses `p` (mass is spread evenly over each cell).
    pub fn quantile(&self, p: f64) -> f64 {
        let h = 1.0 / self.mass.len() as f64;
        let mut cum = 0.0;
        for (i, &m) in self.mass.iter().enumerate() {
            if cum + m >= p && m > 0.0 {
                return (i as f64 + (p - cum) / m) * h;
            }
            cum += m;
        }
        1.0
    }

    /// The equal-tailed credible interval of mass `level`.
    pub fn credible_interval(&self, level: f64) -> (f64, f64) {
        let tail = 0.5 * (1.0 - level);
        (self.quantile(tail), self.quantile(1.0 - tail))
    }
}
// ANCHOR_END: grid_posterior

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_of_integers_is_ln_factorial() {
        let mut f = 1.0_f64;
        for n in 1..20 {
            assert!((ln_gamma(n as f64) - f.ln()).abs() < 1e-13, "n = {n}");
            f *= n as f64;
        }
    }

    #[test]
    fn symmetric_beta_has_median_half() {
        for a in [0.5, 1.0, 3.0, 40.0] {
            assert!((reg_inc_beta(a, a, 0.5) - 0.5).abs() < 1e-14);
        }
    }
}
