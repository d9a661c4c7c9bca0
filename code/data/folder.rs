//! A folder of a reader's own images, one subfolder per class, the layout
//! torchvision's `ImageFolder` and Keras's `image_dataset_from_directory` read:
//!
//! ```text
//! flowers/
//!     daisy/     img001.jpg  img002.png  ...
//!     rose/      a.JPEG  b.jpg  ...
//!     tulip/     ...
//! ```
//!
//! [`ImageFolder::scan`] lists the classes (the subfolder names, sorted, so class `k` is
//! the same on every machine) and their PNG and JPEG files (by extension, in any case);
//! anything else is listed in [`ImageFolder::ignored`] so a tool can say what it left
//! out. Nothing is decoded yet. [`ImageFolder::split`] draws a stratified, seeded
//! train/validation split: every class keeps the same share of its images in each part,
//! so a small class is never missing from validation. [`ImageFolder::load`] decodes a
//! list of files into a [`Dataset`] of `(n, 3, s, s)` images with values in `[0, 1]`:
//! gray and RGBA files become RGB ([`read_rgb`]), and every image, whatever its size, is
//! scaled so that its shorter side is `s` and cut to its central `s x s` square
//! ([`resize_and_center_crop`]), which keeps its proportions.
//!
//! **Bad files.** A file that cannot be decoded (truncated, corrupt, or not really an
//! image) stops loading with an error naming it, by default: a user who points a tool at
//! a folder expects every image in it to count, and a dataset that silently shrinks
//! hides the problem. With [`BadImages::Skip`] (the `--skip-bad` flag) such files are
//! left out, each reported with its error in [`Loaded::skipped`], for the common case of
//! a few broken downloads among thousands of good images.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use ndarray::{Array3, Array4, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::image::{read_rgb, resize_and_center_crop, to_chw};
use super::Dataset;

/// File extensions read as images (compared without regard to case).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Whether `path` has a PNG or JPEG extension.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The classes and image files of a folder with one subfolder per class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFolder {
    /// The folder scanned.
    pub root: PathBuf,
    /// Class names: the subfolder names, sorted; class `k` is `classes[k]`.
    pub classes: Vec<String>,
    /// Every image file with its class, by class, then by file name.
    pub files: Vec<(PathBuf, usize)>,
    /// What was left out: files that are not PNG or JPEG, files directly in the root,
    /// and folders inside class folders (which are not searched).
    pub ignored: Vec<PathBuf>,
}

/// Training and validation files: indices into [`ImageFolder::files`], ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderSplit {
    /// The files to train on.
    pub train: Vec<usize>,
    /// The files to validate on.
    pub val: Vec<usize>,
}

/// What to do with an image file that cannot be decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadImages {
    /// Stop with an error that names the file.
    #[default]
    Fail,
    /// Leave it out, and report it in [`Loaded::skipped`].
    Skip,
}

