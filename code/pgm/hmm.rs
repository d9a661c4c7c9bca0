//! Hidden Markov models with categorical emissions.
//!
//! A hidden state $z_t \in \{0..K\}$ follows a Markov chain with start distribution
//! $\pi_i = P(z_1 = i)$ and transitions $A_{ij} = P(z_{t+1} = j \mid z_t = i)$; each
//! state emits a symbol $o_t \in \{0..M\}$ with $B_{jk} = P(o_t = k \mid z_t = j)$.
//!
//! **Forward.** $\alpha_t(j) = P(o_{1..t}, z_t = j)$ obeys
//! $\alpha_1(j) = \pi_j B_j(o_1)$ and $\alpha_{t+1}(j) = B_j(o_{t+1}) \sum_i
//! \alpha_t(i) A_{ij}$, and $P(o_{1..T}) = \sum_j \alpha_T(j)$. The products underflow
//! after a few hundred steps, so the code keeps them in one of two safe forms:
//!
//! * *scaling* (Rabiner): normalise after every step, $\hat\alpha_t = \alpha_t /
//!   \prod_{s \le t} c_s$ with $c_t$ the sum before normalising, so that
//!   $\ln P(o_{1..T}) = \sum_t \ln c_t$; the backward pass divides by the same $c_{t+1}$,
//!   and then $\gamma_t(i) = \hat\alpha_t(i) \hat\beta_t(i)$ with no further
//!   normalisation. Cheap: one division per state and step, no logarithm in the loop.
//! * *log space*: carry $\ln \alpha_t$ and replace every sum by log-sum-exp. Safe for
//!   any length and any zeros, slower (an `exp` and a `ln` per term).
//!
//! **Backward.** $\beta_t(i) = P(o_{t+1..T} \mid z_t = i)$, $\beta_T = 1$,
//! $\beta_t(i) = \sum_j A_{ij} B_j(o_{t+1}) \beta_{t+1}(j)$. Posteriors:
//! $\gamma_t(i) = \alpha_t(i)\beta_t(i) / P(o)$ and
//! $\xi_t(i, j) = \alpha_t(i) A_{ij} B_j(o_{t+1}) \beta_{t+1}(j) / P(o)$.
//!
//! **Viterbi.** The forward recursion with max for sum, in log space:
//! $\delta_{t+1}(j) = \ln B_j(o_{t+1}) + \max_i (\delta_t(i) + \ln A_{ij})$, with
//! back-pointers to recover the best path.
//!
//! **Baum-Welch** (EM). Expected counts under the current model, summed over every
//! sequence: $\pi_i \propto \sum \gamma_1(i)$, $A_{ij} \propto \sum_t \xi_t(i, j)$,
//! $B_{jk} \propto \sum_{t: o_t = k} \gamma_t(j)$. Each step cannot lower the
//! likelihood.

// The recursions index states and time steps the way the equations above do.
#![allow(clippy::needless_range_loop)]

use anyhow::{ensure, Result};
use ndarray::ArrayView2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::draw;

/// Tolerance on the sum of a probability row handed to [`Hmm::new`].
const ROW_TOLERANCE: f64 = 1e-6;

/// A hidden Markov model with `K` states and `M` categorical symbols.
///
/// Matrices are stored row-major: `trans[i * K + j]`, `emit[j * M + k]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hmm {
    k: usize,
    m: usize,
    start: Vec<f64>,
    trans: Vec<f64>,
    emit: Vec<f64>,
}

/// The scaled forward pass of one sequence.
#[derive(Clone, Debug)]
pub struct Forward {
    /// $\hat\alpha_t(i)$, `T * K` row-major; each row sums to one.
    pub alpha: Vec<f64>,
    /// The scale factors $c_t = P(o_t \mid o_{1..t-1})$.
    pub scale: Vec<f64>,
}

impl Forward {
    /// $\ln P(o_{1..T}) = \sum_t \ln c_t$.
    pub fn log_likelihood(&self) -> f64 {
        self.scale.iter().map(|c| c.ln()).sum()
    }
}

fn check_row(row: &[f64], what: &str) -> Result<()> {
    ensure!(
        row.iter().all(|p| p.is_finite() && *p >= 0.0),
        "{what} has an entry that is negative or not finite: {row:?}"
    );
    let s: f64 = row.iter().sum();
    ensure!(
        (s - 1.0).abs() < ROW_TOLERANCE,
        "{what} sums to {s}, not 1: {row:?}"
    );
    Ok(())
}

