//! A detection dataset built from real data: MNIST digits placed at random positions and
//! scales on larger blank canvases, each with the box of its ink and its class.
//!
//! No dataset of images with boxes ships in a package we may use offline, so we make one
//! from MNIST, the way multi-digit "MNIST detection" sets are usually made. For each
//! canvas, a seeded generator draws how many digits (`0..=max_digits`), and for each one a
//! digit of the source split, a side `s` in `[min_side, max_side]` pixels and a position.
//! The 28x28 digit is resized to `s x s` (bilinear) and pasted with `max`, so touching
//! digits overlap as ink does. Its **box is the ink's**: the tight bounding box of the
//! resized pixels above `ink_threshold`, not the `s x s` square, because MNIST digits sit
//! in the middle 20x20 of their 28x28 frame and a square box would be a poor target. A
//! digit whose ink box overlaps an earlier one by more than `max_iou` is redrawn (a few
//! tries, then dropped), so digits may touch but never hide each other.
//!
//! Training canvases take digits from MNIST's training split, test canvases from its test
//! split: no test digit is ever seen in training. Everything is a function of the seed.

use ndarray::{Array2, Array4, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ap::GroundTruth;
use super::boxes::Bbox;
use crate::data::Dataset;

/// How canvases are drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanvasConfig {
    /// Canvas side in pixels (square canvases).
    pub side: usize,
    /// At most this many digits per canvas (the count is uniform in `0..=max_digits`).
    pub max_digits: usize,
    /// Smallest side of a pasted digit, in pixels (MNIST's frame is 28).
    pub min_side: usize,
    /// Largest side of a pasted digit, in pixels.
    pub max_side: usize,
    /// Largest IoU allowed between the ink boxes of two digits of a canvas.
    pub max_iou: f32,
    /// A resized pixel is ink when its intensity (in `[0, 1]`) is above this.
    pub ink_threshold: f32,
}

impl Default for CanvasConfig {
    /// 64x64 canvases with up to 4 digits of 16 to 40 pixels, boxes overlapping by at
    /// most IoU 0.15.
    fn default() -> Self {
        CanvasConfig {
            side: 64,
            max_digits: 4,
            min_side: 16,
            max_side: 40,
            max_iou: 0.15,
            ink_threshold: 0.3,
        }
    }
}

/// One object of a canvas: a digit and the box of its ink.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// The digit, 0 to 9.
    pub class: usize,
    /// The tight box of its ink, in canvas pixels (`x1`, `y1` exclusive: a one-pixel
    /// digit has width 1).
    pub bbox: Bbox,
}

/// Canvases and their objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvases {
    /// The images `(n, 1, side, side)`, pixels in `[0, 1]`.
    pub images: Array4<f32>,
    /// The objects of each canvas, in the order they were pasted.
    pub objects: Vec<Vec<Object>>,
}

impl Canvases {
    /// The number of canvases.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there are no canvases.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every object as a ground truth of the evaluation (image = canvas index).
    pub fn ground_truths(&self) -> Vec<GroundTruth> {
        self.objects
            .iter()
            .enumerate()
            .flat_map(|(image, objs)| {
                objs.iter().map(move |o| GroundTruth {
                    image,
                    class: o.class,
                    bbox: o.bbox,
                })
            })
            .collect()
    }

    /// Canvas `i` as grey bytes (0 = white, 255 = black ink), row-major, for figures.
    pub fn bytes(&self, i: usize) -> Vec<u8> {
        self.images
            .index_axis(Axis(0), i)
            .iter()
            .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    }
}

