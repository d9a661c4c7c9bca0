//! Production machine learning (chapter 13): experiment tracking and a model registry
//! that MLflow reads, hyperparameter sweeps whose every trial is a tracked run, and drift
//! detection on what the served model sees, and the pipeline that runs data checks,
//! training, a quality gate and promotion as one command.

pub mod drift;
pub mod logging;
pub mod pipeline;
pub mod registry;
pub mod rest;
pub mod sweep;
pub mod tracking;
