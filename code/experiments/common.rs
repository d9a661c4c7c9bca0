//! Pieces the experiments share: the training fields of a configuration, a loop over
//! seeds, the variant × seed ablation table and the loss-curve figure.
//!
//! A training experiment repeats the same skeleton: a `Config` with the data sizes, the
//! budget and the seeds; a loop that trains once per seed; headline numbers stored per
//! seed (tables show them as mean ± std); and, for an ablation, one row per variant with
//! its difference to the baseline. The pieces here are that skeleton, written once:
//!
//! ```text
//! #[derive(Clone, Debug, PartialEq, Serialize)]
//! pub struct Config {
//!     /// Training images (the first ones).
//!     pub n_train: usize,
//!     /// Test images (the first ones).
//!     pub n_test: usize,
//!     /// Epochs, batches and seeds: `n_epochs`, `batch_size`, `seeds`.
//!     #[serde(flatten)]
//!     pub train: TrainFields,
//!     /// Adam's learning rate.
//!     pub lr: f32,
//!     /// Steps per point of the training curves.
//!     pub log_every: usize,
//!     /// The variants, the baseline first.
//!     pub variants: Vec<Variant>,
//! }
//!
//! /// One variant trained with one seed.
//! fn train_variant(cfg: &Config, v: &Variant, train: &Dataset, test: &Dataset,
//!                  seed: u64) -> History {
//!     let mut model = v.build(seed);
//!     let spec = TrainSpec { log_every: cfg.log_every, ..cfg.train.spec(seed) };
//!     train_classifier(&mut model, &mut Adam::new(cfg.lr), train, test, &spec)
//! }
//!
//! pub fn run(cfg: &Config, dir: &DataDir, r: &mut Report) -> Result<()> {
//!     // ... load `train` and `test` ...
//!     r.seeds = cfg.train.seeds.clone();
//!     let ab = Ablation::run(
//!         "my_ablation",
//!         cfg.variants.iter().map(|v| (v.name.as_str(), v)),
//!         &cfg.train.seeds,
//!         |v, seed| {
//!             let h = train_variant(cfg, v, &train, &test, seed);
//!             (h.final_acc(), h)
//!         },
//!     );
//!     ab.accuracy_facts(r);
//!     let columns = [AblationColumn::Name("variant"), AblationColumn::Accuracy,
//!                    AblationColumn::Delta("Δ vs baseline (points)")];
//!     r.tables.push(ab.table("ablation", caption, &columns));
//!     let curves = ab.names.iter().zip(&ab.runs)
//!         .map(|(name, hs)| loss_curve(name, hs))
//!         .collect();
//!     r.figures.push(loss_figure("curves", cfg.log_every, &cfg.train.seeds, Scale::Linear,
//!                                curves));
//!     Ok(())
//! }
//! ```
//!
//! Spreads are [`Value::mean_std`] over the seeds in seed order, the statistic every
//! table shows for a per-seed value, so a figure's band and a table's ± agree.

use std::time::Instant;

use serde::Serialize;

use crate::progress;
use crate::report::{
    col, Column, Figure, Format, Plot, Report, Scale, Series, Table, Value,
};
use crate::train::{History, TrainSpec};

/// The fields every training experiment's configuration has: how long to train, in
/// which batches, and over which seeds.
///
/// A config embeds it with `#[serde(flatten)]`, so its serialised JSON keeps these keys
/// at the top level, exactly as if they were written out in the config itself (the
/// committed results store the config, and `dlbook regen --check` compares it).
/// Anything only some experiments have (a learning rate, `log_every`, validation
/// images) stays in the experiment's own config, and so do the data sizes `n_train` and
/// `n_test` (they belong with the loading of the data).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainFields {
    /// Passes over the training images.
    pub n_epochs: usize,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Seeds: one training run each. A seed fixes the initialization, the batch order
    /// and any other randomness of the run (dropout masks, augmentations); headline
    /// numbers are reported as mean ± std over the seeds.
    pub seeds: Vec<u64>,
}

