//! Sequence applications of the recurrent layers.

pub mod text;
