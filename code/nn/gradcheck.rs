//! Gradient checking: a layer's manual `backward` against central finite differences.
//!
//! To test a layer $y = f(x; \theta)$ with any output shape, we contract its output with a
//! fixed random tensor $r$ of the same shape, $L = \langle f(x;\theta), r\rangle$, so that
//! $\partial L/\partial y = r$ exactly, and compare the manual gradients with
//!
//! $$\frac{\partial L}{\partial u} \approx \frac{L(u + h) - L(u - h)}{(u+h) - (u-h)}$$
//!
//! for every scalar $u$ of the input and of every parameter. The central difference has
//! truncation error $O(h^2)$ and, in `f32`, rounding error about
//! $\varepsilon\,|L| / h$ with $\varepsilon \approx 6\cdot 10^{-8}$: the layers run in
//! `f32` and $L$ is summed in `f64`, so $h = 10^{-2}$ balances the two. The denominator
//! is the step actually taken after rounding $u \pm h$ to `f32`. Differences are
//! compared with [`rel_error`], $\max_i |a_i - b_i| / \max_i \max(|a_i|, |b_i|)$: a
//! normwise error that does not blow up on entries that are zero in both.

use ndarray::ArrayD;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{Layer, Mode};

/// Gradients of a scalar with respect to a layer's input and parameters, in `f64`.
#[derive(Clone, Debug)]
pub struct Grads {
    /// d L / d x.
    pub dx: ArrayD<f64>,
    /// d L / d parameter, by dotted name, in visiting order.
    pub params: Vec<(String, ArrayD<f64>)>,
}

/// $\max_i |a_i - b_i| / \max_i \max(|a_i|, |b_i|)$ (0 when both are all zero).
///
/// # Shapes
/// - `a`, `b`: the same number of elements.
pub fn rel_error(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(
        a.shape(),
        b.shape(),
        "rel_error: {:?} vs {:?}",
        a.shape(),
        b.shape()
    );
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    let scale = a.iter().chain(b).fold(0.0f64, |m, x| m.max(x.abs()));
    if scale == 0.0 {
        0.0
    } else {
        diff / scale
    }
}

/// The largest [`rel_error`] over the input and every parameter of two gradient sets.
pub fn max_rel_error(a: &Grads, b: &Grads) -> f64 {
    let mut e = rel_error(&a.dx, &b.dx);
    for ((na, ga), (nb, gb)) in a.params.iter().zip(&b.params) {
        assert_eq!(na, nb, "max_rel_error: parameters in a different order");
        e = e.max(rel_error(ga, gb));
    }
    e
}

fn to_f64(a: &ArrayD<f32>) -> ArrayD<f64> {
    a.mapv(f64::from)
}

/// $\langle y, r\rangle$ summed in `f64`.
fn contract(y: &ArrayD<f32>, r: &ArrayD<f32>) -> f64 {
    assert_eq!(
        y.shape(),
        r.shape(),
        "contract: output {:?} vs r {:?}",
        y.shape(),
        r.shape()
    );
    y.iter()
        .zip(r)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

// ANCHOR: manual_grads
/// The gradients of $L = \langle \text{layer}(x), r\rangle$ from the layer's own
/// `backward` (parameter gradients zeroed first).
pub fn manual_grads(layer: &mut dyn Layer, x: &ArrayD<f32>, r: &ArrayD<f32>) -> Grads {
    layer.zero_grad();
    let _ = layer.forward(x, Mode::Train);
    let dx = layer.backward(r);
    let mut params = vec![];
    layer.visit_params("", &mut |name, p| {
        params.push((name.to_string(), to_f64(&p.grad)))
    });
    Grads {
        dx: to_f64(&dx),
        params,
    }
}
// ANCHOR_END: manual_grads

// ANCHOR: finite_diff
/// Central finite differences of a scalar function of one `f32` tensor, with step `h`.
pub fn finite_diff(
    u: &ArrayD<f32>,
    h: f32,
    mut f: impl FnMut(&ArrayD<f32>) -> f64,
) -> ArrayD<f64> {
    let mut grad = ArrayD::zeros(u.raw_dim());
    let mut v = u.clone();
    for (i, g) in grad.iter_mut().enumerate() {
        let orig = u.as_slice_memory_order().expect("contiguous")[i];
        let (up, down) = (orig + h, orig - h);
        v.as_slice_memory_order_mut().expect("contiguous")[i] = up;
        let f_up = f(&v);
        v.as_slice_memory_order_mut().expect("contiguous")[i] = down;
        let f_down = f(&v);
        v.as_slice_memory_order_mut().expect("contiguous")[i] = orig;
        *g = (f_up - f_down) / (f64::from(up) - f64::from(down));
    }
    grad
}
// ANCHOR_END: finite_diff

/// The gradients of $L = \langle \text{layer}(x), r\rangle$ by central finite
/// differences with step `h`, for the input and every parameter.
pub fn numeric_grads(
    layer: &mut dyn Layer,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
    h: f32,
) -> Grads {
    let dx = finite_diff(x, h, |x| contract(&layer.forward(x, Mode::Train), r));
    let mut names = vec![];
    layer.visit_params("", &mut |name, p| {
        names.push((name.to_string(), p.value.clone()))
    });
    let mut params = vec![];
    for (name, value) in names {
        let g = finite_diff(&value, h, |v| {
            layer.visit_params("", &mut |n, p| {
                if n == name {
                    p.value.assign(v);
                }
            });
            contract(&layer.forward(x, Mode::Train), r)
        });
        // Restore the exact original value.
        layer.visit_params("", &mut |n, p| {
            if n == name {
                p.value.assign(&value);
            }
        });
        params.push((name, g));
    }
    Grads { dx, params }
}

/// A standard normal `f32` tensor, entries within `0.1` of zero pushed to `±0.1`: test
/// inputs that stay clear of the kink of ReLU (and of |x|) by more than the
/// finite-difference step, so the central difference sees one smooth piece.
pub fn normal(shape: &[usize], rng: &mut ChaCha8Rng) -> ArrayD<f32> {
    ArrayD::from_shape_fn(shape, |_| {
        let v: f32 = StandardNormal.sample(rng);
        if v.abs() < 0.1 {
            0.1f32.copysign(v)
        } else {
            v
        }
    })
}
