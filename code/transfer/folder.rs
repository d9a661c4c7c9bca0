//! A classifier for a folder of the reader's own images: what `dlbook train folder` and
//! `dlbook predict` run.
//!
//! **Feature extraction.** A network trained on a large dataset computes, in its last
//! layers, features $f(x) \in \mathbb{R}^d$ that separate many kinds of images. With the
//! network frozen, a new task needs only a linear softmax head on top,
//!
//! $$p(y = k \mid x) = \mathrm{softmax}\big(W \hat f(x) + b\big)_k, \qquad
//! \hat f_j = (f_j - \mu_j) / \sigma_j,$$
//!
//! where $\mu$ and $\sigma$ are each feature's mean and standard deviation over the
//! training images (so that one learning rate suits every feature, whatever its scale),
//! trained by minimising the cross-entropy with Adam and decoupled weight decay. The
//! backbone never changes, so its features are computed once per image and cached:
//! every epoch of the head is then a pass over a small matrix, not over the images.
//!
//! **What is measured.** A stratified split ([`ImageFolder::split`]) keeps a fraction of
//! every class for validation. The head trains with early stopping on the validation
//! loss, keeping the best epoch's weights; the validation accuracy and confusion matrix
//! are measured on the same images. Early stopping looks at them only to choose an epoch
//! (one number out of a few dozen), so the accuracy is close to, and at worst slightly
//! above, what a fresh test set would give.
//!
//! **The saved model** is a folder: `head.safetensors` (the head's weights and the
//! feature statistics), `model.json` ([`ModelMeta`]: class names, backbone name and input
//! size, validation accuracy), and the results, `results.md` (tables) and
//! `confusion.svg`. [`Classifier::load`] reads it back, and [`Classifier::predict`]
//! classifies new image files through the same backbone.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use ndarray::{Array1, Array2, ArrayD, ArrayViewMutD, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cnn::{AvgPool2d, Conv2d, Flatten};
use crate::data::folder::{load_image, BadImages, ImageFolder};
use crate::data::{DataDir, Dataset};
use crate::models::efficientnet;
use crate::nn::{join, Activation, ActivationLayer, Init, Layer, Linear, Mode, Module};
use crate::nn::{Named, Param};
use crate::optim::Adam;
use crate::report::{col, Figure, Format, Plot, Report, Table, Value};
use crate::train::{
    fit, ClassifierLoss, EarlyStopping, HistoryLogger, Monitor, TrainSpec,
};

// ANCHOR: backbone
/// A frozen image feature extractor.
pub trait Backbone {
    /// The name a saved model records, to find the same backbone again
    /// (`efficientnet-lite0`).
    fn name(&self) -> &str;
    /// The side of the square the images are resized to.
    fn input_size(&self) -> usize;
    /// Features per image.
    fn feature_dim(&self) -> usize;
    /// `(n, 3, s, s)` images with values in [0, 1] (normalisation is the backbone's
    /// job) -> `(n, feature_dim)` features.
    fn features(&mut self, x: &ndarray::ArrayD<f32>) -> ndarray::Array2<f32>;
}
// ANCHOR_END: backbone

/// The backbone that was never trained: three randomly initialised convolutions (3x3,
/// stride 2, ReLU; 32, 64 and 128 channels), then the mean of each channel over the four
/// quarters of the image, `4 x 128 = 512` features.
///
/// Random convolutional features are a classic baseline: they keep local contrast and
/// coarse layout, and a linear head on them does well on simple images (digits,
/// clothes) and poorly on photos. What a pre-trained backbone adds is measured against
/// it. Its name records its seed (`random-conv-7`), which fixes every weight, so a saved
/// model finds the same features again.
pub struct RandomConv {
    name: String,
    size: usize,
    net: Named,
}

impl RandomConv {
    /// Output channels of the last convolution.
    const CHANNELS: usize = 128;

