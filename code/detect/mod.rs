//! Object detection: boxes, their overlap, non-maximum suppression and the metrics that
//! judge a detector.
//!
//! - [`boxes`]: [`Bbox`] in corner form with the COCO `(x, y, w, h)` and centre-size
//!   encodings, [`Bbox::iou`], [`Bbox::giou`] and [`iou_matrix`].
//! - [`nms`](mod@nms): [`Detection`] (image, class, score, box) and greedy
//!   [`nms()`](fn@nms), per class or class-agnostic.
//! - [`ap`]: [`GroundTruth`], COCO's evaluation ([`coco_eval`] with [`CocoParams`],
//!   returning the twelve numbers of pycocotools and per-class AP in a [`CocoSummary`]),
//!   VOC's all-point AP ([`voc_ap`]) and its precision-recall curve ([`pr_curve`]).
//!
//! Conventions: pixel coordinates, `x` to the right and `y` down, continuous edges (a box
//! from 0 to 2 is two pixels wide); images and classes are indices from 0.
//!
//! **Against the agreed API**, these differ or are added:
//! - [`CocoParams::iou_thresholds`] is `Vec<f64>`, not `Vec<f32>`: the thresholds are
//!   compared with IoUs computed in `f64` ([`Bbox::iou_f64`]), bit for bit as pycocotools
//!   compares them; float literals work either way. [`CocoParams::area_ranges`] is a
//!   `Vec<AreaRange>` (label, min, max).
//! - [`CocoSummary`] also carries pycocotools' `precision` `(T, R, K, A, M)` and
//!   `recall` `(T, K, A, M)` arrays and the recall points; [`pr_curve`] gives one
//!   class's precision-recall curve and envelope (for figures).
//! - [`Bbox::try_new`] and [`BoxError`] for boxes read from outside data (deserialising
//!   a [`Bbox`] checks it too); [`Bbox::area_f64`], [`Bbox::iou_f64`],
//!   [`Bbox::union_box`]; [`nms::rank_by_score`].
//! - [`nms()`](fn@nms) takes detections of any number of images: boxes of different
//!   images never suppress each other.
//! - Crowd annotations (COCO's `iscrowd`) are not supported.

pub mod ap;
pub mod boxes;
pub mod nms;

pub use ap::{
    coco_eval, pr_curve, voc_ap, AreaRange, CocoParams, CocoSummary, GroundTruth,
};
pub use boxes::{iou_matrix, Bbox, BoxError};
pub use nms::{nms, Detection};