/// `ln Σ exp(x)`, safe when every `x` is `-∞`.
fn log_sum_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.map(|x| (x - max).exp()).sum::<f64>().ln()
}

impl Hmm {
    /// A model from its start distribution (`K`), transition rows (`K × K`) and
    /// emission rows (`K × M`). Every row must be a distribution; an error says which
    /// one is not.
    pub fn new(
        start: Vec<f64>,
        trans: Vec<Vec<f64>>,
        emit: Vec<Vec<f64>>,
    ) -> Result<Hmm> {
        let k = start.len();
        ensure!(k > 0, "a hidden Markov model needs at least one state");
        ensure!(
            trans.len() == k && trans.iter().all(|r| r.len() == k),
            "the transition matrix must be {k} × {k} (one row and column per state)"
        );
        ensure!(
            emit.len() == k,
            "the emission matrix needs {k} rows, one per state"
        );
        let m = emit[0].len();
        ensure!(
            m > 0 && emit.iter().all(|r| r.len() == m),
            "every emission row needs the same, non-zero number of symbols"
        );
        check_row(&start, "the start distribution")?;
        for (i, r) in trans.iter().enumerate() {
            check_row(r, &format!("transition row {i}"))?;
        }
        for (i, r) in emit.iter().enumerate() {
            check_row(r, &format!("emission row {i}"))?;
        }
        Ok(Hmm {
            k,
            m,
            start,
            trans: trans.concat(),
            emit: emit.concat(),
        })
    }

    /// A model with every row drawn at random (uniform entries, normalised): the
    /// starting point of Baum-Welch.
    pub fn random(k: usize, m: usize, rng: &mut impl Rng) -> Hmm {
        assert!(
            k > 0 && m > 0,
            "a random model needs K > 0 and M > 0, got {k}, {m}"
        );
        let mut row = |n: usize| -> Vec<f64> {
            let r: Vec<f64> = (0..n).map(|_| 0.05 + rng.random::<f64>()).collect();
            let s: f64 = r.iter().sum();
            r.into_iter().map(|x| x / s).collect()
        };
        let start = row(k);
        let trans = (0..k).flat_map(|_| row(k)).collect();
        let emit = (0..k).flat_map(|_| row(m)).collect();
        Hmm {
            k,
            m,
            start,
            trans,
            emit,
        }
    }

    /// Number of hidden states `K`.
    pub fn n_states(&self) -> usize {
        self.k
    }

    /// Number of symbols `M`.
    pub fn n_symbols(&self) -> usize {
        self.m
    }

    /// The start distribution $\pi$.
    pub fn start(&self) -> &[f64] {
        &self.start
    }