    /// The backbone for `size x size` images with weights drawn from `seed`.
    ///
    /// # Panics
    /// If `size` is not a multiple of 16 (three halvings, then quarters).
    pub fn new(size: usize, seed: u64) -> Self {
        assert!(
            size >= 16 && size.is_multiple_of(16),
            "RandomConv: the input size must be a multiple of 16, got {size}"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut net = Named::new();
        let mut c_in = 3;
        for (i, c_out) in [32, 64, Self::CHANNELS].into_iter().enumerate() {
            // 3x3, stride 2, padding 1: the side halves, (n, c_out, side/2, side/2).
            net.push(
                &format!("conv{}", i + 1),
                Conv2d::new(c_in, c_out, (3, 3), 2, 1, &mut rng),
            );
            net.push(
                &format!("relu{}", i + 1),
                ActivationLayer::new(Activation::Relu),
            );
            c_in = c_out;
        }
        let q = size / 16; // the last map is (n, 128, size/8, size/8): quarters of side q
        net.push("pool", AvgPool2d::new((q, q), (q, q))); // (n, 128, 2, 2)
        net.push("flatten", Flatten::new()); // (n, 512)
        RandomConv {
            name: format!("random-conv-{seed}"),
            size,
            net,
        }
    }

    /// The backbone a [`RandomConv::name`] describes (`random-conv-<seed>`), for
    /// `size`; `None` for any other name.
    pub fn from_name(name: &str, size: usize) -> Option<Result<Self>> {
        let seed = name.strip_prefix("random-conv-")?;
        Some(match seed.parse::<u64>() {
            Ok(s) if size >= 16 && size.is_multiple_of(16) => {
                Ok(RandomConv::new(size, s))
            }
            Ok(_) => Err(anyhow::anyhow!(
                "backbone {name}: input size {size} is not a multiple of 16"
            )),
            Err(_) => Err(anyhow::anyhow!(
                "backbone {name}: `{seed}` is not a seed (random-conv-<number>)"
            )),
        })
    }
}

impl Backbone for RandomConv {
    fn name(&self) -> &str {
        &self.name
    }

    fn input_size(&self) -> usize {
        self.size
    }

    fn feature_dim(&self) -> usize {
        4 * Self::CHANNELS
    }

    fn features(&mut self, x: &ArrayD<f32>) -> Array2<f32> {
        // Centre the pixels on zero: a ReLU network starts from symmetric inputs.
        let centred = x.mapv(|v| 2.0 * v - 1.0);
        let y = self.net.forward(&centred, Mode::Eval); // (n, 512)
        y.into_dimensionality().expect("Flatten gives (n, 512)")
    }
}

/// EfficientNet-Lite0 with its ImageNet weights ([`efficientnet::pretrained`]), up to
/// the global average pool: 1280 features per image. Pixels are normalised the way the
/// weights expect ([`efficientnet::normalize`]).
pub struct EfficientNetLite0 {
    size: usize,
    net: Named,
}

impl EfficientNetLite0 {
    /// Its name in a saved model.
    pub const NAME: &'static str = "efficientnet-lite0";

    /// The pre-trained network from the data folder (`dlbook data fetch
    /// efficientnet_lite0`), without its ImageNet classifier, for `size x size` images
    /// (it was trained at [`efficientnet::TRAIN_SIZE`]).
    pub fn load(data: &DataDir, size: usize) -> Result<Self> {
        if size < 32 {
            bail!("EfficientNet-Lite0 needs images of at least 32 pixels, got {size}");
        }
        let mut net = efficientnet::pretrained(data)?;
        // Everything before the ImageNet classifier: (n, 3, s, s) -> (n, 1280).
        let fc = efficientnet::classifier_index(&net);
        net.layers.truncate(fc);
        Ok(EfficientNetLite0 { size, net })
    }
}

// ANCHOR: efficientnet_backbone
impl Backbone for EfficientNetLite0 {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn input_size(&self) -> usize {
        self.size
    }

    fn feature_dim(&self) -> usize {
        efficientnet::FEATURES
    }

