//! Autocovariance, the ACF with Bartlett's band, and the PACF two ways.
//!
//! The sample autocovariance at lag $k$ divides by $n$ (the "biased" estimate, which
//! keeps the autocovariance matrix positive semi-definite):
//! $\hat\gamma_k = \frac1n\sum_{t=k}^{n-1}(x_t-\bar x)(x_{t-k}-\bar x)$, and
//! $\hat\rho_k = \hat\gamma_k/\hat\gamma_0$.
//!
//! The partial autocorrelation at lag $k$ is the last coefficient $\phi_{kk}$ of the best
//! linear predictor of $x_t$ from $x_{t-1},\dots,x_{t-k}$. Yule-Walker solves the
//! $k\times k$ Toeplitz system $\Gamma_k\phi = \gamma_{1..k}$ afresh for every $k$;
//! Durbin-Levinson gets the same numbers from the order-$(k-1)$ solution in $O(k)$:
//! $\phi_{kk} = \frac{\rho_k - \sum_{j<k}\phi_{k-1,j}\rho_{k-j}}
//! {1-\sum_{j<k}\phi_{k-1,j}\rho_j}$,
//! $\phi_{k,j} = \phi_{k-1,j} - \phi_{kk}\phi_{k-1,k-j}$.

use super::linsolve;

/// Sample autocovariances $\hat\gamma_0..\hat\gamma_{nlags}$, divided by $n$ (or by
/// $n-k$ when `adjusted`).
///
/// Panics if `nlags >= x.len()`.
pub fn acovf(x: &[f64], nlags: usize, adjusted: bool) -> Vec<f64> {
    let n = x.len();
    assert!(nlags < n, "acovf: {nlags} lags of a series of {n} values");
    let mean = x.iter().sum::<f64>() / n as f64;
    let d: Vec<f64> = x.iter().map(|v| v - mean).collect();
    (0..=nlags)
        .map(|k| {
            let s: f64 = (k..n).map(|t| d[t] * d[t - k]).sum();
            s / if adjusted { (n - k) as f64 } else { n as f64 }
        })
        .collect()
}

// ANCHOR: acf
/// The sample autocorrelations $\hat\rho_0 = 1, \hat\rho_1, .., \hat\rho_{nlags}$.
pub fn acf(x: &[f64], nlags: usize) -> Vec<f64> {
    let g = acovf(x, nlags, false);
    g.iter().map(|v| v / g[0]).collect()
}

/// Bartlett's half-width of the 95 % band around $\hat\rho_k$ under the hypothesis that
/// the series is MA($k-1$): $z\sqrt{(1+2\sum_{j<k}\hat\rho_j^2)/n}$ (0 at lag 0).
pub fn bartlett_band(rho: &[f64], n: usize, z: f64) -> Vec<f64> {
    let mut out = vec![0.0; rho.len()];
    let mut cum = 0.0;
    for k in 1..rho.len() {
        out[k] = z * ((1.0 + 2.0 * cum) / n as f64).sqrt();
        cum += rho[k] * rho[k];
    }
    out
}
// ANCHOR_END: acf

// ANCHOR: pacf
/// PACF by Yule-Walker: one Toeplitz solve per lag; `adjusted` picks the $n-k$
/// autocovariance denominator (statsmodels' `method="yw"`), else $n$ (`"ywm"`).
pub fn pacf_yule_walker(x: &[f64], nlags: usize, adjusted: bool) -> Vec<f64> {
    let g = acovf(x, nlags, adjusted);
    let mut out = vec![1.0];
    for k in 1..=nlags {
        let a: Vec<f64> = (0..k * k).map(|ij| g[(ij / k).abs_diff(ij % k)]).collect();
        let phi = linsolve(a, g[1..=k].to_vec(), k).expect("a Toeplitz autocovariance");
        out.push(phi[k - 1]);
    }
    out
}

/// PACF by the Durbin-Levinson recursion on the biased autocovariances (statsmodels'
/// `method="ldb"`): equal to Yule-Walker with the $n$ denominator.
pub fn pacf_durbin_levinson(x: &[f64], nlags: usize) -> Vec<f64> {
    let r = acf(x, nlags);
    let mut out = vec![1.0];
    let mut phi: Vec<f64> = Vec::new();
    for k in 1..=nlags {
        let num = r[k] - (0..k - 1).map(|j| phi[j] * r[k - 1 - j]).sum::<f64>();
        let den = 1.0 - (0..k - 1).map(|j| phi[j] * r[j + 1]).sum::<f64>();
        let pkk = num / den;
        let prev = phi.clone();
        for j in 0..k - 1 {
            phi[j] = prev[j] - pkk * prev[k - 2 - j];
        }
        phi.push(pkk);
        out.push(pkk);
    }
    out
}
// ANCHOR_END: pacf

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yule_walker_and_durbin_levinson_agree() {
        let x: Vec<f64> = (0..60)
            .map(|t| (t as f64 * 0.7).sin() + 0.01 * t as f64)
            .collect();
        let a = pacf_yule_walker(&x, 10, false);
        let b = pacf_durbin_levinson(&x, 10);
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-10, "{u} vs {v}");
        }
    }

    #[test]
    fn acf_of_alternating_series_is_minus_one_ish() {
        let x: Vec<f64> = (0..100)
            .map(|t| if t % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let r = acf(&x, 2);
        assert!((r[1] + 0.99).abs() < 1e-12 && (r[2] - 0.98).abs() < 1e-12);
    }
}
