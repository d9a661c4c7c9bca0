//! Positional encodings: the sinusoidal table and a learned table, added to the input
//! `(b, t, d)`, and rotary encodings (RoPE), which rotate queries and keys inside
//! attention.
//!
//! **Sinusoidal**: $PE_{p, 2i} = \sin(p\, \omega_i)$, $PE_{p, 2i+1} = \cos(p\,\omega_i)$
//! with $\omega_i = 10000^{-2i/d}$: frequencies in a geometric progression, so that each
//! position gets a distinct code and $PE_{p+k}$ is a fixed rotation of $PE_p$ for every
//! $p$. No parameters; its backward passes the gradient through unchanged.
//!
//! **Learned**: a parameter table `(max_len, d)` whose first `t` rows are added; its
//! gradient is the output gradient summed over the batch, accumulated row by row.
//!
//! **Rotary**: each pair of dimensions $(2i, 2i+1)$ of a head is rotated by the angle
//! $p\,\theta_i$, $\theta_i = 10000^{-2i/d_k}$, $p$ the position; see the module
//! documentation of [`crate::attn`] for why only offsets then matter.

use ndarray::{s, Array2, ArrayD, Axis, Ix3, Ix4};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::nn::{join, Layer, Mode, Module, Param};

/// Panics unless `x` is `(b, t, d)` with `t <= max_len` and the layer's `d`.
fn check_seq(x: &ArrayD<f32>, max_len: usize, d: usize, who: &str) -> usize {
    let x3 = x
        .view()
        .into_dimensionality::<Ix3>()
        .unwrap_or_else(|_| panic!("{who}: expected (b, t, {d}), got {:?}", x.shape()));
    let (_, t, dd) = x3.dim();
    assert_eq!(dd, d, "{who}: expected (b, t, {d}), got {:?}", x.shape());
    assert!(
        t <= max_len,
        "{who}: sequence of length {t} longer than max_len {max_len}"
    );
    t
}

// ANCHOR: sinusoidal
/// The sinusoidal table `(max_len, d)`: $\sin$ in even columns, $\cos$ in odd ones.
pub fn sinusoidal_table(max_len: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_fn((max_len, d), |(p, j)| {
        let i = (j / 2) as f64;
        let omega = 10000f64.powf(-2.0 * i / d as f64);
        let a = p as f64 * omega;
        (if j % 2 == 0 { a.sin() } else { a.cos() }) as f32
    })
}

/// Adds the fixed sinusoidal encoding of each position.
///
/// # Shapes
/// - input `x`: `(b, t, d)` with `t <= max_len`; output: `(b, t, d)`. No parameters.
#[derive(Clone, Debug)]
pub struct SinusoidalEncoding {
    /// `(max_len, d)`.
    pub table: Array2<f32>,
}

impl SinusoidalEncoding {
    /// The encoding of positions `0..max_len` in width `d`.
    pub fn new(max_len: usize, d: usize) -> Self {
        SinusoidalEncoding {
            table: sinusoidal_table(max_len, d),
        }
    }
}

impl Module for SinusoidalEncoding {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}
}

impl Layer for SinusoidalEncoding {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let (max_len, d) = self.table.dim();
        let t = check_seq(x, max_len, d, "SinusoidalEncoding::forward");
        x + &self.table.slice(s![..t, ..]).insert_axis(Axis(0))
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        dy.clone() // y = x + constant
    }
}
// ANCHOR_END: sinusoidal

// ANCHOR: learned
/// Adds a learned vector per position.
///
/// # Shapes
/// - input `x`: `(b, t, d)` with `t <= max_len`; output: `(b, t, d)`;
/// - parameter `table`: `(max_len, d)`.
#[derive(Clone, Debug)]
pub struct LearnedEncoding {
    /// `(max_len, d)`, drawn from $\mathcal N(0, 0.02^2)$.
    pub table: Param,
    /// The length `t` of the last forward pass.
    t: Option<usize>,
}

