//! Callbacks: what the training loop tells the outside world, step by step and epoch
//! by epoch, and how the outside world stops it.
//!
//! A callback that must survive a checkpoint (a logger, a tracker) returns its state as
//! JSON from [`Callback::state`] and takes it back in [`Callback::load_state`].

use serde::{Deserialize, Serialize};

use super::{Metrics, Summary};

/// Whether training should go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this step (or epoch).
    Stop,
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// Epochs completed before this step (0 during the first epoch).
    pub epoch: usize,
    /// Steps taken, this one included.
    pub step: usize,
    /// The batch loss (without any penalty).
    pub loss: f32,
    /// The optimizer's learning rate.
    pub lr: f32,
    /// Examples in the batch.
    pub batch_size: usize,
}

/// What one epoch did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochInfo<'a> {
    /// Epochs completed, this one included.
    pub epoch: usize,
    /// Steps taken so far.
    pub step: usize,
    /// The mean batch loss over the epoch.
    pub train_loss: f64,
    /// The metrics on the validation set, if there is one.
    pub val: Option<Metrics>,
    /// The order in which the epoch visited the training set (so that a twin trained
    /// alongside can visit it in the same order).
    pub order: &'a [usize],
}

/// Something the training loop reports to. Every method has a default that does
/// nothing, so a callback implements what it needs.
pub trait Callback {
    /// After every optimizer step.
    fn on_step(&mut self, _info: &StepInfo) -> Control {
        Control::Continue
    }

    /// After every epoch (and its evaluation).
    fn on_epoch(&mut self, _info: &EpochInfo) -> Control {
        Control::Continue
    }

    /// Once, when training ends, however it ends.
    fn on_end(&mut self, _summary: &Summary) {}

    /// The state to save in a checkpoint.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Takes back the state of [`Callback::state`] when a run resumes.
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// What training measured: the curves the book plots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Steps at the end of each logging window.
    pub steps: Vec<f64>,
    /// Mean training loss (without the penalty) over each window.
    pub train_loss: Vec<f64>,
    /// Mean training loss over each epoch.
    pub epoch_loss: Vec<f64>,
    /// Validation (test) accuracy after each epoch.
    pub test_acc: Vec<f64>,
    /// Whether the loss stayed finite.
    pub finite: bool,
}

impl History {
    /// The test accuracy after the last epoch (0 if training diverged).
    pub fn final_acc(&self) -> f64 {
        if self.finite {
            self.test_acc.last().copied().unwrap_or(0.0)
        } else {
            0.0
        }
    }
}

/// The callback that records a [`History`]: the training loss averaged over windows of
/// `log_every` steps, and per epoch the mean loss and the validation accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryLogger {
    /// Steps per window.
    pub log_every: usize,
    /// What was recorded.
    pub history: History,
    window: f64,
    in_window: usize,
}

impl HistoryLogger {
    /// A logger averaging over windows of `log_every` steps.
    pub fn new(log_every: usize) -> Self {
        HistoryLogger {
            log_every,
            history: History {
                finite: true,
                ..History::default()
            },
            window: 0.0,
            in_window: 0,
        }
    }
}

impl Callback for HistoryLogger {
    fn on_step(&mut self, info: &StepInfo) -> Control {
        self.window += f64::from(info.loss);
        self.in_window += 1;
        if self.in_window == self.log_every {
            self.history.steps.push(info.step as f64);
            self.history
                .train_loss
                .push(self.window / self.in_window as f64);
            (self.window, self.in_window) = (0.0, 0);
        }
        Control::Continue
    }

    fn on_epoch(&mut self, info: &EpochInfo) -> Control {
        self.history.epoch_loss.push(info.train_loss);
        if let Some(acc) = info.val.and_then(|m| m.accuracy) {
            self.history.test_acc.push(acc);
        }
        Control::Continue
    }

    fn on_end(&mut self, summary: &Summary) {
        if summary.ending == super::Ending::NotFinite {
            self.history.finite = false;
        }
    }

