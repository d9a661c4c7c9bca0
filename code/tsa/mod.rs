//! Classical time-series analysis: stationarity tests, the ACF and PACF, ARIMA and
//! seasonal ARIMA by exact maximum likelihood, order selection and residual checks.
//!
//! - [`acf`](mod@acf): autocovariances, the ACF with Bartlett's band, the PACF by
//!   Yule-Walker and by Durbin-Levinson.
//! - [`stationarity`]: the augmented Dickey-Fuller test with MacKinnon's p-values and
//!   critical values, and KPSS.
//! - [`arima`]: (seasonal) ARIMA by conditional sum of squares and by exact maximum
//!   likelihood through a Kalman filter, with standard errors and forecasts.
//! - [`optimize`]: BFGS with numerical gradients, the optimiser under the fits.
//! - [`select`]: the order search by AIC and BIC.
//! - [`diagnostics`]: the Ljung-Box test on residuals.
//!
//! Everything is `f64` on plain slices: these series have hundreds of values, not
//! millions.

pub mod acf;
pub mod arima;
pub mod diagnostics;
pub mod optimize;
pub mod select;
pub mod stationarity;

pub use acf::{acf, acovf, bartlett_band, pacf_durbin_levinson, pacf_yule_walker};
pub use arima::{Arima, ArimaFit, Method, Order, Trend, TsaForecast};
pub use diagnostics::{ljung_box, LjungBox};
pub use optimize::{bfgs, Minimum};
pub use select::{best_by, order_search, SearchRow};
pub use stationarity::{adf, kpss, mackinnon_crit, mackinnon_p, Adf, Kpss, Regression};

/// Solves the dense `n x n` system `a x = b` (row-major `a`) by Gaussian elimination with
/// partial pivoting; `None` if `a` is singular to working precision.
pub(crate) fn linsolve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    assert_eq!(
        a.len(),
        n * n,
        "linsolve: a has {} entries for n = {n}",
        a.len()
    );
    assert_eq!(
        b.len(),
        n,
        "linsolve: b has {} entries for n = {n}",
        b.len()
    );
    let scale = a
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for c in 0..n {
        let p =
            (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))?;
        if a[p * n + c].abs() <= 1e-13 * scale {
            return None;
        }
        if p != c {
            for k in 0..n {
                a.swap(c * n + k, p * n + k);
            }
            b.swap(c, p);
        }
        for r in c + 1..n {
            let f = a[r * n + c] / a[c * n + c];
            if f != 0.0 {
                for k in c..n {
                    a[r * n + k] -= f * a[c * n + k];
                }
                b[r] -= f * b[c];
            }
        }
    }
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|k| a[c * n + k] * b[k]).sum();
        b[c] = (b[c] - s) / a[c * n + c];
    }
    Some(b)
}

/// The inverse of a dense `n x n` matrix, or `None` if it is singular.
pub(crate) fn invert(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut out = vec![0.0; n * n];
    for j in 0..n {
        let mut e = vec![0.0; n];
        e[j] = 1.0;
        let col = linsolve(a.to_vec(), e, n)?;
        for i in 0..n {
            out[i * n + j] = col[i];
        }
    }
    Some(out)
}

/// The regularised lower incomplete gamma $P(a, x)$ (series below $a+1$, Lentz's
/// continued fraction above; relative error near 1e-14).
pub(crate) fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let lg = crate::bayes::ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        sum * (-x + a * x.ln() - lg).exp()
    } else {
        1.0 - gamma_q_cf(a, x, lg)
    }
}

fn gamma_q_cf(a: f64, x: f64, lg: f64) -> f64 {
    let tiny = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / tiny;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..1000 {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < tiny {
            d = tiny;
        }
        c = b + an / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x + a * x.ln() - lg).exp() * h
}

/// The upper tail $P(\chi^2_k > x)$.
pub(crate) fn chi2_sf(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let lg = crate::bayes::ln_gamma(k / 2.0);
    if x / 2.0 < k / 2.0 + 1.0 {
        1.0 - gamma_p(k / 2.0, x / 2.0)
    } else {
        gamma_q_cf(k / 2.0, x / 2.0, lg)
    }
}

/// The standard normal CDF $\Phi(z)$, through $\mathrm{erf}$ as an incomplete gamma.
pub(crate) fn norm_cdf(z: f64) -> f64 {
    // erf(|z|/sqrt 2) = P(1/2, z^2/2).
    let half = 0.5 * gamma_p(0.5, z * z / 2.0);
    if z >= 0.0 {
        0.5 + half
    } else {
        0.5 - half
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_functions_hit_known_values() {
        assert!((norm_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-12);
        assert!((norm_cdf(-1.0) - 0.158_655_253_931_457_05).abs() < 1e-12);
        // chi2(2) has survival exp(-x/2).
        assert!((chi2_sf(3.0, 2.0) - (-1.5f64).exp()).abs() < 1e-12);
        assert!((chi2_sf(30.0, 2.0) - (-15.0f64).exp()).abs() < 1e-18);
    }

    #[test]
    fn linsolve_solves_and_refuses_singular() {
        let x = linsolve(vec![2.0, 1.0, 1.0, 3.0], vec![3.0, 5.0], 2).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
        assert!(linsolve(vec![1.0, 2.0, 2.0, 4.0], vec![1.0, 1.0], 2).is_none());
    }
}
