//! bayes (being written)
