//! book (being written)
