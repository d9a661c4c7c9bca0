//! Production machine learning (chapter 13): experiment tracking that MLflow reads.

pub mod logging;
pub mod rest;
pub mod tracking;
