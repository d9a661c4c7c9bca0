//! Anchors, matching and the box encoding of a single-stage detector.
//!
//! **Anchors.** A feature map of stride $s$ and size $H \times W$ has a cell per
//! $s \times s$ patch of the canvas. Each cell carries $A$ anchor boxes centred on the
//! cell, $c = (s(j + \tfrac12), s(i + \tfrac12))$, one per (size $z$, aspect ratio $a$)
//! pair, with width $z\sqrt a$ and height $z/\sqrt a$. The head predicts, for every
//! anchor, class scores and four numbers that move and stretch it.
//!
//! **Matching** turns a canvas's boxes into a target per anchor (SSD, RetinaNet): with
//! the IoU matrix between anchors and ground truths, an anchor whose best IoU is
//! $\ge 0.5$ is *positive* (it must predict that object's class and box), one whose best
//! IoU is $< 0.4$ is *negative* (background), and the ones in between are ignored (they
//! are neither clearly the object nor clearly not). Then each ground truth's best anchor
//! is made positive for it whatever its IoU (its best one not already claimed this way
//! by an earlier object), so that no object, however oddly shaped, is left without an
//! anchor.
//!
//! **Encoding.** A positive anchor $(a_x, a_y, a_w, a_h)$ (centre and size) learns the
//! offsets to its box $(g_x, g_y, g_w, g_h)$:
//!
//! $$t_x = \frac{g_x - a_x}{a_w\,\sigma_c},\quad t_y = \frac{g_y - a_y}{a_h\,\sigma_c},\quad
//! t_w = \frac{\ln(g_w / a_w)}{\sigma_s},\quad t_h = \frac{\ln(g_h / a_h)}{\sigma_s},$$
//!
//! offsets relative to the anchor's size (so the same numbers mean the same shift for a
//! small and a large anchor) and log-ratios for the size (so that halving and doubling are
//! symmetric, and any real output decodes to a positive size). $\sigma_c = 0.1$ and
//! $\sigma_s = 0.2$ are SSD's "variances": they scale the targets to about unit size.
//! Decoding inverts it: $g_x = a_x + a_w \sigma_c t_x$, $g_w = a_w e^{\sigma_s t_w}$.

use serde::{Deserialize, Serialize};

use super::boxes::{iou_matrix, Bbox};
use super::canvas::Object;

/// Scale of the centre offsets in the encoding ($\sigma_c$).
pub const CENTRE_SCALE: f32 = 0.1;
/// Scale of the log size ratios in the encoding ($\sigma_s$).
pub const SIZE_SCALE: f32 = 0.2;

/// One feature map's grid of anchors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnchorGrid {
    /// Canvas pixels per cell.
    pub stride: usize,
    /// Cells per side (square maps).
    pub cells: usize,
    /// Anchor sizes $z$ in pixels (the geometric mean of width and height).
    pub sizes: Vec<f32>,
    /// Aspect ratios $a$ = width / height.
    pub ratios: Vec<f32>,
}

impl AnchorGrid {
    /// Anchors per cell, $A$.
    pub fn per_cell(&self) -> usize {
        self.sizes.len() * self.ratios.len()
    }

    /// All anchors of the grid, row by row, then cell by cell, then size-major within a
    /// cell: anchor `(i, j, k)` has index `(i * cells + j) * per_cell + k`, the order of
    /// the head's output.
    pub fn anchors(&self) -> Vec<Bbox> {
        let s = self.stride as f32;
        let mut out = Vec::with_capacity(self.cells * self.cells * self.per_cell());
        for i in 0..self.cells {
            for j in 0..self.cells {
                let (cx, cy) = (s * (j as f32 + 0.5), s * (i as f32 + 0.5));
                for &z in &self.sizes {
                    for &a in &self.ratios {
                        out.push(Bbox::from_cxcywh(cx, cy, z * a.sqrt(), z / a.sqrt()));
                    }
                }
            }
        }
        out
    }
}

/// Every anchor of several grids, in order (the detector's output order).
pub fn all_anchors(grids: &[AnchorGrid]) -> Vec<Bbox> {
    grids.iter().flat_map(AnchorGrid::anchors).collect()
}

// ANCHOR: encode
/// The regression target $t$ that moves `anchor` onto `gt`.
pub fn encode(anchor: &Bbox, gt: &Bbox) -> [f32; 4] {
    let [ax, ay, aw, ah] = anchor.cxcywh();
    let [gx, gy, gw, gh] = gt.cxcywh();
    [
        (gx - ax) / (aw * CENTRE_SCALE),
        (gy - ay) / (ah * CENTRE_SCALE),
        (gw / aw).ln() / SIZE_SCALE,
        (gh / ah).ln() / SIZE_SCALE,
    ]
}

