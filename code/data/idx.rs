//! IDX image sets (MNIST, Fashion-MNIST): the file format, read without trusting its
//! header, and the loaders into [`Dataset`].
//!
//! An IDX file is a big-endian `u32` magic (`0x803` for images, `0x801` for labels), one
//! `u32` per dimension, then the `u8` payload; the book's files are gzip-compressed.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ndarray::Array4;

use super::{DataDir, Dataset};
/// The largest IDX payload the readers accept (the MNIST training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 256 << 20;

/// A stack of grey-scale images, pixels row-major, image after image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// Number of images.
    pub n: usize,
    /// Pixel rows per image.
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
    /// `n * rows * cols` bytes, 0 = background, 255 = ink.
    pub pixels: Vec<u8>,
}

impl Images {
    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.rows * self.cols;
        &self.pixels[i * s..(i + 1) * s]
    }
}

/// Images with their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledImages {
    /// The images.
    pub images: Images,
    /// One label per image, in `0..n_classes`.
    pub labels: Vec<u8>,
}

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

/// Reads the gzip-compressed bytes of an IDX file, checking magic, dimensions and length
/// before allocating. Returns the dimensions and the payload.
fn read_idx(
    path: &Path,
    want_magic: u32,
    n_dims: usize,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let mut gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    let what = |msg: String| anyhow::anyhow!("{}: {msg}", path.display());
    let head_len = 4 + 4 * n_dims;
    let mut head = vec![0u8; head_len];
    read_full(&mut gz, &mut head).map_err(|e| match e {
        FullError::Short(n) => what(format!(
            "truncated IDX header: {n} of {head_len} bytes (is the file complete?)"
        )),
        FullError::Io(e) => what(format!("not a readable gzip IDX file: {e}")),
    })?;
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if magic != want_magic {
        bail!(what(format!(
            "wrong IDX magic 0x{magic:08x}, expected 0x{want_magic:08x}"
        )));
    }
    let dims: Vec<usize> = (0..n_dims)
        .map(|i| {
            let b = &head[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let total = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let total = match total {
        Some(t) if t <= MAX_IDX_BYTES => t as usize,
        _ => bail!(what(format!(
            "header claims dimensions {dims:?}, more than the {MAX_IDX_BYTES}-byte limit"
        ))),
    };
    // Read what is there, up to one byte past the claim, before trusting the claim.
    let mut payload = Vec::new();
    (&mut gz)
        .take(total as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(|e| what(format!("corrupt gzip stream: {e}")))?;
    if payload.len() < total {
        bail!(what(format!(
            "truncated: header claims {dims:?} = {total} bytes of data, file has {}",
            payload.len()
        )));
    }
    if payload.len() > total {
        bail!(what(format!(
            "trailing data after the {total} bytes the header claims"
        )));
    }
    Ok((dims, payload))
}

enum FullError {
    Short(usize),
    Io(std::io::Error),
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::result::Result<(), FullError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Err(FullError::Short(n)),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FullError::Io(e)),
        }
    }
    Ok(())
}

/// Reads a gzip IDX image file (magic `0x00000803`).
pub fn read_idx_images(path: &Path) -> Result<Images> {
    let (dims, pixels) = read_idx(path, 0x0000_0803, 3)?;
    Ok(Images {
        n: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads a gzip IDX label file (magic `0x00000801`); every label must be below
/// `n_classes`.
pub fn read_idx_labels(path: &Path, n_classes: u8) -> Result<Vec<u8>> {
    let (_, labels) = read_idx(path, 0x0000_0801, 1)?;
    if let Some(i) = labels.iter().position(|&l| l >= n_classes) {
        bail!(
            "{}: label {} at index {i} is not below {n_classes}",
            path.display(),
            labels[i]
        );
    }
    Ok(labels)
}

/// Reads a pair of IDX files and checks they describe the same number of images.
pub fn read_labelled(
    images: &Path,
    labels: &Path,
    n_classes: u8,
) -> Result<LabelledImages> {
    let im = read_idx_images(images)?;
    let lab = read_idx_labels(labels, n_classes)?;
    if im.n != lab.len() {
        bail!(
            "{} has {} images but {} has {} labels",
            images.display(),
            im.n,
            labels.display(),
            lab.len()
        );
    }
    Ok(LabelledImages {
        images: im,
        labels: lab,
    })
}

/// The names of MNIST's two files for a split.
pub fn mnist_files(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => (
            "mnist/train-images-idx3-ubyte.gz",
            "mnist/train-labels-idx1-ubyte.gz",
        ),
        Split::Test => (
            "mnist/t10k-images-idx3-ubyte.gz",
            "mnist/t10k-labels-idx1-ubyte.gz",
        ),
    }
}

/// The names of Fashion-MNIST's two files for a split.
pub fn fashion_mnist_files(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Train => (
            "fashion_mnist/train-images-idx3-ubyte.gz",
            "fashion_mnist/train-labels-idx1-ubyte.gz",
        ),
        Split::Test => (
            "fashion_mnist/t10k-images-idx3-ubyte.gz",
            "fashion_mnist/t10k-labels-idx1-ubyte.gz",
        ),
    }
}

/// A 28 x 28, ten-class IDX pair from the catalog, verified, then read.
fn read_28x28(
    dir: &DataDir,
    what: &str,
    (im, lab): (&str, &str),
) -> Result<LabelledImages> {
    let data = read_labelled(&dir.verified(im)?, &dir.verified(lab)?, 10)?;
    if data.images.rows != 28 || data.images.cols != 28 {
        bail!(
            "{what} images must be 28x28, found {}x{}",
            data.images.rows,
            data.images.cols
        );
    }
    Ok(data)
}

/// MNIST, verified against the catalog, then read.
pub fn mnist(dir: &DataDir, split: Split) -> Result<LabelledImages> {
    read_28x28(dir, "MNIST", mnist_files(split))
}

/// Fashion-MNIST, verified against the catalog, then read (an optional dataset: `dlbook
/// data fetch fashion_mnist` gets it).
pub fn fashion_mnist(dir: &DataDir, split: Split) -> Result<LabelledImages> {
    read_28x28(dir, "Fashion-MNIST", fashion_mnist_files(split))
}

impl Dataset {
    /// The first `n` images of an MNIST split (all of them if `n` is larger): `x` is
    /// `(n, 1, 28, 28)`, pixels scaled to `[0, 1]`; the targets are the digits.
    pub fn mnist(dir: &DataDir, split: Split, n: usize) -> Result<Dataset> {
        Ok(Dataset::from_images(&mnist(dir, split)?, n))
    }

    /// The first `n` images of a Fashion-MNIST split, as [`Dataset::mnist`] (classes:
    /// T-shirt/top, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle
    /// boot).
    pub fn fashion_mnist(dir: &DataDir, split: Split, n: usize) -> Result<Dataset> {
        Ok(Dataset::from_images(&fashion_mnist(dir, split)?, n))
    }

    /// The first `n` images of `set` (all of them if `n` is larger) as one-channel
    /// images `(n, 1, rows, cols)`, each byte `p` becoming `p / 255` in `f32`; labels as
    /// classes.
    pub fn from_images(set: &LabelledImages, n: usize) -> Dataset {
        let im = &set.images;
        let n = n.min(im.n);
        let pixels: Vec<f32> = im.pixels[..n * im.rows * im.cols]
            .iter()
            .map(|&p| f32::from(p) / 255.0)
            .collect();
        let x = Array4::from_shape_vec((n, 1, im.rows, im.cols), pixels)
            .expect("n * rows * cols pixels");
        let y = set.labels[..n].iter().map(|&l| usize::from(l)).collect();
        Dataset::classes(x.into_dyn(), y)
    }
}
