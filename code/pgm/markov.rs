//! Discrete-time Markov chains on finitely many states.
//!
//! A chain is a row-stochastic matrix $P_{ij} = P(X_{t+1} = j \mid X_t = i)$; a
//! distribution (a row vector) $\mu$ moves to $\mu P$ in one step.
//!
//! * **Stationary distribution**: $\pi = \pi P$, $\sum_i \pi_i = 1$: the left
//!   eigenvector of $P$ for eigenvalue 1 (an eigenvector of $P^\top$), or the limit of
//!   power iteration $\mu_{n+1} = \mu_n P$ for an irreducible aperiodic chain.
//! * **Mixing**: the total-variation distance $\mathrm{TV}(\mu P^n, \pi) =
//!   \tfrac12 \sum_j |(\mu P^n)_j - \pi_j|$ shrinks geometrically, at the rate of the
//!   second-largest eigenvalue modulus.
//! * **Absorbing chains**: order the states transient first,
//!   $P = \begin{pmatrix} Q & R \\ 0 & I \end{pmatrix}$. The fundamental matrix
//!   $N = (I - Q)^{-1}$ counts expected visits ($N_{ij}$: visits to $j$ starting from
//!   $i$), so $N \mathbf 1$ is the expected number of steps to absorption and $B = N R$
//!   the probability of ending in each absorbing state.
//! * **Entropy rate** of a stationary chain: $H = \sum_i \pi_i H(P_{i\cdot})$, the
//!   uncertainty of the next state given the current one.

// The recursions index states and time steps the way the equations above do.
#![allow(clippy::needless_range_loop)]

use anyhow::{ensure, Context, Result};
use ndarray::{Array1, Array2};
use ndarray_linalg::{Eig as _, Inverse as _};
use rand::Rng;

use super::draw;
use crate::info;

/// A Markov chain: its transition matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct MarkovChain {
    p: Array2<f64>,
}

impl MarkovChain {
    /// A chain from a square matrix whose rows are distributions.
    pub fn new(p: Array2<f64>) -> Result<MarkovChain> {
        let (n, m) = p.dim();
        ensure!(
            n > 0 && n == m,
            "a transition matrix must be square and non-empty, got {n} × {m}"
        );
        for (i, row) in p.rows().into_iter().enumerate() {
            ensure!(
                row.iter().all(|x| x.is_finite() && *x >= 0.0),
                "row {i} of the transition matrix has a negative or non-finite entry"
            );
            let s = row.sum();
            ensure!(
                (s - 1.0).abs() < 1e-9,
                "row {i} of the transition matrix sums to {s}, not 1"
            );
        }
        Ok(MarkovChain { p })
    }

    // ANCHOR: from_sequence
    /// The maximum-likelihood chain of a sequence of states `0..n`: transition counts,
    /// each row divided by its total. A state never followed by another (it occurs only
    /// at the end) gets a uniform row, so the matrix stays stochastic.
    pub fn from_sequence(states: &[usize], n: usize) -> Result<MarkovChain> {
        ensure!(n > 0, "a chain needs at least one state");
        ensure!(
            states.len() >= 2,
            "a sequence needs two states to show one transition"
        );
        let mut counts = Array2::<f64>::zeros((n, n));
        for w in states.windows(2) {
            ensure!(
                w[0] < n && w[1] < n,
                "state {} is outside 0..{n}",
                w[0].max(w[1])
            );
            counts[[w[0], w[1]]] += 1.0;
        }
        for mut row in counts.rows_mut() {
            let s = row.sum();
            if s > 0.0 {
                row /= s;
            } else {
                row.fill(1.0 / n as f64);
            }
        }
        Ok(MarkovChain { p: counts })
    }
    // ANCHOR_END: from_sequence

    /// The transition matrix.
    pub fn p(&self) -> &Array2<f64> {
        &self.p
    }

    /// Number of states.
    pub fn n_states(&self) -> usize {
        self.p.nrows()
    }

    /// One step of a distribution: $\mu P$.
    pub fn step(&self, mu: &Array1<f64>) -> Array1<f64> {
        assert_eq!(
            mu.len(),
            self.n_states(),
            "a distribution over {} states",
            self.n_states()
        );
        mu.dot(&self.p)
    }

