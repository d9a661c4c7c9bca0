//! The baselines: three rules with nothing to learn, and a ridge-regularised linear
//! autoregression on the window.
//!
//! With the history $y_1, \dots, y_T$ and the step $h \ge 1$:
//!
//! $$ \text{naive: } \hat y_{T+h} = y_T, \qquad
//!    \text{seasonal naive: } \hat y_{T+h} = y_{T+h-m(\lfloor (h-1)/m \rfloor + 1)}, $$
//! $$ \text{drift: } \hat y_{T+h} = y_T + h\,\frac{y_T - y_1}{T - 1}, $$
//!
//! the last value, the value one season ago (repeating the last season), and the
//! straight line through the first and last values, extended.
//!
//! **Ridge.** On windows $x_i \in \mathbb{R}^p$ with targets $y_i \in \mathbb{R}^k$, the
//! linear model $\hat y = W^\top x + b$ minimises
//!
//! $$ \frac1n \sum_{i=1}^{n} \lVert y_i - W^\top x_i - b \rVert^2
//!    + \lambda \lVert W \rVert_F^2 , $$
//!
//! the intercept unpenalised. Its minimum in $b$ is $b = \bar y - W^\top \bar x$, which
//! leaves, with centred $X_c$ and $Y_c$,
//! $\min_W \lVert Y_c - X_c W \rVert_F^2 + n\lambda \lVert W \rVert_F^2$: an ordinary
//! least-squares problem on the stacked system
//! $\begin{bmatrix} X_c \\ \sqrt{n\lambda}\, I \end{bmatrix} W \approx
//!  \begin{bmatrix} Y_c \\ 0 \end{bmatrix}$, solved by LAPACK's SVD-based least squares
//! (no normal equations, whose condition number is the square of $X_c$'s). Its solution
//! satisfies the normal equations $X_c^\top (Y_c - X_c W) = n\lambda W$. The $k$
//! columns of $W$ decouple, so one model with $k$ outputs is exactly $k$ models of one
//! output each, fitted on the same windows.

use anyhow::{ensure, Context, Result};
use ndarray::{concatenate, Array1, Array2, Axis};
use ndarray_linalg::LeastSquaresSvd as _;

use super::{Forecast, Forecaster, WindowModel, WindowPredict, Windows};
use super::{Scaled, Strategy, Transform, Windowed};

fn need(history: &[f64], n: usize, what: &str) -> Result<()> {
    ensure!(
        history.len() >= n,
        "the {what} forecast needs at least {n} values of history, got {}",
        history.len()
    );
    Ok(())
}

fn steps(horizon: usize) -> Result<()> {
    ensure!(
        horizon >= 1,
        "a forecast of 0 steps: the horizon must be at least 1"
    );
    Ok(())
}

// ANCHOR: naive
/// The naive forecast: the last value, at every step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Naive;

impl Forecaster for Naive {
    type Fitted = Naive;

    fn fit(&self, train: &[f64]) -> Result<Naive> {
        need(train, 1, "naive")?;
        Ok(Naive)
    }
}

impl Forecast for Naive {
    fn forecast(&self, history: &[f64], horizon: usize) -> Result<Vec<f64>> {
        need(history, 1, "naive")?;
        steps(horizon)?;
        Ok(vec![history[history.len() - 1]; horizon])
    }
}

/// The seasonal naive forecast: the value one season of `period` steps earlier, the
/// last observed season repeated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeasonalNaive {
    /// The season $m$, in steps.
    pub period: usize,
}

impl Forecaster for SeasonalNaive {
    type Fitted = SeasonalNaive;

    fn fit(&self, train: &[f64]) -> Result<SeasonalNaive> {
        ensure!(self.period >= 1, "a seasonal period of 0 steps");
        need(train, self.period, "seasonal naive")?;
        Ok(*self)
    }
}

impl Forecast for SeasonalNaive {
    fn forecast(&self, history: &[f64], horizon: usize) -> Result<Vec<f64>> {
        let m = self.period;
        need(history, m, "seasonal naive")?;
        steps(horizon)?;
        // Step h (from 1) copies position T - m + ((h - 1) mod m) of the last season.
        let season = &history[history.len() - m..];
        Ok((0..horizon).map(|h| season[h % m]).collect())
    }
}

