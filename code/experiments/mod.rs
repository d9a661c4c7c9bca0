//! experiments (being written)
