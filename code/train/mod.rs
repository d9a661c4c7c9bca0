//! The training loop: any [`Layer`] stack, any [`Loss`], any [`Optimizer`], on a
//! [`Dataset`], with the hooks later chapters plug into.
//!
//! Each epoch visits the training set in a seeded random order, in batches of
//! `batch_size`. Per batch: forward in [`Mode::Train`], the loss and its gradient,
//! backward (parameter gradients only: nobody needs the gradient of the data), an optional
//! weight penalty, optional gradient clipping, one optimizer step on the trainable
//! parameters. After every epoch the model is evaluated in [`Mode::Eval`] on the
//! validation set, if there is one. A recurrent layer's carried state
//! ([`Module::reset_state`]) is cleared at the start of every epoch and before every
//! evaluation.
//!
//! What the loop offers besides (each off by default, so the plain loop stays plain):
//!
//! - **Callbacks** ([`Callback`]): told about every step and every epoch, able to stop
//!   the run. [`HistoryLogger`] records the curves the book plots; a metrics tracker is
//!   another callback. When bars are shown ([`progress`](crate::progress)), a
//!   [`TrainProgress`] bar shows the epoch, the loss and the time left.
//! - **Parameter groups** ([`ParamGroups`]): freeze parameters by dotted-name prefix
//!   (they are never handed to the optimizer, so it creates no state for them), or scale
//!   a group's learning rate.
//! - **Gradient clipping** by the global $L_2$ norm of the trainable gradients: with
//!   $\lVert g\rVert > c$, every gradient is multiplied by $c/\lVert g\rVert$, which keeps
//!   the direction and caps the length.
//! - **Early stopping** ([`EarlyStopping`]) on the validation split, restoring the best
//!   epoch's weights.
//! - **Checkpoints** ([`checkpoint`]): after an epoch, everything the rest of the run
//!   depends on goes to one file, and a run resumed from it is bit-identical to one that
//!   never stopped.

use std::path::PathBuf;

use ndarray::{ArrayD, Axis, IxDyn, Slice};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::augment::{augment_images, Transform};
use crate::data::{Dataset, Targets};
use crate::nn::loss::accuracy;
use crate::nn::regularization::{add_penalty_grad, Penalty};
use crate::nn::{Layer, Mode, Module};
use crate::optim::Optimizer;

pub mod callback;
pub mod checkpoint;
pub mod groups;
pub mod loss;
pub mod mnist;

pub use callback::{
    Callback, Control, EpochInfo, History, HistoryLogger, StepInfo, TrainProgress,
};
pub use checkpoint::CheckpointError;
pub use groups::{clip_grad_norm, grad_norm, matches_prefix, ParamGroups, Trainable};
pub use loss::{classifier_loss, ClassifierLoss, Loss};

/// How each epoch's order is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shuffle {
    /// Shuffle the previous epoch's order (the first epoch shuffles `0..n`).
    #[default]
    Carry,
    /// Shuffle `0..n` afresh every epoch.
    Fresh,
}

/// What early stopping watches on the validation split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Monitor {
    /// The validation loss (lower is better).
    Loss,
    /// The validation accuracy (higher is better).
    Accuracy,
}

/// Stop when the validation metric has not improved for `patience` epochs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// What to watch.
    pub monitor: Monitor,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// An improvement must beat the best by more than this.
    pub min_delta: f64,
    /// At the end of training, put back the weights (and buffers) of the best epoch.
    pub restore_best: bool,
}

/// Writing a checkpoint during training.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpointing {
    /// The file (rewritten atomically each time).
    pub path: PathBuf,
    /// Save after every `every`-th epoch.
    pub every: usize,
}

/// How to train.
#[derive(Clone)]
pub struct TrainSpec<'a> {
    /// Passes over the training set (in total, counting those before a resume).
    pub n_epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of the shuffling (and of the augmentation).
    pub seed: u64,
    /// How each epoch's order is drawn.
    pub shuffle: Shuffle,
    /// Steps per point of the training-loss curve of [`train_classifier`]'s history.
    pub log_every: usize,
    /// A penalty on the weights, added to the loss.
    pub penalty: Option<Penalty>,
    /// A transform applied to every training batch of images.
    pub augment: Option<&'a dyn Transform>,
    /// Frozen parameters and learning-rate multipliers.
    pub groups: ParamGroups,
    /// Clip the global gradient norm to this.
    pub clip_norm: Option<f32>,
    /// Stop (without stepping) at the first loss that is NaN or infinite.
    pub stop_on_non_finite: bool,
    /// Early stopping on the validation split (which must then be given).
    pub early_stopping: Option<EarlyStopping>,
    /// Save a checkpoint every few epochs.
    pub checkpoint: Option<Checkpointing>,
}

