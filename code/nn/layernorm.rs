//! Layer normalization over the feature axis of `(N, D)` activations.
//!
//! Each example (row) is normalised with its own statistics over its $D$ features,
//! $$\mu_n = \frac1D\sum_j x_{nj}, \quad \sigma_n^2 = \frac1D\sum_j (x_{nj}-\mu_n)^2,
//!   \quad \hat x_{nj} = \frac{x_{nj}-\mu_n}{\sqrt{\sigma_n^2+\epsilon}},
//!   \quad y_{nj} = \gamma_j \hat x_{nj} + \beta_j,$$
//! so it behaves the same in training and evaluation, needs no running statistics, and
//! works for a batch of one. The backward pass is batch norm's with the roles of the
//! axes exchanged: with $s_n = 1/\sqrt{\sigma_n^2+\epsilon}$ and
//! $g_{nj} = \gamma_j\,\partial L/\partial y_{nj}$,
//! $$\frac{\partial L}{\partial x_{nj}} = \frac{s_n}{D}\Big(D g_{nj} - \sum_k g_{nk} -
//!   \hat x_{nj}\sum_k g_{nk}\hat x_{nk}\Big),$$
//! while $\partial L/\partial\gamma_j = \sum_n \hat x_{nj}\,\partial L/\partial y_{nj}$
//! and $\partial L/\partial\beta_j = \sum_n \partial L/\partial y_{nj}$ still sum over
//! the batch.

use ndarray::{Array1, Array2, ArrayD, Axis, Ix1, Ix2};

use super::{join, Layer, Mode, Module, Param};

// ANCHOR: layernorm
/// Layer normalization of `(N, D)` activations, example by example.
///
/// # Shapes
/// - input `x`: `(N, D)`;
/// - output: `(N, D)`;
/// - parameters `gamma`, `beta`: `(D,)`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale $\gamma$, initialised to ones.
    pub gamma: Param,
    /// Shift $\beta$, initialised to zeros.
    pub beta: Param,
    /// $\epsilon$ added to the variance.
    pub eps: f32,
    /// $\hat x$ `(N, D)` and $s$ `(N,)` of the last forward.
    cache: Option<(Array2<f32>, Array1<f32>)>,
}

impl LayerNorm {
    /// Layer norm over `d` features, $\gamma = 1$, $\beta = 0$, $\epsilon = 10^{-5}$.
    pub fn new(d: usize) -> Self {
        LayerNorm {
            gamma: Param::new(ArrayD::ones(vec![d])),
            beta: Param::new(ArrayD::zeros(vec![d])),
            eps: 1e-5,
            cache: None,
        }
    }
}

impl Module for LayerNorm {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "gamma"), &mut self.gamma);
        f(&join(prefix, "beta"), &mut self.beta);
    }
}

impl Layer for LayerNorm {
    fn forward(&mut self, x: &ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let d = self.gamma.value.len();
        let x = x
            .view()
            .into_dimensionality::<Ix2>()
            .ok()
            .filter(|x| x.ncols() == d)
            .unwrap_or_else(|| {
                panic!("layer norm over {d} features got {:?}", x.shape())
            });
        let mean = x.mean_axis(Axis(1)).expect("D >= 1").insert_axis(Axis(1)); // (N, 1)
        let var = x.var_axis(Axis(1), 0.0); // (N,)
        let inv_std = var.mapv(|v| 1.0 / (v + self.eps).sqrt());
        let x_hat = (&x - &mean) * inv_std.view().insert_axis(Axis(1));
        let gamma = self
            .gamma
            .value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("1-D");
        let beta = self
            .beta
            .value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("1-D");
        let y = &x_hat * &gamma + beta;
        self.cache = Some((x_hat, inv_std));
        y.into_dyn()
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let (x_hat, inv_std) = self.cache.as_ref().expect("backward before forward");
        let dy = dy
            .view()
            .into_dimensionality::<Ix2>()
            .ok()
            .filter(|d| d.dim() == x_hat.dim())
            .unwrap_or_else(|| {
                panic!(
                    "layer norm backward: dy {:?} vs y {:?}",
                    dy.shape(),
                    x_hat.dim()
                )
            });
        let d = x_hat.ncols() as f32;
        let gamma = self
            .gamma
            .value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("1-D");
        // ANCHOR: layernorm_backward
        let dbeta = dy.sum_axis(Axis(0));
        let dgamma = (&dy * x_hat).sum_axis(Axis(0));
        let g = &dy * &gamma; // dL/dx_hat, (N, D)
        let sum_g = g.sum_axis(Axis(1)).insert_axis(Axis(1)); // (N, 1)
        let sum_gx = (&g * x_hat).sum_axis(Axis(1)).insert_axis(Axis(1)); // (N, 1)
        let s = (inv_std / d).insert_axis(Axis(1)); // (N, 1)
        let dx = (&g * d - &sum_g - x_hat * &sum_gx) * &s;
        // ANCHOR_END: layernorm_backward
        self.gamma.grad += &dgamma.into_dyn();
        self.beta.grad += &dbeta.into_dyn();
        dx.into_dyn()
    }
}
// ANCHOR_END: layernorm
