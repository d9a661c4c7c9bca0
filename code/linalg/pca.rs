//! Principal component analysis.
//!
//! # Two views of the same answer
//!
//! Let the rows of $X \in \mathbb{R}^{N\times d}$ be the samples, $\mu$ their mean, and
//! $X_c = X - \mathbf{1}\mu^\top$ the centred data, with sample covariance
//! $C = X_c^\top X_c / (N - 1) = V \Lambda V^\top$.
//!
//! *Maximum variance.* The variance of the data projected on a unit vector $w$ is
//! $w^\top C w$. Maximising it subject to $w^\top w = 1$ with a Lagrange multiplier,
//! $\nabla_w\,[w^\top C w - \lambda(w^\top w - 1)] = 0$ gives $C w = \lambda w$: the
//! stationary directions are eigenvectors, and the variance there is $\lambda$, so the
//! best is $v_1$. Repeating under the constraint $w \perp v_1, \dots, v_{j-1}$ gives
//! $v_j$. The variance captured by $k$ components is $\sum_{i \le k} \lambda_i$, and the
//! *explained variance ratio* is $\lambda_i / \operatorname{tr} C$.
//!
//! *Best rank-$k$ reconstruction.* Projecting each centred sample on the span of
//! $V_k = [v_1 \dots v_k]$ and mapping back, $\hat x = \mu + V_k V_k^\top (x - \mu)$,
//! leaves by Pythagoras a squared error
//! $\lVert x - \mu\rVert^2 - \lVert V_k^\top(x-\mu)\rVert^2$ per sample, and summed over
//! the data
//!
//! $$\sum_n \lVert x_n - \hat x_n \rVert^2 = (N-1) \sum_{i > k} \lambda_i .$$
//!
//! The Eckart–Young theorem says no rank-$k$ matrix is closer to $X_c$ in Frobenius norm
//! than this truncated SVD $X_c V_k V_k^\top$, so the two views agree: the directions of
//! maximal variance are the subspace of least reconstruction error.
//!
//! # Algorithm, and why
//!
//! [`Pca::fit`] forms $C$ in blocks of rows ($N d^2$ multiply-adds, a matrix product
//! that runs near the machine's peak), then diagonalises the $d \times d$ matrix $C$
//! ([`eigh_jacobi`], or LAPACK with [`Solver::Lapack`]). For MNIST, $N = 60\,000$ and
//! $d = 784$: the product is about $3.7\cdot10^{10}$ multiply-adds, and Jacobi on $C$
//! costs $O(d^3)$ per sweep whatever $N$ is. The alternative, the SVD of $X_c$ itself
//! (one-sided Jacobi on a $60\,000 \times 784$ matrix), costs about $3Nd^2$ multiply-adds
//! *per sweep*, ten times over: an order of magnitude more.
//!
//! The price of the covariance route is the squared condition number: eigenvalues of $C$
//! below about $\varepsilon\,\lambda_1$ are rounding noise (the SVD route would resolve
//! singular values down to $\varepsilon\,\sigma_1$). PCA keeps the *large* components,
//! whose relative accuracy is unaffected, so the trade is a good one here. Tiny negative
//! eigenvalues produced by rounding are reported as 0.
//!
//! Without centring ([`Pca::center`] `= false`) the same code diagonalises the second
//! moment matrix $X^\top X/(N-1)$: the first "component" then mostly points at the
//! mean, which is what the book's ablation shows.

use anyhow::{bail, Result};
use ndarray::{linalg::general_mat_mul, s, Array1, Array2, Axis};

use super::{eigh_jacobi, lapack, normalize_signs, Eigh};

/// Which eigensolver [`Pca::fit`] uses for the covariance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    /// The from-scratch [`eigh_jacobi`].
    #[default]
    Jacobi,
    /// LAPACK through `ndarray-linalg` ([`lapack::eigh`]).
    Lapack,
}

/// PCA hyper-parameters (the unfitted model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pca {
    /// Subtract the mean before finding directions (default `true`; `false` is an
    /// ablation, not a method to use).
    pub center: bool,
    /// The eigensolver.
    pub solver: Solver,
}

impl Default for Pca {
    fn default() -> Self {
        Pca {
            center: true,
            solver: Solver::Jacobi,
        }
    }
}

/// Rows of the data matrix processed per block when forming the covariance.
const BLOCK_ROWS: usize = 4096;

impl Pca {
    // ANCHOR: pca_fit
    /// Fits `n_components` principal components to the rows of `x`.
    ///
    /// # Shapes
    /// `x`: `(n_samples, n_features)`.
    ///
    /// # Errors
    /// If there are fewer than 2 samples, if `n_components` is 0 or more than
    /// `n_features`, or if `x` has a non-finite value (data, so not a panic).
    pub fn fit(&self, x: &Array2<f64>, n_components: usize) -> Result<FittedPca> {
        let d = x.ncols();
        if n_components == 0 || n_components > d {
            bail!(
                "n_components = {n_components} must be in 1..={d} (x has {d} features)"
            );
        }
        let (mean, cov) = covariance(x, self.center)?;
        let mut eig = match self.solver {
            Solver::Jacobi => eigh_jacobi(&cov),
            Solver::Lapack => lapack::eigh(&cov),
        };
        normalize_signs(&mut eig.vectors);
        Ok(FittedPca::from_eigh(mean, eig, n_components))
    }
    // ANCHOR_END: pca_fit
}