impl Default for TrainSpec<'_> {
    /// One epoch in batches of 32, seed 0, nothing optional switched on but the stop at a
    /// non-finite loss.
    fn default() -> Self {
        TrainSpec {
            n_epochs: 1,
            batch_size: 32,
            seed: 0,
            shuffle: Shuffle::Carry,
            log_every: 50,
            penalty: None,
            augment: None,
            groups: ParamGroups::default(),
            clip_norm: None,
            stop_on_non_finite: true,
            early_stopping: None,
            checkpoint: None,
        }
    }
}

/// What a model scores on a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The mean loss.
    pub loss: f64,
    /// The fraction classified right (for class targets).
    pub accuracy: Option<f64>,
}

/// Why training ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// All epochs ran.
    Completed,
    /// The loss became NaN or infinite.
    NotFinite,
    /// Early stopping ran out of patience.
    EarlyStopped,
    /// A callback asked to stop.
    Callback,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Epochs completed (counting those before a resume).
    pub epochs: usize,
    /// Optimizer steps taken (counting those before a resume).
    pub steps: usize,
    /// Why it ended.
    pub ending: Ending,
    /// The best epoch and its score, with early stopping.
    pub best_epoch: Option<usize>,
}

/// Metrics of `model` on `data` in evaluation mode, in batches of 1,000. A recurrent
/// model starts from a fresh state ([`Module::reset_state`]): the state the last
/// training batch left belongs to other sequences.
pub fn evaluate(model: &mut dyn Layer, data: &Dataset, loss: &dyn Loss) -> Metrics {
    model.reset_state();
    let n = data.len();
    let (mut hits, mut total) = (0.0, 0.0);
    for start in (0..n).step_by(1000) {
        let end = (start + 1000).min(n);
        let x = data
            .x
            .slice_axis(Axis(0), Slice::from(start..end))
            .to_owned();
        let out = model.forward(&x, Mode::Eval);
        let idx: Vec<usize> = (start..end).collect();
        let y = data.select(&idx).y;
        total += f64::from(loss.loss(&out, &y).0) * (end - start) as f64;
        if let Targets::Classes(labels) = &y {
            hits += accuracy(&out, labels) * (end - start) as f64;
        }
    }
    Metrics {
        loss: total / n as f64,
        accuracy: matches!(data.y, Targets::Classes(_)).then(|| hits / n as f64),
    }
}

/// The accuracy of `model` on the labelled `data`, in evaluation mode.
pub fn accuracy_on(model: &mut dyn Layer, data: &Dataset) -> f64 {
    evaluate(model, data, &ClassifierLoss::CrossEntropy)
        .accuracy
        .expect("class targets")
}

/// Every parameter and buffer of a model, by name (the best epoch's weights).
pub(crate) type Snapshot = Vec<(String, ArrayD<f32>)>;

pub(crate) fn snapshot(model: &mut dyn Module) -> Snapshot {
    let mut out = vec![];
    model.visit_params("", &mut |n, p| out.push((n.to_string(), p.value.clone())));
    model.visit_buffers("", &mut |n, b| out.push((n.to_string(), b.to_owned())));
    out
}

fn restore(model: &mut dyn Module, snap: &Snapshot) {
    let mut it = snap.iter();
    model.visit_params("", &mut |_, p| {
        p.value.assign(&it.next().expect("same model").1);
    });
    model.visit_buffers("", &mut |_, mut b| {
        b.assign(&it.next().expect("same model").1)
    });
}

/// Where a run is: everything besides the model, the optimizer and the callbacks that
/// the rest of the run depends on. A checkpoint saves it.
#[derive(Clone, Debug)]
pub struct RunState {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps taken.
    pub step: usize,
    /// The generator of the order and the augmentation.
    pub rng: ChaCha8Rng,
    /// The last epoch's order (what [`Shuffle::Carry`] shuffles next).
    pub order: Vec<usize>,
    /// Early stopping: the best epoch, its score (higher is better) and its weights.
    pub best: Option<(usize, f64, Snapshot)>,
    /// Early stopping: epochs since the best one.
    pub since_best: usize,
}

impl RunState {
    /// The state before the first epoch.
    pub fn start(spec: &TrainSpec, n: usize) -> Self {
        RunState {
            epoch: 0,
            step: 0,
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            order: (0..n).collect(),
            best: None,
            since_best: 0,
        }
    }
}

