//! Experiment `gradient_through_time`: how much gradient reaches an input $k$ steps
//! before the last, $\lVert \partial \hat y_T / \partial x_{T-k} \rVert$, for the RNN,
//! the LSTM (forget bias as PyTorch initialises it, and 1) and the GRU, and for the RNN
//! with its recurrent weights scaled up; at initialization and after a short training on
//! the adding problem. The measurement and its derivation are in
//! [`rnn::memory`](crate::rnn::memory).
//!
//! The inputs are adding-problem sequences (values and markers); the model is the one
//! the adding problem trains (recurrent layer, last step, linear read-out), so the
//! quantity is the gradient any loss on the last step sees, up to the factor
//! $\ell'(\hat y)$.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::rnn::memory::{
    adding_problem, grad_by_lag, memory_model, train_adding, AddingTrain, CellSpec,
};

/// Experiment `gradient_through_time`, registered in [`super::all`].
pub struct GradientThroughTime;

impl Experiment for GradientThroughTime {
    const NAME: &'static str = "gradient_through_time";
    const CHAPTER: &'static str = "ch08";
    const TITLE: &'static str =
        "Gradient reaching the input k steps before the last, by cell, before and after training";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, r)
    }
}

/// A short training before the second measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trained {
    /// Length of the training sequences.
    pub seq_len: usize,
    /// Steps, batch, learning rate, clipping.
    pub train: AddingTrain,
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Length of the measured sequences: lags $0 \dots T - 1$.
    pub seq_len: usize,
    /// Hidden width of every cell.
    pub hidden: usize,
    /// Sequences per measurement.
    pub batch_size: usize,
    /// The cells.
    pub cells: Vec<CellSpec>,
    /// The lags in the table.
    pub lags_shown: Vec<usize>,
    /// Seeds: one network and one batch each.
    pub seeds: Vec<u64>,
    /// Measure again after this training (on the adding problem), if set.
    pub trained: Option<Trained>,
}

/// The cells of the experiment: the RNN as initialised and with $W_{hh}$ scaled by
/// `scale`, the LSTM with the forget bias near 0 and at 1, the GRU.
fn cells(scale: f32) -> Vec<CellSpec> {
    vec![
        CellSpec::RNN,
        CellSpec::Rnn {
            recurrent_scale: scale,
        },
        CellSpec::LSTM,
        CellSpec::Lstm {
            forget_bias: Some(1.0),
        },
        CellSpec::GRU,
    ]
}

impl Preset for Config {
    /// The book's configuration.
    fn full() -> Self {
        Config {
            seq_len: 120,
            hidden: 32,
            batch_size: 32,
            cells: cells(4.0),
            lags_shown: vec![1, 10, 25, 50, 100],
            seeds: vec![0, 1, 2],
            trained: Some(Trained {
                seq_len: 50,
                train: AddingTrain {
                    steps: 300,
                    batch_size: 32,
                    lr: 1e-2,
                    clip_norm: Some(1.0),
                    truncate: None,
                },
            }),
        }
    }

    /// The test configuration: shorter sequences, a smaller network, a few steps.
    fn quick() -> Self {
        Config {
            seq_len: 40,
            hidden: 16,
            batch_size: 8,
            cells: cells(4.0),
            lags_shown: vec![1, 10, 30],
            seeds: vec![0, 1, 2],
            trained: Some(Trained {
                seq_len: 20,
                train: AddingTrain {
                    steps: 20,
                    batch_size: 16,
                    lr: 1e-2,
                    clip_norm: Some(1.0),
                    truncate: None,
                },
            }),
        }
    }
}

/// The curves of one cell and seed: at initialization, and after training if asked.
fn measure(cfg: &Config, cell: CellSpec, seed: u64) -> (Vec<f64>, Option<Vec<f64>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(1000 + seed);
    let x = adding_problem(cfg.batch_size, cfg.seq_len, &mut rng).x;
    let mut model = memory_model(cell, 2, cfg.hidden, false, seed);
    let before = grad_by_lag(&mut model, &x);
    let after = cfg.trained.as_ref().map(|tr| {
        let test = adding_problem(16, tr.seq_len, &mut rng);
        train_adding(&mut model, &tr.train, tr.seq_len, 2000 + seed, &test);
        grad_by_lag(&mut model, &x)
    });
    (before, after)
}

