//! Axis-aligned boxes: the three encodings, their conversions, IoU and GIoU.
//!
//! **Encodings.** Image coordinates in pixels, $x$ to the right and $y$ down. A box is
//! stored in *corner* form $(x_0, y_0, x_1, y_1)$ with $x_0 \le x_1$, $y_0 \le y_1$;
//! COCO files use the top-left corner and the size $(x, y, w, h)$; anchors and
//! YOLO-style heads use the centre and the size $(c_x, c_y, w, h)$:
//!
//! $$w = x_1 - x_0,\quad h = y_1 - y_0,\qquad x = x_0,\ y = y_0,\qquad
//! c_x = \tfrac{x_0 + x_1}{2},\ c_y = \tfrac{y_0 + y_1}{2}.$$
//!
//! Pixel edges are continuous coordinates: a box from 0 to 2 covers two pixels and has
//! width 2 (COCO's convention; the old VOC code added 1 to every width).
//!
//! **IoU.** The intersection of two boxes is again a box, with corners
//! $\max(x_0, x_0')$, $\max(y_0, y_0')$, $\min(x_1, x_1')$, $\min(y_1, y_1')$, or empty
//! when a side comes out negative, hence
//! $|A \cap B| = [\min(x_1,x_1') - \max(x_0,x_0')]_+
//! \cdot [\min(y_1,y_1') - \max(y_0,y_0')]_+$.
//! Inclusion-exclusion gives the union, $|A \cup B| = |A| + |B| - |A \cap B|$, and
//!
//! $$\mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|} \in [0, 1].$$
//!
//! It is symmetric, and it is 1 exactly when the boxes are equal: $|A \cap B| \le
//! \min(|A|, |B|) \le \max(|A|, |B|) \le |A \cup B|$, with equality throughout only if
//! $A \cap B = A = B$. It is scale invariant (multiply every coordinate by $s$ and
//! both areas scale by $s^2$), which is why detectors are judged by it rather than by a
//! distance between corners. When both boxes have zero area the union is 0 and the ratio
//! is undefined; we return 0 (nothing is covered, nothing overlaps).
//!
//! **GIoU.** IoU is 0 for every pair of disjoint boxes, however far apart, so as a loss
//! it gives no gradient to move a box that misses. Rezatofighi et al. (2019) subtract
//! the share of the smallest enclosing box $C$ that the union leaves empty:
//!
//! $$\mathrm{GIoU}(A, B) = \mathrm{IoU}(A, B) - \frac{|C| - |A \cup B|}{|C|}.$$
//!
//! Since $A \cup B \subseteq C$, the subtracted term is in $[0, 1]$, so
//! $-1 \le \mathrm{GIoU} \le \mathrm{IoU} \le 1$, with $\mathrm{GIoU} = \mathrm{IoU}$
//! when the union fills its enclosing box, and $\mathrm{GIoU} \to -1$ for two small boxes
//! far apart (exactly $-1$ for two distinct points). When $|C| = 0$ (every corner on
//! one line) the term is undefined and we take it as 0.
//!
//! **Precision.** Boxes are `f32` (the detector's precision); [`Bbox::iou_f64`]
//! computes the ratio in `f64` from the same coordinates, as pycocotools does, and
//! [`Bbox::iou`] is that value rounded once to `f32`, so equal boxes give exactly 1.

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use thiserror::Error;

// ANCHOR: bbox
/// An axis-aligned box in corner form, pixel units, x to the right, y down;
/// `x0 <= x1`, `y0 <= y1` (checked by every constructor).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Corners")]
pub struct Bbox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Bottom edge.
    pub y1: f32,
}
// ANCHOR_END: bbox

/// Why four numbers are not a box.
#[derive(Debug, Error, PartialEq)]
pub enum BoxError {
    /// A coordinate is NaN or infinite.
    #[error("box ({x0}, {y0}, {x1}, {y1}): coordinates must be finite")]
    NotFinite {
        /// Left edge.
        x0: f32,
        /// Top edge.
        y0: f32,
        /// Right edge.
        x1: f32,
        /// Bottom edge.
        y1: f32,
    },
    /// A corner box with a negative width or height.
    #[error(
        "box ({x0}, {y0}, {x1}, {y1}): corners must satisfy x0 <= x1 and y0 <= y1 \
         (is it in x-y-w-h form? use Bbox::from_xywh)"
    )]
    Inverted {
        /// Left edge.
        x0: f32,
        /// Top edge.
        y0: f32,
        /// Right edge.
        x1: f32,
        /// Bottom edge.
        y1: f32,
    },
}

/// The serialised form: the same four fields, checked on the way in.
#[derive(Deserialize)]
struct Corners {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

impl TryFrom<Corners> for Bbox {
    type Error = BoxError;
    fn try_from(c: Corners) -> Result<Self, BoxError> {
        Bbox::try_new(c.x0, c.y0, c.x1, c.y1)
    }
}

impl Bbox {
    /// A box from its corners; an error names the coordinates if they are not finite or
    /// if `x1 < x0` or `y1 < y0`. For boxes read from outside data.
    pub fn try_new(x0: f32, y0: f32, x1: f32, y1: f32) -> Result<Self, BoxError> {
        if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
            return Err(BoxError::NotFinite { x0, y0, x1, y1 });
        }
        if x1 < x0 || y1 < y0 {
            return Err(BoxError::Inverted { x0, y0, x1, y1 });
        }
        Ok(Bbox { x0, y0, x1, y1 })
    }

