//! The embedding layer: a learned vector per token id, $y_{\dots} = E_{x_{\dots}}$.
//!
//! A lookup is a product with a one-hot matrix, $y = \mathrm{onehot}(x)\, E$, so its
//! gradient is $\partial L / \partial E = \mathrm{onehot}(x)^\top\, \delta$: each row of
//! $\delta = \partial L / \partial y$ is added into the row of $E$ its id selected, and a
//! row selected twice receives both. The ids are not differentiable (a small change of
//! an integer is not an id), so `dx` is zero.
//!
//! Ids travel as `f32` values, like every other input of a [`Layer`], so an embedding is
//! the first layer of a [`Named`](super::Named) stack that reads token ids from a
//! [`Dataset`](crate::data::Dataset). `f32` holds every integer up to $2^{24}$ exactly, far
//! more than any vocabulary of the book.

use ndarray::{Array2, ArrayD, Ix2};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{Layer, Mode, Module, Param};

// ANCHOR: embedding
/// A table of `vocab_size` learned vectors of width `d`, looked up by token id.
///
/// # Shapes
/// - input `x`: `(n, ...)` token ids in `0..vocab_size`, as `f32` (a sequence batch is
///   `(b, t)`)
/// - output `y`: `(n, ..., d)`
/// - `weight`: `(vocab_size, d)` (PyTorch's `nn.Embedding.weight`)
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The vectors, one row per id, `(vocab_size, d)`.
    pub weight: Param,
    /// The ids of the last forward pass, flattened, and the input's shape.
    ids: Option<(Vec<usize>, Vec<usize>)>,
}

impl Embedding {
    /// `vocab_size` vectors of width `d`, drawn from $\mathcal N(0, 1)$ as PyTorch does.
    pub fn new(vocab_size: usize, d: usize, rng: &mut impl Rng) -> Self {
        let w = Array2::from_shape_fn((vocab_size, d), |_| StandardNormal.sample(rng));
        Self::from_weights(w)
    }

    /// An embedding with these vectors `(vocab_size, d)`.
    pub fn from_weights(weight: Array2<f32>) -> Self {
        Embedding {
            weight: Param::new(weight.into_dyn()),
            ids: None,
        }
    }

    /// The number of ids.
    pub fn vocab_size(&self) -> usize {
        self.weight.value.shape()[0]
    }

    /// The width of a vector.
    pub fn d(&self) -> usize {
        self.weight.value.shape()[1]
    }

    /// The ids in `x` as indices. Panics naming the first value that is not an integer
    /// in `0..vocab_size`.
    fn ids(&self, x: &ArrayD<f32>) -> Vec<usize> {
        let v = self.vocab_size();
        x.iter()
            .map(|&id| {
                assert!(
                    id.fract() == 0.0 && id >= 0.0 && id < v as f32,
                    "Embedding::forward: id {id} in input {:?} is not an integer in 0..{v}",
                    x.shape()
                );
                id as usize
            })
            .collect()
    }
}

impl Module for Embedding {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&super::join(prefix, "weight"), &mut self.weight);
    }
}

impl Layer for Embedding {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let ids = self.ids(x);
        let d = self.d();
        let w = self
            .weight
            .value
            .view()
            .into_dimensionality::<Ix2>()
            .expect("2-D");
        let mut y = Vec::with_capacity(ids.len() * d);
        for &id in &ids {
            y.extend(w.row(id).iter());
        }
        let mut shape = x.shape().to_vec();
        shape.push(d); // (n, ..., d)
        self.ids = Some((ids, x.shape().to_vec()));
        ArrayD::from_shape_vec(shape, y).expect("sizes match")
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        self.scatter(dy);
        let (_, shape) = self.ids.as_ref().expect("forward ran");
        ArrayD::zeros(shape.clone())
    }

    fn backward_params(&mut self, dy: ArrayD<f32>) {
        self.scatter(&dy);
    }
}

impl Embedding {
    /// Adds each row of `dy` into the gradient row of the id that produced it.
    fn scatter(&mut self, dy: &ArrayD<f32>) {
        let (ids, shape) = self
            .ids
            .as_ref()
            .expect("Embedding::backward called before forward");
        let d = self.d();
        let mut want = shape.clone();
        want.push(d);
        assert_eq!(
            dy.shape(),
            &want[..],
            "Embedding::backward: dy {:?} vs output {:?}",
            dy.shape(),
            want
        );
        let dy = dy.as_standard_layout();
        let dy = dy.as_slice().expect("standard layout");
        let g = self
            .weight
            .grad
            .as_slice_mut()
            .expect("contiguous gradient");
        for (&id, row) in ids.iter().zip(dy.chunks_exact(d)) {
            for (gi, &di) in g[id * d..(id + 1) * d].iter_mut().zip(row) {
                *gi += di;
            }
        }
    }
}
// ANCHOR_END: embedding
