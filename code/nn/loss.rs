//! Losses, each returning the loss and its gradient with respect to the prediction.
//!
//! All losses are means over the batch (over every element for MSE), and sums are
//! accumulated in `f64`.
//!
//! **Mean squared error** over $N$ elements: $L = \frac1N \sum_i (p_i - t_i)^2$,
//! $\partial L/\partial p_i = \frac2N (p_i - t_i)$.
//!
//! **Binary cross-entropy from logits.** With $p = \sigma(z)$ and a target
//! $t \in [0, 1]$, $\ell = -t \log p - (1-t)\log(1-p)$. Since
//! $\log \sigma(z) = -\log(1 + e^{-z})$ and $\log(1-\sigma(z)) = -z - \log(1+e^{-z})$,
//!
//! $$\ell(z, t) = \max(z, 0) - z t + \log\left(1 + e^{-|z|}\right),$$
//!
//! which never exponentiates a positive number and never takes the log of 0. Its
//! derivative is $\partial \ell/\partial z = \sigma(z) - t$.
//!
//! **Softmax cross-entropy.** For logits $z \in \mathbb{R}^C$ and a label $y$,
//! $\ell = -\log s_y$ with $s = \mathrm{softmax}(z)$, so
//!
//! $$\ell = \log \sum_k e^{z_k} - z_y = \underbrace{m + \log \sum_k e^{z_k - m}}_{
//! \text{log-sum-exp},\ m = \max_k z_k} - z_y .$$
//!
//! Differentiating, $\partial \ell / \partial z_j = e^{z_j}/\sum_k e^{z_k} - [j = y] =
//! s_j - [j = y]$: the softmax Jacobian $s_i(\delta_{ij} - s_j)$ and the $-1/s_y$ of the
//! log cancel, leaving "prediction minus one-hot target".

use ndarray::{ArrayD, Axis, Ix2};

use super::activation::sigmoid;

/// Checks that two arrays have the same shape, naming both otherwise.
fn same_shape(a: &ArrayD<f32>, b: &ArrayD<f32>, who: &str) {
    assert_eq!(
        a.shape(),
        b.shape(),
        "{who}: prediction {:?} and target {:?} differ in shape",
        a.shape(),
        b.shape()
    );
}

// ANCHOR: mse
/// Mean squared error $\frac1N\sum_i (p_i - t_i)^2$ and its gradient $\frac2N(p - t)$.
///
/// # Shapes
/// - `pred`, `target`: the same shape; the gradient has it too.
pub fn mse(pred: &ArrayD<f32>, target: &ArrayD<f32>) -> (f32, ArrayD<f32>) {
    same_shape(pred, target, "mse");
    let n = pred.len() as f64;
    let diff = pred - target;
    let loss = diff
        .iter()
        .map(|&d| f64::from(d) * f64::from(d))
        .sum::<f64>()
        / n;
    (loss as f32, diff * (2.0 / n) as f32)
}
// ANCHOR_END: mse

// ANCHOR: bce
/// Binary cross-entropy of `sigmoid(logits)` against `targets` in $[0, 1]$, mean over
/// elements, computed stably from the logits; the gradient is $(\sigma(z) - t)/N$.
///
/// # Shapes
/// - `logits`, `targets`: the same shape; the gradient has it too.
pub fn bce_with_logits(
    logits: &ArrayD<f32>,
    targets: &ArrayD<f32>,
) -> (f32, ArrayD<f32>) {
    same_shape(logits, targets, "bce_with_logits");
    let n = logits.len() as f64;
    let loss = logits
        .iter()
        .zip(targets)
        .map(|(&z, &t)| {
            let (z, t) = (f64::from(z), f64::from(t));
            z.max(0.0) - z * t + (-z.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / n;
    let mut grad = logits.mapv(sigmoid) - targets;
    grad.mapv_inplace(|g| g / n as f32);
    (loss as f32, grad)
}
// ANCHOR_END: bce

/// $\log\sum_k e^{z_k}$ of every row, computed as $m + \log\sum_k e^{z_k - m}$.
///
/// # Shapes
/// - `z`: `(n, c)`; output: `n` values.
pub fn logsumexp(z: &ArrayD<f32>) -> Vec<f64> {
    let z = z
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap_or_else(|_| panic!("logsumexp: expected (n, c), got {:?}", z.shape()));
    z.axis_iter(Axis(0))
        .map(|row| {
            let m = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            m + row
                .iter()
                .map(|&v| (f64::from(v) - m).exp())
                .sum::<f64>()
                .ln()
        })
        .collect()
}

fn check_labels(logits: &ArrayD<f32>, labels: &[usize], who: &str) -> (usize, usize) {
    let shape = logits.shape();
    assert!(
        shape.len() == 2 && shape[0] == labels.len(),
        "{who}: logits {shape:?} need shape (n, c) with n = {} labels",
        labels.len()
    );
    if let Some(&bad) = labels.iter().find(|&&y| y >= shape[1]) {
        panic!("{who}: label {bad} out of range for {} classes", shape[1]);
    }
    (shape[0], shape[1])
}

// ANCHOR: softmax_ce
/// Softmax cross-entropy, the mean over the batch of
/// $\mathrm{logsumexp}(z) - z_y$, and its gradient $(\mathrm{softmax}(z) - \mathrm{onehot}(y))/n$.
///
/// # Shapes
/// - `logits`: `(n, c)`; `labels`: `n` class indices in `0..c`; the gradient is `(n, c)`.
pub fn softmax_cross_entropy(
    logits: &ArrayD<f32>,
    labels: &[usize],
) -> (f32, ArrayD<f32>) {
    let (n, _) = check_labels(logits, labels, "softmax_cross_entropy");
    let lse = logsumexp(logits);
    let loss = lse
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (l, &y))| l - f64::from(logits[[i, y]]))
        .sum::<f64>()
        / n as f64;
    let mut grad = super::activation::softmax(logits); // (n, c)
    for (i, &y) in labels.iter().enumerate() {
        grad[[i, y]] -= 1.0;
    }
    grad.mapv_inplace(|g| g / n as f32);
    (loss as f32, grad)
}
// ANCHOR_END: softmax_ce

// ANCHOR: softmax_ce_naive
/// The textbook formula $-\log\big(e^{z_y} / \sum_k e^{z_k}\big)$ in `f32`, exactly as
/// written: it overflows to `NaN` or `inf` once a logit exceeds about 88. Kept only to
/// show why [`softmax_cross_entropy`] subtracts the maximum.
pub fn softmax_cross_entropy_naive(logits: &ArrayD<f32>, labels: &[usize]) -> f32 {
    let (n, _) = check_labels(logits, labels, "softmax_cross_entropy_naive");
    let mut total = 0.0f32;
    for (i, &y) in labels.iter().enumerate() {
        let row = logits.index_axis(Axis(0), i);
        let denom: f32 = row.iter().map(|v| v.exp()).sum();
        total += -(row[y].exp() / denom).ln();
    }
    total / n as f32
}
// ANCHOR_END: softmax_ce_naive

/// The fraction of rows whose largest logit is at the label.
///
/// # Shapes
/// - `logits`: `(n, c)`; `labels`: `n` indices.
pub fn accuracy(logits: &ArrayD<f32>, labels: &[usize]) -> f64 {
    let (n, _) = check_labels(logits, labels, "accuracy");
    let hits = labels
        .iter()
        .enumerate()
        .filter(|&(i, &y)| {
            let row = logits.index_axis(Axis(0), i);
            let best =
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                    );
            best.0 == y
        })
        .count();
    hits as f64 / n as f64
}
