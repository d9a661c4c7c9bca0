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
