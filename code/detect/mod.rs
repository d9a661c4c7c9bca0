//! Object detection (chapter 7): boxes, IoU and NMS, average precision (7.1), and a
//! single-stage detector trained from scratch (7.2): [`canvas`] (the dataset),
//! [`anchors`] (anchors, matching, box encoding), [`ssd`] (the network), [`multibox`]
//! (the loss), [`inference`] (from outputs to detections) and [`candle_twin`].

pub mod anchors;
pub mod ap;
pub mod boxes;
pub mod candle_twin;
pub mod canvas;
pub mod inference;
pub mod multibox;
pub mod nms;
pub mod ssd;
