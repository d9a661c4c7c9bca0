//! The detection loss of SSD ("multibox"): softmax cross-entropy over $K + 1$ classes
//! on the positive anchors and on the hardest negatives, plus smooth-$L_1$ on the box
//! deltas of the positive anchors, both divided by the number of positives.
//!
//! **Why hard negative mining.** A 64x64 canvas has a few hundred anchors and a few
//! digits: almost every anchor is background. Summed over all of them, the easy
//! background anchors would drown the few that matter. SSD keeps, per image, only the
//! negatives with the highest cross-entropy (the ones the model gets most wrong), three
//! times as many as the positives (at least three when the image has none). The choice
//! is made on the current predictions and then held fixed: it selects which terms enter
//! the loss, and is not differentiated (as in every implementation).
//!
//! **The loss.** With $P$ the positives of the batch, $S \supseteq P$ the anchors
//! selected for classification, $z_a$ the $K + 1$ scores of anchor $a$, $y_a$ its label
//! (0 = background), $t_a$ its target deltas and $\hat t_a$ the predicted ones,
//!
//! $$L = \frac{1}{\max(|P|, 1)} \Big( \sum_{a \in S} \big(\log \textstyle\sum_k
//! e^{z_{a,k}} - z_{a,y_a}\big) + \lambda \sum_{a \in P} \sum_{d=1}^{4}
//! \mathrm{smooth}_{L_1}(\hat t_{a,d} - t_{a,d}) \Big),$$
//!
//! $$\mathrm{smooth}_{L_1}(u) = \begin{cases} u^2/2 & |u| < 1 \\ |u| - 1/2 &
//! \text{otherwise.}\end{cases}$$
//!
//! **Its gradient.** The cross-entropy term gives the familiar $\partial L / \partial
//! z_{a,k} = (\mathrm{softmax}(z_a)_k - [k = y_a]) / |P|$ for $a \in S$ and zero for the
//! other anchors; smooth-$L_1$ gives $\partial L / \partial \hat t_{a,d} = \lambda\,
//! \mathrm{clip}(\hat t_{a,d} - t_{a,d}, -1, 1) / |P|$ for $a \in P$: a quadratic pull
//! for small errors and a gradient of constant size for large ones, so one badly placed
//! box cannot dominate the step as it would under squared error.

use ndarray::{Array2, ArrayD, ArrayView3, Ix3};
use serde::{Deserialize, Serialize};

use crate::data::Targets;
use crate::train::Loss;

/// The multibox loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiboxLoss {
    /// Object classes $K$.
    pub n_classes: usize,
    /// Negatives kept per positive (SSD: 3).
    pub neg_ratio: usize,
    /// The weight $\lambda$ of the box term (0 trains the classifier alone).
    pub box_weight: f32,
}

/// The two terms of the loss, each already divided by the number of positives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossParts {
    /// The cross-entropy term.
    pub cls: f64,
    /// The smooth-$L_1$ term (with its weight).
    pub reg: f64,
    /// The number of positive anchors $|P|$.
    pub n_pos: usize,
}

/// The cross-entropy $\log \sum_k e^{z_k} - z_y$ of one anchor's scores, in `f64`.
fn cross_entropy(z: &[f32], y: usize) -> f64 {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let lse = f64::from(m) + z.iter().map(|&v| f64::from(v - m).exp()).sum::<f64>().ln();
    lse - f64::from(z[y])
}

// ANCHOR: mine
/// Which anchors enter the classification term: every positive, and per image the
/// `neg_ratio` x (positives, at least 1) background anchors of highest cross-entropy
/// (ties broken by index). Ignored anchors (label `-1`) are never selected.
///
/// # Shapes
/// - `pred`: `(n, anchors, K + 5)`; `targets`: `(n, anchors, 5)`; result `(n, anchors)`.
pub fn mine(
    pred: ArrayView3<f32>,
    targets: ArrayView3<f32>,
    neg_ratio: usize,
) -> Array2<bool> {
    let (n, m, w) = pred.dim();
    assert!(
        targets.dim() == (n, m, 5) && w > 5,
        "mine: pred {:?} and targets {:?} do not fit (expected (n, anchors, K + 5) and \
         (n, anchors, 5))",
        pred.shape(),
        targets.shape()
    );
    let k1 = w - 4;
    let mut sel = Array2::from_elem((n, m), false);
    for i in 0..n {
        let mut negatives = vec![];
        let mut n_pos = 0;
        for a in 0..m {
            let label = targets[[i, a, 0]];
            if label >= 1.0 {
                sel[[i, a]] = true;
                n_pos += 1;
            } else if label == 0.0 {
                let z: Vec<f32> = (0..k1).map(|k| pred[[i, a, k]]).collect();
                negatives.push((cross_entropy(&z, 0), a));
            }
        }
        negatives.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        for &(_, a) in negatives.iter().take(neg_ratio * n_pos.max(1)) {
            sel[[i, a]] = true;
        }
    }
    sel
}
// ANCHOR_END: mine

