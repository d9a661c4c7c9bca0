//! A small single-stage detector in the manner of SSD: a convolutional backbone from
//! scratch, and on each of one or two feature maps a classification head and a
//! box-regression head, both 3x3 convolutions that predict, for every anchor of every
//! cell, $K + 1$ class scores (the digits and background) and 4 box deltas.
//!
//! ```text
//! (n, 1, 64, 64)
//! conv1 3x3 stride 2, 1 -> 16, BN, ReLU       (n, 16, 32, 32)
//! conv2 3x3, 16 -> 32, BN, ReLU, max pool 2   (n, 32, 16, 16)
//! conv3 3x3, 32 -> 48, BN, ReLU, max pool 2   (n, 48, 8, 8)    stride 8 -> heads
//! conv4 3x3 stride 2, 48 -> 64, BN, ReLU      (n, 64, 4, 4)    stride 16 -> heads
//! ```
//!
//! The output is one tensor, every anchor's scores and deltas side by side,
//! `(n, anchors, K + 1 + 4)`, so that the detector is a [`Layer`] like any other and
//! [`train::fit`](crate::train::fit) trains it with the detection loss of
//! [`multibox`](super::multibox). The backward pass is the forward's branches in
//! reverse: the stride-8 map receives the gradient of its own heads *plus* the gradient
//! that flows back through `conv4` from the stride-16 heads.

use ndarray::{concatenate, s, ArrayD, ArrayViewD, Axis, Ix3, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::anchors::AnchorGrid;
use crate::cnn::{BatchNorm2d, Conv2d, MaxPool2d};
use crate::nn::{join, Activation, ActivationLayer, Layer, Mode, Module, Named, Param};

/// The architecture of the detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SsdConfig {
    /// Canvas side in pixels (a multiple of 16).
    pub side: usize,
    /// Object classes $K$ (background is added).
    pub n_classes: usize,
    /// Channels of `conv1` to `conv4`.
    pub widths: [usize; 4],
    /// Anchor sizes of the stride-8 map.
    pub sizes8: Vec<f32>,
    /// Anchor sizes of the stride-16 map; empty: one feature map only (then the
    /// stride-8 map carries every anchor).
    pub sizes16: Vec<f32>,
    /// Aspect ratios (width / height) of the anchors of both maps.
    pub ratios: Vec<f32>,
    /// With the box-regression heads; without, the anchors themselves are the boxes.
    pub box_head: bool,
}

impl Default for SsdConfig {
    /// 64x64 canvases, 10 digits, two maps: sizes 12 and 18 at stride 8, 26 and 36 at
    /// stride 16, ratios 0.5 and 0.8 (digits are taller than wide).
    fn default() -> Self {
        SsdConfig {
            side: 64,
            n_classes: 10,
            widths: [16, 32, 48, 64],
            sizes8: vec![12.0, 18.0],
            sizes16: vec![26.0, 36.0],
            ratios: vec![0.5, 0.8],
            box_head: true,
        }
    }
}

impl SsdConfig {
    /// The anchor grids of the feature maps, in output order.
    pub fn grids(&self) -> Vec<AnchorGrid> {
        assert!(
            self.side.is_multiple_of(16),
            "SsdConfig: side {} is not a multiple of 16",
            self.side
        );
        let mut out = vec![AnchorGrid {
            stride: 8,
            cells: self.side / 8,
            sizes: self.sizes8.clone(),
            ratios: self.ratios.clone(),
        }];
        if !self.sizes16.is_empty() {
            out.push(AnchorGrid {
                stride: 16,
                cells: self.side / 16,
                sizes: self.sizes16.clone(),
                ratios: self.ratios.clone(),
            });
        }
        out
    }

    /// Numbers per anchor in the output: $K + 1$ scores and 4 deltas.
    pub fn out_per_anchor(&self) -> usize {
        self.n_classes + 5
    }
}

// ANCHOR: head
/// The two heads on one feature map: a 3x3 convolution to $A(K+1)$ class scores and
/// one to $4A$ box deltas (absent when the detector has no box regression: the deltas
/// are then zero, and the anchors are the boxes).
///
/// # Shapes
/// - input: a feature map `(n, c, h, w)`; output: `(n, h w A, K + 1 + 4)`, anchor
///   `(i, j, a)` at row `(i w + j) A + a`, as [`AnchorGrid::anchors`] orders them.
pub struct Head {
    /// Class scores, `c -> A (K + 1)` channels, channel `a (K + 1) + k`.
    pub cls: Conv2d,
    /// Box deltas, `c -> 4 A` channels, channel `4 a + d`.
    pub reg: Option<Conv2d>,
    /// Anchors per cell $A$.
    pub per_cell: usize,
    /// Scores per anchor $K + 1$.
    pub n_scores: usize,
    hw: (usize, usize),
}

