//! Object detection: boxes, their overlap, non-maximum suppression and the metrics that
//! judge a detector.
//!
//! - [`boxes`]: [`Bbox`] in corner form with the COCO `(x, y, w, h)` and centre-size
//!   encodings, [`Bbox::iou`], [`Bbox::giou`] and [`iou_matrix`].
//! - [`nms`](mod@nms): [`Detection`] (image, class, score, box) and greedy
//!   [`nms()`](fn@nms), per class or class-agnostic.
//!
//! Conventions: pixel coordinates, `x` to the right and `y` down, continuous edges (a box
//! from 0 to 2 is two pixels wide); images and classes are indices from 0.

pub mod boxes;
pub mod nms;

pub use boxes::{iou_matrix, Bbox, BoxError};
pub use nms::{nms, Detection};
