//! ch01_bayes (being written)