    fn features(&mut self, x: &ArrayD<f32>) -> Array2<f32> {
        let y = self
            .net
            .forward(&x.mapv(efficientnet::normalize), Mode::Eval);
        y.into_dimensionality()
            .expect("the pooled features are (n, 1280)")
    }
}
// ANCHOR_END: efficientnet_backbone

/// The backbone a saved model names (`efficientnet-lite0`, `random-conv-<seed>`) at
/// `size`; an error for a name this build does not know.
pub fn backbone_named(
    data: &DataDir,
    name: &str,
    size: usize,
) -> Result<Box<dyn Backbone>> {
    if name == EfficientNetLite0::NAME {
        return Ok(Box::new(EfficientNetLite0::load(data, size)?));
    }
    if let Some(b) = RandomConv::from_name(name, size) {
        return Ok(Box::new(b?));
    }
    bail!("backbone `{name}` is not one this build knows (efficientnet-lite0, random-conv-<seed>)")
}

/// How to train the head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FolderConfig {
    /// Share of every class kept for validation.
    pub val_fraction: f64,
    /// Most passes over the training features (early stopping may stop sooner).
    pub n_epochs: usize,
    /// Seed of the split, the head's initialisation and the batch order.
    pub seed: u64,
    /// Adam's learning rate.
    pub lr: f32,
    /// Decoupled weight decay $\lambda$ (AdamW).
    pub weight_decay: f32,
    /// Examples per step.
    pub batch_size: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// What to do with an image that cannot be decoded.
    #[serde(skip)]
    pub bad_images: BadImages,
}

impl Default for FolderConfig {
    /// 20 % for validation, at most 50 epochs, Adam at $10^{-3}$ with weight decay
    /// $10^{-4}$, batches of 32, patience 5, seed 0; a bad image is an error.
    fn default() -> Self {
        FolderConfig {
            val_fraction: 0.2,
            n_epochs: 50,
            seed: 0,
            lr: 1e-3,
            weight_decay: 1e-4,
            batch_size: 32,
            patience: 5,
            bad_images: BadImages::Fail,
        }
    }
}

/// Features of some of a folder's images.
#[derive(Clone, Debug)]
pub struct Features {
    /// `(n, feature_dim)`.
    pub x: Array2<f32>,
    /// The class of each row.
    pub labels: Vec<usize>,
    /// The index in [`ImageFolder::files`] of each row.
    pub files: Vec<usize>,
    /// Files left out under [`BadImages::Skip`], with their errors.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Images decoded and pushed through the backbone at once: bounds the memory.
const CHUNK: usize = 32;

// ANCHOR: folder_features
/// The backbone's features of the files at `idx` (indices into [`ImageFolder::files`]),
/// decoded and extracted `CHUNK` images at a time, each image counted on `bar`.
pub fn folder_features(
    folder: &ImageFolder,
    idx: &[usize],
    backbone: &mut dyn Backbone,
    bad: BadImages,
    bar: &ProgressBar,
) -> Result<Features> {
    let (size, d) = (backbone.input_size(), backbone.feature_dim());
    let mut rows = vec![];
    let (mut labels, mut files, mut skipped) = (vec![], vec![], vec![]);
    for chunk in idx.chunks(CHUNK) {
        let loaded = folder.load_with_bar(chunk, size, bad, bar)?; // (b, 3, s, s)
        skipped.extend(loaded.skipped);
        if loaded.files.is_empty() {
            continue;
        }
        let f = features_checked(backbone, &loaded.data.x);
        rows.extend(f.iter().copied());
        labels.extend_from_slice(loaded.data.labels());
        files.extend(loaded.files);
    }
    let x = Array2::from_shape_vec((files.len(), d), rows).expect("d features per image");
    Ok(Features {
        x,
        labels,
        files,
        skipped,
    })
}
// ANCHOR_END: folder_features

/// `backbone.features(x)`, checked to be `(n, feature_dim)` (a backbone that returns
/// another shape is a programming error).
fn features_checked(backbone: &mut dyn Backbone, x: &ArrayD<f32>) -> Array2<f32> {
    let f = backbone.features(x);
    let want = (x.shape()[0], backbone.feature_dim());
    assert_eq!(
        f.dim(),
        want,
        "Backbone {}: features of {:?} images should be {want:?}, got {:?}",
        backbone.name(),
        x.shape(),
        f.shape()
    );
    f
}

/// The classifier's head: feature standardisation, then a linear layer to the logits.
///
/// # Shapes
/// - features `(n, d)`; logits `(n, n_classes)`
/// - `fc.weight`: `(n_classes, d)`, `fc.bias`: `(n_classes,)`; buffers `norm.mean` and
///   `norm.inv_std`: `(d,)`
pub struct Head {
    /// The linear layer.
    pub fc: Linear,
    /// Each feature's mean over the training images, $\mu$.
    pub mean: ArrayD<f32>,
    /// One over each feature's standard deviation, $1/\sigma$.
    pub inv_std: ArrayD<f32>,
}

impl Head {
    /// A head whose statistics are those of `train` `(n, d)`, with a `d -> n_classes`
    /// layer drawn from `seed`.
    pub fn new(train: &Array2<f32>, n_classes: usize, seed: u64) -> Self {
        let d = train.ncols();
        let mean = train.mean_axis(Axis(0)).expect("at least one image");
        let std = train.std_axis(Axis(0), 0.0);
        // A feature constant over the training images would otherwise be divided by 0;
        // the floor is relative, since backbones' features differ in scale.
        let floor = 1e-3 * std.mean().unwrap_or(0.0) + f32::MIN_POSITIVE;
        let inv_std = std.mapv(|s| 1.0 / s.max(floor));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Head {
            fc: Linear::new(d, n_classes, Init::Xavier, &mut rng),
            mean: mean.into_dyn(),
            inv_std: inv_std.into_dyn(),
        }
    }

