//! The forecasting contract, the two multi-step strategies, scaling around any
//! forecaster, and the evaluation on a held-out tail.

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use super::{mae, mase, rmse, seasonal_naive_mae, split_tail, windows, Scaler};
use super::{Transform, Windows};

// ANCHOR: forecaster
/// A forecasting method before it has seen data: [`fit`](Forecaster::fit) learns from a
/// training part and returns the fitted model, the only thing that forecasts.
pub trait Forecaster {
    /// The fitted model.
    type Fitted: Forecast;

    /// Learns from `train`, the series up to the forecast origin, oldest value first.
    fn fit(&self, train: &[f64]) -> Result<Self::Fitted>;
}

/// A fitted forecaster.
pub trait Forecast {
    /// The `horizon` values that follow `history` (oldest value first, in the unit of
    /// the training part). An error if `history` is too short for the model, or
    /// `horizon` is 0 or beyond what the model was fitted for.
    fn forecast(&self, history: &[f64], horizon: usize) -> Result<Vec<f64>>;
}
// ANCHOR_END: forecaster

// ANCHOR: window_model
/// A model from an input window of $p$ values to the $k$ values after it, learnt from
/// [`Windows`]: what a [`Strategy`] turns into a forecaster ([`Windowed`]).
pub trait WindowModel {
    /// The fitted model.
    type Fitted: WindowPredict;

    /// Learns from `windows`: inputs `(n, p)`, targets `(n, k)`.
    fn fit_windows(&self, windows: &Windows) -> Result<Self::Fitted>;
}

/// A fitted window model.
pub trait WindowPredict {
    /// The $k$ values that follow one window of $p$ values (oldest first).
    fn predict(&self, window: &[f64]) -> Vec<f64>;
}
// ANCHOR_END: window_model

/// How a window model makes a forecast of several steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// One model of one step, fed its own predictions; any horizon.
    Recursive,
    /// One model of `horizon` outputs, each step predicted from the last observed
    /// window; horizons up to `horizon`.
    Direct {
        /// The steps the model predicts at once.
        horizon: usize,
    },
}

impl Strategy {
    /// The targets per training window: 1, or the direct horizon.
    pub fn targets(self) -> usize {
        match self {
            Strategy::Recursive => 1,
            Strategy::Direct { horizon } => horizon,
        }
    }
}

/// A window model with an input window of `window` values, under a strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct Windowed<M> {
    /// The window model.
    pub model: M,
    /// Input values per window, $p$.
    pub window: usize,
    /// Recursive or direct.
    pub strategy: Strategy,
}

/// A fitted [`Windowed`] forecaster.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowedFit<F> {
    /// The fitted window model.
    pub fitted: F,
    /// Input values per window, $p$.
    pub window: usize,
    /// Recursive or direct.
    pub strategy: Strategy,
}

impl<M: WindowModel> Forecaster for Windowed<M> {
    type Fitted = WindowedFit<M::Fitted>;

    fn fit(&self, train: &[f64]) -> Result<Self::Fitted> {
        let w =
            windows(train, self.window, self.strategy.targets()).with_context(|| {
                format!(
                    "fitting a {:?} forecaster on the training part",
                    self.strategy
                )
            })?;
        Ok(WindowedFit {
            fitted: self.model.fit_windows(&w)?,
            window: self.window,
            strategy: self.strategy,
        })
    }
}

// ANCHOR: strategies
impl<F: WindowPredict> Forecast for WindowedFit<F> {
    fn forecast(&self, history: &[f64], horizon: usize) -> Result<Vec<f64>> {
        let p = self.window;
        ensure!(
            horizon >= 1,
            "a forecast of 0 steps: the horizon must be at least 1"
        );
        ensure!(
            history.len() >= p,
            "a history of {} values is shorter than the model's window of {p}",
            history.len()
        );
        let k = self.strategy.targets();
        let one = |w: &[f64]| {
            let y = self.fitted.predict(w);
            assert_eq!(
                y.len(),
                k,
                "a window model fitted for {k} outputs gave {}",
                y.len()
            );
            y
        };
        match self.strategy {
            Strategy::Recursive => {
                // The last p observed values, then each prediction appended: the window
                // for step h is the p values before it, predictions included.
                let mut buf = history[history.len() - p..].to_vec();
                for h in 0..horizon {
                    let next = one(&buf[h..h + p])[0];
                    buf.push(next);
                }
                Ok(buf.split_off(p))
            }
            Strategy::Direct { horizon: trained } => {
                ensure!(
                    horizon <= trained,
                    "a direct model fitted for {trained} steps cannot forecast {horizon}"
                );
                let mut y = one(&history[history.len() - p..]);
                y.truncate(horizon);
                Ok(y)
            }
        }
    }
}
// ANCHOR_END: strategies

