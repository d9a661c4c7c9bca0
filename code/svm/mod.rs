//! Support vector machines (chapter 12.2): the soft-margin classifier trained by SMO
//! with libsvm's second-order working-set selection, linear / polynomial / RBF kernels
//! with an LRU kernel-row cache, one-vs-one multi-class voting as libsvm and
//! scikit-learn's `SVC` do it, and grid search over `C x gamma` by stratified k-fold.
//!
//! The shape is linfa's: the unfitted [`Svc`] holds hyper-parameters, [`Svc::fit`]
//! returns a [`FittedSvc`], and only the fitted model predicts.

pub mod kernel;
pub mod multiclass;
pub mod select;
pub mod smo;

use anyhow::{bail, Result};
use ndarray::Array2;
use serde::Serialize;

pub use kernel::Kernel;
pub use multiclass::{FittedSvc, PairModel};
pub use select::{grid_search, GridSearch};

/// Which kernel, before its `gamma` is resolved against the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KernelKind {
    /// `x . z`.
    Linear,
    /// `(gamma x . z + coef0)^degree`.
    Poly,
    /// `exp(-gamma ||x - z||^2)`.
    Rbf,
}

/// The kernel width `gamma` (ignored by the linear kernel).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Gamma {
    /// scikit-learn's default `"scale"`: `1 / (F * Var(X))`, the variance over every
    /// entry of the training matrix, so `gamma ||x - z||^2` is of order one whatever the
    /// units of the features.
    Scale,
    /// `1 / F`.
    Auto,
    /// A given value, > 0.
    Value(f64),
}

/// The unfitted C-support-vector classifier.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Svc {
    /// Box constraint: the price of a unit of margin violation (> 0).
    pub c: f64,
    /// The kernel.
    pub kernel: KernelKind,
    /// The kernel width of the polynomial and RBF kernels.
    pub gamma: Gamma,
    /// Degree of the polynomial kernel (>= 1).
    pub degree: u32,
    /// Constant of the polynomial kernel.
    pub coef0: f64,
    /// Stopping tolerance on the maximal KKT violation (libsvm's `eps`, > 0).
    pub eps: f64,
    /// Kernel-row cache per binary problem, in megabytes (> 0).
    pub cache_mb: f64,
}

impl Default for Svc {
    /// scikit-learn's `SVC()` defaults: C = 1, RBF, gamma = "scale", degree 3, coef0 0,
    /// tol 1e-3, 200 MB of cache.
    fn default() -> Self {
        Svc {
            c: 1.0,
            kernel: KernelKind::Rbf,
            gamma: Gamma::Scale,
            degree: 3,
            coef0: 0.0,
            eps: 1e-3,
            cache_mb: 200.0,
        }
    }
}

impl Svc {
    /// An RBF classifier with the given `C` and `gamma`, other settings default.
    pub fn rbf(c: f64, gamma: Gamma) -> Svc {
        Svc {
            c,
            gamma,
            ..Svc::default()
        }
    }

    /// The kernel with `gamma` resolved on the training rows `x` `(N, F)`.
    pub fn resolve_kernel(&self, x: &Array2<f64>) -> Result<Kernel> {
        let gamma = match self.gamma {
            // ANCHOR: gamma_scale
            Gamma::Scale => {
                let var = x.var(0.0);
                if var > 0.0 {
                    1.0 / (x.ncols() as f64 * var)
                } else {
                    1.0
                }
            }
            // ANCHOR_END: gamma_scale
            Gamma::Auto => 1.0 / x.ncols() as f64,
            Gamma::Value(g) => {
                if !(g > 0.0 && g.is_finite()) {
                    bail!("gamma = {g}: it must be a positive finite number");
                }
                g
            }
        };
        Ok(match self.kernel {
            KernelKind::Linear => Kernel::Linear,
            KernelKind::Poly => Kernel::Poly {
                gamma,
                coef0: self.coef0,
                degree: self.degree,
            },
            KernelKind::Rbf => Kernel::Rbf { gamma },
        })
    }

    /// Fits one-vs-one on `x` `(N, F)` with class labels `y` `(N,)`.
    ///
    /// Errors on bad hyper-parameters (C, eps or cache <= 0, degree 0, gamma <= 0),
    /// fewer than two classes, no rows, or non-finite features. Panics if `y` does not
    /// have one label per row.
    pub fn fit(&self, x: &Array2<f64>, y: &[usize]) -> Result<FittedSvc> {
        assert_eq!(
            x.nrows(),
            y.len(),
            "Svc::fit: {:?} rows with {} labels",
            x.shape(),
            y.len()
        );
        if !(self.c > 0.0 && self.c.is_finite()) {
            bail!("C = {}: it must be a positive finite number", self.c);
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            bail!(
                "eps = {}: the stopping tolerance must be positive",
                self.eps
            );
        }
        if !(self.cache_mb > 0.0 && self.cache_mb.is_finite()) {
            bail!("cache of {} MB: it must be positive", self.cache_mb);
        }
        if self.kernel == KernelKind::Poly && self.degree == 0 {
            bail!("polynomial degree 0: the kernel would be constant; use degree >= 1");
        }
        if x.nrows() == 0 || x.ncols() == 0 {
            bail!("no data to fit: {:?} rows", x.shape());
        }
        if x.iter().any(|v| !v.is_finite()) {
            bail!("the features hold NaN or infinite values: clean or impute them first");
        }
        let kernel = self.resolve_kernel(x)?;
        multiclass::fit_ovo(self, kernel, x, y)
    }
}