/// The drift forecast: the line through the first and the last value of the history,
/// extended.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Drift;

impl Forecaster for Drift {
    type Fitted = Drift;

    fn fit(&self, train: &[f64]) -> Result<Drift> {
        need(train, 2, "drift")?;
        Ok(Drift)
    }
}

impl Forecast for Drift {
    fn forecast(&self, history: &[f64], horizon: usize) -> Result<Vec<f64>> {
        need(history, 2, "drift")?;
        steps(horizon)?;
        let t = history.len();
        let last = history[t - 1];
        let slope = (last - history[0]) / (t - 1) as f64;
        Ok((1..=horizon).map(|h| last + h as f64 * slope).collect())
    }
}
// ANCHOR_END: naive

// ANCHOR: ridge
/// Ridge regression from a window to its targets: a linear autoregression of order $p$
/// (the window) with $k$ outputs, penalty $\lambda \lVert W \rVert_F^2$.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ridge {
    /// The penalty $\lambda \ge 0$ (per window: the objective is a mean over windows).
    pub lambda: f64,
}

/// A fitted [`Ridge`]: $\hat y = W^\top x + b$.
#[derive(Clone, Debug, PartialEq)]
pub struct RidgeFit {
    /// $W$, `(p, k)`.
    pub weights: Array2<f64>,
    /// $b$, `(k)`.
    pub bias: Array1<f64>,
}

impl WindowModel for Ridge {
    type Fitted = RidgeFit;

    fn fit_windows(&self, w: &Windows) -> Result<RidgeFit> {
        let lambda = self.lambda;
        ensure!(
            lambda.is_finite() && lambda >= 0.0,
            "a ridge penalty of {lambda}: it must be finite and >= 0"
        );
        ensure!(
            w.inputs.iter().chain(&w.targets).all(|v| v.is_finite()),
            "ridge: the windows hold a non-finite value"
        );
        let (n, p) = w.inputs.dim();
        let k = w.targets.ncols();
        let x_mean = w.inputs.mean_axis(Axis(0)).context("ridge: no windows")?;
        let y_mean = w.targets.mean_axis(Axis(0)).context("ridge: no windows")?;
        let xc = &w.inputs - &x_mean; // (n, p)
        let yc = &w.targets - &y_mean; // (n, k)
                                       // The penalty as p extra rows: [Xc; sqrt(n lambda) I] (n + p, p), [Yc; 0] (n + p, k).
        let a = concatenate![Axis(0), xc, Array2::eye(p) * (n as f64 * lambda).sqrt()];
        let b = concatenate![Axis(0), yc, Array2::zeros((p, k))];
        let weights = a
            .least_squares(&b)
            .context("ridge: LAPACK's least squares failed")?
            .solution; // (p, k)
        let bias = &y_mean - &x_mean.dot(&weights);
        Ok(RidgeFit { weights, bias })
    }
}

impl WindowPredict for RidgeFit {
    fn predict(&self, window: &[f64]) -> Vec<f64> {
        assert_eq!(
            window.len(),
            self.weights.nrows(),
            "ridge: a window of {} values for weights of shape {:?}",
            window.len(),
            self.weights.dim()
        );
        let x = ndarray::ArrayView1::from(window);
        (x.dot(&self.weights) + &self.bias).to_vec()
    }
}
// ANCHOR_END: ridge

// ANCHOR: linear_ar
/// The linear autoregression of the book: [`Ridge`] on windows of `window` values under
/// `strategy`, on the series scaled by a [`Scaler`](super::Scaler) fitted on the
/// training part (after `transform`).
pub fn linear_ar(
    window: usize,
    lambda: f64,
    strategy: Strategy,
    transform: Transform,
) -> Scaled<Windowed<Ridge>> {
    Scaled {
        inner: Windowed {
            model: Ridge { lambda },
            window,
            strategy,
        },
        transform,
    }
}
// ANCHOR_END: linear_ar