    /// $(f - \mu) / \sigma$ for every row of `features` `(n, d)`.
    pub fn standardise(&self, features: &Array2<f32>) -> Array2<f32> {
        let d = self.fc.d_in();
        assert_eq!(
            features.ncols(),
            d,
            "Head: features {:?} for a head on {d} features",
            features.shape()
        );
        let mean = self
            .mean
            .view()
            .into_shape_with_order((1, d))
            .expect("(d,)");
        let inv = self
            .inv_std
            .view()
            .into_shape_with_order((1, d))
            .expect("(d,)");
        (features - &mean) * inv
    }

    /// The logits `(n, n_classes)` of `features` `(n, d)`.
    pub fn logits(&mut self, features: &Array2<f32>) -> Array2<f32> {
        let z = self
            .fc
            .forward(&self.standardise(features).into_dyn(), Mode::Eval);
        z.into_dimensionality()
            .expect("Linear gives (n, n_classes)")
    }
}

impl Module for Head {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.fc.visit_params(&join(prefix, "fc"), f);
    }

    fn visit_buffers(
        &mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, ArrayViewMutD<'_, f32>),
    ) {
        f(&join(prefix, "norm.mean"), self.mean.view_mut());
        f(&join(prefix, "norm.inv_std"), self.inv_std.view_mut());
    }
}

/// What `model.json` records about a trained classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// The file format ([`ModelMeta::FORMAT`]).
    pub format: u32,
    /// Class names; class `k` is `classes[k]`.
    pub classes: Vec<String>,
    /// The backbone's name.
    pub backbone: String,
    /// The backbone's input size.
    pub input_size: usize,
    /// The backbone's features per image.
    pub feature_dim: usize,
    /// Accuracy on the validation split.
    pub val_accuracy: f64,
    /// Training images.
    pub n_train: usize,
    /// Validation images.
    pub n_val: usize,
    /// How the head was trained.
    pub config: FolderConfig,
}

impl ModelMeta {
    /// The format this build writes and reads.
    pub const FORMAT: u32 = 1;
    /// The largest `model.json` read (a real one is a few hundred bytes per class).
    const MAX_BYTES: u64 = 1 << 20;
}

/// A trained classifier: the head and what it was trained on.
pub struct Classifier {
    /// The head.
    pub head: Head,
    /// Its description.
    pub meta: ModelMeta,
}

/// The classes of one image, most probable first.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// `(class, probability)` for every class, most probable first (ties: lower class).
    pub ranked: Vec<(usize, f64)>,
}

/// The softmax of every row of `logits`, in `f64`, largest logit subtracted first.
pub fn softmax_rows(logits: &Array2<f32>) -> Array2<f64> {
    let mut p = logits.mapv(f64::from);
    for mut row in p.rows_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|z| (z - m).exp());
        let s = row.sum();
        row.mapv_inplace(|e| e / s);
    }
    p
}