/// Images decoded by [`ImageFolder::load`].
#[derive(Clone, Debug)]
pub struct Loaded {
    /// `(n, 3, s, s)` images in `[0, 1]`, with their classes.
    pub data: Dataset,
    /// For each example of `data`, its index in [`ImageFolder::files`].
    pub files: Vec<usize>,
    /// The files left out under [`BadImages::Skip`], with their errors.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The entries of `dir`, sorted by name (the order of `read_dir` is the file system's).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// Hidden entries (`.DS_Store`, `.git`) are no one's data.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

impl ImageFolder {
    // ANCHOR: scan
    /// Lists the classes and images under `root` (see the [module docs](self)).
    ///
    /// Fails with a message that says how to fix it when `root` does not exist or is not
    /// a folder, has no class subfolders, has only one (a classifier needs two), or has
    /// a class folder without a single PNG or JPEG file (naming it).
    pub fn scan(root: &Path) -> Result<ImageFolder> {
        const LAYOUT: &str = "expected one subfolder per class, each holding that \
                              class's PNG or JPEG images (root/cat/1.jpg, root/dog/2.png)";
        if !root.exists() {
            bail!("{}: no such folder; {LAYOUT}", root.display());
        }
        if !root.is_dir() {
            bail!("{}: not a folder; {LAYOUT}", root.display());
        }
        let (mut classes, mut files, mut ignored) = (vec![], vec![], vec![]);
        for entry in sorted_entries(root)? {
            if is_hidden(&entry) {
                continue;
            }
            if !entry.is_dir() {
                ignored.push(entry);
                continue;
            }
            let name = entry
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| {
                    format!("{}: a folder name that is not UTF-8", entry.display())
                })?
                .to_string();
            let class = classes.len();
            let mut n_images = 0;
            for file in sorted_entries(&entry)? {
                if is_hidden(&file) {
                    continue;
                }
                if file.is_file() && is_image_file(&file) {
                    files.push((file, class));
                    n_images += 1;
                } else {
                    ignored.push(file);
                }
            }
            if n_images == 0 {
                bail!(
                    "{}: class `{name}` has no PNG or JPEG images; add some, or remove \
                     the folder",
                    entry.display()
                );
            }
            classes.push(name);
        }
        match classes.len() {
            0 => {
                let loose = ignored.iter().filter(|p| is_image_file(p)).count();
                if loose > 0 {
                    bail!(
                        "{}: no class folders, but {loose} {} directly inside: is it one \
                         class's folder? Point at the folder above it; {LAYOUT}",
                        root.display(),
                        if loose == 1 { "image" } else { "images" }
                    );
                }
                bail!("{}: no class folders; {LAYOUT}", root.display())
            }
            1 => bail!(
                "{}: only one class (`{}`): a classifier needs at least two classes, \
                 each in its own subfolder",
                root.display(),
                classes[0]
            ),
            _ => {}
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            files,
            ignored,
        })
    }
    // ANCHOR_END: scan

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Number of image files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no image files (never, for a scanned folder).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Image files per class.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.n_classes()];
        for &(_, k) in &self.files {
            c[k] += 1;
        }
        c
    }

    // ANCHOR: split
    /// A stratified split: in every class, a seeded shuffle of its files puts
    /// `round(val_fraction * n)` of them in validation, at least one and never all.
    ///
    /// Fails when `val_fraction` is not strictly between 0 and 1, or when a class has a
    /// single image (it cannot be both trained on and validated), naming the class.
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<FolderSplit> {
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            bail!("the validation fraction must be between 0 and 1, got {val_fraction}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut train, mut val) = (vec![], vec![]);
        for (k, name) in self.classes.iter().enumerate() {
            let mut idx: Vec<usize> =
                (0..self.len()).filter(|&i| self.files[i].1 == k).collect();
            if idx.len() < 2 {
                bail!(
                    "class `{name}` has {} image: at least two are needed, one to train \
                     on and one to validate on",
                    idx.len()
                );
            }
            idx.shuffle(&mut rng);
            let n_val = ((val_fraction * idx.len() as f64).round() as usize)
                .clamp(1, idx.len() - 1);
            val.extend_from_slice(&idx[..n_val]);
            train.extend_from_slice(&idx[n_val..]);
        }
        train.sort_unstable();
        val.sort_unstable();
        Ok(FolderSplit { train, val })
    }
    // ANCHOR_END: split

    /// Decodes the files at `idx` (indices into [`ImageFolder::files`]) into
    /// `(n, 3, size, size)` images, with a progress bar.
    pub fn load(&self, idx: &[usize], size: usize, bad: BadImages) -> Result<Loaded> {
        let bar = crate::progress::bar(idx.len() as u64, "loading");
        let out = self.load_with_bar(idx, size, bad, &bar);
        bar.finish_and_clear();
        out
    }

    /// [`ImageFolder::load`], counting each file on `bar` (one bar for many calls).
    pub fn load_with_bar(
        &self,
        idx: &[usize],
        size: usize,
        bad: BadImages,
        bar: &ProgressBar,
    ) -> Result<Loaded> {
        assert!(size > 0, "ImageFolder::load: size must be positive");
        // Files are independent: decode them in parallel, in order.
        let images: Vec<Result<Array3<f32>>> = idx
            .par_iter()
            .map(|&i| {
                let image = load_image(&self.files[i].0, size);
                bar.inc(1);
                image
            })
            .collect();
        let mut kept = Array4::zeros((idx.len(), 3, size, size));
        let (mut files, mut labels, mut skipped) = (vec![], vec![], vec![]);
        for (&i, image) in idx.iter().zip(images) {
            match image {
                Ok(im) => {
                    kept.index_axis_mut(Axis(0), files.len()).assign(&im);
                    files.push(i);
                    labels.push(self.files[i].1);
                }
                Err(e) if bad == BadImages::Skip => {
                    skipped.push((self.files[i].0.clone(), format!("{e:#}")));
                }
                Err(e) => {
                    return Err(e.context(
                        "a file that cannot be decoded (fix or remove it, or pass \
                         --skip-bad to leave such files out)",
                    ))
                }
            }
        }
        // Skipped files leave unused rows at the end: (n_kept, 3, s, s).
        let x = kept.slice_axis(Axis(0), (0..files.len()).into()).to_owned();
        Ok(Loaded {
            data: Dataset::classes(x.into_dyn(), labels),
            files,
            skipped,
        })
    }
}

// ANCHOR: load_image
/// One image file as `(3, size, size)` values in `[0, 1]`: decoded to RGB, its shorter
/// side scaled to `size`, its central square kept. The error names the file.
pub fn load_image(path: &Path, size: usize) -> Result<Array3<f32>> {
    let rgb = read_rgb(path)?; // (h, w, 3) bytes
    let chw = to_chw(&rgb.view()); // (3, h, w) in [0, 1]
    Ok(resize_and_center_crop(&chw.view(), size, 1.0))
}
// ANCHOR_END: load_image
