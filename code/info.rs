//! info (being written)