    // ANCHOR: stationary
    /// The stationary distribution as the eigenvector of $P^\top$ whose eigenvalue is
    /// closest to 1, normalised to sum to one.
    pub fn stationary_eigen(&self) -> Result<Array1<f64>> {
        let pt = self.p.t().to_owned();
        let (values, vectors) = pt.eig().context("eigen-decomposition of Pᵀ failed")?;
        let best = (0..values.len())
            .min_by(|&a, &b| {
                (values[a] - 1.0)
                    .norm()
                    .total_cmp(&(values[b] - 1.0).norm())
            })
            .expect("a non-empty matrix has eigenvalues");
        let v: Array1<f64> = vectors.column(best).map(|c| c.re);
        let s = v.sum();
        ensure!(
            s.abs() > 1e-300,
            "the eigenvector for eigenvalue 1 sums to zero"
        );
        Ok(v / s)
    }

    /// The stationary distribution by power iteration from the uniform distribution,
    /// until one step moves it by less than `tol` in L1 norm; with the steps taken.
    pub fn stationary_power(
        &self,
        tol: f64,
        max_steps: usize,
    ) -> Result<(Array1<f64>, usize)> {
        ensure!(tol > 0.0, "tol must be positive, got {tol}");
        let n = self.n_states();
        let mut mu = Array1::from_elem(n, 1.0 / n as f64);
        for step in 1..=max_steps {
            let next = self.step(&mu);
            let moved: f64 = (&next - &mu).mapv(f64::abs).sum();
            mu = next;
            if moved < tol {
                return Ok((mu, step));
            }
        }
        anyhow::bail!(
            "power iteration did not settle within {max_steps} steps (a periodic or reducible \
             chain has no single limit)"
        )
    }
    // ANCHOR_END: stationary

    /// Total-variation distance to `target` after each of `0..=steps` steps from `mu`.
    pub fn tv_curve(
        &self,
        mu: &Array1<f64>,
        target: &Array1<f64>,
        steps: usize,
    ) -> Vec<f64> {
        let mut mu = mu.clone();
        let mut out = Vec::with_capacity(steps + 1);
        for t in 0..=steps {
            if t > 0 {
                mu = self.step(&mu);
            }
            out.push(tv_distance(&mu, target));
        }
        out
    }

    /// Entropy rate $\sum_i \pi_i H(P_{i\cdot})$ in nats, for the given stationary `pi`.
    pub fn entropy_rate(&self, pi: &Array1<f64>) -> f64 {
        self.p
            .rows()
            .into_iter()
            .zip(pi)
            .map(|(row, &w)| {
                w * info::entropy(row.as_slice().expect("rows are contiguous"))
            })
            .sum()
    }

    /// A walk of `steps` transitions from `from` (the visited states, `from` first).
    pub fn simulate(&self, from: usize, steps: usize, rng: &mut impl Rng) -> Vec<usize> {
        let mut path = vec![from];
        let mut x = from;
        for _ in 0..steps {
            x = draw(self.p.row(x).as_slice().expect("contiguous"), rng);
            path.push(x);
        }
        path
    }
}

/// $\tfrac12 \sum_j |\mu_j - \nu_j|$.
pub fn tv_distance(mu: &Array1<f64>, nu: &Array1<f64>) -> f64 {
    assert_eq!(mu.len(), nu.len(), "distributions of different lengths");
    0.5 * (mu - nu).mapv(f64::abs).sum()
}

/// What an absorbing chain's fundamental matrix says, for the transient states in
/// their original order.
#[derive(Clone, Debug)]
pub struct Absorption {
    /// The transient states (rows of the results).
    pub transient: Vec<usize>,
    /// The absorbing states (columns of `probabilities`).
    pub absorbing: Vec<usize>,
    /// $N = (I - Q)^{-1}$: expected visits to each transient state.
    pub fundamental: Array2<f64>,
    /// $N \mathbf 1$: expected steps before absorption.
    pub expected_steps: Array1<f64>,
    /// $B = N R$: probability of ending in each absorbing state.
    pub probabilities: Array2<f64>,
}

