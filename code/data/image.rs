//! Photos: reading PNG and JPEG files into arrays, and resizing them the way image
//! classifiers expect.
//!
//! A decoded photo is an `(h, w, 3)` array of `u8` (rows, columns, RGB), the layout of
//! the file; a network wants `(3, h, w)` floats. [`to_chw`] converts, and the resampling
//! works on the float form.
//!
//! **Resampling.** Shrinking a 512-pixel photo to 224 pixels by sampling it (nearest
//! neighbour, or bilinear interpolation between the two nearest pixels) skips most of the
//! pixels and aliases fine texture into noise. [`resize`] is a *filter*: output pixel $i$
//! of an axis shrunk by the factor $s = n_\text{in}/n_\text{out}$ is a weighted mean of
//! the input pixels $j$ around its centre $c_i = (i + \tfrac12)s$, with the triangle
//! (tent) weights $w_{ij} = \max\!\big(0,\ 1 - |j + \tfrac12 - c_i| / \max(s, 1)\big)$,
//! normalised to sum to one. When enlarging ($s < 1$) this is exactly bilinear
//! interpolation; when shrinking, the tent widens with $s$ so every input pixel counts
//! (the "antialiased bilinear" of Pillow and of torchvision's `antialias=True`). The two
//! axes are filtered one after the other (the filter is separable).

use std::path::Path;

use anyhow::{bail, Context, Result};
use ndarray::{s, Array2, Array3, ArrayView3, Axis};

/// The largest image [`read_rgb`] decodes, in pixels: a file that claims more is refused
/// before its pixels are allocated (a 40-byte PNG can claim 4 billion pixels).
pub const MAX_PIXELS: u64 = 64 << 20;

/// Reads a PNG or JPEG file as `(h, w, 3)` RGB bytes. Gray images are repeated on the
/// three channels and an alpha channel is dropped.
///
/// Fails, naming the file, when it cannot be read, is not a PNG or JPEG, is truncated, or
/// claims more than [`MAX_PIXELS`] pixels.
pub fn read_rgb(path: &Path) -> Result<Array3<u8>> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let Some(format) = reader.format() else {
        bail!("{}: not a PNG or JPEG image", path.display());
    };
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let img = reader
        .decode()
        .with_context(|| format!("{}: cannot decode as {format:?}", path.display()))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        bail!("{}: the image is empty ({w} x {h})", path.display());
    }
    let rgb = img.into_rgb8().into_raw();
    Array3::from_shape_vec((h, w, 3), rgb).context("decoded buffer has h * w * 3 bytes")
}

/// `(h, w, 3)` bytes as `(3, h, w)` floats in `[0, 1]` (byte / 255).
pub fn to_chw(img: &ArrayView3<u8>) -> Array3<f32> {
    let (h, w, c) = img.dim();
    Array3::from_shape_fn((c, h, w), |(k, i, j)| f32::from(img[[i, j, k]]) / 255.0)
}

// ANCHOR: resize_weights
/// The `(n_out, n_in)` matrix of [`resize`]'s tent weights along one axis: row `i` holds
/// the weights of output pixel `i`, normalised to sum to one.
pub fn resize_weights(n_in: usize, n_out: usize) -> Array2<f32> {
    assert!(
        n_in > 0 && n_out > 0,
        "resize_weights: sizes must be positive ({n_in} -> {n_out})"
    );
    let scale = n_in as f64 / n_out as f64;
    let support = scale.max(1.0);
    let mut m = Array2::zeros((n_out, n_in));
    for i in 0..n_out {
        let centre = (i as f64 + 0.5) * scale;
        let lo = (centre - support).floor().max(0.0) as usize;
        let hi = ((centre + support).ceil() as usize).min(n_in);
        let mut row: Vec<(usize, f64)> = (lo..hi)
            .map(|j| {
                (
                    j,
                    (1.0 - ((j as f64 + 0.5 - centre) / support).abs()).max(0.0),
                )
            })
            .filter(|&(_, w)| w > 0.0)
            .collect();
        if row.is_empty() {
            // Only when the tent falls between pixel centres at an edge: nearest pixel.
            row.push(((centre as usize).min(n_in - 1), 1.0));
        }
        let total: f64 = row.iter().map(|&(_, w)| w).sum();
        for (j, w) in row {
            m[[i, j]] = (w / total) as f32;
        }
    }
    m
}
// ANCHOR_END: resize_weights

/// Resizes `(c, h, w)` planes to `(c, out_h, out_w)` with the antialiased tent filter of
/// the [module docs](self): rows, then columns, each a product with [`resize_weights`].
pub fn resize(img: &ArrayView3<f32>, out_h: usize, out_w: usize) -> Array3<f32> {
    let (c, h, w) = img.dim();
    let wy = resize_weights(h, out_h);
    let wx_t = resize_weights(w, out_w).reversed_axes();
    let mut out = Array3::zeros((c, out_h, out_w));
    for (k, mut plane) in out.axis_iter_mut(Axis(0)).enumerate() {
        plane.assign(&wy.dot(&img.index_axis(Axis(0), k)).dot(&wx_t));
    }
    out
}

/// The usual evaluation crop of an ImageNet classifier: resize so the shorter side is
/// `size / crop_fraction` (256 for 224 at 0.875), then cut the central `size x size`
/// square. Input and output are `(c, h, w)`.
pub fn resize_and_center_crop(
    img: &ArrayView3<f32>,
    size: usize,
    crop_fraction: f32,
) -> Array3<f32> {
    assert!(
        size > 0 && crop_fraction > 0.0 && crop_fraction <= 1.0,
        "resize_and_center_crop: size {size}, crop fraction {crop_fraction}"
    );
    let (_, h, w) = img.dim();
    let shorter = ((size as f32 / crop_fraction).round() as usize).max(size);
    let (nh, nw) = if h <= w {
        (shorter, ((w * shorter) as f64 / h as f64).round() as usize)
    } else {
        (((h * shorter) as f64 / w as f64).round() as usize, shorter)
    };
    let resized = resize(img, nh, nw);
    let (top, left) = ((nh - size) / 2, (nw - size) / 2);
    resized
        .slice(s![.., top..top + size, left..left + size])
        .to_owned()
}
