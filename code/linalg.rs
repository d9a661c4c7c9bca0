//! linalg (being written)
