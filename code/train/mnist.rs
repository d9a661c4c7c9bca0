//! MNIST as a [`Dataset`] of pixel rows, and the book's recipe for training the seed
//! CNN on it (what `dlbook train mnist-cnn` runs).

use std::path::Path;

use anyhow::{Context, Result};
use ndarray::Array2;

use super::{checkpoint, fit_from, Checkpointing, ClassifierLoss, HistoryLogger};
use super::{RunState, TrainSpec};
use crate::data::{self, DataDir, Dataset, LabelledImages, Split};
use crate::models::{mnist_cnn, CnnConfig};
use crate::optim::Adam;

/// The first `n` images of a set (all of them if `n` is larger) as a
/// `(n, rows * cols)` matrix in $[0, 1]$, and their labels.
pub fn image_matrix(set: &LabelledImages, n: usize) -> (Array2<f32>, Vec<usize>) {
    let n = n.min(set.images.n);
    let d = set.images.rows * set.images.cols;
    let px = set.images.pixels[..n * d]
        .iter()
        .map(|&p| f32::from(p) / 255.0);
    let x = Array2::from_shape_vec((n, d), px.collect()).expect("n * d pixels");
    (x, set.labels[..n].iter().map(|&y| usize::from(y)).collect())
}

/// The first `n` images of a set as a dataset of pixel rows (see [`image_matrix`]).
pub fn image_rows(set: &LabelledImages, n: usize) -> Dataset {
    let (x, y) = image_matrix(set, n);
    Dataset::classes(x.into_dyn(), y)
}

/// The first `n` images of an MNIST split as pixel rows (see [`image_rows`]).
pub fn mnist_rows(dir: &DataDir, split: Split, n: usize) -> Result<Dataset> {
    Ok(image_rows(&data::mnist(dir, split)?, n))
}

/// How `dlbook train mnist-cnn` trains: the seed model on all 60,000 training images,
/// Adam ($\eta = 10^{-3}$), batches of 128, evaluated on the 10,000 test images after
/// every epoch (the full configuration of the `mnist_cnn` experiment).
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// Passes over the training set.
    pub n_epochs: usize,
    /// Seed of the initialization, the batch order and the dropout masks.
    pub seed: u64,
    /// Training images (the first ones).
    pub n_train: usize,
    /// Test images (the first ones).
    pub n_test: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f32,
}

impl Recipe {
    /// The book's recipe for `n_epochs` epochs with `seed`.
    pub fn new(n_epochs: usize, seed: u64) -> Self {
        Recipe {
            n_epochs,
            seed,
            n_train: 60_000,
            n_test: 10_000,
            batch_size: 128,
            lr: 1e-3,
        }
    }
}

/// Trains the seed CNN by `recipe` and saves it to `out` as safetensors; returns the
/// test accuracy after each epoch (those before a resume included). With `checkpoint`,
/// the whole training state is saved there after every epoch; with `resume`, training
/// continues from such a file, exactly as if it had never stopped.
pub fn train_and_save(
    dir: &DataDir,
    recipe: &Recipe,
    out: &Path,
    checkpoint: Option<&Path>,
    resume: Option<&Path>,
) -> Result<Vec<f64>> {
    let train = mnist_rows(dir, Split::Train, recipe.n_train)?;
    let test = mnist_rows(dir, Split::Test, recipe.n_test)?;
    let mut model = mnist_cnn(&CnnConfig::default(), recipe.seed);
    let mut opt = Adam::new(recipe.lr);
    let spec = TrainSpec {
        n_epochs: recipe.n_epochs,
        batch_size: recipe.batch_size,
        seed: recipe.seed,
        checkpoint: checkpoint.map(|p| Checkpointing {
            path: p.to_path_buf(),
            every: 1,
        }),
        ..TrainSpec::default()
    };
    let mut log = HistoryLogger::new(usize::MAX);
    let loss = ClassifierLoss::CrossEntropy;
    let mut state = match resume {
        Some(p) => {
            checkpoint::load(p, &mut model, &mut opt, &mut [&mut log], train.len())
                .with_context(|| format!("resuming from {}", p.display()))?
        }
        None => RunState::start(&spec, train.len()),
    };
    let cb: &mut [&mut dyn super::Callback] = &mut [&mut log];
    fit_from(
        &mut state,
        &mut model,
        &mut opt,
        &loss,
        &train,
        Some(&test),
        &spec,
        cb,
    )?;
    crate::models::checkpoint::save(&mut model, out)?;
    Ok(log.history.test_acc)
}
