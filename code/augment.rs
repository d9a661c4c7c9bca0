//! Data augmentation for images of any size and channel count: composable, seeded
//! transforms.
//!
//! A transform maps an image to a random variant that keeps its label: a digit shifted
//! by two pixels, turned by ten degrees or sprinkled with noise is still the same digit.
//! Training on fresh variants every epoch multiplies the data the model sees and builds
//! in the invariances we know the task has.
//!
//! - [`Shift`]: integer translation by $(d_x, d_y)$, uniform in $[-k, k]^2$, zeros shifted
//!   in.
//! - [`Rotate`]: rotation by $\varphi$ uniform in $[-\varphi_{\max}, \varphi_{\max}]$
//!   about the image centre $c$; each output pixel $p$ reads the input at
//!   $c + R(-\varphi)(p - c)$ by bilinear interpolation (inverse mapping, so no holes).
//! - [`Noise`]: adds $\mathcal N(0, \sigma^2)$ to every pixel and clips to $[0, 1]$.
//! - [`Compose`]: applies transforms in order.
//!
//! An image is `(C, H, W)`. A geometric transform draws once per image and moves every
//! channel the same way (the colours of a pixel travel together); noise is drawn per
//! value, channel after channel, row-major. Every transform draws from the generator it
//! is given, so a seed fixes the variants.

use ndarray::{Array2, Array3, ArrayD, ArrayView3, Ix4};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

// ANCHOR: transform
/// A random, label-preserving image transform.
pub trait Transform {
    /// A transformed copy of `img`, `(C, H, W)` with values in `[0, 1]`.
    fn apply(&self, img: ArrayView3<'_, f32>, rng: &mut ChaCha8Rng) -> Array3<f32>;
}
// ANCHOR_END: transform

fn check(img: &[f32], w: usize, h: usize) {
    assert_eq!(
        img.len(),
        w * h,
        "image of {} pixels is not {h}x{w}",
        img.len()
    );
}

/// `f` applied to every `H x W` plane of `img`.
fn per_channel(
    img: ArrayView3<'_, f32>,
    f: impl Fn(&[f32], usize, usize) -> Vec<f32>,
) -> Array3<f32> {
    let (c, h, w) = img.dim();
    let mut out = Array3::zeros((c, h, w));
    for (src, mut dst) in img.outer_iter().zip(out.outer_iter_mut()) {
        // Row-major, whatever the layout of `img`.
        let plane: Vec<f32> = src.iter().copied().collect();
        let moved = f(&plane, w, h);
        dst.iter_mut().zip(moved).for_each(|(d, v)| *d = v);
    }
    out
}

/// Translation by up to `max` pixels in each direction.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Shift {
    /// Largest shift, in pixels.
    pub max: i32,
}

// ANCHOR: shift
impl Transform for Shift {
    fn apply(&self, img: ArrayView3<'_, f32>, rng: &mut ChaCha8Rng) -> Array3<f32> {
        let dx = rng.random_range(-self.max..=self.max);
        let dy = rng.random_range(-self.max..=self.max);
        per_channel(img, |plane, w, h| shift(plane, w, h, dx, dy))
    }
}

/// `img` moved right by `dx` and down by `dy` pixels, zeros shifted in.
pub fn shift(img: &[f32], w: usize, h: usize, dx: i32, dy: i32) -> Vec<f32> {
    check(img, w, h);
    let mut out = vec![0.0; w * h];
    for r in 0..h as i32 {
        for c in 0..w as i32 {
            let (sr, sc) = (r - dy, c - dx);
            if (0..h as i32).contains(&sr) && (0..w as i32).contains(&sc) {
                out[(r as usize) * w + c as usize] = img[(sr as usize) * w + sc as usize];
            }
        }
    }
    out
}
// ANCHOR_END: shift

/// Rotation by up to `max_degrees` either way about the centre.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Rotate {
    /// Largest angle, in degrees.
    pub max_degrees: f32,
}

// ANCHOR: rotate
impl Transform for Rotate {
    fn apply(&self, img: ArrayView3<'_, f32>, rng: &mut ChaCha8Rng) -> Array3<f32> {
        let deg = rng.random_range(-self.max_degrees..=self.max_degrees);
        per_channel(img, |plane, w, h| rotate(plane, w, h, deg.to_radians()))
    }
}

