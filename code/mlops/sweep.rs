//! Hyperparameter sweeps: grid search, random search and successive halving over the
//! learning rate and width of an MLP on MNIST, trials trained in parallel threads, every
//! trial a tracked run, the best chosen on a validation split carved from the training
//! images (the test images are read once, to report the winner).
//!
//! **The space.** A point is a learning rate $\eta_{lr}$ (plain SGD) and a hidden width
//! $h$ of a `784 - h - 10` ReLU network. Grid search takes `grid_lr` learning rates
//! spaced evenly in $\log \eta_{lr}$ over `lr_range`, times every width; random search
//! draws `n_random` points, $\log \eta_{lr}$ uniform over the range and $h$ uniform over
//! the widths; both train every point for the full budget $R$ epochs.
//!
//! **Successive halving.** Most points of a space are bad, and a bad point usually looks
//! bad early. So start $n_0$ random points with a small budget $r_0$ epochs, keep the
//! best $1/\eta$ of them on validation accuracy, give the survivors $\eta$ times the
//! budget (continuing their training, not restarting it), and repeat while the budget
//! stays within $R$. Rung $i$ holds $n_i = \lfloor n_0 / \eta^i \rfloor$ points trained to
//! $r_i = r_0 \eta^i$ epochs, for $i = 0 \dots s$ with $r_s \le R$. Each survivor of
//! rung $i$ costs only the epochs it adds, $r_i - r_{i-1}$, so the whole sweep costs
//!
//! $$B_{SH} = n_0 r_0 + \sum_{i=1}^{s} n_i (r_i - r_{i-1})
//!          = n_0 r_0 \Big(1 + s\,\big(1 - \tfrac{1}{\eta}\big)\Big)$$
//!
//! epochs when $\eta^s$ divides $n_0$ (each term of the sum is
//! $\frac{n_0}{\eta^i} \cdot r_0 \eta^{i-1}(\eta - 1) = n_0 r_0 (1 - 1/\eta)$), against
//! $B = n_0 R = n_0 r_0 \eta^s$ for training the same $n_0$ points fully: a fraction
//! $(1 + s(1 - 1/\eta)) / \eta^s$, 26 % for $\eta = 3, s = 2$. What it risks: a point
//! that starts slowly and would have ended best is dropped at a low rung.
//!
//! **Parallel.** The trials of a strategy (of a rung, for successive halving) run on
//! `threads` threads, each trial on one; every trial's seed is fixed by its index, so
//! the results do not depend on the number of threads or on which thread ran what.

use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::tracking::{Run, RunStatus, Tracker};
use crate::data::{DataDir, Dataset, Split};
use crate::nn::activation::Activation;
use crate::nn::linear::Init;
use crate::nn::mlp::Mlp;
use crate::optim::Sgd;
use crate::train::{accuracy_on, train_with, ClassifierLoss, TrainSpec};

/// A search strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every point of a grid, each trained fully.
    Grid,
    /// Random points, each trained fully.
    Random,
    /// Random points, the worse dropped at each rung of growing budget.
    Halving,
}

impl Strategy {
    /// All three, in the book's order.
    pub const ALL: [Strategy; 3] = [Strategy::Grid, Strategy::Random, Strategy::Halving];

    /// Its name (`grid`, `random`, `halving`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Grid => "grid",
            Strategy::Random => "random",
            Strategy::Halving => "halving",
        }
    }

    /// The strategy called `name`, or an error listing them.
    pub fn parse(name: &str) -> Result<Strategy> {
        Strategy::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .with_context(|| {
                format!("unknown strategy {name:?} (expected grid, random or halving)")
            })
    }
}

/// A point of the space.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// SGD's learning rate.
    pub lr: f32,
    /// The hidden layer's width.
    pub hidden: usize,
}

/// The space, the budgets and the data of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepConfig {
    /// Training images (the first ones of MNIST's training file).
    pub n_train: usize,
    /// Validation images (the next ones of the training file, never trained on).
    pub n_val: usize,
    /// Test images, read once to report each strategy's winner.
    pub n_test: usize,
    /// Examples per SGD step.
    pub batch_size: usize,
    /// Smallest and largest learning rate.
    pub lr_range: (f32, f32),
    /// The hidden widths.
    pub hidden: Vec<usize>,
    /// Learning rates of the grid (log-spaced over `lr_range`, ends included).
    pub grid_lr: usize,
    /// Points of random search.
    pub n_random: usize,
    /// The full budget of one point, in epochs ($R$).
    pub max_epochs: usize,
    /// Points successive halving starts with ($n_0$).
    pub n_halving: usize,
    /// Successive halving's first budget, in epochs ($r_0$).
    pub min_epochs: usize,
    /// The factor successive halving keeps $1/\eta$ of the points by and multiplies
    /// the budget by ($\eta$).
    pub eta: usize,
    /// Seed of the random points and of every trial.
    pub seed: u64,
}

