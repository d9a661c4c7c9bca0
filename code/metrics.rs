//! Classification metrics: the loss and prediction of every example, and the confusion
//! matrix.
//!
//! Per example, the cross-entropy of logits $z$ with true class $y$ is
//! $\log \sum_k e^{z_k} - z_y$, computed in `f64` with the maximum subtracted first so
//! that large logits do not overflow; the prediction is the arg-max of $z$ (the first
//! one on ties). The confusion matrix counts, for every true class $t$, the examples
//! predicted as each class $p$: its diagonal is what the model gets right, and each
//! row's diagonal entry over the row's sum is that class's recall.

use ndarray::{s, ArrayD, ArrayView2, Axis};

use crate::nn::{Layer, Mode};

/// Examples pushed through the model at once: bounds the memory of the activations.
const BATCH: usize = 1000;

/// The cross-entropy and the predicted class of every example, in evaluation mode, in
/// batches of 1,000.
///
/// # Shapes
/// - `x`: `(n, d)`, one example per row, as the model takes it; `labels`: `n`.
/// - the model's output: logits `(batch, n_classes)`.
pub fn per_example(
    model: &mut dyn Layer,
    x: ArrayView2<f32>,
    labels: &[usize],
) -> (Vec<f64>, Vec<usize>) {
    assert_eq!(
        x.nrows(),
        labels.len(),
        "per_example: {:?} inputs for {} labels",
        x.shape(),
        labels.len()
    );
    let n = labels.len();
    let (mut losses, mut preds) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let xb = x.slice(s![start..end, ..]).to_owned().into_dyn();
        let logits: ArrayD<f32> = model.forward(&xb, Mode::Eval);
        for (row, &y) in logits.axis_iter(Axis(0)).zip(&labels[start..end]) {
            let z: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            losses.push(lse - z[y]);
            let arg = (0..z.len()).fold(0, |a, k| if z[k] > z[a] { k } else { a });
            preds.push(arg);
        }
    }
    (losses, preds)
}

/// `counts[t][p]`: examples of class `t` predicted as `p`. Panics on a class not below
/// `n_classes`.
pub fn confusion(labels: &[usize], preds: &[usize], n_classes: usize) -> Vec<Vec<usize>> {
    assert_eq!(
        labels.len(),
        preds.len(),
        "confusion: {} labels for {} predictions",
        labels.len(),
        preds.len()
    );
    let mut c = vec![vec![0; n_classes]; n_classes];
    for (&t, &p) in labels.iter().zip(preds) {
        c[t][p] += 1;
    }
    c
}
