//! Batch normalization over the batch axis of `(N, D)` activations.
//!
//! # Forward
//!
//! In training, each feature $j$ is normalised with the statistics of the batch,
//! $$\mu_j = \frac1N\sum_n x_{nj}, \quad \sigma_j^2 = \frac1N\sum_n (x_{nj}-\mu_j)^2,
//!   \quad \hat x_{nj} = \frac{x_{nj}-\mu_j}{\sqrt{\sigma_j^2+\epsilon}},
//!   \quad y_{nj} = \gamma_j \hat x_{nj} + \beta_j,$$
//! and running averages $\bar\mu \leftarrow (1-\alpha)\bar\mu + \alpha\mu$,
//! $\bar\sigma^2 \leftarrow (1-\alpha)\bar\sigma^2 + \alpha\frac{N}{N-1}\sigma^2$
//! (the unbiased variance, as PyTorch does) are kept for evaluation, where
//! $\hat x = (x - \bar\mu)/\sqrt{\bar\sigma^2 + \epsilon}$: the output of one example
//! then no longer depends on the rest of its batch.
//!
//! # Backward
//!
//! With $s_j = 1/\sqrt{\sigma_j^2+\epsilon}$ and $g_{nj} = \gamma_j\,\partial L/\partial
//! y_{nj}$ the gradient with respect to $\hat x$:
//! $\partial L/\partial\beta_j = \sum_n \partial L/\partial y_{nj}$,
//! $\partial L/\partial\gamma_j = \sum_n \hat x_{nj}\,\partial L/\partial y_{nj}$. Every
//! $x_{nj}$ moves $\hat x_{nj}$ directly and, through $\mu_j$ and $\sigma_j$, every other
//! $\hat x_{mj}$ of its column. Using $\partial\mu_j/\partial x_{nj} = 1/N$ and
//! $\partial\sigma_j^2/\partial x_{nj} = 2(x_{nj}-\mu_j)/N$, the three paths sum to
//! $$\frac{\partial L}{\partial x_{nj}} = \frac{s_j}{N}\Big(N g_{nj} - \sum_m g_{mj} -
//!   \hat x_{nj}\sum_m g_{mj}\hat x_{mj}\Big).$$
//! The two subtracted terms project $g$ away from the constant and $\hat x$ directions:
//! shifting or scaling a column of $x$ does not change $\hat x$, so it cannot change
//! the loss. In evaluation mode the statistics are constants and
//! $\partial L/\partial x_{nj} = s_j\, g_{nj}$.

use ndarray::{Array1, Array2, ArrayD, Axis, Ix2};

use super::{join, Layer, Mode, Module, Param};

// ANCHOR: batchnorm
/// Batch normalization of `(N, D)` activations, feature by feature.
///
/// # Shapes
/// - input `x`: `(N, D)`, `N >= 2` in training;
/// - output: `(N, D)`;
/// - parameters `gamma`, `beta`: `(D,)`.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale $\gamma$, initialised to ones.
    pub gamma: Param,
    /// Shift $\beta$, initialised to zeros.
    pub beta: Param,
    /// Running mean $\bar\mu$, used in evaluation.
    pub running_mean: Array1<f32>,
    /// Running (unbiased) variance $\bar\sigma^2$, used in evaluation.
    pub running_var: Array1<f32>,
    /// Weight $\alpha$ of the new batch in the running averages.
    pub momentum: f32,
    /// $\epsilon$ added to the variance.
    pub eps: f32,
    /// $\hat x$, $s = 1/\sqrt{\sigma^2+\epsilon}$ and the mode of the last forward.
    cache: Option<(Array2<f32>, Array1<f32>, Mode)>,
}