/// `(n, A m, h, w)` -> `(n, h w A, m)`: the channels of each cell split into its anchors.
fn to_rows(y: ArrayD<f32>, per_cell: usize) -> ArrayD<f32> {
    let (n, ch, h, w) = (y.shape()[0], y.shape()[1], y.shape()[2], y.shape()[3]);
    let m = ch / per_cell;
    // (n, A, m, h, w) -> (n, h, w, A, m), then rows.
    let y = y
        .into_shape_with_order(IxDyn(&[n, per_cell, m, h, w]))
        .expect("a conv output is contiguous");
    let y = y.permuted_axes(IxDyn(&[0, 3, 4, 1, 2]));
    let y = y.as_standard_layout().into_owned();
    y.into_shape_with_order(IxDyn(&[n, h * w * per_cell, m]))
        .expect("standard layout")
}

/// The inverse of [`to_rows`]: `(n, h w A, m)` -> `(n, A m, h, w)`.
fn from_rows(d: ArrayViewD<f32>, per_cell: usize, h: usize, w: usize) -> ArrayD<f32> {
    let (n, m) = (d.shape()[0], d.shape()[2]);
    let d = d.as_standard_layout();
    let d = d
        .into_shape_with_order(IxDyn(&[n, h, w, per_cell, m]))
        .expect("standard layout");
    // (n, h, w, A, m) -> (n, A, m, h, w)
    let d = d.permuted_axes(IxDyn(&[0, 3, 4, 1, 2]));
    d.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[n, per_cell * m, h, w]))
        .expect("standard layout")
}

impl Head {
    /// Heads on `c_in` channels for `per_cell` anchors and `n_classes` classes, He-normal
    /// weights from `rng` (the regression head only if `box_head`).
    pub fn new(
        c_in: usize,
        per_cell: usize,
        n_classes: usize,
        box_head: bool,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let n_scores = n_classes + 1;
        Head {
            cls: Conv2d::new(c_in, per_cell * n_scores, (3, 3), 1, 1, rng),
            reg: box_head.then(|| Conv2d::new(c_in, per_cell * 4, (3, 3), 1, 1, rng)),
            per_cell,
            n_scores,
            hw: (0, 0),
        }
    }
}

impl Module for Head {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.cls.visit_params(&join(prefix, "cls"), f);
        if let Some(r) = &mut self.reg {
            r.visit_params(&join(prefix, "reg"), f);
        }
    }
}

impl Layer for Head {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        assert_eq!(
            x.ndim(),
            4,
            "Head: expected (n, c, h, w), got {:?}",
            x.shape()
        );
        // 3x3 convolutions with padding 1: the map keeps its size.
        self.hw = (x.shape()[2], x.shape()[3]);
        let scores = to_rows(self.cls.forward(x, mode), self.per_cell);
        let deltas = match &mut self.reg {
            Some(r) => to_rows(r.forward(x, mode), self.per_cell),
            None => ArrayD::zeros(IxDyn(&[scores.shape()[0], scores.shape()[1], 4])),
        };
        concatenate(Axis(2), &[scores.view(), deltas.view()]).expect("same rows")
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let dy3 = dy.view().into_dimensionality::<Ix3>().unwrap_or_else(|_| {
            panic!(
                "Head::backward: dy must be (n, rows, m), got {:?}",
                dy.shape()
            )
        });
        let (h, w) = self.hw;
        let k = self.n_scores;
        let dcls = from_rows(dy3.slice(s![.., .., ..k]).into_dyn(), self.per_cell, h, w);
        let mut dx = self.cls.backward(&dcls);
        if let Some(r) = &mut self.reg {
            let dreg =
                from_rows(dy3.slice(s![.., .., k..]).into_dyn(), self.per_cell, h, w);
            dx += &r.backward(&dreg);
        }
        dx
    }
}
// ANCHOR_END: head

// ANCHOR: ssd
/// The detector: backbone to stride 8, optional `conv4` to stride 16, heads per map.
///
/// # Shapes
/// - input: canvases `(n, 1, side, side)`; output: `(n, anchors, K + 1 + 4)`, the
///   anchors of [`SsdConfig::grids`] in order.
pub struct Ssd {
    /// `conv1` to `conv3` with their batch norms, ReLUs and pools: the stride-8 map.
    pub backbone: Named,
    /// `conv4`: the stride-16 map (when there are two maps).
    pub extra: Option<Named>,
    /// The heads of the stride-8 map and, if any, the stride-16 map.
    pub heads: Vec<Head>,
    rows: Vec<usize>,
}