impl Classifier {
    /// The files of a saved model in `dir`: the head's weights and the description.
    pub fn files(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("head.safetensors"), dir.join("model.json"))
    }

    /// Writes `head.safetensors` and `model.json` into `dir` (created if needed).
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let (head, meta) = Self::files(dir);
        crate::models::checkpoint::save(&mut self.head, &head)?;
        let mut json = serde_json::to_string_pretty(&self.meta).expect("meta serialises");
        json.push('\n');
        crate::report::write_file_atomic(&meta, json.as_bytes())
            .with_context(|| format!("writing {}", meta.display()))
    }

    // ANCHOR: load
    /// Reads a model saved by [`Classifier::save`] (or `dlbook train folder`) from `dir`.
    /// Every inconsistency is an error naming the file: a missing file, a `model.json`
    /// that is not one, fewer than two classes, a head of another shape.
    pub fn load(dir: &Path) -> Result<Classifier> {
        let (head_path, meta_path) = Self::files(dir);
        let hint = "expected a folder written by `dlbook train folder`";
        let len = std::fs::metadata(&meta_path)
            .with_context(|| format!("{}: cannot read ({hint})", meta_path.display()))?
            .len();
        if len > ModelMeta::MAX_BYTES {
            bail!(
                "{}: {len} bytes is too large for a model description",
                meta_path.display()
            );
        }
        let text = std::fs::read_to_string(&meta_path)
            .with_context(|| format!("{}: cannot read", meta_path.display()))?;
        let meta: ModelMeta = serde_json::from_str(&text).with_context(|| {
            format!("{}: not a model description ({hint})", meta_path.display())
        })?;
        if meta.format != ModelMeta::FORMAT {
            bail!(
                "{}: format {} (this build reads {}); train the model again",
                meta_path.display(),
                meta.format,
                ModelMeta::FORMAT
            );
        }
        if meta.classes.len() < 2 || meta.feature_dim == 0 || meta.input_size == 0 {
            bail!(
                "{}: {} classes, {} features, input size {}: not a trained classifier",
                meta_path.display(),
                meta.classes.len(),
                meta.feature_dim,
                meta.input_size
            );
        }
        let (d, k) = (meta.feature_dim, meta.classes.len());
        let mut head = Head {
            fc: Linear::from_weights(Array2::zeros((k, d)), Array1::zeros(k)),
            mean: ArrayD::zeros(vec![d]),
            inv_std: ArrayD::zeros(vec![d]),
        };
        crate::models::checkpoint::load(&mut head, &head_path)?;
        Ok(Classifier { head, meta })
    }
    // ANCHOR_END: load

    /// The class probabilities `(n, n_classes)` of features `(n, feature_dim)`.
    pub fn probabilities(&mut self, features: &Array2<f32>) -> Array2<f64> {
        softmax_rows(&self.head.logits(features))
    }

    // ANCHOR: predict
    /// Classifies image files through `backbone`, which must be the one the model was
    /// trained on (same name and input size, else an error). A file that cannot be read
    /// is an error naming it.
    pub fn predict(
        &mut self,
        backbone: &mut dyn Backbone,
        paths: &[PathBuf],
    ) -> Result<Vec<Prediction>> {
        if backbone.name() != self.meta.backbone
            || backbone.input_size() != self.meta.input_size
        {
            bail!(
                "the model was trained on backbone {} at {} pixels, not {} at {}",
                self.meta.backbone,
                self.meta.input_size,
                backbone.name(),
                backbone.input_size()
            );
        }
        let size = self.meta.input_size;
        let bar = crate::progress::bar(paths.len() as u64, "predicting");
        let mut out = vec![];
        for chunk in paths.chunks(CHUNK) {
            let mut x = ndarray::Array4::zeros((chunk.len(), 3, size, size));
            for (i, p) in chunk.iter().enumerate() {
                x.index_axis_mut(Axis(0), i).assign(&load_image(p, size)?);
                bar.inc(1);
            }
            let f = features_checked(backbone, &x.into_dyn()); // (b, d)
            let probs = self.probabilities(&f); // (b, n_classes)
            for (p, row) in chunk.iter().zip(probs.rows()) {
                let mut ranked: Vec<(usize, f64)> =
                    row.iter().copied().enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                out.push(Prediction {
                    path: p.clone(),
                    ranked,
                });
            }
        }
        bar.finish_and_clear();
        Ok(out)
    }
    // ANCHOR_END: predict
}

