//! autograd (being written).
