//! Inverted dropout.
//!
//! In training, each activation is kept with probability $q = 1 - p$ and scaled by
//! $1/q$:
//! $$y_i = \frac{m_i}{q}\, x_i, \qquad m_i \sim \mathrm{Bernoulli}(q),$$
//! so $\mathbb E\[y_i\] = x_i$: the expectation is preserved, and at evaluation time the
//! layer is the identity, with nothing to rescale. The backward pass uses the same mask,
//! $\partial L/\partial x_i = (m_i/q)\,\partial L/\partial y_i$.
//!
//! Dropout trains an implicit ensemble of the $2^n$ sub-networks that share weights, and
//! keeps units from co-adapting: no unit can rely on another being present.

use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Layer, Mode, Module, Param};

// ANCHOR: dropout
/// Inverted dropout with drop probability `p`, seeded.
///
/// # Shapes
/// Any shape; the output has the input's shape.
#[derive(Clone, Debug)]
pub struct Dropout {
    /// Probability of dropping an activation, in `[0, 1)`.
    pub p: f32,
    rng: ChaCha8Rng,
    /// `m / q` of the last training forward (`None` after an evaluation forward).
    mask: Option<ArrayD<f32>>,
}

impl Dropout {
    /// Dropout with drop probability `p`; masks are drawn from a generator seeded with
    /// `seed`. Panics unless `0 <= p < 1`.
    pub fn new(p: f32, seed: u64) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "dropout probability {p} is not in [0, 1)"
        );
        Dropout {
            p,
            rng: ChaCha8Rng::seed_from_u64(seed),
            mask: None,
        }
    }

    /// The scaled mask `m / q` of the last training forward.
    pub fn mask(&self) -> Option<&ArrayD<f32>> {
        self.mask.as_ref()
    }
}

impl Module for Dropout {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}

    fn visit_rngs(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut ChaCha8Rng)) {
        f(&super::join(prefix, "rng"), &mut self.rng);
    }
}

impl Layer for Dropout {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        if mode == Mode::Eval || self.p == 0.0 {
            self.mask = None;
            return x.clone();
        }
        let q = 1.0 - self.p;
        let rng = &mut self.rng;
        let mask = x.mapv(|_| {
            if rng.random::<f32>() < q {
                1.0 / q
            } else {
                0.0
            }
        });
        let y = x * &mask;
        self.mask = Some(mask);
        y
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        match &self.mask {
            Some(mask) => {
                assert_eq!(
                    dy.shape(),
                    mask.shape(),
                    "dropout backward: dy {:?} vs forward output {:?}",
                    dy.shape(),
                    mask.shape()
                );
                dy * mask
            }
            None => dy.clone(),
        }
    }
}
// ANCHOR_END: dropout