impl SweepConfig {
    /// The grid's points: widths outer, learning rates inner.
    pub fn grid(&self) -> Vec<Point> {
        let (lo, hi) = (self.lr_range.0.ln(), self.lr_range.1.ln());
        let k = self.grid_lr.max(1);
        let mut out = vec![];
        for &hidden in &self.hidden {
            for j in 0..k {
                let t = if k == 1 {
                    0.5
                } else {
                    j as f32 / (k - 1) as f32
                };
                out.push(Point {
                    lr: (lo + t * (hi - lo)).exp(),
                    hidden,
                });
            }
        }
        out
    }

    /// `n` random points (log-uniform learning rate, uniform width), from `stream`.
    pub fn random(&self, n: usize, stream: u64) -> Vec<Point> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (stream << 32));
        let (lo, hi) = (self.lr_range.0.ln(), self.lr_range.1.ln());
        (0..n)
            .map(|_| Point {
                lr: (lo + rng.random::<f32>() * (hi - lo)).exp(),
                hidden: self.hidden[rng.random_range(0..self.hidden.len())],
            })
            .collect()
    }

    /// Successive halving's rungs `(points, epochs)`: $n_i = \lfloor n_0/\eta^i
    /// \rfloor$, $r_i = r_0 \eta^i$, while $r_i \le R$ and a point is left.
    pub fn rungs(&self) -> Vec<(usize, usize)> {
        let eta = self.eta.max(2);
        let (mut n, mut r) = (self.n_halving, self.min_epochs.max(1));
        let mut out = vec![];
        while n >= 1 && r <= self.max_epochs {
            out.push((n, r));
            n /= eta;
            r *= eta;
        }
        out
    }

    /// Checks that the configuration describes a sweep.
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = self.lr_range;
        if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
            bail!("lr_range {:?}: need 0 < low <= high", self.lr_range);
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            bail!("hidden {:?}: need at least one width, none 0", self.hidden);
        }
        if self.n_train == 0
            || self.n_val == 0
            || self.batch_size == 0
            || self.max_epochs == 0
        {
            bail!("n_train, n_val, batch_size and max_epochs must be at least 1");
        }
        if self.eta < 2 {
            bail!(
                "eta {}: successive halving keeps 1/eta of the points, eta >= 2",
                self.eta
            );
        }
        if self.rungs().is_empty() {
            bail!(
                "successive halving has no rung: min_epochs {} > max_epochs {} or no points",
                self.min_epochs,
                self.max_epochs
            );
        }
        Ok(())
    }

    /// The epochs successive halving spends by the formula of the module's docs,
    /// $\sum_i n_i (r_i - r_{i-1})$.
    pub fn halving_budget(&self) -> usize {
        let mut prev = 0;
        let mut total = 0;
        for (n, r) in self.rungs() {
            total += n * (r - prev);
            prev = r;
        }
        total
    }
}

/// The data of a sweep: training and validation images from MNIST's training file,
/// test images from its test file, as rows of 784 pixels.
pub struct SweepData {
    /// What the trials train on.
    pub train: Dataset,
    /// What they are chosen on.
    pub val: Dataset,
    /// What the winners are reported on.
    pub test: Dataset,
}

impl SweepData {
    /// Reads the images `cfg` asks for.
    pub fn load(dir: &DataDir, cfg: &SweepConfig) -> Result<SweepData> {
        let all = Dataset::mnist(dir, Split::Train, cfg.n_train + cfg.n_val)?.into_flat();
        if all.len() < cfg.n_train + cfg.n_val {
            bail!(
                "MNIST has {} training images; the sweep asks for {} + {}",
                all.len(),
                cfg.n_train,
                cfg.n_val
            );
        }
        let train_idx: Vec<usize> = (0..cfg.n_train).collect();
        let val_idx: Vec<usize> = (cfg.n_train..cfg.n_train + cfg.n_val).collect();
        Ok(SweepData {
            train: all.select(&train_idx),
            val: all.select(&val_idx),
            test: Dataset::mnist(dir, Split::Test, cfg.n_test)?.into_flat(),
        })
    }
}

