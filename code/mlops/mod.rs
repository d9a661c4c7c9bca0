//! Production machine learning (chapter 13): experiment tracking and a model registry
//! that MLflow reads, hyperparameter sweeps whose every trial is a tracked run, and drift
//! detection on what the served model sees.

pub mod drift;
pub mod logging;
pub mod registry;
pub mod rest;
pub mod sweep;
pub mod tracking;
