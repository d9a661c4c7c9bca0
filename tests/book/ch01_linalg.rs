//! ch01_linalg (being written)