impl LearnedEncoding {
    /// A table for positions `0..max_len` in width `d`, drawn from `rng`.
    pub fn new(max_len: usize, d: usize, rng: &mut impl Rng) -> Self {
        let normal = Normal::new(0.0f32, 0.02).expect("valid std");
        let t = Array2::from_shape_fn((max_len, d), |_| normal.sample(rng));
        LearnedEncoding {
            table: Param::new(t.into_dyn()),
            t: None,
        }
    }

    fn dims(&self) -> (usize, usize) {
        (self.table.value.shape()[0], self.table.value.shape()[1])
    }
}

impl Module for LearnedEncoding {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "table"), &mut self.table);
    }
}

impl Layer for LearnedEncoding {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let (max_len, d) = self.dims();
        let t = check_seq(x, max_len, d, "LearnedEncoding::forward");
        self.t = Some(t);
        x + &self.table.value.slice(s![..t, ..]).insert_axis(Axis(0))
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let t = self
            .t
            .expect("LearnedEncoding::backward called before forward");
        let (_, d) = self.dims();
        let dy3 = dy
            .view()
            .into_dimensionality::<Ix3>()
            .ok()
            .filter(|a| a.dim().1 == t && a.dim().2 == d)
            .unwrap_or_else(|| {
                panic!(
                    "LearnedEncoding::backward: dy {:?} vs (b, {t}, {d})",
                    dy.shape()
                )
            });
        // every sequence of the batch used the same rows: their gradients add up
        let mut g = self.table.grad.slice_mut(s![..t, ..]);
        g += &dy3.sum_axis(Axis(0));
        dy.clone()
    }
}
// ANCHOR_END: learned

// ANCHOR: rope
/// Rotary position encodings: rotates each pair of dimensions $(2i, 2i+1)$ of a head
/// vector at position $p$ by $p\,\theta_i$, $\theta_i = \text{base}^{-2i/d_k}$.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    /// The base of the frequencies, 10000 as in the RoFormer paper.
    pub base: f32,
}

impl Default for Rope {
    fn default() -> Self {
        Rope { base: 10000.0 }
    }
}

impl Rope {
    /// Rotates `x` `(b, heads, t, d_k)` by the angles of positions `0..t`; with
    /// `inverse`, by minus those angles (the backward pass, $R^\top = R^{-1}$).
    ///
    /// # Shapes
    /// - `x`: `(b, heads, t, d_k)` with `d_k` even; output: the same.
    pub fn rotate(&self, x: &ArrayD<f32>, inverse: bool) -> ArrayD<f32> {
        let x4 = x.view().into_dimensionality::<Ix4>().unwrap_or_else(|_| {
            panic!("Rope: expected (b, heads, t, d_k), got {:?}", x.shape())
        });
        let (_, _, t, dk) = x4.dim();
        assert!(
            dk.is_multiple_of(2),
            "Rope: d_k of {:?} must be even",
            x.shape()
        );
        let sign = if inverse { -1.0 } else { 1.0 };
        // cos and sin of p theta_i, (t, d_k / 2)
        let angles = Array2::from_shape_fn((t, dk / 2), |(p, i)| {
            let theta = f64::from(self.base).powf(-2.0 * i as f64 / dk as f64);
            sign * p as f64 * theta
        });
        let (cos, sin) = (
            angles.mapv(|a| a.cos() as f32),
            angles.mapv(|a| a.sin() as f32),
        );
        let mut y = x4.as_standard_layout().into_owned();
        for mut row_block in y.outer_iter_mut() {
            for mut head in row_block.outer_iter_mut() {
                for (p, mut v) in head.outer_iter_mut().enumerate() {
                    for i in 0..dk / 2 {
                        let (a, b) = (v[2 * i], v[2 * i + 1]);
                        let (c, s) = (cos[[p, i]], sin[[p, i]]);
                        v[2 * i] = a * c - b * s;
                        v[2 * i + 1] = a * s + b * c;
                    }
                }
            }
        }
        y.into_dyn()
    }
}
// ANCHOR_END: rope