// ANCHOR: covariance
/// The mean of the rows of `x` (zeros if `!center`) and the matrix
/// $X_c^\top X_c / (N - 1)$, accumulated block by block so that the centred copy of `x`
/// never exists in full.
///
/// # Shapes
/// `x`: `(N, d)` -> mean `(d,)`, covariance `(d, d)`.
///
/// # Errors
/// If `x` has fewer than 2 rows or a non-finite value.
pub fn covariance(x: &Array2<f64>, center: bool) -> Result<(Array1<f64>, Array2<f64>)> {
    let (n, d) = x.dim();
    if n < 2 {
        bail!(
            "PCA needs at least 2 samples, got {n} (x has shape {:?})",
            x.dim()
        );
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        bail!(
            "x[{}, {}] is not finite: clean the data first",
            i / d,
            i % d
        );
    }
    let mean = if center {
        x.mean_axis(Axis(0)).expect("n >= 2")
    } else {
        Array1::zeros(d)
    };
    let mut cov = Array2::<f64>::zeros((d, d));
    for start in (0..n).step_by(BLOCK_ROWS) {
        let block = x.slice(s![start..(start + BLOCK_ROWS).min(n), ..]);
        let centred = &block - &mean.view().insert_axis(Axis(0)); // (rows, d)
        general_mat_mul(1.0, &centred.t(), &centred, 1.0, &mut cov);
    }
    cov /= (n - 1) as f64;
    Ok((mean, cov))
}
// ANCHOR_END: covariance

/// A fitted PCA: the mean and the top principal directions.
#[derive(Clone, Debug, PartialEq)]
pub struct FittedPca {
    mean: Array1<f64>,
    /// `(k, d)`: one unit direction per row.
    components: Array2<f64>,
    /// All `d` eigenvalues of the covariance, descending.
    spectrum: Array1<f64>,
    total_variance: f64,
}

impl FittedPca {
    /// A fit from the eigendecomposition of a covariance: keeps the first
    /// `n_components` eigenvectors as components, and the whole spectrum (negative
    /// rounding noise clipped to 0). The signs are taken as given.
    ///
    /// # Panics
    /// If the shapes of `mean` and `eig` disagree, or `n_components` is not in `1..=d`.
    pub fn from_eigh(mean: Array1<f64>, eig: Eigh, n_components: usize) -> FittedPca {
        let d = mean.len();
        assert!(
            eig.vectors.dim() == (d, d) && eig.values.len() == d,
            "from_eigh: mean of length {d} but eigenvectors of shape {:?}",
            eig.vectors.dim()
        );
        assert!(
            (1..=d).contains(&n_components),
            "from_eigh: n_components = {n_components} not in 1..={d}"
        );
        let total_variance = eig.values.sum();
        FittedPca {
            mean,
            components: eig.vectors.slice(s![.., ..n_components]).t().to_owned(),
            spectrum: eig.values.mapv(|l| l.max(0.0)),
            total_variance,
        }
    }

    /// The number of components kept, `k`.
    pub fn n_components(&self) -> usize {
        self.components.nrows()
    }

    /// The mean that was subtracted (zeros without centring), shape `(d,)`.
    pub fn mean(&self) -> &Array1<f64> {
        &self.mean
    }

    /// The principal directions, one unit vector per row, shape `(k, d)`; signs are
    /// normalised by [`normalize_signs`].
    pub fn components(&self) -> &Array2<f64> {
        &self.components
    }

    /// The variance along each kept direction, $\lambda_1 \dots \lambda_k$.
    pub fn explained_variance(&self) -> Array1<f64> {
        self.spectrum.slice(s![..self.n_components()]).to_owned()
    }

    /// $\lambda_i / \operatorname{tr} C$ for each kept direction.
    pub fn explained_variance_ratio(&self) -> Array1<f64> {
        self.explained_variance() / self.total_variance
    }

    /// All `d` eigenvalues of the covariance, descending, whether kept or not.
    pub fn spectrum(&self) -> &Array1<f64> {
        &self.spectrum
    }

    /// $\operatorname{tr} C = \sum_i \lambda_i$: the total variance, summed over
    /// features.
    pub fn total_variance(&self) -> f64 {
        self.total_variance
    }

    /// The same fit keeping only the first `k` components.
    ///
    /// # Panics
    /// If `k` is 0 or more than [`n_components`](Self::n_components).
    pub fn truncated(&self, k: usize) -> FittedPca {
        assert!(
            (1..=self.n_components()).contains(&k),
            "truncated({k}): this fit has {} components",
            self.n_components()
        );
        FittedPca {
            components: self.components.slice(s![..k, ..]).to_owned(),
            ..self.clone()
        }
    }

    // ANCHOR: pca_transform
    /// Coordinates of the rows of `x` along the components: $(x - \mu) V_k$.
    ///
    /// # Shapes
    /// `x`: `(n, d)` -> `(n, k)`.
    ///
    /// # Panics
    /// If `x` does not have `d` columns.
    pub fn transform(&self, x: &Array2<f64>) -> Array2<f64> {
        assert_eq!(
            x.ncols(),
            self.mean.len(),
            "transform: x has shape {:?}, the fit has {} features",
            x.dim(),
            self.mean.len()
        );
        let centred = x - &self.mean.view().insert_axis(Axis(0));
        centred.dot(&self.components.t()) // (n, d) x (d, k)
    }

    /// Points in data space from coordinates: $\mu + z V_k^\top$, the best rank-`k`
    /// reconstruction when `z = transform(x)`.
    ///
    /// # Shapes
    /// `z`: `(n, k)` -> `(n, d)`.
    ///
    /// # Panics
    /// If `z` does not have `k` columns.
    pub fn inverse_transform(&self, z: &Array2<f64>) -> Array2<f64> {
        assert_eq!(
            z.ncols(),
            self.n_components(),
            "inverse_transform: z has shape {:?}, the fit has {} components",
            z.dim(),
            self.n_components()
        );
        z.dot(&self.components) + self.mean.view().insert_axis(Axis(0))
    }
    // ANCHOR_END: pca_transform
}