// ANCHOR: multibox
/// The loss on a given selection (see the module docs) and its gradient with respect to
/// `pred`.
///
/// # Shapes
/// - `pred`: `(n, anchors, K + 5)`, the $K + 1$ scores then 4 deltas of each anchor;
///   `targets`: `(n, anchors, 5)`, label (`-1` ignore, `0` background, `1 + class`) then
///   4 target deltas; `selected`: `(n, anchors)`. The gradient has the shape of `pred`.
pub fn multibox_selected(
    pred: ArrayView3<f32>,
    targets: ArrayView3<f32>,
    selected: &Array2<bool>,
    box_weight: f32,
) -> (LossParts, ArrayD<f32>) {
    let (n, m, w) = pred.dim();
    assert_eq!(
        selected.dim(),
        (n, m),
        "multibox: selection {:?} vs pred {:?}",
        selected.shape(),
        pred.shape()
    );
    let k1 = w - 4;
    let n_pos = targets.iter().step_by(5).filter(|&&l| l >= 1.0).count();
    let scale = 1.0 / n_pos.max(1) as f32;
    let mut grad = ndarray::Array3::<f32>::zeros((n, m, w));
    let (mut cls, mut reg) = (0.0f64, 0.0f64);
    for i in 0..n {
        for a in 0..m {
            let label = targets[[i, a, 0]];
            if !selected[[i, a]] || label < 0.0 {
                continue;
            }
            let y = label as usize;
            let z: Vec<f32> = (0..k1).map(|k| pred[[i, a, k]]).collect();
            cls += cross_entropy(&z, y);
            let mx = z.iter().fold(f32::NEG_INFINITY, |p, &q| p.max(q));
            let e: Vec<f32> = z.iter().map(|&v| (v - mx).exp()).collect();
            let sum: f32 = e.iter().sum();
            for k in 0..k1 {
                let onehot = if k == y { 1.0 } else { 0.0 };
                grad[[i, a, k]] = (e[k] / sum - onehot) * scale;
            }
            if y >= 1 && box_weight != 0.0 {
                for d in 0..4 {
                    let u = pred[[i, a, k1 + d]] - targets[[i, a, 1 + d]];
                    let ua = f64::from(u.abs());
                    reg += f64::from(box_weight)
                        * if ua < 1.0 { 0.5 * ua * ua } else { ua - 0.5 };
                    grad[[i, a, k1 + d]] = box_weight * u.clamp(-1.0, 1.0) * scale;
                }
            }
        }
    }
    let s = f64::from(scale);
    let parts = LossParts {
        cls: cls * s,
        reg: reg * s,
        n_pos,
    };
    (parts, grad.into_dyn())
}
// ANCHOR_END: multibox

impl MultiboxLoss {
    /// The loss of `pred` `(n, anchors, K + 5)` against per-anchor `targets`
    /// `(n, anchors, 5)`: mining, then [`multibox_selected`].
    pub fn parts(
        &self,
        pred: ArrayView3<f32>,
        targets: ArrayView3<f32>,
    ) -> (LossParts, ArrayD<f32>) {
        assert_eq!(
            pred.shape()[2],
            self.n_classes + 5,
            "MultiboxLoss: pred {:?} does not have K + 5 = {} columns",
            pred.shape(),
            self.n_classes + 5
        );
        let sel = mine(pred, targets, self.neg_ratio);
        multibox_selected(pred, targets, &sel, self.box_weight)
    }
}

impl Loss for MultiboxLoss {
    /// # Shapes
    /// - `pred`: `(n, anchors, K + 5)`; `targets`: values `(n, 5 anchors)`, each row the
    ///   anchors' five numbers of [`targets`](super::anchors::targets) side by side.
    fn loss(&self, pred: &ArrayD<f32>, targets: &Targets) -> (f32, ArrayD<f32>) {
        let pred = pred
            .view()
            .into_dimensionality::<Ix3>()
            .unwrap_or_else(|_| {
                panic!(
                    "MultiboxLoss: pred must be (n, anchors, K + 5), got {:?}",
                    pred.shape()
                )
            });
        let Targets::Values(t) = targets else {
            panic!("MultiboxLoss: needs per-anchor value targets, got {targets:?}")
        };
        let (n, m, _) = pred.dim();
        assert_eq!(
            t.dim(),
            (n, m * 5),
            "MultiboxLoss: targets {:?} vs pred {:?} (expected (n, 5 anchors))",
            t.shape(),
            pred.shape()
        );
        let t3 = t
            .view()
            .into_shape_with_order((n, m, 5))
            .expect("standard layout");
        let (p, grad) = self.parts(pred, t3);
        ((p.cls + p.reg) as f32, grad)
    }
}
