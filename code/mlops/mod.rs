//! Production machine learning (chapter 13): experiment tracking and a model registry
//! that MLflow reads, and hyperparameter sweeps whose every trial is a tracked run.

pub mod logging;
pub mod registry;
pub mod rest;
pub mod sweep;
pub mod tracking;
