//! Scaling fitted on the training part only: an optional log, then standardisation.
//!
//! $$ z_t = \frac{g(y_t) - \mu}{\sigma}, \qquad
//!    \mu = \frac1T \sum_{t=1}^{T} g(y_t), \quad
//!    \sigma^2 = \frac1T \sum_{t=1}^{T} \bigl(g(y_t) - \mu\bigr)^2, $$
//!
//! with $g$ the identity or $\log$, and $\mu, \sigma$ from the training part
//! $y_1, \dots, y_T$ only. The inverse is $y = g^{-1}(\mu + \sigma z)$. Under the log a
//! symmetric error on $z$ becomes a relative error on $y$, which suits a series whose
//! swings grow with its level; the back-transformed forecast is then the median of a
//! symmetric forecast distribution on the log scale, not its mean.

use anyhow::{bail, ensure, Result};
use serde::Serialize;

/// The transform applied before standardising.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// None.
    Identity,
    /// Natural log (the values must be positive).
    Log,
}

impl Transform {
    fn apply(self, i: usize, y: f64) -> Result<f64> {
        match self {
            Transform::Identity => Ok(y),
            Transform::Log if y > 0.0 => Ok(y.ln()),
            Transform::Log => {
                bail!("value {i} is {y}: the log transform needs positive values")
            }
        }
    }

    fn invert(self, g: f64) -> f64 {
        match self {
            Transform::Identity => g,
            Transform::Log => g.exp(),
        }
    }
}

// ANCHOR: scaler
/// A transform and a standardisation, fitted on a training part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaler {
    /// The transform $g$ applied first.
    pub transform: Transform,
    /// Mean of $g(y)$ over the training part.
    pub mean: f64,
    /// Standard deviation of $g(y)$ over the training part (divided by $T$).
    pub std: f64,
}

impl Scaler {
    /// Fits on `train` and nothing else. An error for an empty or constant training
    /// part, a non-finite value, or a non-positive value under the log.
    pub fn fit(train: &[f64], transform: Transform) -> Result<Scaler> {
        ensure!(
            !train.is_empty(),
            "cannot fit a scaler on an empty training part"
        );
        let g = Self::transformed(transform, train)?;
        let n = g.len() as f64;
        let mean = g.iter().sum::<f64>() / n;
        let std = (g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        ensure!(
            std > 0.0,
            "the training part is constant ({} values equal to {}): nothing to scale by",
            train.len(),
            train[0]
        );
        Ok(Scaler {
            transform,
            mean,
            std,
        })
    }

    /// $z = (g(y) - \mu) / \sigma$ for each value. An error for a value the transform
    /// cannot take, or a non-finite one.
    pub fn transform(&self, y: &[f64]) -> Result<Vec<f64>> {
        let g = Self::transformed(self.transform, y)?;
        Ok(g.into_iter().map(|v| (v - self.mean) / self.std).collect())
    }

    /// $y = g^{-1}(\mu + \sigma z)$ for each value.
    pub fn inverse(&self, z: &[f64]) -> Vec<f64> {
        z.iter()
            .map(|v| self.transform.invert(self.mean + self.std * v))
            .collect()
    }

    fn transformed(t: Transform, y: &[f64]) -> Result<Vec<f64>> {
        y.iter()
            .enumerate()
            .map(|(i, &v)| {
                ensure!(
                    v.is_finite(),
                    "value {i} is {v}: the scaler needs finite values"
                );
                t.apply(i, v)
            })
            .collect()
    }
}
// ANCHOR_END: scaler