fn block(
    net: &mut Named,
    i: usize,
    c_in: usize,
    c_out: usize,
    stride: usize,
    rng: &mut ChaCha8Rng,
) {
    net.push(
        &format!("conv{i}"),
        Conv2d::new(c_in, c_out, (3, 3), stride, 1, rng),
    );
    net.push(&format!("bn{i}"), BatchNorm2d::new(c_out));
    net.push(&format!("relu{i}"), ActivationLayer::new(Activation::Relu));
}

impl Ssd {
    /// The detector of `cfg` with He-normal weights drawn from `seed`.
    pub fn new(cfg: &SsdConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let [c1, c2, c3, c4] = cfg.widths;
        let mut backbone = Named::new();
        // conv1 strides by 2 instead of being pooled: the full-resolution map is the
        // most expensive one to normalise, activate and pool, and one channel of 64x64
        // pixels needs no more than 16 filters at half resolution.
        block(&mut backbone, 1, 1, c1, 2, &mut rng);
        for (i, (a, b)) in [(c1, c2), (c2, c3)].into_iter().enumerate() {
            block(&mut backbone, i + 2, a, b, 1, &mut rng);
            backbone.push(&format!("pool{}", i + 2), MaxPool2d::new((2, 2), (2, 2)));
        }
        let grids = cfg.grids();
        let mut heads = vec![Head::new(
            c3,
            grids[0].per_cell(),
            cfg.n_classes,
            cfg.box_head,
            &mut rng,
        )];
        let extra = (grids.len() > 1).then(|| {
            let mut e = Named::new();
            block(&mut e, 4, c3, c4, 2, &mut rng);
            heads.push(Head::new(
                c4,
                grids[1].per_cell(),
                cfg.n_classes,
                cfg.box_head,
                &mut rng,
            ));
            e
        });
        Ssd {
            backbone,
            extra,
            heads,
            rows: vec![],
        }
    }
}

impl Module for Ssd {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.backbone.visit_params(&join(prefix, "backbone"), f);
        if let Some(e) = &mut self.extra {
            e.visit_params(&join(prefix, "extra"), f);
        }
        for (h, name) in self.heads.iter_mut().zip(["head8", "head16"]) {
            h.visit_params(&join(prefix, name), f);
        }
    }

    fn visit_buffers(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, ndarray::ArrayViewMutD<'_, f32>),
    ) {
        self.backbone.visit_buffers(&join(prefix, "backbone"), f);
        if let Some(e) = &mut self.extra {
            e.visit_buffers(&join(prefix, "extra"), f);
        }
    }
}

impl Ssd {
    fn run_forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let f8 = self.backbone.forward_owned(x, mode);
        let mut outs = vec![self.heads[0].forward(&f8, mode)];
        if let Some(e) = &mut self.extra {
            let f16 = e.forward_owned(f8, mode);
            outs.push(self.heads[1].forward(&f16, mode));
        }
        self.rows = outs.iter().map(|o| o.shape()[1]).collect();
        let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
        concatenate(Axis(1), &views).expect("same batch and width")
    }

    /// The gradient at the stride-8 map: its heads' plus what comes back through conv4.
    fn df8(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        assert_eq!(
            dy.shape()[1],
            self.rows.iter().sum::<usize>(),
            "Ssd::backward: dy {:?} does not match the last forward's {} anchors",
            dy.shape(),
            self.rows.iter().sum::<usize>()
        );
        let r8 = self.rows[0];
        let d8 = dy.slice(s![.., ..r8, ..]).to_owned().into_dyn();
        let mut df8 = self.heads[0].backward(&d8);
        if let Some(e) = &mut self.extra {
            let d16 = dy.slice(s![.., r8.., ..]).to_owned().into_dyn();
            let df16 = self.heads[1].backward(&d16);
            df8 += &e.backward_owned(df16);
        }
        df8
    }
}

impl Layer for Ssd {
    fn forward(&mut self, x: &ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.run_forward(x.clone(), mode)
    }

    fn forward_owned(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        self.run_forward(x, mode)
    }

    fn backward(&mut self, dy: &ArrayD<f32>) -> ArrayD<f32> {
        let df8 = self.df8(dy);
        self.backbone.backward_owned(df8)
    }

    fn backward_params(&mut self, dy: ArrayD<f32>) {
        let df8 = self.df8(&dy);
        self.backbone.backward_params(df8);
    }
}
// ANCHOR_END: ssd
