//! Object detection (chapter 7): boxes, their overlap, non-maximum suppression and the
//! metrics that judge a detector (7.1), and a single-stage detector trained from scratch
//! (7.2).
//!
//! - [`boxes`]: [`Bbox`] in corner form with the COCO `(x, y, w, h)` and centre-size
//!   encodings, [`Bbox::iou`], [`Bbox::giou`] and [`iou_matrix`].
//! - [`nms`](mod@nms): [`Detection`] (image, class, score, box) and greedy
//!   [`nms()`](fn@nms), per class or class-agnostic.
//! - [`canvas`]: the detection dataset (MNIST digits on larger canvases, boxes from
//!   their ink); [`anchors`]: anchors, matching, the box encoding; [`ssd`]: the network;
//!   [`multibox`]: its loss; [`inference`]: from outputs to detections;
//!   [`candle_twin`]: the heads and the loss in candle.
//!
//! Conventions: pixel coordinates, `x` to the right and `y` down, continuous edges (a box
//! from 0 to 2 is two pixels wide); images and classes are indices from 0.

pub mod anchors;
pub mod ap;
pub mod boxes;
pub mod candle_twin;
pub mod canvas;
pub mod inference;
pub mod multibox;
pub mod nms;
pub mod ssd;

pub use boxes::{iou_matrix, Bbox, BoxError};
pub use nms::{nms, Detection};