    /// The transition matrix $A$, `K × K`.
    pub fn trans(&self) -> ArrayView2<'_, f64> {
        ArrayView2::from_shape((self.k, self.k), &self.trans).expect("K × K")
    }

    /// The emission matrix $B$, `K × M`.
    pub fn emit(&self) -> ArrayView2<'_, f64> {
        ArrayView2::from_shape((self.k, self.m), &self.emit).expect("K × M")
    }

    fn check_obs(&self, obs: &[usize]) {
        assert!(!obs.is_empty(), "an HMM needs a non-empty sequence");
        if let Some(&o) = obs.iter().find(|&&o| o >= self.m) {
            panic!("symbol {o} is outside the model's {} symbols", self.m);
        }
    }

    /// Whether every symbol of every sequence is one of the model's, as a `Result`
    /// for sequences that come from outside.
    pub fn validate(&self, seqs: &[Vec<usize>]) -> Result<()> {
        ensure!(!seqs.is_empty(), "no sequences given");
        for (s, seq) in seqs.iter().enumerate() {
            ensure!(!seq.is_empty(), "sequence {s} is empty");
            if let Some((t, &o)) = seq.iter().enumerate().find(|(_, &o)| o >= self.m) {
                anyhow::bail!(
                    "sequence {s}, position {t}: symbol {o} is outside the model's {} \
                     symbols (0..{})",
                    self.m,
                    self.m
                );
            }
        }
        Ok(())
    }

    /// A sequence of `n` (states, symbols) drawn from the model.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> (Vec<usize>, Vec<usize>) {
        let (mut states, mut obs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut z = draw(&self.start, rng);
        for t in 0..n {
            if t > 0 {
                z = draw(&self.trans[z * self.k..(z + 1) * self.k], rng);
            }
            states.push(z);
            obs.push(draw(&self.emit[z * self.m..(z + 1) * self.m], rng));
        }
        (states, obs)
    }

    // ANCHOR: forward
    /// The scaled forward pass: $\hat\alpha_t$ and the scale factors $c_t$.
    ///
    /// # Shapes
    /// `obs`: `T` symbols; `alpha`: `T * K`; `scale`: `T`.
    pub fn forward(&self, obs: &[usize]) -> Forward {
        self.check_obs(obs);
        let (k, t_len) = (self.k, obs.len());
        let mut alpha = vec![0.0; t_len * k];
        let mut scale = vec![0.0; t_len];
        for t in 0..t_len {
            let b = &self.emit;
            let (prev, cur) = alpha.split_at_mut(t * k);
            let cur = &mut cur[..k];
            if t == 0 {
                for j in 0..k {
                    cur[j] = self.start[j] * b[j * self.m + obs[0]];
                }
            } else {
                let prev = &prev[(t - 1) * k..];
                cur.fill(0.0);
                for (i, &a) in prev.iter().enumerate() {
                    let row = &self.trans[i * k..(i + 1) * k];
                    for j in 0..k {
                        cur[j] += a * row[j];
                    }
                }
                for j in 0..k {
                    cur[j] *= b[j * self.m + obs[t]];
                }
            }
            let c: f64 = cur.iter().sum();
            scale[t] = c;
            let inv = 1.0 / c;
            cur.iter_mut().for_each(|x| *x *= inv);
        }
        Forward { alpha, scale }
    }
    // ANCHOR_END: forward

    /// The scaled backward pass $\hat\beta_t(i) = \beta_t(i) / \prod_{s > t} c_s$, given
    /// the forward pass's scale factors.
    ///
    /// # Shapes
    /// `obs`: `T`; `scale`: `T`; returns `T * K`.
    pub fn backward(&self, obs: &[usize], scale: &[f64]) -> Vec<f64> {
        self.check_obs(obs);
        assert_eq!(scale.len(), obs.len(), "one scale factor per observation");
        let (k, m, t_len) = (self.k, self.m, obs.len());
        let mut beta = vec![0.0; t_len * k];
        beta[(t_len - 1) * k..].fill(1.0);
        let mut tmp = vec![0.0; k];
        for t in (0..t_len - 1).rev() {
            let (cur, next) = beta.split_at_mut((t + 1) * k);
            let next = &next[..k];
            let inv = 1.0 / scale[t + 1];
            for j in 0..k {
                tmp[j] = self.emit[j * m + obs[t + 1]] * next[j] * inv;
            }
            let cur = &mut cur[t * k..];
            for i in 0..k {
                let row = &self.trans[i * k..(i + 1) * k];
                cur[i] = row.iter().zip(&tmp).map(|(a, b)| a * b).sum();
            }
        }
        beta
    }

    /// $\ln P(o_{1..T})$ by the scaled forward pass.
    pub fn log_likelihood(&self, obs: &[usize]) -> f64 {
        self.forward(obs).log_likelihood()
    }

    // ANCHOR: posteriors
    /// Posterior state probabilities $\gamma_t(i) = P(z_t = i \mid o_{1..T})$ (scaled
    /// form), with the log-likelihood.
    ///
    /// # Shapes
    /// Returns `T * K` row-major.
    pub fn posteriors(&self, obs: &[usize]) -> (Vec<f64>, f64) {
        let f = self.forward(obs);
        let beta = self.backward(obs, &f.scale);
        let gamma = f.alpha.iter().zip(&beta).map(|(a, b)| a * b).collect();
        (gamma, f.log_likelihood())
    }
    // ANCHOR_END: posteriors

    /// The most probable state at every step (posterior decoding).
    pub fn posterior_decode(&self, obs: &[usize]) -> Vec<usize> {
        let (gamma, _) = self.posteriors(obs);
        gamma
            .chunks(self.k)
            .map(|g| argmax(g.iter().copied()).0)
            .collect()
    }

    /// The forward pass in log space: $\ln \alpha_t(i)$ (`T * K`) and $\ln P(o)$.
    pub fn forward_log(&self, obs: &[usize]) -> (Vec<f64>, f64) {
        self.check_obs(obs);
        let (k, m) = (self.k, self.m);
        let ln_a: Vec<f64> = self.trans.iter().map(|p| p.ln()).collect();
        let mut la = vec![0.0; obs.len() * k];
        for j in 0..k {
            la[j] = self.start[j].ln() + self.emit[j * m + obs[0]].ln();
        }
        for t in 1..obs.len() {
            for j in 0..k {
                let prev = &la[(t - 1) * k..t * k];
                let s = log_sum_exp((0..k).map(|i| prev[i] + ln_a[i * k + j]));
                la[t * k + j] = s + self.emit[j * m + obs[t]].ln();
            }
        }
        let ll = log_sum_exp(la[(obs.len() - 1) * k..].iter().copied());
        (la, ll)
    }

    /// The backward pass in log space: $\ln \beta_t(i)$, `T * K`.
    pub fn backward_log(&self, obs: &[usize]) -> Vec<f64> {
        self.check_obs(obs);
        let (k, m, n) = (self.k, self.m, obs.len());
        let ln_a: Vec<f64> = self.trans.iter().map(|p| p.ln()).collect();
        let mut lb = vec![0.0; n * k];
        for t in (0..n - 1).rev() {
            for i in 0..k {
                let next = &lb[(t + 1) * k..(t + 2) * k];
                lb[t * k + i] = log_sum_exp((0..k).map(|j| {
                    ln_a[i * k + j] + self.emit[j * m + obs[t + 1]].ln() + next[j]
                }));
            }
        }
        lb
    }

    /// Posteriors computed in log space, $\gamma = \exp(\ln\alpha + \ln\beta - \ln P)$,
    /// with the log-likelihood: the check on the scaled form.
    pub fn posteriors_log(&self, obs: &[usize]) -> (Vec<f64>, f64) {
        let (la, ll) = self.forward_log(obs);
        let lb = self.backward_log(obs);
        let g = la
            .iter()
            .zip(&lb)
            .map(|(a, b)| (a + b - ll).exp())
            .collect();
        (g, ll)
    }

    // ANCHOR: viterbi
    /// The most probable state path and its log joint probability
    /// $\max_z \ln P(z, o)$. Ties go to the lower state.
    pub fn viterbi(&self, obs: &[usize]) -> (Vec<usize>, f64) {
        self.check_obs(obs);
        let (k, m, n) = (self.k, self.m, obs.len());
        let ln_a: Vec<f64> = self.trans.iter().map(|p| p.ln()).collect();
        let ln_b: Vec<f64> = self.emit.iter().map(|p| p.ln()).collect();
        let mut delta: Vec<f64> = (0..k)
            .map(|j| self.start[j].ln() + ln_b[j * m + obs[0]])
            .collect();
        let mut next = vec![0.0; k];
        // back[t * K + j]: the best predecessor of state j at step t.
        let mut back = vec![0u32; n * k];
        for t in 1..n {
            for j in 0..k {
                let (best, score) = argmax((0..k).map(|i| delta[i] + ln_a[i * k + j]));
                back[t * k + j] = best as u32;
                next[j] = score + ln_b[j * m + obs[t]];
            }
            std::mem::swap(&mut delta, &mut next);
        }
        let (mut z, score) = argmax(delta.iter().copied());
        let mut path = vec![0; n];
        for t in (0..n).rev() {
            path[t] = z;
            z = back[t * k + z] as usize;
        }
        (path, score)
    }
    // ANCHOR_END: viterbi

    /// $\ln P(z, o)$ of one state path: the brute-force checks' building block.
    pub fn log_joint(&self, states: &[usize], obs: &[usize]) -> f64 {
        assert_eq!(states.len(), obs.len(), "one state per observation");
        self.check_obs(obs);
        let (k, m) = (self.k, self.m);
        let mut lp = self.start[states[0]].ln() + self.emit[states[0] * m + obs[0]].ln();
        for t in 1..obs.len() {
            lp += self.trans[states[t - 1] * k + states[t]].ln()
                + self.emit[states[t] * m + obs[t]].ln();
        }
        lp
    }

    // ANCHOR: baum_welch_step
    /// One Baum-Welch (EM) update over all `seqs`: the re-estimated model and the
    /// total log-likelihood of `seqs` under `self` (before the update).
    pub fn baum_welch_step(&self, seqs: &[Vec<usize>]) -> (Hmm, f64) {
        let (k, m) = (self.k, self.m);
        let mut start = vec![0.0; k];
        let mut trans = vec![0.0; k * k];
        let mut emit = vec![0.0; k * m];
        let mut total_ll = 0.0;
        let mut w = vec![0.0; k];
        for obs in seqs {
            let f = self.forward(obs);
            let beta = self.backward(obs, &f.scale);
            total_ll += f.log_likelihood();
            for i in 0..k {
                start[i] += f.alpha[i] * beta[i];
            }
            for (t, &o) in obs.iter().enumerate() {
                let (a, b) = (&f.alpha[t * k..(t + 1) * k], &beta[t * k..(t + 1) * k]);
                for i in 0..k {
                    emit[i * m + o] += a[i] * b[i];
                }
                if t + 1 < obs.len() {
                    // ξ_t(i, j) = α̂_t(i) A_ij B_j(o_{t+1}) β̂_{t+1}(j) / c_{t+1}
                    let inv = 1.0 / f.scale[t + 1];
                    let bn = &beta[(t + 1) * k..(t + 2) * k];
                    for j in 0..k {
                        w[j] = self.emit[j * m + obs[t + 1]] * bn[j] * inv;
                    }
                    for i in 0..k {
                        let ai = a[i];
                        let row = &self.trans[i * k..(i + 1) * k];
                        let acc = &mut trans[i * k..(i + 1) * k];
                        for j in 0..k {
                            acc[j] += ai * row[j] * w[j];
                        }
                    }
                }
            }
        }
        normalize_rows(&mut start, k);
        normalize_rows(&mut trans, k);
        normalize_rows(&mut emit, m);
        (
            Hmm {
                k,
                m,
                start,
                trans,
                emit,
            },
            total_ll,
        )
    }
    // ANCHOR_END: baum_welch_step
}

