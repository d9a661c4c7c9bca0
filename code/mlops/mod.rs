//! Production machine learning (chapter 13): experiment tracking that MLflow reads,
//! and drift detection on what the served model sees.

pub mod drift;
pub mod logging;
pub mod rest;
pub mod tracking;
