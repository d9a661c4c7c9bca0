//! Windows: a series cut into (input window, target) pairs for a model to learn from.

use anyhow::{ensure, Result};
use ndarray::{Array2, Array3, Axis};

use crate::data::{Dataset, Targets};

/// Supervised pairs cut from one series: row $i$ of `inputs` is
/// $y_i, \dots, y_{i+p-1}$ and row $i$ of `targets` the $k$ values after it,
/// $y_{i+p}, \dots, y_{i+p+k-1}$ (positions from 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Windows {
    /// `(n, p)`: one input window per row, oldest value first.
    pub inputs: Array2<f64>,
    /// `(n, k)`: the $k$ values that follow each window.
    pub targets: Array2<f64>,
}

// ANCHOR: windows
/// Every window of `window` inputs followed by `horizon` targets that fits in `series`:
/// $n = \text{len} - p - k + 1$ pairs, the window sliding by one.
///
/// Cut from a training part, no target reaches past it, so nothing of the held-out
/// tail leaks into training. An error when `window` or `horizon` is 0 or the two do not
/// fit in the series.
pub fn windows(series: &[f64], window: usize, horizon: usize) -> Result<Windows> {
    ensure!(
        window > 0 && horizon > 0,
        "windows of {window} inputs and {horizon} targets: both must be at least 1"
    );
    ensure!(
        window + horizon <= series.len(),
        "a window of {window} inputs and {horizon} targets needs {} values, the series \
         has {}: use a shorter window or horizon, or a longer training part",
        window + horizon,
        series.len()
    );
    let n = series.len() - window - horizon + 1;
    let inputs = Array2::from_shape_fn((n, window), |(i, j)| series[i + j]);
    let targets = Array2::from_shape_fn((n, horizon), |(i, j)| series[i + window + j]);
    Ok(Windows { inputs, targets })
}
// ANCHOR_END: windows

impl Windows {
    /// Number of pairs $n$.
    pub fn len(&self) -> usize {
        self.inputs.nrows()
    }

    /// Whether there are no pairs (never, for windows made by [`windows()`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs as a `data::Dataset` for a sequence model: `x` of shape `(n, p, 1)` (one
    /// feature per step) and [`Targets::Values`] of shape `(n, k)`, in `f32`.
    pub fn to_dataset(&self) -> Dataset {
        // (n, p) -> (n, p, 1): a sequence of p steps with one feature each.
        let x: Array3<f32> = self.inputs.mapv(|v| v as f32).insert_axis(Axis(2));
        let y = self.targets.mapv(|v| v as f32);
        Dataset::new(x.into_dyn(), Targets::Values(y), None)
    }
}