/// Divides each row of `width` entries by its sum; a row with no mass (a state never
/// visited) becomes uniform rather than NaN.
fn normalize_rows(x: &mut [f64], width: usize) {
    for row in x.chunks_mut(width) {
        let s: f64 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        } else {
            row.fill(1.0 / width as f64);
        }
    }
}

/// Index and value of the largest item; the first one on ties.
fn argmax(xs: impl Iterator<Item = f64>) -> (usize, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in xs.enumerate() {
        if x > best.1 || i == 0 {
            best = (i, x);
        }
    }
    best
}

/// Baum-Welch's hyper-parameters: the unfitted model.
#[derive(Clone, Debug, PartialEq)]
pub struct BaumWelch {
    /// Hidden states `K`.
    pub n_states: usize,
    /// Symbols `M`; every observation must be below it.
    pub n_symbols: usize,
    /// Most EM iterations.
    pub n_iter: usize,
    /// Stop when an iteration raises the log-likelihood by less than this.
    pub tol: f64,
    /// Seed of the random starting model.
    pub seed: u64,
}

/// A model fitted by Baum-Welch, with its training history.
#[derive(Clone, Debug)]
pub struct FittedHmm {
    /// The fitted model.
    pub hmm: Hmm,
    /// Log-likelihood of the training sequences before each update (non-decreasing).
    pub log_likelihoods: Vec<f64>,
    /// Whether the last improvement fell below `tol` before `n_iter` ran out.
    pub converged: bool,
}

