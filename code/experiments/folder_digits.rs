//! `dlbook train folder` on a folder written the way a reader's own would be: MNIST
//! digits saved as image files, one subfolder per digit, in mixed sizes and colour modes
//! (gray, RGB, RGBA, upscaled, one JPEG per class). The classifier's validation accuracy,
//! per-class recall and confusion matrix are what the command prints and saves.
//!
//! The backbone is EfficientNet-Lite0 with its ImageNet weights, the command's default;
//! the same folder, split and head on [`RandomConv`](crate::transfer::folder::RandomConv)'s features (randomly initialised
//! convolutions) is the no-pre-training baseline.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{GrayImage, Rgb, RgbImage, Rgba, RgbaImage};
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::folder::ImageFolder;
use crate::data::{self, DataDir, Split};
use crate::transfer::folder::{backbone_named, train, FolderConfig};

/// Experiment `folder_digits`, registered in [`super::all`].
pub struct FolderDigits;

impl Experiment for FolderDigits {
    const NAME: &'static str = "folder_digits";
    const CHAPTER: &'static str = "ch06";
    const TITLE: &'static str = "A classifier for a folder of digit images";
    type Config = Config;

    fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, dir, r)
    }
}

use crate::report::Report;

/// The folder and the training.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The digits used as classes (MNIST test images, the first of each).
    pub digits: Vec<u8>,
    /// Images per class.
    pub per_class: usize,
    /// The backbone's input size.
    pub input_size: usize,
    /// The backbone, by the name `dlbook train folder --backbone` takes.
    pub backbone: String,
    /// The baseline backbone, trained on the same split for comparison.
    pub baseline: String,
    /// How the head is trained (`dlbook train folder`'s defaults).
    pub head: FolderConfig,
}

impl Preset for Config {
    /// Five digits, 100 images each, at 64 pixels; EfficientNet-Lite0 against random
    /// convolutions.
    fn full() -> Self {
        Config {
            digits: vec![0, 1, 3, 5, 8],
            per_class: 100,
            input_size: 64,
            backbone: "efficientnet-lite0".into(),
            baseline: "random-conv-0".into(),
            head: FolderConfig::default(),
        }
    }
}

/// The folder name of digit `d`.
pub fn digit_name(d: u8) -> &'static str {
    [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ][usize::from(d)]
}

// ANCHOR: write_digit_folder
/// Writes the first `per_class` MNIST test images of each of `digits` into
/// `root/<digit name>/`, in the forms a reader's folder holds: image `j` of a class is
/// a JPEG for `j = 0`, else by `j mod 4` a gray 28x28 PNG, a gray PNG upscaled to 56x56
/// (extension `.PNG`), a tinted RGB PNG, or an RGBA PNG of 40x40. Returns `root`.
pub fn write_digit_folder(
    dir: &DataDir,
    root: &Path,
    digits: &[u8],
    per_class: usize,
) -> Result<PathBuf> {
    let set = data::mnist(dir, Split::Test)?;
    let nearest = image::imageops::FilterType::Nearest;
    for &d in digits {
        let class_dir = root.join(digit_name(d));
        std::fs::create_dir_all(&class_dir)
            .with_context(|| format!("creating {}", class_dir.display()))?;
        let idx = (0..set.labels.len()).filter(|&i| set.labels[i] == d);
        for (j, i) in idx.take(per_class).enumerate() {
            let g = GrayImage::from_raw(28, 28, set.images.image(i).to_vec())
                .context("a 28x28 image")?;
            let path =
                |ext: &str| class_dir.join(format!("{}_{j:03}.{ext}", digit_name(d)));
            let saved = match j % 4 {
                _ if j == 0 => g.save(path("jpg")),
                0 => g.save(path("png")),
                1 => image::imageops::resize(&g, 56, 56, nearest).save(path("PNG")),
                2 => RgbImage::from_fn(28, 28, |x, y| {
                    let v = g.get_pixel(x, y).0[0];
                    Rgb([v, v / 2, 255 - v])
                })
                .save(path("png")),
                _ => {
                    let big = image::imageops::resize(&g, 40, 40, nearest);
                    RgbaImage::from_fn(40, 40, |x, y| {
                        let v = big.get_pixel(x, y).0[0];
                        Rgba([v, v, v, 255])
                    })
                    .save(path("png"))
                }
            };
            saved.with_context(|| {
                format!("writing image {j} of {}", class_dir.display())
            })?;
        }
    }
    Ok(root.to_path_buf())
}
// ANCHOR_END: write_digit_folder

/// A folder of its own in the temporary directory, removed when dropped.
struct TempFolder(PathBuf);

impl TempFolder {
    fn new() -> Result<Self> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir()
            .join(format!("dlbook-folder-digits-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        Ok(TempFolder(p))
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
    let tmp = TempFolder::new()?;
    let root =
        write_digit_folder(dir, &tmp.0.join("digits"), &cfg.digits, cfg.per_class)?;
    let folder = ImageFolder::scan(&root)?;
    let mut baseline = backbone_named(dir, &cfg.baseline, cfg.input_size)?;
    let baseline_accuracy = train(&folder, baseline.as_mut(), &cfg.head)?
        .classifier
        .meta
        .val_accuracy;
    let mut backbone = backbone_named(dir, &cfg.backbone, cfg.input_size)?;
    let trained = train(&folder, backbone.as_mut(), &cfg.head)?;
    let (ti, tl) = data::mnist_files(Split::Test);
    r.data = vec![data::data_ref(ti), data::data_ref(tl)];
    let out = trained.report();
    r.facts = out.facts;
    r.fact(
        "chance",
        1.0 / cfg.digits.len() as f64,
        crate::report::Format::Percent(1),
    );
    r.fact(
        "baseline_val_accuracy",
        baseline_accuracy,
        crate::report::Format::Percent(1),
    );
    r.tables = out.tables;
    r.figures = out.figures;
    Ok(())
}