    // Floats are saved by their bits: a decimal round trip could move the last bit,
    // and a resumed run must continue from exactly these sums.
    fn state(&self) -> serde_json::Value {
        let h = &self.history;
        serde_json::json!({
            "log_every": self.log_every,
            "window": self.window.to_bits(),
            "in_window": self.in_window,
            "steps": bits(&h.steps),
            "train_loss": bits(&h.train_loss),
            "epoch_loss": bits(&h.epoch_loss),
            "test_acc": bits(&h.test_acc),
            "finite": h.finite,
        })
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            log_every: usize,
            window: u64,
            in_window: usize,
            steps: Vec<u64>,
            train_loss: Vec<u64>,
            epoch_loss: Vec<u64>,
            test_acc: Vec<u64>,
            finite: bool,
        }
        let s: Saved = serde_json::from_value(state.clone())
            .map_err(|e| format!("history logger state: {e}"))?;
        if s.log_every != self.log_every {
            return Err(format!(
                "history logger: the checkpoint logs every {} steps, this run every {}",
                s.log_every, self.log_every
            ));
        }
        let floats = |v: Vec<u64>| v.into_iter().map(f64::from_bits).collect();
        self.window = f64::from_bits(s.window);
        self.in_window = s.in_window;
        self.history = History {
            steps: floats(s.steps),
            train_loss: floats(s.train_loss),
            epoch_loss: floats(s.epoch_loss),
            test_acc: floats(s.test_acc),
            finite: s.finite,
        };
        Ok(())
    }
}

/// The bit patterns of `v` (exact through JSON).
pub fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The progress bar of a run: one bar over its steps, with the epoch, the running
/// mean loss of the epoch, the last validation score and the ETA (see
/// [`progress`](crate::progress)). [`fit_from`](super::fit_from) shows one by itself
/// when bars are visible; it only watches, so it changes no result, and it is not part
/// of a checkpoint.
pub struct TrainProgress {
    bar: indicatif::ProgressBar,
    n_epochs: usize,
    steps_per_epoch: usize,
    has_val: bool,
    sum: f64,
    in_epoch: usize,
    last_val: Option<String>,
}

impl TrainProgress {
    /// A bar for `n_epochs` epochs of `steps_per_epoch` steps, `done` of them already
    /// taken (a resumed run); `has_val` says whether each epoch ends with an evaluation.
    pub fn new(
        n_epochs: usize,
        steps_per_epoch: usize,
        done: usize,
        has_val: bool,
    ) -> Self {
        let len = (n_epochs * steps_per_epoch) as u64;
        let bar = crate::progress::bar_from(done as u64, len, "train");
        TrainProgress {
            bar,
            n_epochs,
            steps_per_epoch,
            has_val,
            sum: 0.0,
            in_epoch: 0,
            last_val: None,
        }
    }
}

impl Callback for TrainProgress {
    fn on_step(&mut self, info: &StepInfo) -> Control {
        self.sum += f64::from(info.loss);
        self.in_epoch += 1;
        let mut msg = format!(
            "epoch {}/{}  loss {:.4}",
            info.epoch + 1,
            self.n_epochs,
            self.sum / self.in_epoch as f64
        );
        if let Some(v) = &self.last_val {
            msg.push_str(&format!("  ({v})"));
        }
        // The evaluation after the last step of an epoch can take a while.
        if self.has_val && info.step.is_multiple_of(self.steps_per_epoch.max(1)) {
            msg.push_str("  evaluating");
        }
        self.bar.set_message(msg);
        self.bar.set_position(info.step as u64);
        Control::Continue
    }

    fn on_epoch(&mut self, info: &EpochInfo) -> Control {
        (self.sum, self.in_epoch) = (0.0, 0);
        self.last_val = info.val.map(|m| match m.accuracy {
            Some(acc) => format!("epoch {}: val acc {:.2} %", info.epoch, 100.0 * acc),
            None => format!("epoch {}: val loss {:.4}", info.epoch, m.loss),
        });
        Control::Continue
    }

    fn on_end(&mut self, _summary: &Summary) {
        self.bar.finish_and_clear();
    }
}