/// `img` rotated by `angle` radians about its centre (bilinear, zeros outside).
pub fn rotate(img: &[f32], w: usize, h: usize, angle: f32) -> Vec<f32> {
    check(img, w, h);
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let at = |r: i64, c: i64| -> f32 {
        if r < 0 || c < 0 || r >= h as i64 || c >= w as i64 {
            0.0
        } else {
            img[r as usize * w + c as usize]
        }
    };
    let mut out = vec![0.0; w * h];
    for r in 0..h {
        for c in 0..w {
            // Inverse map: where in the input does output pixel (r, c) come from?
            let (x, y) = (c as f32 - cx, r as f32 - cy);
            let sx = cos * x + sin * y + cx;
            let sy = -sin * x + cos * y + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            out[r * w + c] = (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
                + fy * ((1.0 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
        }
    }
    out
}
// ANCHOR_END: rotate

/// Gaussian pixel noise of standard deviation `std`, clipped to `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Noise {
    /// Standard deviation of the noise.
    pub std: f32,
}

impl Transform for Noise {
    fn apply(&self, img: ArrayView3<'_, f32>, rng: &mut ChaCha8Rng) -> Array3<f32> {
        let normal = Normal::new(0.0, self.std).expect("a finite, non-negative std");
        // `iter` visits in logical (row-major) order: the draws do not depend on layout.
        let noisy = img
            .iter()
            .map(|&p| (p + normal.sample(rng)).clamp(0.0, 1.0));
        Array3::from_shape_vec(img.raw_dim(), noisy.collect()).expect("same size")
    }
}

// ANCHOR: compose
/// Transforms applied one after the other.
pub struct Compose(pub Vec<Box<dyn Transform>>);

impl Transform for Compose {
    fn apply(&self, img: ArrayView3<'_, f32>, rng: &mut ChaCha8Rng) -> Array3<f32> {
        self.0
            .iter()
            .fold(img.to_owned(), |im, t| t.apply(im.view(), rng))
    }
}

/// The book's pipeline for digits: shift by up to `max_shift` pixels, rotate by up to
/// `max_degrees`, add noise of standard deviation `noise_std`.
pub fn digits_pipeline(max_shift: i32, max_degrees: f32, noise_std: f32) -> Compose {
    Compose(vec![
        Box::new(Rotate { max_degrees }),
        Box::new(Shift { max: max_shift }),
        Box::new(Noise { std: noise_std }),
    ])
}
// ANCHOR_END: compose

/// Applies `t` to every image of a `(B, C, H, W)` batch, image after image.
///
/// # Panics
/// If `x` is not four-dimensional.
pub fn augment_images(
    x: &ArrayD<f32>,
    t: &dyn Transform,
    rng: &mut ChaCha8Rng,
) -> ArrayD<f32> {
    let x4 = x.view().into_dimensionality::<Ix4>().unwrap_or_else(|_| {
        panic!("augment_images: expected (B, C, H, W), got {:?}", x.shape())
    });
    let mut out = ndarray::Array4::zeros(x4.raw_dim());
    for (src, mut dst) in x4.outer_iter().zip(out.outer_iter_mut()) {
        dst.assign(&t.apply(src, rng));
    }
    out.into_dyn()
}

/// Applies `t` to every row of `(N, w * h)` one-channel images: [`augment_images`] on
/// the batch viewed as `(N, 1, h, w)`, for models that read flat rows.
pub fn augment_batch(
    x: &Array2<f32>,
    w: usize,
    h: usize,
    t: &dyn Transform,
    rng: &mut ChaCha8Rng,
) -> Array2<f32> {
    assert_eq!(
        x.ncols(),
        w * h,
        "rows of {:?} are not {h}x{w} images",
        x.dim()
    );
    let n = x.nrows();
    let images = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, 1, h, w)) // (N, h*w) -> (N, 1, h, w)
        .expect("N * h * w values")
        .into_dyn();
    augment_images(&images, t, rng)
        .into_shape_with_order((n, w * h)) // back to rows
        .expect("N * h * w values")
        .into_dimensionality()
        .expect("two axes")
}
