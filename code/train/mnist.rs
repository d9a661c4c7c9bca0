//! The book's recipe for training the seed CNN on MNIST (what `dlbook train mnist-cnn`
//! runs).

use std::path::Path;

use anyhow::{Context, Result};

use super::{checkpoint, fit_from, Checkpointing, ClassifierLoss, HistoryLogger};
use super::{RunState, TrainSpec};
use crate::data::{DataDir, Dataset, Split};
use crate::models::{mnist_cnn, CnnConfig};
use crate::optim::Adam;

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
/// continues from such a file, exactly as if it had never stopped. With `run`, the
/// training loss (every 50 steps) and each epoch's metrics are logged to it.
pub fn train_and_save(
    dir: &DataDir,
    recipe: &Recipe,
    out: &Path,
    checkpoint: Option<&Path>,
    resume: Option<&Path>,
    run: Option<&mut crate::mlops::tracking::Run>,
) -> Result<Vec<f64>> {
    // Images (n, 1, 28, 28): the model's first layer takes them as they are.
    let train = Dataset::mnist(dir, Split::Train, recipe.n_train)?;
    let test = Dataset::mnist(dir, Split::Test, recipe.n_test)?;
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
    // Wraps `log`: a checkpoint keeps the same state with or without tracking.
    let mut logged = crate::mlops::logging::Logged::new(&mut log, run, 50);
    let loss = ClassifierLoss::CrossEntropy;
    let mut state = match resume {
        Some(p) => {
            checkpoint::load(p, &mut model, &mut opt, &mut [&mut logged], train.len())
                .with_context(|| format!("resuming from {}", p.display()))?
        }
        None => RunState::start(&spec, train.len()),
    };
    let cb: &mut [&mut dyn super::Callback] = &mut [&mut logged];
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
    logged.finish()?;
    crate::models::checkpoint::save(&mut model, out)?;
    Ok(log.history.test_acc)
}