impl BatchNorm {
    /// Batch norm over `d` features, $\gamma = 1$, $\beta = 0$, momentum 0.1,
    /// $\epsilon = 10^{-5}$.
    pub fn new(d: usize) -> Self {
        BatchNorm {
            gamma: Param::new(ArrayD::ones(vec![d])),
            beta: Param::new(ArrayD::zeros(vec![d])),
            running_mean: Array1::zeros(d),
            running_var: Array1::ones(d),
            momentum: 0.1,
            eps: 1e-5,
            cache: None,
        }
    }

    fn gamma_beta(&self) -> (Array1<f32>, Array1<f32>) {
        let g = self
            .gamma
            .value
            .view()
            .into_dimensionality()
            .expect("gamma is 1-D");
        let b = self
            .beta
            .value
            .view()
            .into_dimensionality()
            .expect("beta is 1-D");
        (g.to_owned(), b.to_owned())
    }
}

impl Module for BatchNorm {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "gamma"), &mut self.gamma);
        f(&join(prefix, "beta"), &mut self.beta);
    }

    fn visit_buffers(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>),
    ) {
        f(
            &join(prefix, "running_mean"),
            self.running_mean.view_mut().into_dyn(),
        );
        f(
            &join(prefix, "running_var"),
            self.running_var.view_mut().into_dyn(),
        );
    }
}

impl Layer for BatchNorm {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let d = self.running_mean.len();
        let x = x
            .view()
            .into_dimensionality::<Ix2>()
            .ok()
            .filter(|x| x.ncols() == d)
            .unwrap_or_else(|| {
                panic!("batch norm over {d} features got {:?}", x.shape())
            });
        let n = x.nrows();
        let (mean, var) = match mode {
            Mode::Train => {
                assert!(
                    n >= 2,
                    "batch norm in training needs N >= 2, got {:?}",
                    x.shape()
                );
                let mean = x.mean_axis(Axis(0)).expect("N >= 2");
                let var = x.var_axis(Axis(0), 0.0);
                let a = self.momentum;
                let unbiased = &var * (n as f32 / (n as f32 - 1.0));
                self.running_mean = &self.running_mean * (1.0 - a) + &mean * a;
                self.running_var = &self.running_var * (1.0 - a) + unbiased * a;
                (mean, var)
            }
            Mode::Eval => (self.running_mean.clone(), self.running_var.clone()),
        };
        let inv_std = var.mapv(|v| 1.0 / (v + self.eps).sqrt());
        let x_hat = (&x - &mean) * &inv_std; // (N, D), broadcasting (D,)
        let (gamma, beta) = self.gamma_beta();
        let y = &x_hat * &gamma + &beta;
        self.cache = Some((x_hat, inv_std, mode));
        y.into_dyn()
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let (x_hat, inv_std, mode) =
            self.cache.as_ref().expect("backward before forward");
        let dy = dy
            .view()
            .into_dimensionality::<Ix2>()
            .ok()
            .filter(|d| d.dim() == x_hat.dim())
            .unwrap_or_else(|| {
                panic!(
                    "batch norm backward: dy {:?} vs y {:?}",
                    dy.shape(),
                    x_hat.dim()
                )
            });
        let n = x_hat.nrows() as f32;
        let (gamma, _) = self.gamma_beta();
        // ANCHOR: batchnorm_backward
        let dbeta = dy.sum_axis(Axis(0));
        let dgamma = (&dy * x_hat).sum_axis(Axis(0));
        let g = &dy * &gamma; // dL/dx_hat, (N, D)
        let dx = if *mode == Mode::Train {
            let sum_g = g.sum_axis(Axis(0)); // (D,)
            let sum_gx = (&g * x_hat).sum_axis(Axis(0)); // (D,)
            (&g * n - &sum_g - x_hat * &sum_gx) * &(inv_std / n)
        } else {
            &g * inv_std
        };
        // ANCHOR_END: batchnorm_backward
        self.gamma.grad += &dgamma.into_dyn();
        self.beta.grad += &dbeta.into_dyn();
        dx.into_dyn()
    }
}
// ANCHOR_END: batchnorm
