//! data (being written)