impl BaumWelch {
    /// Fits from a random model drawn with `seed`.
    pub fn fit(&self, seqs: &[Vec<usize>]) -> Result<FittedHmm> {
        ensure!(self.n_states > 0, "n_states must be at least 1, got 0");
        ensure!(self.n_symbols > 0, "n_symbols must be at least 1, got 0");
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        self.fit_from(Hmm::random(self.n_states, self.n_symbols, &mut rng), seqs)
    }

    // ANCHOR: small_em
    /// Fits by "small EM" (Biernacki, Celeux and Govaert, 2003): `n_starts` random
    /// models (seeds `seed`, `seed + 1`, ...) each run `short_iter` iterations, and only
    /// the likeliest of them runs on to convergence. EM's early iterations already sort
    /// the basins a start is heading for, so the short runs buy the choice of basin
    /// cheaply; the returned history is the chosen short run's followed by its
    /// continuation.
    pub fn fit_small_em(
        &self,
        seqs: &[Vec<usize>],
        n_starts: usize,
        short_iter: usize,
    ) -> Result<FittedHmm> {
        ensure!(n_starts > 0, "small EM needs at least one start, got 0");
        ensure!(
            short_iter > 0,
            "small EM's short runs need at least one iteration, got 0"
        );
        let short = BaumWelch {
            n_iter: short_iter,
            tol: 0.0,
            ..self.clone()
        };
        let mut best: Option<(f64, FittedHmm)> = None;
        for i in 0..n_starts as u64 {
            let fit = BaumWelch {
                seed: self.seed + i,
                ..short.clone()
            }
            .fit(seqs)?;
            let ll: f64 = seqs.iter().map(|s| fit.hmm.log_likelihood(s)).sum();
            if best.as_ref().is_none_or(|b| ll > b.0) {
                best = Some((ll, fit));
            }
        }
        let (_, chosen) = best.expect("at least one start");
        let mut rest = self.fit_from(chosen.hmm, seqs)?;
        let mut history = chosen.log_likelihoods;
        history.append(&mut rest.log_likelihoods);
        rest.log_likelihoods = history;
        Ok(rest)
    }
    // ANCHOR_END: small_em