/// One trial: a point, its network, and what it measured.
pub struct Trial {
    /// Its number within its strategy.
    pub index: usize,
    /// The point.
    pub point: Point,
    /// Validation accuracy after each epoch.
    pub val_acc: Vec<f64>,
    /// Mean training loss of each epoch.
    pub train_loss: Vec<f64>,
    /// The run it is logged as, if tracked.
    pub run_id: Option<String>,
    mlp: Mlp,
    run: Option<Run>,
    seed: u64,
}

impl Trial {
    /// The epochs it has trained.
    pub fn epochs(&self) -> usize {
        self.val_acc.len()
    }

    /// Its latest validation accuracy (0 before training, or after a diverged epoch).
    pub fn score(&self) -> f64 {
        self.val_acc
            .last()
            .copied()
            .filter(|a| a.is_finite())
            .unwrap_or(0.0)
    }

    /// Trains `epochs` more epochs, logging each one's metrics to its run.
    fn advance(
        &mut self,
        data: &SweepData,
        batch_size: usize,
        epochs: usize,
    ) -> Result<()> {
        // A different shuffle for every stretch of a continued training.
        let seed = self.seed.wrapping_add(1_000_003 * self.epochs() as u64);
        let spec = TrainSpec::gradient_descent(epochs, batch_size, seed);
        let h = train_with(
            &mut self.mlp,
            &mut Sgd::new(self.point.lr),
            &ClassifierLoss::CrossEntropy,
            &data.train,
            Some(&data.val),
            &spec,
        );
        for (acc, loss) in h.test_acc.iter().zip(&h.epoch_loss) {
            self.val_acc.push(*acc);
            self.train_loss.push(*loss);
            if let Some(run) = self.run.as_mut() {
                run.log_metrics(
                    &[("val_acc", *acc), ("train_loss", *loss)],
                    self.val_acc.len() as i64,
                )?;
            }
        }
        Ok(())
    }
}

/// Where a sweep logs its trials: a tracker, the experiment and the sweep's id (the
/// tag `sweep` of every trial's run).
pub struct Tracking<'a> {
    /// The store.
    pub tracker: &'a Tracker,
    /// The experiment's id.
    pub experiment_id: String,
    /// The sweep's id.
    pub sweep_id: String,
}

/// What one strategy found.
pub struct SweepResult {
    /// The strategy.
    pub strategy: Strategy,
    /// Every trial, by index.
    pub trials: Vec<Trial>,
    /// Every evaluation in the order a one-thread sweep would make them: `(trial,
    /// epochs spent so far by the whole sweep, its validation accuracy then)`.
    pub evaluations: Vec<(usize, usize, f64)>,
    /// The index of the winner: the best validation accuracy among the points trained
    /// fully (the last rung, for successive halving); ties go to the lower index.
    pub best: usize,
    /// Epochs spent.
    pub budget: usize,
    /// The winner's accuracy on the test images.
    pub test_acc: f64,
}

impl SweepResult {
    /// The winner.
    pub fn winner(&self) -> &Trial {
        &self.trials[self.best]
    }

    /// The best validation accuracy seen after each evaluation, against the epochs
    /// spent: the curve of the sweep's figure.
    pub fn best_so_far(&self) -> Vec<(usize, f64)> {
        let mut best = 0f64;
        self.evaluations
            .iter()
            .map(|&(_, spent, acc)| {
                best = best.max(acc);
                (spent, best)
            })
            .collect()
    }
}

