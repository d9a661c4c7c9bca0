//! Detections and greedy non-maximum suppression.
//!
//! A detector scores thousands of anchors, and the anchors around one object all fire:
//! the raw output is a cluster of overlapping boxes per object. **Greedy NMS** keeps the
//! best of each cluster: sort the boxes by score, then walk down the list and keep a box
//! unless it overlaps a box already kept by more than the threshold,
//!
//! $$\text{keep } b_i \iff \mathrm{IoU}(b_i, b_k) \le \tau \text{ for every kept } b_k
//! \text{ ranked above } b_i.$$
//!
//! Two kept boxes of one cluster therefore never overlap by more than $\tau$, and every
//! suppressed box overlaps a kept box ranked above it by more than $\tau$: those two
//! properties define the result, given the order. The order is by score, highest first,
//! and ties are broken by the position in the input (earlier first), so the result is a
//! function of the input list alone.
//!
//! *Per class*, a box only suppresses boxes of its own class: a dog and the cat sitting
//! on it may overlap heavily and both be right. *Class-agnostic* NMS lets any box
//! suppress any other, for detectors whose classes compete for one object. Boxes of
//! different images never suppress each other, so one call can take a whole batch.
//! The cost is $O(n^2)$ IoUs in the worst case (one cluster of $n$ boxes).

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use super::Bbox;

/// One scored box predicted by a detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The image it belongs to (an index into the evaluated set).
    pub image: usize,
    /// The predicted class.
    pub class: usize,
    /// The confidence: higher is more certain; only the order matters.
    pub score: f32,
    /// Where.
    pub bbox: Bbox,
}

/// Indices of `dets` sorted by score, highest first, ties in input order (a stable
/// sort). Takes detections or references to them. Panics on a NaN score.
pub fn rank_by_score<D: Borrow<Detection>>(dets: &[D]) -> Vec<usize> {
    let score = |i: usize| dets[i].borrow().score;
    if let Some(i) = (0..dets.len()).find(|&i| score(i).is_nan()) {
        panic!("rank_by_score: detection {i} has a NaN score");
    }
    let mut order: Vec<usize> = (0..dets.len()).collect();
    // Without NaN, partial_cmp is a total order; unlike total_cmp it holds -0 and 0
    // equal, as numpy's sort does.
    order.sort_by(|&a, &b| score(b).partial_cmp(&score(a)).unwrap());
    order
}

// ANCHOR: nms
/// Greedy NMS: the indices of the kept detections, highest score first (ties by index).
/// A detection is suppressed by a kept one of the same image (and, if `per_class`, the
/// same class) ranked above it whose IoU with it exceeds `iou_threshold`. Panics on a
/// NaN score.
pub fn nms(dets: &[Detection], iou_threshold: f32, per_class: bool) -> Vec<usize> {
    let mut kept: Vec<usize> = Vec::new();
    for i in rank_by_score(dets) {
        let d = &dets[i];
        let suppressed = kept.iter().any(|&k| {
            let k = &dets[k];
            k.image == d.image
                && (!per_class || k.class == d.class)
                && k.bbox.iou(&d.bbox) > iou_threshold
        });
        if !suppressed {
            kept.push(i);
        }
    }
    kept
}
// ANCHOR_END: nms