    /// A box from its corners. Panics if a coordinate is not finite or if `x1 < x0` or
    /// `y1 < y0` (a programmer error: use [`Bbox::try_new`] for outside data).
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self::try_new(x0, y0, x1, y1).unwrap_or_else(|e| panic!("Bbox::new: {e}"))
    }

    // ANCHOR: encodings
    /// COCO's encoding: top-left corner `(x, y)` and size `(w, h)`. Panics on a negative
    /// size.
    pub fn from_xywh(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self::new(x, y, x + w, y + h)
    }

    /// Centre `(cx, cy)` and size `(w, h)`, the encoding of anchors and box deltas.
    /// Panics on a negative size.
    pub fn from_cxcywh(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h)
    }

    /// `[x, y, w, h]`: top-left corner and size (COCO).
    pub fn xywh(&self) -> [f32; 4] {
        [self.x0, self.y0, self.width(), self.height()]
    }

    /// `[cx, cy, w, h]`: centre and size.
    pub fn cxcywh(&self) -> [f32; 4] {
        [
            0.5 * (self.x0 + self.x1),
            0.5 * (self.y0 + self.y1),
            self.width(),
            self.height(),
        ]
    }
    // ANCHOR_END: encodings

    /// `x1 - x0`.
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    /// `y1 - y0`.
    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    /// `width * height`.
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// The area in `f64`, from the sides taken in `f64` (exact for `f32` corners): the
    /// same expression as the intersection of the box with itself, so that equal boxes
    /// give an IoU of exactly 1.
    pub fn area_f64(&self) -> f64 {
        (f64::from(self.x1) - f64::from(self.x0))
            * (f64::from(self.y1) - f64::from(self.y0))
    }

    /// The area of the intersection with `o` (0 when they do not overlap).
    pub fn intersection(&self, o: &Bbox) -> f32 {
        self.intersection_f64(o) as f32
    }

    // ANCHOR: iou
    /// $|A \cap B|$ in `f64`: the overlap along each axis, clamped at 0, multiplied.
    fn intersection_f64(&self, o: &Bbox) -> f64 {
        let w = f64::from(self.x1.min(o.x1)) - f64::from(self.x0.max(o.x0));
        let h = f64::from(self.y1.min(o.y1)) - f64::from(self.y0.max(o.y0));
        w.max(0.0) * h.max(0.0)
    }

    /// Intersection over union in `f64`; 0 when both boxes have zero area.
    pub fn iou_f64(&self, o: &Bbox) -> f64 {
        let inter = self.intersection_f64(o);
        let union = self.area_f64() + o.area_f64() - inter;
        if union > 0.0 {
            // Rounding in the union can put a contained box a hair above 1.
            (inter / union).min(1.0)
        } else {
            0.0
        }
    }

    /// Intersection over union, in [0, 1]; 1 for equal boxes of positive area; 0 when
    /// both areas are 0.
    pub fn iou(&self, o: &Bbox) -> f32 {
        self.iou_f64(o) as f32
    }

    /// Generalised IoU: IoU minus the share of the enclosing box that the union leaves
    /// empty; in [-1, 1], never above the IoU. Equals the IoU when the enclosing box
    /// has zero area.
    pub fn giou(&self, o: &Bbox) -> f32 {
        let inter = self.intersection_f64(o);
        let union = self.area_f64() + o.area_f64() - inter;
        let iou = self.iou_f64(o);
        let enclosing = self.union_box(o).area_f64();
        // When the union fills the enclosing box, rounding can make the difference a
        // hair negative; it is 0, and GIoU never exceeds IoU.
        let empty = if enclosing > 0.0 {
            ((enclosing - union) / enclosing).max(0.0)
        } else {
            0.0
        };
        (iou - empty) as f32
    }
    // ANCHOR_END: iou

    /// The smallest box containing both.
    pub fn union_box(&self, o: &Bbox) -> Bbox {
        Bbox {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }

    /// The box clipped to an image of width `w` and height `h` (`[0, w] x [0, h]`); a box
    /// entirely outside becomes a zero-area box on the border.
    pub fn clip(&self, w: f32, h: f32) -> Bbox {
        assert!(
            w >= 0.0 && h >= 0.0,
            "Bbox::clip: image size {w} x {h} must be non-negative"
        );
        // Clamping both corners into the same interval keeps x0 <= x1 and y0 <= y1.
        Bbox {
            x0: self.x0.clamp(0.0, w),
            y0: self.y0.clamp(0.0, h),
            x1: self.x1.clamp(0.0, w),
            y1: self.y1.clamp(0.0, h),
        }
    }
}

/// `m[[i, j]] = a[i].iou(&b[j])`.
///
/// # Shapes
/// - `a`: `n` boxes, `b`: `m` boxes; returns `(n, m)`.
pub fn iou_matrix(a: &[Bbox], b: &[Bbox]) -> Array2<f32> {
    Array2::from_shape_fn((a.len(), b.len()), |(i, j)| a[i].iou(&b[j]))
}
