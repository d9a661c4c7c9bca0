//! Optimizers on test functions of the plane: an optimizer moves a point exactly as it
//! moves a network's weights, and its path can be drawn on the loss surface.
//!
//! - The ill-conditioned quadratic $f(x, y) = \frac12(x^2 + \kappa y^2)$, condition
//!   number $\kappa$: gradient descent must keep $\eta < 2/\kappa$ for the steep $y$
//!   direction, and then crawls along the flat $x$ direction.
//! - Rosenbrock's valley $f(x, y) = (1 - x)^2 + 100\,(y - x^2)^2$, minimum at $(1, 1)$
//!   at the bottom of a curved, flat-floored valley.

use ndarray::{arr1, ArrayD};

use super::OptimizerKind;
use crate::nn::{Module, Param};

/// A test function of the plane: value and gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Surface {
    /// $\frac12(x^2 + \kappa y^2)$.
    Quadratic(f32),
    /// $(1 - x)^2 + 100(y - x^2)^2$.
    Rosenbrock,
}

impl Surface {
    /// $f(x, y)$.
    pub fn f(self, x: f32, y: f32) -> f32 {
        match self {
            Surface::Quadratic(k) => 0.5 * (x * x + k * y * y),
            Surface::Rosenbrock => (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2),
        }
    }

    /// $\nabla f(x, y)$.
    pub fn grad(self, x: f32, y: f32) -> [f32; 2] {
        match self {
            Surface::Quadratic(k) => [x, k * y],
            Surface::Rosenbrock => [
                -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
                200.0 * (y - x * x),
            ],
        }
    }
}

/// A point of the plane as a one-parameter model, so the optimizers of
/// [`crate::optim`] move it exactly as they move a network's weights.
pub struct Point {
    /// The coordinates `(x, y)`, shape `(2,)`.
    pub xy: Param,
}

impl Module for Point {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&crate::nn::join(prefix, "xy"), &mut self.xy);
    }
}

// ANCHOR: trajectory
/// The path of `kind` with learning rate `lr` from `start`: `steps + 1` points.
pub fn trajectory(
    surface: Surface,
    kind: OptimizerKind,
    lr: f32,
    start: [f32; 2],
    steps: usize,
) -> Vec<[f32; 2]> {
    let mut p = Point {
        xy: Param::new(arr1(&start).into_dyn()),
    };
    let mut opt = kind.build(lr);
    let mut path = vec![start];
    for _ in 0..steps {
        let (x, y) = (p.xy.value[0], p.xy.value[1]);
        p.xy.grad = ArrayD::from_shape_vec(vec![2], surface.grad(x, y).to_vec())
            .expect("two coordinates");
        opt.step(&mut p);
        let q = [p.xy.value[0], p.xy.value[1]];
        path.push(q);
        if !q.iter().all(|v| v.is_finite()) {
            break;
        }
    }
    path
}
// ANCHOR_END: trajectory

/// The loss along a path.
pub fn losses(surface: Surface, path: &[[f32; 2]]) -> Vec<f32> {
    path.iter().map(|&[x, y]| surface.f(x, y)).collect()
}

/// The first step at which the loss is below `tol`.
pub fn steps_to(surface: Surface, path: &[[f32; 2]], tol: f32) -> Option<usize> {
    losses(surface, path).iter().position(|&l| l < tol)
}