impl TrainFields {
    /// The [`TrainSpec`] of the run with `seed`: these epochs and batches, everything
    /// else at its default (set `log_every`, a penalty or augmentation on top with
    /// `TrainSpec { log_every, ..fields.spec(seed) }`).
    pub fn spec(&self, seed: u64) -> TrainSpec<'static> {
        TrainSpec {
            n_epochs: self.n_epochs,
            batch_size: self.batch_size,
            seed,
            ..TrainSpec::default()
        }
    }
}

/// Runs `run` once per seed, in order, and returns what each run gave, in seed order.
///
/// A full preset trains for minutes per seed, so this shows a progress bar labelled
/// `what` and prints how long each seed took (`what, seed 1: 12.3 s`) above it. The
/// timings go to standard error only: they are not reproducible, so never stored.
pub fn over_seeds<T>(what: &str, seeds: &[u64], mut run: impl FnMut(u64) -> T) -> Vec<T> {
    let bar = progress::bar(seeds.len() as u64, what);
    let out = seeds
        .iter()
        .map(|&seed| {
            let t = Instant::now();
            let x = run(seed);
            progress::println(format!(
                "{what}, seed {seed}: {:.1} s (timing, not stored)",
                t.elapsed().as_secs_f64()
            ));
            bar.inc(1);
            x
        })
        .collect();
    bar.finish_and_clear();
    out
}

/// An ablation: every variant trained with every seed and compared, by test accuracy,
/// with the first variant (the baseline). Same seeds for every variant, so a seed's runs
/// differ only by the component the variant changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Ablation<T> {
    /// The variants' names, the baseline first.
    pub names: Vec<String>,
    /// `accs[k][i]`: the test accuracy of variant `k` trained with seed `i`.
    pub accs: Vec<Vec<f64>>,
    /// `runs[k][i]`: whatever else the run of variant `k` with seed `i` returned.
    pub runs: Vec<Vec<T>>,
}

