//! L1 and L2 penalties on the weights, and their gradients.
//!
//! Adding $\frac\lambda2\lVert w\rVert_2^2$ to the loss adds $\lambda w$ to its gradient:
//! each SGD step first shrinks the weights by the factor $1-\eta\lambda$ ("weight
//! decay"), which for SGD is exactly the decoupled decay of AdamW; for Adam the two
//! differ (see [`crate::optim`]). As a prior, L2 is a Gaussian on the weights and the
//! penalised minimum is the MAP estimate.
//!
//! Adding $\lambda\lVert w\rVert_1$ adds $\lambda\,\mathrm{sign}(w)$ (a subgradient; we
//! take 0 at 0): a constant pull towards zero whatever the weight's size, which drives
//! small weights exactly to zero (a Laplace prior, sparse solutions).
//!
//! By convention only *weights* are penalised: parameters with two or more axes.
//! Biases and normalization scales and shifts (one axis) are left alone, since
//! shrinking them does not limit the capacity of the model.

use ndarray::Zip;

use super::{Module, Param};

/// A penalty on the weights and its strength $\lambda$.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    /// $\lambda \sum |w|$.
    L1(f32),
    /// $\frac\lambda2 \sum w^2$.
    L2(f32),
}

/// Whether a parameter is a weight the penalties apply to: two or more axes.
pub fn is_weight(p: &Param) -> bool {
    p.value.ndim() >= 2
}

// ANCHOR: penalty
/// The value of the penalty over every weight of `model`.
pub fn penalty(model: &mut dyn Module, pen: Penalty) -> f32 {
    let mut total = 0.0_f64;
    model.visit_params("", &mut |_, p| {
        if !is_weight(p) {
            return;
        }
        total += match pen {
            Penalty::L1(l) => {
                l as f64 * p.value.iter().map(|w| w.abs() as f64).sum::<f64>()
            }
            Penalty::L2(l) => {
                0.5 * l as f64 * p.value.iter().map(|w| (w * w) as f64).sum::<f64>()
            }
        };
    });
    total as f32
}

/// Adds the gradient of the penalty to every weight's accumulated gradient.
pub fn add_penalty_grad(model: &mut dyn Module, pen: Penalty) {
    model.visit_params("", &mut |_, p| {
        if !is_weight(p) {
            return;
        }
        Zip::from(&mut p.grad).and(&p.value).for_each(|g, &w| {
            *g += match pen {
                Penalty::L1(l) if w > 0.0 => l,
                Penalty::L1(l) if w < 0.0 => -l,
                Penalty::L1(_) => 0.0,
                Penalty::L2(l) => l * w,
            };
        });
    });
}
// ANCHOR_END: penalty