// ANCHOR: resize
/// `img` resized to `side x side` by bilinear interpolation, sampling the source at the
/// centre of each target pixel (pixel `j` covers `[j, j + 1)`, so its centre maps to
/// `(j + 0.5) * 28 / side - 0.5` in the source), clamped at the borders.
///
/// # Shapes
/// - `img`: `(h, w)`; the result: `(side, side)`.
pub fn resize(img: ArrayView2<f32>, side: usize) -> Array2<f32> {
    let (h, w) = img.dim();
    assert!(
        h > 0 && w > 0 && side > 0,
        "resize: image {h}x{w} to {side}"
    );
    let sample = |t: usize, n: usize| -> (usize, usize, f32) {
        let s =
            ((t as f32 + 0.5) * n as f32 / side as f32 - 0.5).clamp(0.0, (n - 1) as f32);
        let i0 = s.floor() as usize;
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, s - i0 as f32)
    };
    Array2::from_shape_fn((side, side), |(r, c)| {
        let (r0, r1, fr) = sample(r, h);
        let (c0, c1, fc) = sample(c, w);
        let top = img[[r0, c0]] * (1.0 - fc) + img[[r0, c1]] * fc;
        let bottom = img[[r1, c0]] * (1.0 - fc) + img[[r1, c1]] * fc;
        top * (1.0 - fr) + bottom * fr
    })
}
// ANCHOR_END: resize

// ANCHOR: ink_box
/// The tight box of the pixels of `img` above `threshold`, offset by `(x, y)`, or `None`
/// when no pixel is ink. Pixel `(r, c)` covers `[c, c + 1) x [r, r + 1)`.
pub fn ink_box(img: ArrayView2<f32>, threshold: f32, x: usize, y: usize) -> Option<Bbox> {
    let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
    for ((r, c), &p) in img.indexed_iter() {
        if p > threshold {
            r0 = r0.min(r);
            r1 = r1.max(r + 1);
            c0 = c0.min(c);
            c1 = c1.max(c + 1);
        }
    }
    (r0 != usize::MAX).then(|| {
        Bbox::new(
            (x + c0) as f32,
            (y + r0) as f32,
            (x + c1) as f32,
            (y + r1) as f32,
        )
    })
}
// ANCHOR_END: ink_box

// ANCHOR: make_canvases
/// `n` canvases drawn with `seed` from the digits of `digits` (`(m, 1, 28, 28)` images
/// with class labels, e.g. [`Dataset::mnist`]).
///
/// # Panics
/// If `digits` is empty or not one-channel images, or the configuration cannot place a
/// digit (`max_side > side`, `min_side > max_side`).
pub fn make_canvases(
    digits: &Dataset,
    n: usize,
    cfg: &CanvasConfig,
    seed: u64,
) -> Canvases {
    let shape = digits.x.shape();
    assert!(
        shape.len() == 4 && shape[1] == 1 && shape[0] > 0,
        "make_canvases: digits must be (m, 1, h, w) images, got {shape:?}"
    );
    assert!(
        cfg.min_side >= 1 && cfg.min_side <= cfg.max_side && cfg.max_side <= cfg.side,
        "make_canvases: digit sides {}..={} do not fit a {} canvas",
        cfg.min_side,
        cfg.max_side,
        cfg.side
    );
    let labels = digits.labels();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = Array4::zeros((n, 1, cfg.side, cfg.side));
    let mut objects = Vec::with_capacity(n);
    for i in 0..n {
        let mut canvas = images.index_axis_mut(Axis(0), i);
        let mut canvas = canvas.index_axis_mut(Axis(0), 0);
        let mut objs: Vec<Object> = vec![];
        let count = rng.random_range(0..=cfg.max_digits);
        for _ in 0..count {
            // A few tries to find a place that does not hide an earlier digit.
            for _try in 0..10 {
                let k = rng.random_range(0..shape[0]);
                let s = rng.random_range(cfg.min_side..=cfg.max_side);
                let x = rng.random_range(0..=cfg.side - s);
                let y = rng.random_range(0..=cfg.side - s);
                let digit = digits.x.slice(ndarray::s![k, 0, .., ..]);
                let small = resize(digit, s);
                let Some(bbox) = ink_box(small.view(), cfg.ink_threshold, x, y) else {
                    continue;
                };
                if objs.iter().any(|o| o.bbox.iou(&bbox) > cfg.max_iou) {
                    continue;
                }
                let mut patch = canvas.slice_mut(ndarray::s![y..y + s, x..x + s]);
                patch.zip_mut_with(&small, |p: &mut f32, &q| *p = p.max(q));
                objs.push(Object {
                    class: labels[k],
                    bbox,
                });
                break;
            }
        }
        objects.push(objs);
    }
    Canvases { images, objects }
}
// ANCHOR_END: make_canvases
