//! Probabilistic graphical models (chapter 12.5): hidden Markov models ([`hmm`]),
//! Markov chains ([`markov`]) and Bayesian networks ([`bayesnet`]).
//!
//! All three describe a joint distribution by local pieces (a transition row, an
//! emission row, a conditional probability table) and answer questions about it by
//! dynamic programming over those pieces instead of summing the whole joint.

pub mod bayesnet;
pub mod hmm;
pub mod markov;

pub use bayesnet::BayesNet;
pub use hmm::{BaumWelch, FittedHmm, Forward, Hmm};
pub use markov::{Absorption, MarkovChain};

/// One index drawn from the categorical distribution `p` (entries summing to one) by
/// inverting its cumulative sum; rounding that leaves the sum just below one gives the
/// last index, never an out-of-range one.
pub fn draw(p: &[f64], rng: &mut impl rand::Rng) -> usize {
    assert!(!p.is_empty(), "cannot draw from an empty distribution");
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (i, &x) in p.iter().enumerate() {
        acc += x;
        if u < acc {
            return i;
        }
    }
    p.len() - 1
}
