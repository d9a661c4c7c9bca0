//! The Ljung-Box test: are a model's residuals white noise?
//!
//! $Q = n(n+2)\sum_{k=1}^{h}\hat\rho_k^2/(n-k)$ is approximately $\chi^2_{h-m}$ when the
//! residuals of a model with $m$ fitted ARMA coefficients are uncorrelated; a small
//! p-value says some autocorrelation is left for the model to explain.

use anyhow::{bail, Result};
use serde::Serialize;

use super::{acf, chi2_sf};

/// The Ljung-Box statistic at one lag count.
#[derive(Clone, Debug, Serialize)]
pub struct LjungBox {
    /// Lags summed, $h$.
    pub lags: usize,
    /// The statistic $Q$.
    pub stat: f64,
    /// $P(\chi^2_{h-m} > Q)$.
    pub pvalue: f64,
}

// ANCHOR: ljung_box
/// Ljung-Box at `lags`, with `model_df` fitted coefficients subtracted from the degrees
/// of freedom (0 gives statsmodels' default `model_df=0`).
///
/// An error if `lags` is 0, not below the residual count, or not above `model_df`.
pub fn ljung_box(resid: &[f64], lags: usize, model_df: usize) -> Result<LjungBox> {
    let n = resid.len();
    if lags == 0 || lags >= n || lags <= model_df {
        bail!(
            "Ljung-Box at {lags} lags of {n} residuals with {model_df} fitted \
             coefficients: need model_df < lags < n"
        );
    }
    let r = acf(resid, lags);
    let q = n as f64
        * (n as f64 + 2.0)
        * (1..=lags)
            .map(|k| r[k] * r[k] / (n - k) as f64)
            .sum::<f64>();
    Ok(LjungBox {
        lags,
        stat: q,
        pvalue: chi2_sf(q, (lags - model_df) as f64),
    })
}
// ANCHOR_END: ljung_box