/// The box that the deltas `t` make of `anchor` (the inverse of [`encode`]).
pub fn decode(anchor: &Bbox, t: [f32; 4]) -> Bbox {
    let [ax, ay, aw, ah] = anchor.cxcywh();
    // exp of a wild untrained output would overflow to infinity: cap the log-ratio at
    // ln(1000), far beyond any real box.
    let cap = 1000f32.ln();
    Bbox::from_cxcywh(
        ax + t[0] * aw * CENTRE_SCALE,
        ay + t[1] * ah * CENTRE_SCALE,
        aw * (t[2] * SIZE_SCALE).min(cap).exp(),
        ah * (t[3] * SIZE_SCALE).min(cap).exp(),
    )
}
// ANCHOR_END: encode

/// What an anchor must predict.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Assignment {
    /// Neither clearly an object nor clearly background: no loss.
    Ignore,
    /// Background.
    Negative,
    /// Object `gt` (an index into the canvas's objects).
    Positive {
        /// The matched object.
        gt: usize,
    },
}

/// The IoU thresholds of matching.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatchThresholds {
    /// Best IoU at or above this: positive.
    pub positive: f32,
    /// Best IoU below this: negative.
    pub negative: f32,
}

impl Default for MatchThresholds {
    /// SSD's and RetinaNet's: positive at 0.5, negative below 0.4.
    fn default() -> Self {
        MatchThresholds {
            positive: 0.5,
            negative: 0.4,
        }
    }
}

// ANCHOR: match_anchors
/// The assignment of every anchor for a canvas with `objects` (see the module docs).
pub fn match_anchors(
    anchors: &[Bbox],
    objects: &[Object],
    t: MatchThresholds,
) -> Vec<Assignment> {
    if objects.is_empty() {
        return vec![Assignment::Negative; anchors.len()];
    }
    let gts: Vec<Bbox> = objects.iter().map(|o| o.bbox).collect();
    let iou = iou_matrix(anchors, &gts); // (anchors, objects)
    let mut out: Vec<Assignment> = iou
        .outer_iter()
        .map(|row| {
            // The best object of this anchor; ties go to the first.
            let (g, &best) = row.iter().enumerate().fold((0, &f32::MIN), |b, (g, v)| {
                if *v > *b.1 {
                    (g, v)
                } else {
                    b
                }
            });
            if best >= t.positive {
                Assignment::Positive { gt: g }
            } else if best < t.negative {
                Assignment::Negative
            } else {
                Assignment::Ignore
            }
        })
        .collect();
    // Each object's best anchor is positive for it, whatever its IoU. Two objects can
    // share a best anchor; the later one then takes its best anchor not yet claimed, so
    // that every object keeps one.
    let mut claimed = vec![false; anchors.len()];
    for g in 0..gts.len() {
        let best = iou
            .column(g)
            .iter()
            .enumerate()
            .filter(|(a, _)| !claimed[*a])
            .fold(None, |b: Option<(usize, f32)>, (a, &v)| match b {
                Some((_, bv)) if bv >= v => b,
                _ => Some((a, v)),
            });
        if let Some((a, _)) = best {
            claimed[a] = true;
            out[a] = Assignment::Positive { gt: g };
        }
    }
    out
}
// ANCHOR_END: match_anchors

/// The per-anchor target row of a canvas: for each anchor five numbers, the label
/// (`-1` ignore, `0` background, `1 + class` an object) and the four deltas of
/// [`encode`] (zero unless positive). What the detection loss reads.
pub fn targets(anchors: &[Bbox], objects: &[Object], t: MatchThresholds) -> Vec<f32> {
    let mut out = Vec::with_capacity(anchors.len() * 5);
    for (a, m) in anchors.iter().zip(match_anchors(anchors, objects, t)) {
        match m {
            Assignment::Ignore => out.extend([-1.0, 0.0, 0.0, 0.0, 0.0]),
            Assignment::Negative => out.extend([0.0; 5]),
            Assignment::Positive { gt } => {
                out.push((objects[gt].class + 1) as f32);
                out.extend(encode(a, &objects[gt].bbox));
            }
        }
    }
    out
}

/// The canvases as a [`Dataset`](crate::data::Dataset) the training loop reads: inputs
/// `(n, 1, side, side)`, and as targets one row of [`targets`] per canvas, `(n, 5
/// anchors)`.
pub fn dataset(
    canvases: &super::canvas::Canvases,
    anchors: &[Bbox],
    t: MatchThresholds,
) -> crate::data::Dataset {
    let n = canvases.len();
    let mut y = ndarray::Array2::zeros((n, anchors.len() * 5));
    for (mut row, objs) in y.outer_iter_mut().zip(&canvases.objects) {
        row.assign(&ndarray::Array1::from(targets(anchors, objs, t)));
    }
    crate::data::Dataset::new(
        canvases.images.clone().into_dyn(),
        crate::data::Targets::Values(y),
        None,
    )
}