/// `log10` of each value (the figure's y axis); 0 gives a floor of -30.
fn log10(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&g| g.max(1e-30).log10()).collect()
}

/// The figure of one set of curves `[cell][seed][lag]`: `log10` of the norm, mean ± std
/// over the seeds.
fn figure(cfg: &Config, name: &str, title: &str, curves: &[Vec<Vec<f64>>]) -> Figure {
    let series = cfg
        .cells
        .iter()
        .zip(curves)
        .map(|(cell, runs)| {
            let logs: Vec<Vec<f64>> = runs.iter().map(|c| log10(c)).collect();
            let (y, band): (Vec<f64>, Vec<f64>) = (0..cfg.seq_len)
                .map(|k| {
                    let at: Vec<f64> = logs.iter().map(|c| c[k]).collect();
                    Value::mean_std(&at)
                })
                .unzip();
            Series {
                name: cell.name(),
                x: (0..cfg.seq_len).map(|k| k as f64).collect(),
                y,
                band: Some(band),
            }
        })
        .collect();
    Figure {
        name: name.into(),
        title: title.into(),
        plot: Plot::Lines {
            x_label: "lag k (steps before the last)".into(),
            y_label: "log₁₀ ‖∂ŷ/∂x_{T−k}‖ (mean ± std over seeds)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series,
        },
    }
}

/// The table of one set of curves at the lags shown.
fn table(cfg: &Config, name: &str, when: &str, curves: &[Vec<Vec<f64>>]) -> Table {
    let mut columns = vec![col("cell", Format::Int)];
    columns.extend(
        cfg.lags_shown
            .iter()
            .map(|k| col(&format!("k = {k}"), Format::Sci(1))),
    );
    let rows = cfg
        .cells
        .iter()
        .zip(curves)
        .map(|(cell, runs)| {
            let mut row = vec![Value::Text(cell.name())];
            row.extend(
                cfg.lags_shown
                    .iter()
                    .map(|&k| Value::Seeds(runs.iter().map(|c| c[k]).collect())),
            );
            row
        })
        .collect();
    Table {
        name: name.into(),
        caption: format!(
            "‖∂ŷ/∂x_(T−k)‖ {when}, averaged over {} adding-problem sequences of {} \
             steps, hidden width {}; mean ± std over {} seeds.",
            cfg.batch_size,
            cfg.seq_len,
            cfg.hidden,
            cfg.seeds.len()
        ),
        columns,
        rows,
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    let jobs: Vec<(usize, u64)> = (0..cfg.cells.len())
        .flat_map(|c| cfg.seeds.iter().map(move |&s| (c, s)))
        .collect();
    let bar = crate::progress::bar(jobs.len() as u64, "gradient through time");
    let results: Vec<(Vec<f64>, Option<Vec<f64>>)> = jobs
        .par_iter()
        .map(|&(c, s)| {
            let out = measure(cfg, cfg.cells[c], s);
            bar.inc(1);
            out
        })
        .collect();
    bar.finish_and_clear();
    let n = cfg.seeds.len();
    let before: Vec<Vec<Vec<f64>>> = results
        .chunks(n)
        .map(|runs| runs.iter().map(|(b, _)| b.clone()).collect())
        .collect();
    r.figures.push(figure(
        cfg,
        "init",
        "Gradient through time at initialization",
        &before,
    ));
    r.tables.push(table(cfg, "init", "at initialization", &before));
    if let Some(tr) = &cfg.trained {
        let after: Vec<Vec<Vec<f64>>> = results
            .chunks(n)
            .map(|runs| {
                runs.iter()
                    .map(|(_, a)| a.clone().expect("measured after training"))
                    .collect()
            })
            .collect();
        r.figures.push(figure(
            cfg,
            "trained",
            "Gradient through time after training on the adding problem",
            &after,
        ));
        r.tables.push(table(
            cfg,
            "trained",
            &format!(
                "after {} Adam steps on the adding problem (T = {})",
                tr.train.steps, tr.seq_len
            ),
            &after,
        ));
    }
    Ok(())
}
