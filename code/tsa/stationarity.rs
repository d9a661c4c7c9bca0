//! Unit-root and stationarity tests: augmented Dickey-Fuller and KPSS.
//!
//! **ADF.** Regress the first difference on the lagged level, deterministic terms and
//! $k$ lagged differences,
//! $\Delta x_t = \alpha + \gamma x_{t-1} + \sum_{j=1}^{k}\beta_j\Delta x_{t-j} + e_t$.
//! A unit root means $\gamma = 0$; the statistic is the OLS $t$-ratio of $\hat\gamma$,
//! whose null distribution is not Student's $t$ but the Dickey-Fuller distribution,
//! tabulated by MacKinnon's response surfaces: p-values from a normal CDF of a
//! polynomial in the statistic (MacKinnon 1994), critical values as a cubic in $1/n$
//! (MacKinnon 2010). The lag count $k$ is chosen, as statsmodels' `autolag="AIC"`
//! does, by the smallest AIC among $k = 0..k_{\max}$ with
//! $k_{\max} = \lceil 12 (n/100)^{1/4}\rceil$, all fitted on the *same* rows (those the
//! largest $k$ leaves) so their AICs compare; the chosen $k$ is then refitted on every
//! row it allows.
//!
//! **KPSS** swaps the hypotheses: the null is stationarity around a level (or a trend).
//! With residuals $e_t$ from the mean and partial sums $S_t$, the statistic is
//! $\eta = \sum_t S_t^2 / (n^2\hat\sigma^2_\ell)$ where $\hat\sigma^2_\ell$ is the
//! Newey-West long-run variance with Bartlett weights over $\ell$ lags (chosen by Hobijn,
//! Franses and Ooms' rule); p-values are interpolated in Kwiatkowski et al.'s table and
//! clamped at its ends (0.01 and 0.10).

use anyhow::{bail, Result};
use serde::Serialize;

use super::{invert, norm_cdf};

/// The deterministic terms of the test regression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Regression {
    /// No constant (statsmodels' `"n"`).
    None,
    /// A constant (`"c"`).
    Constant,
    /// A constant and a linear trend (`"ct"`).
    ConstantTrend,
}

impl Regression {
    fn n_terms(self) -> usize {
        match self {
            Regression::None => 0,
            Regression::Constant => 1,
            Regression::ConstantTrend => 2,
        }
    }
}

/// The outcome of an augmented Dickey-Fuller test.
#[derive(Clone, Debug, Serialize)]
pub struct Adf {
    /// The $t$-ratio of the lagged level.
    pub stat: f64,
    /// MacKinnon's approximate p-value.
    pub pvalue: f64,
    /// The number of lagged differences used.
    pub lags: usize,
    /// The rows of the final regression.
    pub nobs: usize,
    /// Critical values at 1 %, 5 % and 10 %.
    pub crit: [f64; 3],
    /// The smallest AIC of the lag search.
    pub icbest: f64,
}

/// An OLS fit: coefficients' standard errors and the Gaussian AIC.
struct Ols {
    beta: Vec<f64>,
    se: Vec<f64>,
    aic: f64,
}

/// OLS of `y` on the columns of `x` (row-major, `k` columns) by the normal equations:
/// at most a few dozen columns of well-scaled regressors here.
fn ols(x: &[f64], y: &[f64], k: usize) -> Option<Ols> {
    let n = y.len();
    let mut xtx = vec![0.0; k * k];
    let mut xty = vec![0.0; k];
    for r in 0..n {
        let row = &x[r * k..(r + 1) * k];
        for i in 0..k {
            xty[i] += row[i] * y[r];
            for j in 0..k {
                xtx[i * k + j] += row[i] * row[j];
            }
        }
    }
    let inv = invert(&xtx, k)?;
    let beta: Vec<f64> = (0..k)
        .map(|i| (0..k).map(|j| inv[i * k + j] * xty[j]).sum())
        .collect();
    let ssr: f64 = (0..n)
        .map(|r| {
            let fit: f64 = (0..k).map(|i| x[r * k + i] * beta[i]).sum();
            (y[r] - fit).powi(2)
        })
        .sum();
    let s2 = ssr / (n - k) as f64;
    let se = (0..k).map(|i| (s2 * inv[i * k + i]).sqrt()).collect();
    let llf = -(n as f64) / 2.0
        * ((2.0 * std::f64::consts::PI).ln() + (ssr / n as f64).ln() + 1.0);
    Some(Ols {
        beta,
        se,
        aic: -2.0 * llf + 2.0 * k as f64,
    })
}