// ANCHOR: scaled
/// A forecaster that sees the series through a [`Scaler`] fitted on its training part:
/// it learns and forecasts on the scaled values, and its forecasts are scaled back.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaled<F> {
    /// The forecaster on the scaled series.
    pub inner: F,
    /// The transform before standardising.
    pub transform: Transform,
}

/// A fitted [`Scaled`] forecaster: the scaler, frozen, and the fitted inner model.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaledFit<G> {
    /// Fitted on the training part, and on nothing else.
    pub scaler: Scaler,
    /// The inner model, fitted on the scaled training part.
    pub fitted: G,
}

impl<F: Forecaster> Forecaster for Scaled<F> {
    type Fitted = ScaledFit<F::Fitted>;

    fn fit(&self, train: &[f64]) -> Result<Self::Fitted> {
        let scaler = Scaler::fit(train, self.transform)?;
        let fitted = self.inner.fit(&scaler.transform(train)?)?;
        Ok(ScaledFit { scaler, fitted })
    }
}

impl<G: Forecast> Forecast for ScaledFit<G> {
    fn forecast(&self, history: &[f64], horizon: usize) -> Result<Vec<f64>> {
        let z = self
            .fitted
            .forecast(&self.scaler.transform(history)?, horizon)?;
        Ok(self.scaler.inverse(&z))
    }
}
// ANCHOR_END: scaled

/// A forecast of a held-out tail and its errors.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The forecast, one value per tail value.
    pub forecast: Vec<f64>,
    /// Its mean absolute error.
    pub mae: f64,
    /// Its root mean squared error.
    pub rmse: f64,
    /// Its mean absolute scaled error.
    pub mase: f64,
}

// ANCHOR: evaluate
/// Fits `f` on `train`, forecasts `test.len()` steps after it, and scores the forecast
/// against `test`, the MASE scaled by the training part's seasonal naive error of
/// period `period`. Only `train` reaches the forecaster.
pub fn evaluate<F: Forecaster>(
    f: &F,
    train: &[f64],
    test: &[f64],
    period: usize,
) -> Result<Evaluation> {
    let forecast = f.fit(train)?.forecast(train, test.len())?;
    let scale = seasonal_naive_mae(train, period)?;
    Ok(Evaluation {
        mae: mae(test, &forecast),
        rmse: rmse(test, &forecast),
        mase: mase(test, &forecast, scale),
        forecast,
    })
}
// ANCHOR_END: evaluate

/// The MAE of `f` on the last `horizon` values of `train` when fitted on the values
/// before them: a validation score that never looks at the held-out tail, to choose
/// hyper-parameters with.
pub fn validation_mae<F: Forecaster>(
    f: &F,
    train: &[f64],
    horizon: usize,
) -> Result<f64> {
    let (fit, val) = split_tail(train, horizon)?;
    let forecast = f.fit(fit)?.forecast(fit, horizon)?;
    Ok(mae(val, &forecast))
}

/// The candidate whose forecaster has the lowest [`validation_mae`] on `train` with
/// `horizon` held out (the first of equals), with that MAE: hyper-parameters chosen
/// without the held-out tail. An error if there are no candidates or one fails.
pub fn choose_by_validation<C: Clone + std::fmt::Debug, F: Forecaster>(
    candidates: &[C],
    build: impl Fn(&C) -> F,
    train: &[f64],
    horizon: usize,
) -> Result<(C, f64)> {
    let mut best: Option<(C, f64)> = None;
    for c in candidates {
        let score = validation_mae(&build(c), train, horizon)
            .with_context(|| format!("validating candidate {c:?}"))?;
        if best.as_ref().is_none_or(|(_, b)| score < *b) {
            best = Some((c.clone(), score));
        }
    }
    best.context("no candidates to choose from")
}