/// Runs `f` on every item on `threads` threads; the first error (or panic) is returned.
fn parallel_each<T: Send>(
    items: &mut [T],
    threads: usize,
    f: &(dyn Fn(&mut T) -> Result<()> + Sync),
) -> Result<()> {
    let queue = Mutex::new(items.iter_mut());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                        match next {
                            Some(item) => f(item)?,
                            None => return Ok(()),
                        }
                    }
                })
            })
            .collect();
        let mut first = Ok(());
        for h in handles {
            let r = h.join().map_err(|_| anyhow!("a trial panicked"))?;
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

/// Runs one strategy of the sweep `cfg` on `data` with `threads` threads, logging every
/// trial to `tracking` when given; `on_trial` is called after each trial's stretch of
/// training (for a progress bar).
pub fn run(
    cfg: &SweepConfig,
    strategy: Strategy,
    data: &SweepData,
    threads: usize,
    tracking: Option<&Tracking>,
    on_trial: &(dyn Fn() + Sync),
) -> Result<SweepResult> {
    cfg.validate()?;
    let points = match strategy {
        Strategy::Grid => cfg.grid(),
        Strategy::Random => cfg.random(cfg.n_random, 1),
        Strategy::Halving => cfg.random(cfg.n_halving, 2),
    };
    let d = data.train.example_shape()[0];
    let mut trials = vec![];
    for (index, point) in points.into_iter().enumerate() {
        let seed = cfg
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(index as u64 + 1);
        let run = match tracking {
            Some(t) => {
                let mut run = t
                    .tracker
                    .start_run(
                        &t.experiment_id,
                        &format!("{} {index}", strategy.name()),
                        &[("sweep", &t.sweep_id), ("strategy", strategy.name())],
                    )
                    .with_context(|| format!("starting trial {index}"))?;
                run.log_param("lr", &point.lr.to_string())?;
                run.log_param("hidden", &point.hidden.to_string())?;
                run.log_param("batch_size", &cfg.batch_size.to_string())?;
                run.log_param("seed", &seed.to_string())?;
                Some(run)
            }
            None => None,
        };
        trials.push(Trial {
            index,
            point,
            val_acc: vec![],
            train_loss: vec![],
            run_id: run.as_ref().map(|r| r.id().to_string()),
            mlp: Mlp::new(&[d, point.hidden, 10], Activation::Relu, Init::He, seed),
            run,
            seed,
        });
    }
    let mut evaluations = vec![];
    let mut spent = 0;
    let advance_all = |trials: &mut [&mut Trial], to: usize| -> Result<()> {
        parallel_each(trials, threads, &|t: &mut &mut Trial| {
            let more = to - t.epochs();
            t.advance(data, cfg.batch_size, more)?;
            on_trial();
            Ok(())
        })
    };
    let finalists: Vec<usize> = match strategy {
        Strategy::Grid | Strategy::Random => {
            advance_all(&mut trials.iter_mut().collect::<Vec<_>>(), cfg.max_epochs)?;
            for t in &trials {
                spent += cfg.max_epochs;
                evaluations.push((t.index, spent, t.score()));
            }
            (0..trials.len()).collect()
        }
        Strategy::Halving => {
            let mut alive: Vec<usize> = (0..trials.len()).collect();
            let mut prev = 0;
            for (i, &(n, r)) in cfg.rungs().iter().enumerate() {
                if i > 0 {
                    // Keep the best n on validation accuracy (ties: lower index).
                    alive.sort_by(|&a, &b| {
                        trials[b]
                            .score()
                            .total_cmp(&trials[a].score())
                            .then(a.cmp(&b))
                    });
                    alive.truncate(n);
                    alive.sort_unstable();
                }
                let mut rung: Vec<&mut Trial> = trials
                    .iter_mut()
                    .filter(|t| alive.contains(&t.index))
                    .collect();
                advance_all(&mut rung, r)?;
                for &k in &alive {
                    spent += r - prev;
                    evaluations.push((k, spent, trials[k].score()));
                }
                prev = r;
            }
            alive
        }
    };
    let best = *finalists
        .iter()
        .max_by(|&&a, &&b| {
            trials[a]
                .score()
                .total_cmp(&trials[b].score())
                .then(b.cmp(&a))
        })
        .context("a sweep with no trial")?;
    let test_acc = accuracy_on(&mut trials[best].mlp, &data.test);
    for t in &mut trials {
        if let Some(mut run) = t.run.take() {
            run.set_tag("chosen", if t.index == best { "true" } else { "false" })?;
            run.log_metric("final_val_acc", t.score(), t.epochs() as i64)?;
            if t.index == best {
                run.log_metric("test_acc", test_acc, t.epochs() as i64)?;
            }
            run.end(RunStatus::Finished)?;
        }
    }
    Ok(SweepResult {
        strategy,
        trials,
        evaluations,
        best,
        budget: spent,
        test_acc,
    })
}
