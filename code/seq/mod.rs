//! Time-series forecasting: the series, the split, the scaling, the windows, the two
//! multi-step strategies, the metrics, and the baselines any forecaster must beat.
//!
//! A forecast is judged on a **held-out tail**: the last $H$ points of a series are
//! hidden, a model is fitted on the rest (the *training part*, $y_1, \dots, y_T$), and it
//! forecasts $\hat y_{T+1}, \dots, \hat y_{T+H}$ from the training part alone. The split
//! is chronological because the future must not inform the past ([`split_tail`]).
//!
//! **Scaling is fitted on the training part only** ([`Scaler`]). A mean and standard
//! deviation computed over the whole series would carry the level of the tail (for a
//! trending series, a higher mean) into every training input: the model would be told,
//! through its inputs, where the future lies. So the scaler sees $y_1, \dots, y_T$ and
//! is then applied, frozen, to anything else.
//!
//! **Windows** ([`windows()`]) turn a series into supervised pairs: an input window of
//! the $p$ values $y_{t-p+1}, \dots, y_t$ and the target of the $k$ values after it.
//!
//! **Multi-step forecasts** ([`Strategy`]) come from a model of windows
//! ([`WindowModel`]) in one of two ways:
//!
//! - *recursive*: one model predicts one step; for step $h$ it reads a window that
//!   ends with its own $h - 1$ earlier predictions,
//!   $\hat y_{T+h} = f(\hat y_{T+h-p}, \dots, \hat y_{T+h-1})$ (with observed values
//!   where the window reaches back into the history). One model, but its errors feed
//!   back into its inputs.
//! - *direct*: one model predicts all $H$ steps at once from the last observed window,
//!   $(\hat y_{T+1}, \dots, \hat y_{T+H}) = F(y_{T-p+1}, \dots, y_T)$: no feedback, but
//!   each output learns from windows $H$ steps shorter of the series' end.
//!
//! For $H = 1$ the two are the same model.
//!
//! Every forecaster implements one small trait, [`Forecaster`] (fit on a training part)
//! whose fitted type implements [`Forecast`] (forecast from a history): the baselines
//! ([`Naive`], [`SeasonalNaive`], [`Drift`]), a window model under a strategy
//! ([`Windowed`]), and the same wrapped in a scaler ([`Scaled`]). A neural window model
//! plugs in by implementing [`WindowModel`] (its windows as a `data::Dataset` come from
//! [`Windows::to_dataset`]): [`Recurrent`], an LSTM or GRU, does.
//!
//! **Sequence classification** ([`rows_as_sequence`], [`reorder`], [`order_blind_net`]):
//! an image read row by row by a recurrent network, against a model blind to the order
//! of its rows.
//!
//! **Text generation** ([`text`]): a character-level language model on Tiny
//! Shakespeare, its vocabulary, batches, training and sampling.

pub mod lookup;
pub mod text;

mod baselines;
mod classify;
mod forecast;
mod metrics;
mod neural;
mod scale;
mod series;
mod window;

pub use baselines::{linear_ar, Drift, Naive, Ridge, RidgeFit, SeasonalNaive};
pub use classify::{
    accuracy_by_step, order_blind_net, reorder, rows_as_sequence, MeanOverSteps, RowOrder,
};
pub use forecast::{
    choose_by_validation, evaluate, validation_mae, Evaluation, Forecast, Forecaster,
    Scaled, ScaledFit, Strategy, WindowModel, WindowPredict, Windowed, WindowedFit,
};
pub use metrics::{mae, mase, rmse, seasonal_naive_mae};
pub use neural::{recurrent_net, Cell, Recurrent, RecurrentFit, SquaredError};
pub use scale::{Scaler, Transform};
pub use series::{load, split_tail, Named, TimeSeries};
pub use window::{windows, Windows};
