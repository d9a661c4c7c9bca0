//! Parameter groups and gradient clipping: which parameters the optimizer sees, how far
//! each group steps, and a cap on the gradient's global norm.

use ndarray::Zip;
use serde::{Deserialize, Serialize};

use crate::nn::{Module, Param};

/// Which parameters train, and how fast: groups by dotted-name prefix.
///
/// A prefix matches a name equal to it or continuing with a dot: `conv1` matches
/// `conv1.weight`, not `conv10.weight`; the empty prefix matches every name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamGroups {
    /// Prefixes of the frozen parameters: never updated, no optimizer state.
    pub frozen: Vec<String>,
    /// `(prefix, multiplier)`: the learning rate of the matching parameters is
    /// multiplied by it (the first matching prefix wins; unmatched parameters keep 1).
    pub lr_scale: Vec<(String, f32)>,
}

/// Whether `prefix` names `name` or a group it belongs to.
pub fn matches_prefix(prefix: &str, name: &str) -> bool {
    prefix.is_empty()
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

impl ParamGroups {
    /// Whether the parameter called `name` is frozen.
    pub fn is_frozen(&self, name: &str) -> bool {
        self.frozen.iter().any(|p| matches_prefix(p, name))
    }

    /// The learning-rate multiplier of the parameter called `name`.
    pub fn scale(&self, name: &str) -> f32 {
        self.lr_scale
            .iter()
            .find(|(p, _)| matches_prefix(p, name))
            .map_or(1.0, |&(_, s)| s)
    }
}

/// The model as the optimizer sees it: frozen parameters hidden, and the step of a
/// scaled group shrunk or stretched by its multiplier.
///
/// Scaling the step after the optimizer made it, rather than the learning rate inside
/// it, works for every optimizer: momentum and Adam keep their state from the gradients
/// alone and move by $\eta$ times something, so scaling the move is scaling $\eta$ (up to
/// the rounding of one subtraction and one product). Parameters with multiplier 1 are
/// handed over untouched.
pub struct Trainable<'a> {
    /// The model.
    pub model: &'a mut dyn Module,
    /// The groups.
    pub groups: &'a ParamGroups,
}

impl Module for Trainable<'_> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        let groups = self.groups;
        self.model.visit_params(prefix, &mut |name, p| {
            if groups.is_frozen(name) {
                return;
            }
            let s = groups.scale(name);
            if s == 1.0 {
                return f(name, p);
            }
            let before = p.value.clone();
            f(name, p);
            Zip::from(&mut p.value)
                .and(&before)
                .for_each(|w, &w0| *w = w0 + s * (*w - w0));
        });
    }
}

/// The global $L_2$ norm of the gradients of the trainable parameters.
pub fn grad_norm(model: &mut dyn Module, groups: &ParamGroups) -> f64 {
    let mut sq = 0.0f64;
    model.visit_params("", &mut |name, p| {
        if !groups.is_frozen(name) {
            sq += p.grad.iter().map(|&g| f64::from(g).powi(2)).sum::<f64>();
        }
    });
    sq.sqrt()
}

// ANCHOR: clip_grad_norm
/// Scales the trainable gradients so that their global $L_2$ norm is at most `max_norm`
/// (no change when it already is); returns the norm before clipping.
pub fn clip_grad_norm(
    model: &mut dyn Module,
    groups: &ParamGroups,
    max_norm: f32,
) -> f64 {
    let norm = grad_norm(model, groups);
    if norm > f64::from(max_norm) {
        let k = (f64::from(max_norm) / norm) as f32;
        model.visit_params("", &mut |name, p| {
            if !groups.is_frozen(name) {
                p.grad.mapv_inplace(|g| g * k);
            }
        });
    }
    norm
}
// ANCHOR_END: clip_grad_norm
