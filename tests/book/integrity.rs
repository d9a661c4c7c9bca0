//! integrity (being written)