/// The ADF regression with `lags` lagged differences on the rows from `start` (an index
/// into the differences): column 0 the lagged level, then the deterministic terms, then
/// the lags.
fn adf_design(
    x: &[f64],
    start: usize,
    lags: usize,
    reg: Regression,
) -> (Vec<f64>, Vec<f64>) {
    let dx: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let k = 1 + reg.n_terms() + lags;
    let mut design = Vec::with_capacity((dx.len() - start) * k);
    let mut y = Vec::with_capacity(dx.len() - start);
    for (row, t) in (start..dx.len()).enumerate() {
        y.push(dx[t]);
        design.push(x[t]);
        if reg != Regression::None {
            design.push(1.0);
        }
        if reg == Regression::ConstantTrend {
            design.push((row + 1) as f64);
        }
        design.extend((1..=lags).map(|j| dx[t - j]));
    }
    (design, y)
}

// ANCHOR: adf
/// The augmented Dickey-Fuller test with the lag count chosen by AIC (up to `max_lags`,
/// by default $\lceil 12(n/100)^{1/4}\rceil$ capped at $n/2 - $ terms $- 1$).
///
/// An error if the series is too short for the regression or constant.
pub fn adf(x: &[f64], reg: Regression, max_lags: Option<usize>) -> Result<Adf> {
    let n = x.len();
    let cap = (n / 2).checked_sub(reg.n_terms() + 1);
    let Some(cap) = cap.filter(|_| n >= 6) else {
        bail!("ADF needs a longer series: {n} values");
    };
    let max_lags = match max_lags {
        Some(m) if m > cap => bail!("ADF: max_lags {m} exceeds n/2 - terms - 1 = {cap}"),
        Some(m) => m,
        None => ((12.0 * (n as f64 / 100.0).powf(0.25)).ceil() as usize).min(cap),
    };
    let ic = |lags: usize, start: usize| -> Result<Ols> {
        let (design, y) = adf_design(x, start, lags, reg);
        ols(&design, &y, 1 + reg.n_terms() + lags).ok_or_else(|| {
            anyhow::anyhow!("ADF: the regression is singular (a constant series?)")
        })
    };
    // The same rows for every candidate, so that their AICs are comparable.
    let mut best = (f64::INFINITY, 0);
    for lags in 0..=max_lags {
        let aic = ic(lags, max_lags)?.aic;
        if aic < best.0 {
            best = (aic, lags);
        }
    }
    let lags = best.1;
    let fit = ic(lags, lags)?;
    let stat = fit.beta[0] / fit.se[0];
    let nobs = n - 1 - lags;
    Ok(Adf {
        stat,
        pvalue: mackinnon_p(stat, reg),
        lags,
        nobs,
        crit: mackinnon_crit(reg, nobs),
        icbest: best.0,
    })
}
// ANCHOR_END: adf

// ANCHOR: mackinnon
/// MacKinnon's (1994) approximate p-value of a Dickey-Fuller $t$ statistic (one
/// integrated variable): $\Phi(c_0 + c_1\tau + c_2\tau^2[+c_3\tau^3])$, with one
/// polynomial below $\tau^*$ and another above, 0 or 1 beyond the table's range.
pub fn mackinnon_p(tau: f64, reg: Regression) -> f64 {
    let (max, min, star, small, large): (f64, f64, f64, [f64; 3], [f64; 4]) = match reg {
        Regression::None => (
            f64::INFINITY,
            -19.04,
            -1.04,
            [0.6344, 1.2378, 0.032496],
            [0.4797, 0.93557, -0.06999, 0.033066],
        ),
        Regression::Constant => (
            2.74,
            -18.83,
            -1.61,
            [2.1659, 1.4412, 0.038269],
            [1.7339, 0.93202, -0.12745, -0.010368],
        ),
        Regression::ConstantTrend => (
            0.7,
            -16.18,
            -2.89,
            [3.2512, 1.6047, 0.049588],
            [2.5261, 0.61654, -0.37956, -0.060285],
        ),
    };
    if tau > max {
        return 1.0;
    }
    if tau < min {
        return 0.0;
    }
    let poly = |c: &[f64]| c.iter().rev().fold(0.0, |acc, &ci| acc * tau + ci);
    norm_cdf(if tau <= star {
        poly(&small)
    } else {
        poly(&large)
    })
}

/// MacKinnon's (2010) critical values at 1 %, 5 % and 10 % for a regression on `nobs`
/// rows: $c_0 + c_1/n + c_2/n^2 + c_3/n^3$.
pub fn mackinnon_crit(reg: Regression, nobs: usize) -> [f64; 3] {
    let table: [[f64; 4]; 3] = match reg {
        Regression::None => [
            [-2.56574, -2.2358, -3.627, 0.0],
            [-1.941, -0.2686, -3.365, 31.223],
            [-1.61682, 0.2656, -2.714, 25.364],
        ],
        Regression::Constant => [
            [-3.43035, -6.5393, -16.786, -79.433],
            [-2.86154, -2.8903, -4.234, -40.04],
            [-2.56677, -1.5384, -2.809, 0.0],
        ],
        Regression::ConstantTrend => [
            [-3.95877, -9.0531, -28.428, -134.155],
            [-3.41049, -4.3904, -9.036, -45.374],
            [-3.12705, -2.5856, -3.925, -22.38],
        ],
    };
    let u = 1.0 / nobs as f64;
    table.map(|c| c[0] + u * (c[1] + u * (c[2] + u * c[3])))
}
// ANCHOR_END: mackinnon

