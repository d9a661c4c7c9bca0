//! The read-out of a sequence classifier or a direct forecaster: the hidden state of the
//! last step, which has read the whole sequence.

use ndarray::{ArrayD, Axis};

use crate::nn::{Layer, Mode, Module, Param};

// ANCHOR: last_step
/// Keeps the last step of a sequence: `y = x[:, t - 1, :]`. Its backward puts `dy` at
/// the last step and zeros at every other, so BPTT starts from the end.
///
/// # Shapes
/// - input `x`: `(b, t, d)`, output `y`: `(b, d)`
#[derive(Clone, Debug, Default)]
pub struct LastStep {
    /// The input's shape, remembered by `forward`.
    shape: Option<Vec<usize>>,
}

impl LastStep {
    /// The layer.
    pub fn new() -> Self {
        LastStep::default()
    }
}

impl Module for LastStep {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for LastStep {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        assert!(
            x.ndim() == 3 && x.shape()[1] > 0,
            "LastStep: expected a sequence (b, t, d) with t > 0, got {:?}",
            x.shape()
        );
        let t = x.shape()[1];
        self.shape = Some(x.shape().to_vec());
        x.index_axis(Axis(1), t - 1).to_owned() // (b, d)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let shape = self
            .shape
            .as_ref()
            .expect("LastStep::backward called before forward");
        assert_eq!(
            dy.shape(),
            &[shape[0], shape[2]],
            "LastStep::backward: dy {:?} for an input {shape:?}",
            dy.shape()
        );
        let mut dx = ArrayD::zeros(shape.clone()); // (b, t, d)
        dx.index_axis_mut(Axis(1), shape[1] - 1).assign(dy);
        dx
    }
}
// ANCHOR_END: last_step

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_step_and_sends_the_gradient_there_only() {
        let x = ArrayD::from_shape_fn(vec![2, 3, 4], |i| {
            (i[0] * 12 + i[1] * 4 + i[2]) as f32
        });
        let mut l = LastStep::new();
        let y = l.forward(&x, Mode::Train);
        assert_eq!(y.shape(), &[2, 4]);
        assert_eq!(y[[1, 2]], x[[1, 2, 2]]);
        let dy = ArrayD::from_elem(vec![2, 4], 1.5f32);
        let dx = l.backward(&dy);
        assert_eq!(dx.shape(), &[2, 3, 4]);
        // The gradient of sum(y * dy): dy at the last step, zero elsewhere.
        assert_eq!(dx.sum(), dy.sum());
        assert!(dx.index_axis(Axis(1), 2).iter().all(|&v| v == 1.5));
        assert!(dx.index_axis(Axis(1), 0).iter().all(|&v| v == 0.0));
    }

    #[test]
    #[should_panic(expected = "LastStep: expected a sequence")]
    fn a_matrix_is_a_programming_error() {
        LastStep::new().forward(&ArrayD::zeros(vec![2, 3]), Mode::Eval);
    }
}
