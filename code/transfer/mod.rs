//! Transfer learning: reusing a network trained on one task for another.

pub mod folder;
