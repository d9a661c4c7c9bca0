//! augment (being written).