/// The outcome of a KPSS test.
#[derive(Clone, Debug, Serialize)]
pub struct Kpss {
    /// The statistic $\eta$.
    pub stat: f64,
    /// The p-value interpolated in the table, clamped to [0.01, 0.10].
    pub pvalue: f64,
    /// The Newey-West lags used.
    pub lags: usize,
}

// ANCHOR: kpss
/// The KPSS test of (level or trend) stationarity with the automatic lag rule.
///
/// An error for fewer than 4 values or a [`Regression::None`] request (KPSS always
/// removes at least a level).
pub fn kpss(x: &[f64], reg: Regression) -> Result<Kpss> {
    let n = x.len();
    if n < 4 {
        bail!("KPSS needs at least 4 values, got {n}");
    }
    let (resid, crit) = match reg {
        Regression::None => bail!("KPSS tests stationarity around a level or a trend"),
        Regression::Constant => {
            let m = x.iter().sum::<f64>() / n as f64;
            (
                x.iter().map(|v| v - m).collect::<Vec<_>>(),
                [0.347, 0.463, 0.574, 0.739],
            )
        }
        Regression::ConstantTrend => {
            let design: Vec<f64> = (0..n).flat_map(|t| [1.0, (t + 1) as f64]).collect();
            let b = ols(&design, x, 2)
                .expect("a trend regression on 4+ rows")
                .beta;
            let r = (0..n)
                .map(|t| x[t] - b[0] - b[1] * (t + 1) as f64)
                .collect();
            (r, [0.119, 0.146, 0.176, 0.216])
        }
    };
    let dot = |i: usize| (i..n).map(|t| resid[t] * resid[t - i]).sum::<f64>();
    // Hobijn, Franses and Ooms' automatic lag count.
    let covlags = (n as f64).powf(2.0 / 9.0) as usize;
    let (mut s0, mut s1) = (dot(0) / n as f64, 0.0);
    for i in 1..=covlags {
        let p = dot(i) / (n as f64 / 2.0);
        s0 += p;
        s1 += i as f64 * p;
    }
    let s_hat = s1 / s0;
    let gamma = 1.1447 * (s_hat * s_hat).powf(1.0 / 3.0);
    let lags = ((gamma * (n as f64).powf(1.0 / 3.0)) as usize).min(n - 1);
    let mut lrv = dot(0);
    for i in 1..=lags {
        lrv += 2.0 * dot(i) * (1.0 - i as f64 / (lags as f64 + 1.0));
    }
    lrv /= n as f64;
    let mut s = 0.0;
    let eta = resid
        .iter()
        .map(|e| {
            s += e;
            s * s
        })
        .sum::<f64>()
        / (n * n) as f64;
    let stat = eta / lrv;
    Ok(Kpss {
        stat,
        pvalue: interp(stat, &crit, &[0.10, 0.05, 0.025, 0.01]),
        lags,
    })
}
// ANCHOR_END: kpss

/// Piecewise-linear interpolation in increasing `xs`, clamped at both ends (numpy's
/// `interp`).
fn interp(x: f64, xs: &[f64], ys: &[f64]) -> f64 {
    if x <= xs[0] {
        return ys[0];
    }
    for i in 1..xs.len() {
        if x <= xs[i] {
            let w = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
            return ys[i - 1] + w * (ys[i] - ys[i - 1]);
        }
    }
    ys[ys.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_walk_keeps_its_unit_root_and_noise_loses_it() {
        // A deterministic pseudo-noise: a linear congruential sequence, centred.
        let mut s = 12345u64;
        let e: Vec<f64> = (0..300)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect();
        let walk: Vec<f64> = e
            .iter()
            .scan(0.0, |a, v| {
                *a += v;
                Some(*a)
            })
            .collect();
        assert!(adf(&e, Regression::Constant, None).unwrap().pvalue < 0.01);
        assert!(adf(&walk, Regression::Constant, None).unwrap().pvalue > 0.05);
        assert!(kpss(&e, Regression::Constant).unwrap().pvalue > 0.05);
        assert!(adf(&[1.0, 2.0, 3.0], Regression::Constant, None).is_err());
    }
}
