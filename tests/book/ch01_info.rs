//! ch01_info (being written)
