//! Freezing: layers whose parameters stop learning.
//!
//! A frozen layer still computes its output and back-propagates through itself, but
//! shows no parameters to [`Module::visit_params`], so an optimizer never sees (or
//! moves) them and a parameter count leaves them out. Chapter 4 freezes the seed CNN's
//! convolutions at their random initialization to measure what training them is worth;
//! fine-tuning a pre-trained backbone freezes its early layers the same way, by name,
//! with [`freeze`].

use ndarray::ArrayD;

use super::{Layer, Mode, Module, Named, Param};

// ANCHOR: frozen
/// A layer whose parameters do not learn: it computes and back-propagates as the layer
/// it wraps, but shows no parameters, so an optimizer never sees (or moves) them.
///
/// # Shapes
/// - those of the wrapped layer.
pub struct Frozen(pub Box<dyn Layer>);

impl Module for Frozen {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}

    fn reset_state(&mut self) {
        self.0.reset_state();
    }
}

impl Layer for Frozen {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.0.forward(x, mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let dx = self.0.backward(dy);
        self.0.zero_grad(); // the gradient is not used: keep it from piling up
        dx
    }
}

/// Freezes the layers called `names` in `model`. Panics on a name it does not have.
pub fn freeze(model: &mut Named, names: &[&str]) {
    for &name in names {
        let slot = model
            .layers
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("freeze: no layer {name:?}"));
        let inner =
            std::mem::replace(&mut slot.1, Box::new(Frozen(Box::new(Named::new()))));
        slot.1 = Box::new(Frozen(inner));
    }
}
// ANCHOR_END: frozen
