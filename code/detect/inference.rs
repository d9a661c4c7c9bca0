//! From the detector's raw output to detections: softmax over each anchor's scores,
//! decode its deltas into a box, keep (anchor, class) pairs above a score threshold,
//! non-maximum suppression per class, and the `top_k` best per image.

use ndarray::{ArrayView3, Axis};
use serde::{Deserialize, Serialize};

use super::anchors::decode;
use super::boxes::Bbox;
use super::nms::{nms, Detection};
use crate::nn::{Layer, Mode};

/// How raw outputs become detections.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferenceConfig {
    /// Keep an (anchor, class) pair when its probability is at least this.
    pub score_threshold: f32,
    /// NMS drops a box whose IoU with a better one of its class exceeds this.
    pub nms_iou: f32,
    /// Detections kept per image after NMS (COCO counts at most 100).
    pub top_k: usize,
    /// Candidates per image entering NMS (the best ones by score): bounds its cost.
    pub pre_nms: usize,
}

impl Default for InferenceConfig {
    /// Score at least 0.05 (low: average precision rewards recall at low scores), NMS at
    /// IoU 0.45 (SSD's), at most 100 detections from the best 400 candidates.
    fn default() -> Self {
        InferenceConfig {
            score_threshold: 0.05,
            nms_iou: 0.45,
            top_k: 100,
            pre_nms: 400,
        }
    }
}

// ANCHOR: postprocess
/// The detections of image `image` from its raw output `(anchors, K + 5)`.
///
/// # Shapes
/// - `out`: `(anchors, K + 1 + 4)`, `anchors` of the same length; boxes are clipped to
///   the `side x side` canvas.
pub fn postprocess(
    out: ndarray::ArrayView2<f32>,
    anchors: &[Bbox],
    image: usize,
    side: f32,
    cfg: &InferenceConfig,
) -> Vec<Detection> {
    let (m, w) = out.dim();
    assert_eq!(
        m,
        anchors.len(),
        "postprocess: {m} rows for {} anchors",
        anchors.len()
    );
    let k1 = w - 4;
    let mut cands = vec![];
    for (a, row) in out.outer_iter().enumerate() {
        let z = row.as_slice().expect("rows of a standard-layout output");
        let mx = z[..k1].iter().fold(f32::NEG_INFINITY, |p, &q| p.max(q));
        let e: Vec<f32> = z[..k1].iter().map(|&v| (v - mx).exp()).collect();
        let sum: f32 = e.iter().sum();
        let mut bbox = None;
        // Class 0 is background: a digit k is class k + 1 of the scores.
        for (k, &ek) in e.iter().enumerate().skip(1) {
            let score = ek / sum;
            if score >= cfg.score_threshold {
                let b = *bbox.get_or_insert_with(|| {
                    decode(&anchors[a], [z[k1], z[k1 + 1], z[k1 + 2], z[k1 + 3]])
                        .clip(side, side)
                });
                cands.push(Detection {
                    image,
                    class: k - 1,
                    score,
                    bbox: b,
                });
            }
        }
    }
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    cands.truncate(cfg.pre_nms);
    let keep = nms(&cands, cfg.nms_iou, true);
    keep.into_iter().take(cfg.top_k).map(|i| cands[i]).collect()
}
// ANCHOR_END: postprocess

/// Every image's detections from a batch of raw outputs `(n, anchors, K + 5)`, images
/// numbered from `first`.
pub fn postprocess_batch(
    out: ArrayView3<f32>,
    anchors: &[Bbox],
    first: usize,
    side: f32,
    cfg: &InferenceConfig,
) -> Vec<Detection> {
    out.axis_iter(Axis(0))
        .enumerate()
        .flat_map(|(i, o)| postprocess(o, anchors, first + i, side, cfg))
        .collect()
}

/// The raw outputs of `model` (evaluation mode) on `images` `(n, 1, side, side)`, in
/// batches of `batch_size`: `(n, anchors, K + 5)`.
pub fn raw_outputs(
    model: &mut dyn Layer,
    images: &ndarray::ArrayD<f32>,
    batch_size: usize,
) -> ndarray::Array3<f32> {
    let n = images.shape()[0];
    let mut parts = vec![];
    for start in (0..n).step_by(batch_size.max(1)) {
        let end = (start + batch_size).min(n);
        let x = images.slice_axis(Axis(0), (start..end).into()).to_owned();
        let y = model.forward_owned(x, Mode::Eval);
        parts.push(y.into_dimensionality::<ndarray::Ix3>().unwrap_or_else(|e| {
            panic!("raw_outputs: the model must give (n, anchors, K + 5): {e}")
        }));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).expect("same anchors")
}