    /// Fits starting from `init`.
    pub fn fit_from(&self, init: Hmm, seqs: &[Vec<usize>]) -> Result<FittedHmm> {
        ensure!(self.n_iter > 0, "n_iter must be at least 1, got 0");
        ensure!(
            self.tol >= 0.0 && self.tol.is_finite(),
            "tol must be finite and non-negative, got {}",
            self.tol
        );
        ensure!(
            init.k == self.n_states && init.m == self.n_symbols,
            "the starting model has {} states and {} symbols, the parameters say {} and {}",
            init.k,
            init.m,
            self.n_states,
            self.n_symbols
        );
        init.validate(seqs)?;
        let mut hmm = init;
        let mut lls = Vec::with_capacity(self.n_iter);
        let mut converged = false;
        for _ in 0..self.n_iter {
            let (next, ll) = hmm.baum_welch_step(seqs);
            ensure!(
                ll.is_finite(),
                "a training sequence is impossible under the current model (log-likelihood \
                 {ll}); start from a model with no zero probabilities"
            );
            let gain = lls.last().map(|&prev| ll - prev);
            lls.push(ll);
            hmm = next;
            if gain.is_some_and(|g| g < self.tol) {
                converged = true;
                break;
            }
        }
        Ok(FittedHmm {
            hmm,
            log_likelihoods: lls,
            converged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn casino() -> Hmm {
        Hmm::new(
            vec![0.5, 0.5],
            vec![vec![0.95, 0.05], vec![0.1, 0.9]],
            vec![vec![1.0 / 6.0; 6], vec![0.1, 0.1, 0.1, 0.1, 0.1, 0.5]],
        )
        .unwrap()
    }

    #[test]
    fn scaled_and_log_space_agree_on_a_long_sequence() {
        let h = casino();
        let (_, obs) = h.sample(3000, &mut ChaCha8Rng::seed_from_u64(1));
        let (g, ll) = h.posteriors(&obs);
        let (gl, lll) = h.posteriors_log(&obs);
        // Thousands of steps: the unscaled α would have underflowed long ago.
        assert!(ll < -1000.0 && ll.is_finite());
        assert!((ll - lll).abs() < 1e-8 * ll.abs());
        let max = g
            .iter()
            .zip(&gl)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(max < 1e-9, "posteriors differ by {max}");
    }

    #[test]
    fn baum_welch_never_lowers_the_likelihood() {
        let h = casino();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let seqs: Vec<Vec<usize>> = (0..3).map(|_| h.sample(400, &mut rng).1).collect();
        let bw = BaumWelch {
            n_states: 2,
            n_symbols: 6,
            n_iter: 30,
            tol: 0.0,
            seed: 3,
        };
        let fit = bw.fit(&seqs).unwrap();
        for w in fit.log_likelihoods.windows(2) {
            assert!(w[1] >= w[0] - 1e-9, "{} then {}", w[0], w[1]);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let bw = BaumWelch {
            n_states: 0,
            n_symbols: 6,
            n_iter: 5,
            tol: 0.0,
            seed: 0,
        };
        assert!(bw.fit(&[vec![0, 1]]).is_err());
        let bw = BaumWelch { n_states: 2, ..bw };
        assert!(bw.fit(&[vec![0, 7]]).is_err());
        assert!(bw.fit(&[]).is_err());
        assert!(bw.fit(&[vec![]]).is_err());
        assert!(
            Hmm::new(vec![0.5, 0.6], vec![vec![1.0, 0.0]; 2], vec![vec![1.0]; 2])
                .is_err()
        );
    }
}