/// A classifier trained on a folder, with what it measured.
pub struct Trained {
    /// The classifier (its `meta` holds the validation accuracy).
    pub classifier: Classifier,
    /// Training images per class (after any skipped files).
    pub train_counts: Vec<usize>,
    /// `confusion[t][p]`: validation images of class `t` predicted as `p`.
    pub confusion: Vec<Vec<usize>>,
    /// The validation images (indices into [`ImageFolder::files`]) and their predicted
    /// classes.
    pub val_predictions: Vec<(usize, usize)>,
    /// Epochs trained (early stopping may stop before the configured number).
    pub epochs: usize,
    /// The epoch whose weights were kept.
    pub best_epoch: Option<usize>,
    /// Validation accuracy after every epoch.
    pub val_curve: Vec<f64>,
    /// Files left out under [`BadImages::Skip`], with their errors.
    pub skipped: Vec<(PathBuf, String)>,
}

/// How many of `labels` fall in each class of `0..n`.
fn class_counts(labels: &[usize], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &l in labels {
        c[l] += 1;
    }
    c
}

// ANCHOR: train
/// Trains a classifier for the images of `folder` on the features of `backbone`: the
/// stratified split, the features of every image (computed once, with a progress bar),
/// the head trained with early stopping on the validation split, and the validation
/// accuracy and confusion matrix of the best epoch's head.
///
/// Fails on a bad split (see [`ImageFolder::split`]), on an unreadable image (unless
/// `cfg.bad_images` skips them), and when skipping leaves a class without a training or
/// a validation image.
pub fn train(
    folder: &ImageFolder,
    backbone: &mut dyn Backbone,
    cfg: &FolderConfig,
) -> Result<Trained> {
    let split = folder.split(cfg.val_fraction, cfg.seed)?;
    let bar = crate::progress::bar(folder.len() as u64, "features");
    bar.set_message(backbone.name().to_string());
    let tr = folder_features(folder, &split.train, backbone, cfg.bad_images, &bar)?;
    let va = folder_features(folder, &split.val, backbone, cfg.bad_images, &bar)?;
    bar.finish_and_clear();
    let k = folder.n_classes();
    let (train_counts, val_counts) =
        (class_counts(&tr.labels, k), class_counts(&va.labels, k));
    for (c, name) in folder.classes.iter().enumerate() {
        if train_counts[c] == 0 || val_counts[c] == 0 {
            bail!(
                "class `{name}` has {} readable training and {} validation images once \
                 the unreadable ones are skipped: it needs at least one of each",
                train_counts[c],
                val_counts[c]
            );
        }
    }
    let mut head = Head::new(&tr.x, k, cfg.seed);
    let train_set =
        Dataset::classes(head.standardise(&tr.x).into_dyn(), tr.labels.clone());
    let val_set = Dataset::classes(head.standardise(&va.x).into_dyn(), va.labels.clone());
    let mut opt = Adam::adamw(cfg.lr, cfg.weight_decay);
    let spec = TrainSpec {
        n_epochs: cfg.n_epochs,
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        early_stopping: Some(EarlyStopping {
            monitor: Monitor::Loss,
            patience: cfg.patience,
            min_delta: 0.0,
            restore_best: true,
        }),
        ..TrainSpec::default()
    };
    let mut log = HistoryLogger::new(usize::MAX);
    let summary = fit(
        &mut head.fc,
        &mut opt,
        &ClassifierLoss::CrossEntropy,
        &train_set,
        Some(&val_set),
        &spec,
        &mut [&mut log],
    )?;
    let preds: Vec<usize> = head
        .logits(&va.x)
        .rows()
        .into_iter()
        .map(|z| (0..k).fold(0, |a, j| if z[j] > z[a] { j } else { a }))
        .collect();
    let confusion = crate::metrics::confusion(&va.labels, &preds, k);
    let right = (0..k).map(|c| confusion[c][c]).sum::<usize>();
    let meta = ModelMeta {
        format: ModelMeta::FORMAT,
        classes: folder.classes.clone(),
        backbone: backbone.name().to_string(),
        input_size: backbone.input_size(),
        feature_dim: backbone.feature_dim(),
        val_accuracy: right as f64 / preds.len() as f64,
        n_train: tr.files.len(),
        n_val: va.files.len(),
        config: cfg.clone(),
    };
    let mut skipped = tr.skipped;
    skipped.extend(va.skipped);
    Ok(Trained {
        classifier: Classifier { head, meta },
        train_counts,
        confusion,
        val_predictions: va.files.into_iter().zip(preds).collect(),
        epochs: summary.epochs,
        best_epoch: summary.best_epoch,
        val_curve: log.history.test_acc,
        skipped,
    })
}
// ANCHOR_END: train