// ANCHOR: absorption
impl MarkovChain {
    /// The absorbing-chain quantities. A state is absorbing when $P_{ii} = 1$; there
    /// must be at least one, and every transient state must reach one (else $I - Q$
    /// is singular and this is an error).
    pub fn absorption(&self) -> Result<Absorption> {
        let n = self.n_states();
        let (absorbing, transient): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| self.p[[i, i]] == 1.0);
        ensure!(!absorbing.is_empty(), "the chain has no absorbing state");
        ensure!(!transient.is_empty(), "every state is absorbing");
        let q = Array2::from_shape_fn((transient.len(), transient.len()), |(a, b)| {
            self.p[[transient[a], transient[b]]]
        });
        let r = Array2::from_shape_fn((transient.len(), absorbing.len()), |(a, b)| {
            self.p[[transient[a], absorbing[b]]]
        });
        let i_minus_q = Array2::eye(transient.len()) - &q;
        let fundamental = i_minus_q.inv().context(
            "I − Q is singular: some transient state never reaches absorption",
        )?;
        let expected_steps = fundamental.sum_axis(ndarray::Axis(1));
        let probabilities = fundamental.dot(&r);
        Ok(Absorption {
            transient,
            absorbing,
            fundamental,
            expected_steps,
            probabilities,
        })
    }
}
// ANCHOR_END: absorption

/// Monte-Carlo estimate of the absorption quantities from transient state `from`:
/// the mean number of steps and the frequency of each absorbing state over `walks`
/// walks (each cut off after `max_steps`).
pub fn simulate_absorption(
    chain: &MarkovChain,
    absorbing: &[usize],
    from: usize,
    walks: usize,
    max_steps: usize,
    rng: &mut impl Rng,
) -> (f64, Vec<f64>) {
    let mut steps_total = 0usize;
    let mut ends = vec![0usize; absorbing.len()];
    for _ in 0..walks {
        let mut x = from;
        let mut steps = 0;
        while steps < max_steps {
            if let Some(a) = absorbing.iter().position(|&s| s == x) {
                ends[a] += 1;
                break;
            }
            x = draw(chain.p.row(x).as_slice().expect("contiguous"), rng);
            steps += 1;
        }
        steps_total += steps;
    }
    let w = walks as f64;
    (
        steps_total as f64 / w,
        ends.iter().map(|&e| e as f64 / w).collect(),
    )
}

/// The gambler's ruin on `0..=n` with win probability `p`: states 0 and `n` absorb.
pub fn gamblers_ruin(n: usize, p: f64) -> MarkovChain {
    assert!(
        n >= 2 && (0.0..=1.0).contains(&p),
        "gambler's ruin needs n ≥ 2, p in [0, 1]"
    );
    let mut m = Array2::zeros((n + 1, n + 1));
    m[[0, 0]] = 1.0;
    m[[n, n]] = 1.0;
    for i in 1..n {
        m[[i, i + 1]] = p;
        m[[i, i - 1]] = 1.0 - p;
    }
    MarkovChain { p: m }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn eigenvector_and_power_iteration_agree() {
        let c =
            MarkovChain::new(array![[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.4, 0.5]])
                .unwrap();
        let e = c.stationary_eigen().unwrap();
        let (p, _) = c.stationary_power(1e-14, 10_000).unwrap();
        assert!(tv_distance(&e, &p) < 1e-10);
        assert!(tv_distance(&c.step(&e), &e) < 1e-12);
    }

    #[test]
    fn fair_gamblers_ruin_matches_the_closed_form() {
        // Fair game on 0..=n from i: ruin probability 1 − i/n, expected duration i(n − i).
        let n = 6;
        let a = gamblers_ruin(n, 0.5).absorption().unwrap();
        for (row, &i) in a.transient.iter().enumerate() {
            let i_f = i as f64;
            assert!((a.expected_steps[row] - i_f * (n as f64 - i_f)).abs() < 1e-9);
            assert!((a.probabilities[[row, 0]] - (1.0 - i_f / n as f64)).abs() < 1e-12);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (steps, _) = simulate_absorption(
            &gamblers_ruin(n, 0.5),
            &[0, n],
            3,
            20_000,
            10_000,
            &mut rng,
        );
        assert!((steps - 9.0).abs() < 0.3, "{steps}");
    }

    #[test]
    fn bad_matrices_are_errors() {
        assert!(MarkovChain::new(array![[0.5, 0.4], [0.5, 0.5]]).is_err());
        assert!(MarkovChain::new(Array2::zeros((2, 3))).is_err());
        assert!(MarkovChain::new(array![[0.5, 0.5], [0.5, 0.5]])
            .unwrap()
            .absorption()
            .is_err());
    }
}
