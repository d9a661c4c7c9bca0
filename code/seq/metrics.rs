//! Forecast errors over a held-out tail $y_{T+1}, \dots, y_{T+H}$ with forecasts
//! $\hat y_{T+h}$ and errors $e_h = y_{T+h} - \hat y_{T+h}$:
//!
//! $$ \mathrm{MAE} = \frac1H \sum_{h=1}^{H} |e_h|, \qquad
//!    \mathrm{RMSE} = \sqrt{\frac1H \sum_{h=1}^{H} e_h^2}, \qquad
//!    \mathrm{MASE} = \frac{\mathrm{MAE}}
//!      {\frac{1}{T-m} \sum_{t=m+1}^{T} |y_t - y_{t-m}|}. $$
//!
//! MAE and RMSE are in the series' unit; RMSE weighs large errors more, and
//! $\mathrm{MAE} \le \mathrm{RMSE} \le \sqrt{H}\,\mathrm{MAE}$. MASE (Hyndman & Koehler,
//! 2006) divides the MAE by the in-sample MAE of the seasonal naive forecast of period
//! $m$ on the training part: it has no unit, so series compare, and it is below 1 when a
//! forecast's errors on the tail are smaller than the errors the seasonal naive
//! forecast makes one season ahead on the training part. Its denominator is positive
//! for any training part that is not periodic with period $m$, and it never involves
//! the tail, so a method's MASE and its MAE rank methods alike on one series.

use anyhow::{ensure, Result};

fn check(actual: &[f64], forecast: &[f64], what: &str) {
    assert!(
        actual.len() == forecast.len() && !actual.is_empty(),
        "{what}: {} actual values and {} forecasts (need the same number, at least one)",
        actual.len(),
        forecast.len()
    );
}

// ANCHOR: metrics
/// Mean absolute error.
///
/// # Panics
/// If the lengths differ or are 0.
pub fn mae(actual: &[f64], forecast: &[f64]) -> f64 {
    check(actual, forecast, "mae");
    let sum: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(y, f)| (y - f).abs())
        .sum();
    sum / actual.len() as f64
}

/// Root mean squared error.
///
/// # Panics
/// If the lengths differ or are 0.
pub fn rmse(actual: &[f64], forecast: &[f64]) -> f64 {
    check(actual, forecast, "rmse");
    let sum: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(y, f)| (y - f).powi(2))
        .sum();
    (sum / actual.len() as f64).sqrt()
}

/// The MASE denominator: the mean of $|y_t - y_{t-m}|$ over the training part, the
/// in-sample error of the seasonal naive forecast of period `m`. An error if the
/// training part has no more than `m` values, or if the mean is 0 (a series periodic
/// with period `m`, against which no error can be scaled).
pub fn seasonal_naive_mae(train: &[f64], m: usize) -> Result<f64> {
    ensure!(
        m >= 1,
        "a seasonal period of 0: use m = 1 for a series without season"
    );
    ensure!(
        train.len() > m,
        "the MASE scale with period {m} needs more than {m} training values, got {}",
        train.len()
    );
    let sum: f64 = train[m..]
        .iter()
        .zip(train)
        .map(|(now, before)| (now - before).abs())
        .sum();
    let scale = sum / (train.len() - m) as f64;
    ensure!(
        scale > 0.0,
        "the training part repeats itself with period {m}: the MASE scale is 0"
    );
    Ok(scale)
}

/// Mean absolute scaled error: [`mae`] divided by `scale`, the training part's
/// [`seasonal_naive_mae`].
///
/// # Panics
/// If the lengths differ or are 0, or if `scale` is not positive.
pub fn mase(actual: &[f64], forecast: &[f64], scale: f64) -> f64 {
    assert!(scale > 0.0, "mase: the scale must be positive, got {scale}");
    mae(actual, forecast) / scale
}
// ANCHOR_END: metrics