/// The image size `(h, w)` of examples of shape `shape`: `[h*w]` (a square),
/// `[h, w]` or `[1, h, w]`.
fn image_shape(shape: &[usize]) -> [usize; 3] {
    match *shape {
        [d] => {
            let s = (d as f64).sqrt().round() as usize;
            assert_eq!(
                s * s,
                d,
                "augment: rows of {d} pixels are not square images"
            );
            [1, s, s]
        }
        [h, w] => [1, h, w],
        [c, h, w] => [c, h, w],
        _ => panic!("augment: examples of shape {shape:?} are not images"),
    }
}

/// Trains `model` with `opt` on `train` from the start; see [`fit_from`].
pub fn fit(
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    loss: &dyn Loss,
    train: &Dataset,
    val: Option<&Dataset>,
    spec: &TrainSpec,
    callbacks: &mut [&mut dyn Callback],
) -> Result<Summary, CheckpointError> {
    let mut state = RunState::start(spec, train.len());
    fit_from(&mut state, model, opt, loss, train, val, spec, callbacks)
}

// ANCHOR: fit
/// Trains `model` with `opt` on `train` from `state` (the start, or a loaded
/// checkpoint) until `spec.n_epochs` epochs are done or something stops it. The only
/// errors are those of writing checkpoints.
#[allow(clippy::too_many_arguments)]
pub fn fit_from(
    state: &mut RunState,
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    loss: &dyn Loss,
    train: &Dataset,
    val: Option<&Dataset>,
    spec: &TrainSpec,
    callbacks: &mut [&mut dyn Callback],
) -> Result<Summary, CheckpointError> {
    assert!(
        spec.early_stopping.is_none() || val.is_some(),
        "fit: early stopping needs a validation set"
    );
    // A bar when bars are shown (see `progress`): it only watches, like a callback,
    // but it is not one of `callbacks`, so checkpoints do not depend on the terminal.
    let mut bar = crate::progress::visible().then(|| {
        let per_epoch = train.len().div_ceil(spec.batch_size.max(1));
        TrainProgress::new(spec.n_epochs, per_epoch, state.step, val.is_some())
    });
    let mut ending = Ending::Completed;
    'epochs: while state.epoch < spec.n_epochs {
        // An epoch reads its sequences afresh: no state carried over from the last one.
        model.reset_state();
        if spec.shuffle == Shuffle::Fresh {
            state.order = (0..train.len()).collect();
        }
        state.order.shuffle(&mut state.rng);
        let (mut total, mut batches) = (0.0, 0);
        for idx in state.order.chunks(spec.batch_size) {
            let Some(l) =
                train_step(model, opt, loss, train.select(idx), spec, &mut state.rng)
            else {
                ending = Ending::NotFinite;
                break 'epochs;
            };
            state.step += 1;
            total += f64::from(l);
            batches += 1;
            let info = StepInfo {
                epoch: state.epoch,
                step: state.step,
                loss: l,
                lr: opt.lr(),
                batch_size: idx.len(),
            };
            if let Some(b) = &mut bar {
                b.on_step(&info);
            }
            if stop_requested(callbacks.iter_mut().map(|c| c.on_step(&info))) {
                ending = Ending::Callback;
                break 'epochs;
            }
        }
        state.epoch += 1;
        let metrics = val.map(|v| evaluate(model, v, loss));
        let info = EpochInfo {
            epoch: state.epoch,
            step: state.step,
            train_loss: total / batches.max(1) as f64,
            val: metrics,
            order: &state.order,
        };
        if let Some(b) = &mut bar {
            b.on_epoch(&info);
        }
        let stop = stop_requested(callbacks.iter_mut().map(|c| c.on_epoch(&info)));
        let patience_out = early_stopping(model, spec, state, metrics);
        if let Some(c) = &spec.checkpoint {
            if state.epoch.is_multiple_of(c.every.max(1)) {
                checkpoint::save(&c.path, model, opt, state, callbacks)?;
            }
        }
        if patience_out {
            ending = Ending::EarlyStopped;
            break;
        }
        if stop {
            ending = Ending::Callback;
            break;
        }
    }
    if let (Some(es), Some((_, _, best))) = (&spec.early_stopping, &state.best) {
        if es.restore_best {
            restore(model, best);
        }
    }
    let summary = Summary {
        epochs: state.epoch,
        steps: state.step,
        ending,
        best_epoch: state.best.as_ref().map(|b| b.0),
    };
    for c in callbacks.iter_mut() {
        c.on_end(&summary);
    }
    if let Some(b) = &mut bar {
        b.on_end(&summary);
    }
    Ok(summary)
}
// ANCHOR_END: fit

