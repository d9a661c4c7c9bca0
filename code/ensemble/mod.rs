//! Trees and ensembles (chapter 12.3): CART decision trees, bagging, random forests and
//! extremely randomised trees, AdaBoost (SAMME), gradient boosting with histogram split
//! finding (the XGBoost objective), and stacking into a multinomial logistic regression.
//!
//! Every model follows the crate's shape for statistical models: an unfitted parameter
//! struct, `.fit(...) -> Result<Fitted...>` (bad hyper-parameters are errors), and only the
//! fitted type predicts. Features are column-major [`Columns`] of `f64` or `u8`.

pub mod adaboost;
pub mod boosting;
pub mod forest;
pub mod stacking;
pub mod tree;

pub use adaboost::{AdaBoost, FittedAdaBoost};
pub use boosting::{Binned, Binner, FittedBoosting, GradientBoosting, Objective};
pub use forest::{FittedForest, Forest};
pub use stacking::{FittedLogistic, FittedStacking, LogisticRegression, Stacking};
pub use tree::{
    Columns, Criterion, DecisionTree, Feature, FittedTree, MaxFeatures, Target,
};

/// The share of `pred` equal to `truth`. Panics if their lengths differ.
pub fn accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    assert_eq!(
        pred.len(),
        truth.len(),
        "{} predictions for {} labels",
        pred.len(),
        truth.len()
    );
    pred.iter().zip(truth).filter(|(a, b)| a == b).count() as f64
        / truth.len().max(1) as f64
}