impl Trained {
    /// The results as a report: the validation accuracy (fact `val_accuracy`), a table
    /// per class (`classes`: images, recall), the confusion matrix as a table
    /// (`confusion`) and a figure (`confusion`).
    pub fn report(&self) -> Report {
        let meta = &self.classifier.meta;
        let mut r =
            Report::new("custom", "classifier", "A classifier for an image folder");
        r.config = serde_json::to_value(&meta.config).expect("config serialises");
        r.fact("val_accuracy", meta.val_accuracy, Format::Percent(1));
        r.fact("n_train", meta.n_train as f64, Format::Int);
        r.fact("n_val", meta.n_val as f64, Format::Int);
        r.fact("epochs", self.epochs as f64, Format::Int);
        let names = &meta.classes;
        let recall = |t: usize| {
            let row = &self.confusion[t];
            row[t] as f64 / row.iter().sum::<usize>().max(1) as f64
        };
        r.tables.push(Table {
            name: "classes".into(),
            caption: format!(
                "Images per class and recall on the validation split (backbone {}, \
                 validation accuracy {}).",
                meta.backbone,
                Format::Percent(1).show(meta.val_accuracy)
            ),
            columns: vec![
                col("class", Format::Int),
                col("training images", Format::Int),
                col("validation images", Format::Int),
                col("recall", Format::Percent(1)),
            ],
            rows: (0..names.len())
                .map(|t| {
                    vec![
                        Value::Text(names[t].clone()),
                        Value::Num(self.train_counts[t] as f64),
                        Value::Num(self.confusion[t].iter().sum::<usize>() as f64),
                        Value::Num(recall(t)),
                    ]
                })
                .collect(),
        });
        let mut columns = vec![col("true \\ predicted", Format::Int)];
        columns.extend(names.iter().map(|n| col(n, Format::Int)));
        r.tables.push(Table {
            name: "confusion".into(),
            caption: "Confusion matrix on the validation split: row = true class, \
                      column = predicted class."
                .into(),
            columns,
            rows: (0..names.len())
                .map(|t| {
                    let mut row = vec![Value::Text(names[t].clone())];
                    row.extend(self.confusion[t].iter().map(|&c| Value::Num(c as f64)));
                    row
                })
                .collect(),
        });
        r.figures.push(Figure {
            name: "confusion".into(),
            title: format!(
                "Confusion matrix, {} validation images, {}",
                meta.n_val, meta.backbone
            ),
            plot: Plot::Heatmap {
                x_label: "predicted class".into(),
                y_label: "true class".into(),
                row_labels: names.clone(),
                col_labels: names.clone(),
                values: self
                    .confusion
                    .iter()
                    .map(|row| row.iter().map(|&c| c as f64).collect())
                    .collect(),
                log_shade: true,
                decimals: 0,
            },
        });
        r
    }

    /// Saves the model ([`Classifier::save`]) and its results, `results.md` and
    /// `confusion.svg`, into `dir`; returns the files written.
    pub fn save(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.classifier.save(dir)?;
        let report = self.report().rounded();
        let md: String = report
            .tables
            .iter()
            .map(|t| format!("{}\n", crate::report::render_table(t)))
            .collect();
        let svg = crate::report::render_figure(&report.figures[0])?;
        let (head, meta) = Classifier::files(dir);
        let (md_path, svg_path) = (dir.join("results.md"), dir.join("confusion.svg"));
        crate::report::write_file_atomic(&md_path, md.as_bytes())
            .with_context(|| format!("writing {}", md_path.display()))?;
        crate::report::write_file_atomic(&svg_path, svg.as_bytes())
            .with_context(|| format!("writing {}", svg_path.display()))?;
        Ok(vec![head, meta, md_path, svg_path])
    }
}