/// A column of an ablation table ([`Ablation::table`]).
pub enum AblationColumn<'a, T> {
    /// The variant's name, under this header.
    Name(&'a str),
    /// The test accuracy over the seeds, mean ± std, headed "test accuracy".
    Accuracy,
    /// The difference of the variant's mean accuracy to the baseline's, in percentage
    /// points, under this header (`"Δ vs baseline (points)"`).
    Delta(&'a str),
    /// Anything else: its header and format, and the cell computed from the variant's
    /// runs (one per seed).
    Other(Column, &'a dyn Fn(&[T]) -> Value),
}

impl<T> Ablation<T> {
    /// Trains every variant of `variants` (`(name, variant)`, the baseline first) with
    /// every seed: `train(variant, seed)` returns the run's test accuracy and anything
    /// else the tables or figures need. `what` (the experiment's name) labels the
    /// progress lines.
    pub fn run<'v, V: 'v>(
        what: &str,
        variants: impl IntoIterator<Item = (&'v str, &'v V)>,
        seeds: &[u64],
        mut train: impl FnMut(&V, u64) -> (f64, T),
    ) -> Self {
        let mut ab = Ablation {
            names: vec![],
            accs: vec![],
            runs: vec![],
        };
        for (name, v) in variants {
            let (accs, runs) =
                over_seeds(&format!("{what}: {name}"), seeds, |seed| train(v, seed))
                    .into_iter()
                    .unzip();
            ab.names.push(name.to_string());
            ab.accs.push(accs);
            ab.runs.push(runs);
        }
        ab
    }

    /// The mean test accuracy of variant `k` over the seeds.
    pub fn mean_acc(&self, k: usize) -> f64 {
        Value::mean_std(&self.accs[k]).0
    }

    /// How much better variant `k` is than the baseline: the difference of their mean
    /// accuracies, in percentage points.
    pub fn delta_points(&self, k: usize) -> f64 {
        100.0 * (self.mean_acc(k) - self.mean_acc(0))
    }

    /// Records the fact `acc_<k>` for every variant `k`: its per-seed test accuracies.
    pub fn accuracy_facts(&self, r: &mut Report) {
        for (k, accs) in self.accs.iter().enumerate() {
            r.fact(
                &format!("acc_{k}"),
                Value::Seeds(accs.clone()),
                Format::Percent(2),
            );
        }
    }

    /// The table `name`: one row per variant, its cells as `columns` say.
    pub fn table(
        &self,
        name: &str,
        caption: String,
        columns: &[AblationColumn<T>],
    ) -> Table {
        let rows = (0..self.names.len())
            .map(|k| {
                columns
                    .iter()
                    .map(|c| match c {
                        AblationColumn::Name(_) => Value::from(self.names[k].as_str()),
                        AblationColumn::Accuracy => Value::Seeds(self.accs[k].clone()),
                        AblationColumn::Delta(_) => Value::Num(self.delta_points(k)),
                        AblationColumn::Other(_, cell) => cell(&self.runs[k]),
                    })
                    .collect()
            })
            .collect();
        let columns = columns
            .iter()
            .map(|c| match c {
                AblationColumn::Name(h) => col(h, Format::Int),
                AblationColumn::Accuracy => col("test accuracy", Format::Percent(2)),
                AblationColumn::Delta(h) => col(h, Format::Fixed(2)),
                AblationColumn::Other(col, _) => col.clone(),
            })
            .collect();
        Table {
            name: name.into(),
            caption,
            columns,
            rows,
        }
    }
}

/// One line with a ± band from several seeds' curves: at every point the mean over the
/// seeds and, as the band, their standard deviation. `curves[i]` is seed `i`'s curve at
/// the points `x`; the line stops at the shortest curve (a run that diverged stops
/// early).
pub fn band_series<C: AsRef<[f64]>>(
    name: impl Into<String>,
    x: &[f64],
    curves: &[C],
) -> Series {
    let n_pts = curves
        .iter()
        .map(|c| c.as_ref().len())
        .min()
        .unwrap_or(0)
        .min(x.len());
    let (mut y, mut band) = (vec![], vec![]);
    for i in 0..n_pts {
        let vals: Vec<f64> = curves.iter().map(|c| c.as_ref()[i]).collect();
        let (m, sd) = Value::mean_std(&vals);
        y.push(m);
        band.push(sd);
    }
    Series {
        name: name.into(),
        x: x[..n_pts].to_vec(),
        y,
        band: Some(band),
    }
}

/// The training-loss curve of one model over several seeds (their [`History`]s): the
/// mean loss of every logging window, ± std over the seeds.
pub fn loss_curve<'a>(
    name: impl Into<String>,
    hs: impl IntoIterator<Item = &'a History>,
) -> Series {
    let hs: Vec<&History> = hs.into_iter().collect();
    let curves: Vec<&[f64]> = hs.iter().map(|h| h.train_loss.as_slice()).collect();
    let x = hs.first().map_or(&[][..], |h| h.steps.as_slice());
    band_series(name, x, &curves)
}

/// The training loss each seed's run ended with: the mean loss of its last logging
/// window, ∞ for a run whose loss stopped being finite (NaN when nothing was logged).
pub fn final_losses<'a>(hs: impl IntoIterator<Item = &'a History>) -> Vec<f64> {
    hs.into_iter()
        .map(|h| {
            if h.finite {
                h.train_loss.last().copied().unwrap_or(f64::NAN)
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// The figure `name` of training-loss curves ([`loss_curve`]), cross-entropy against
/// the step, one line per model: each point the mean loss of `log_every` steps, ± std
/// over `seeds`.
pub fn loss_figure(
    name: &str,
    log_every: usize,
    seeds: &[u64],
    y_scale: Scale,
    series: Vec<Series>,
) -> Figure {
    Figure {
        name: name.into(),
        title: format!(
            "Training loss (mean of {log_every} steps) ± std over {} seeds",
            seeds.len()
        ),
        plot: Plot::Lines {
            x_label: "step".into(),
            y_label: "cross-entropy".into(),
            x_scale: Scale::Linear,
            y_scale,
            series,
        },
    }
}