// ANCHOR: train_step
/// One step on `batch`: forward, loss, backward, penalty, clipping, optimizer step.
/// Returns the loss (without the penalty), or `None` when it is not finite and the spec
/// says to stop there, before anything changed.
fn train_step(
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    loss: &dyn Loss,
    batch: Dataset,
    spec: &TrainSpec,
    rng: &mut ChaCha8Rng,
) -> Option<f32> {
    let mut x = batch.x;
    if let Some(t) = spec.augment {
        // Rows of pixels, (B, H, W) or (B, C, H, W): augmented as (B, C, H, W) images.
        let shape = x.shape().to_vec();
        let [c, h, w] = image_shape(&shape[1..]);
        let images = x
            .into_shape_with_order(IxDyn(&[shape[0], c, h, w]))
            .expect("a batch is in standard layout");
        let aug = augment_images(&images, t, rng);
        x = aug.into_shape_with_order(IxDyn(&shape)).expect("same size");
    }
    model.zero_grad();
    let out = model.forward_owned(x, Mode::Train);
    let (l, dout) = loss.loss(&out, &batch.y);
    if spec.stop_on_non_finite && !l.is_finite() {
        return None;
    }
    model.backward_params(dout); // only the parameter gradients
    if let Some(p) = spec.penalty {
        add_penalty_grad(model, p);
    }
    if let Some(c) = spec.clip_norm {
        clip_grad_norm(model, &spec.groups, c);
    }
    opt.step(&mut Trainable {
        model,
        groups: &spec.groups,
    });
    Some(l)
}
// ANCHOR_END: train_step

fn stop_requested(answers: impl Iterator<Item = Control>) -> bool {
    // Every callback hears about the event, even after one asked to stop.
    answers.fold(false, |stop, c| stop | (c == Control::Stop))
}

/// Updates the early-stopping record after an epoch; whether patience ran out.
fn early_stopping(
    model: &mut dyn Layer,
    spec: &TrainSpec,
    state: &mut RunState,
    metrics: Option<Metrics>,
) -> bool {
    let (Some(es), Some(m)) = (spec.early_stopping, metrics) else {
        return false;
    };
    let score = match es.monitor {
        Monitor::Loss => -m.loss,
        Monitor::Accuracy => m.accuracy.expect("accuracy needs class targets"),
    };
    let better = state
        .best
        .as_ref()
        .is_none_or(|(_, best, _)| score > best + es.min_delta);
    if better {
        state.best = Some((state.epoch, score, snapshot(model)));
        state.since_best = 0;
    } else {
        state.since_best += 1;
    }
    state.since_best >= es.patience.max(1)
}

// ANCHOR: train_classifier
/// Trains `model` with `opt` on `train` (softmax cross-entropy), measuring accuracy on
/// `test` after each epoch; the curves [`HistoryLogger`] records. Stops early (with
/// `finite = false`) if the loss becomes NaN or infinite.
pub fn train_classifier(
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    train: &Dataset,
    test: &Dataset,
    spec: &TrainSpec,
) -> History {
    let loss = ClassifierLoss::CrossEntropy;
    train_with(model, opt, &loss, train, Some(test), spec)
}
// ANCHOR_END: train_classifier

/// [`fit`] with a [`HistoryLogger`] of `spec.log_every` steps, returning what it logged.
///
/// # Panics
/// If `spec` asks for checkpoints and one cannot be written (call [`fit`] to get the
/// error instead).
pub fn train_with(
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    loss: &dyn Loss,
    train: &Dataset,
    val: Option<&Dataset>,
    spec: &TrainSpec,
) -> History {
    let mut log = HistoryLogger::new(spec.log_every);
    fit(model, opt, loss, train, val, spec, &mut [&mut log])
        .unwrap_or_else(|e| panic!("train_with: {e}"));
    log.history
}

impl TrainSpec<'_> {
    /// Chapter 2's plain loop: `n_epochs` epochs in batches of `batch_size`, each epoch
    /// shuffling `0..n` afresh with a generator seeded by `seed`, going on through a
    /// non-finite loss (so that a diverging run shows in its curves). With
    /// [`Sgd::new`](crate::optim::Sgd::new) it is plain gradient descent, the update of
    /// [`sgd_step`](crate::nn::sgd_step).
    pub fn gradient_descent(n_epochs: usize, batch_size: usize, seed: u64) -> Self {
        TrainSpec {
            n_epochs,
            batch_size,
            seed,
            shuffle: Shuffle::Fresh,
            stop_on_non_finite: false,
            ..TrainSpec::default()
        }
    }
}
