//! Experiment `adding_problem`: Hochreiter and Schmidhuber's adding problem (see
//! [`rnn::memory`](crate::rnn::memory)) at growing sequence lengths $T$, for the RNN, the
//! LSTM and the GRU with the same hidden width, the same budget and the same seeds; and
//! the three cells side by side: parameters, forward FLOPs per step, results.
//!
//! Every step draws a fresh batch, so no sequence is seen twice; the test set is fixed
//! (one per length, from its own seed). Training is Adam with the global gradient norm
//! clipped, full BPTT through the whole sequence; the LSTM starts its forget gate's
//! bias at 1.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::{Experiment, Preset};
use crate::data::{DataDir, Targets};
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::rnn::memory::{
    adding_problem, memory_model, train_adding, AddingScore, AddingTrain, CellSpec,
    BASELINE_MSE,
};

/// Experiment `adding_problem`, registered in [`super::all`].
pub struct AddingProblem;

impl Experiment for AddingProblem {
    const NAME: &'static str = "adding_problem";
    const CHAPTER: &'static str = "ch08";
    const TITLE: &'static str =
        "The adding problem: accuracy against sequence length for the RNN, LSTM and GRU";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, r)
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Sequence lengths $T$.
    pub lengths: Vec<usize>,
    /// Hidden width of every cell.
    pub hidden: usize,
    /// The cells.
    pub cells: Vec<CellSpec>,
    /// Steps, batch, learning rate, clipping.
    pub train: AddingTrain,
    /// Test sequences per length.
    pub n_test: usize,
    /// Seeds (weights and training batches).
    pub seeds: Vec<u64>,
}

/// The three cells, the LSTM with forget bias 1.
pub fn three_cells() -> Vec<CellSpec> {
    vec![
        CellSpec::RNN,
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
            lengths: vec![10, 25, 50, 100, 200],
            hidden: 32,
            cells: three_cells(),
            train: AddingTrain {
                steps: 2000,
                batch_size: 32,
                lr: 1e-2,
                clip_norm: Some(1.0),
                truncate: None,
            },
            n_test: 1000,
            seeds: vec![0, 1, 2],
        }
    }

    /// The test configuration: two short lengths, a small network, a few steps.
    fn quick() -> Self {
        Config {
            lengths: vec![5, 10],
            hidden: 8,
            cells: three_cells(),
            train: AddingTrain {
                steps: 30,
                batch_size: 16,
                lr: 1e-2,
                clip_norm: Some(1.0),
                truncate: None,
            },
            n_test: 200,
            seeds: vec![0, 1, 2],
        }
    }
}

/// The fixed test set of length `t`.
pub fn test_set(n: usize, t: usize) -> crate::data::Dataset {
    adding_problem(n, t, &mut ChaCha8Rng::seed_from_u64(10_000 + t as u64))
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    let tests: Vec<_> = cfg.lengths.iter().map(|&t| test_set(cfg.n_test, t)).collect();
    // Longest sequences first, so the two threads finish together.
    let mut jobs: Vec<(usize, usize, usize)> = (0..cfg.cells.len())
        .flat_map(|c| {
            (0..cfg.lengths.len())
                .flat_map(move |l| (0..cfg.seeds.len()).map(move |s| (c, l, s)))
        })
        .collect();
    jobs.sort_by_key(|&(_, l, _)| std::cmp::Reverse(cfg.lengths[l]));
    let bar = crate::progress::bar(jobs.len() as u64, "adding problem");
    let mut scores: Vec<((usize, usize, usize), AddingScore)> = jobs
        .par_iter()
        .map(|&(c, l, si)| {
            let (t, s) = (cfg.lengths[l], cfg.seeds[si]);
            let mut model = memory_model(cfg.cells[c], 2, cfg.hidden, false, s);
            let score = train_adding(&mut model, &cfg.train, t, s, &tests[l]);
            bar.inc(1);
            ((c, l, si), score)
        })
        .collect();
    bar.finish_and_clear();
    scores.sort_by_key(|&(job, _)| job);
    // scores[(c * lengths + l) * seeds + s]
    let at = |c: usize, l: usize| -> Vec<AddingScore> {
        let n = cfg.seeds.len();
        let first = (c * cfg.lengths.len() + l) * n;
        scores[first..first + n].iter().map(|&(_, s)| s).collect()
    };
    let baseline: Vec<f64> = tests
        .iter()
        .map(|d| match &d.y {
            Targets::Values(y) => y.iter().map(|&v| f64::from(v - 1.0).powi(2)).sum::<f64>()
                / y.len() as f64,
            _ => unreachable!("value targets"),
        })
        .collect();
    r.fact("baseline_mse", BASELINE_MSE, Format::Fixed(3));
    r.fact(
        "baseline_mse_test",
        Value::Seeds(baseline.clone()),
        Format::Fixed(3),
    );
    let header = |what: &str| {
        let mut c = vec![col(what, Format::Int)];
        c.extend(
            cfg.lengths
                .iter()
                .map(|t| col(&format!("T = {t}"), Format::Percent(1))),
        );
        c
    };
    let grid = |f: fn(&AddingScore) -> f64| -> Vec<Vec<Value>> {
        cfg.cells
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let mut row = vec![Value::Text(cell.name())];
                row.extend(
                    (0..cfg.lengths.len())
                        .map(|l| Value::Seeds(at(c, l).iter().map(f).collect())),
                );
                row
            })
            .collect()
    };
    let budget = format!(
        "hidden width {}, {} Adam steps (η = {}) of {} fresh sequences, gradient norm \
         clipped at {}; {} test sequences per length; mean ± std over {} seeds",
        cfg.hidden,
        cfg.train.steps,
        cfg.train.lr,
        cfg.train.batch_size,
        cfg.train.clip_norm.map_or("∞".into(), |c| c.to_string()),
        cfg.n_test,
        cfg.seeds.len()
    );
    r.tables.push(Table {
        name: "accuracy".into(),
        caption: format!(
            "Adding problem, accuracy (share of test predictions within 0.04 of the sum) \
             by sequence length T: {budget}."
        ),
        columns: header("cell"),
        rows: grid(|s| s.accuracy),
    });
    let mut mse_cols = header("cell");
    for c in &mut mse_cols[1..] {
        c.format = Format::Fixed(4);
    }
    let mut mse_rows = grid(|s| s.mse);
    let mut base_row = vec![Value::Text("always predict 1".into())];
    base_row.extend(baseline.iter().map(|&b| Value::Num(b)));
    mse_rows.push(base_row);
    r.tables.push(Table {
        name: "mse".into(),
        caption: format!(
            "Adding problem, test mean squared error by sequence length T: {budget}. The \
             last row is the error of always predicting 1, the target's mean."
        ),
        columns: mse_cols,
        rows: mse_rows,
    });
    let series = cfg
        .cells
        .iter()
        .enumerate()
        .map(|(c, cell)| {
            let (y, band): (Vec<f64>, Vec<f64>) = (0..cfg.lengths.len())
                .map(|l| {
                    let acc: Vec<f64> = at(c, l).iter().map(|s| 100.0 * s.accuracy).collect();
                    Value::mean_std(&acc)
                })
                .unzip();
            Series {
                name: cell.name(),
                x: cfg.lengths.iter().map(|&t| t as f64).collect(),
                y,
                band: Some(band),
            }
        })
        .collect();
    r.figures.push(Figure {
        name: "accuracy".into(),
        title: "Adding problem: accuracy against sequence length".into(),
        plot: Plot::Lines {
            x_label: "sequence length T".into(),
            y_label: "test accuracy, % (mean ± std over seeds)".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Linear,
            series,
        },
    });
    // The cells side by side: cost, and the results at the two longest lengths.
    let longest: Vec<usize> = (0..cfg.lengths.len()).rev().take(2).rev().collect();
    let mut columns = vec![
        col("cell", Format::Int),
        col("gates G", Format::Int),
        col("parameters", Format::Int),
        col("forward FLOPs per step", Format::Int),
    ];
    for &l in &longest {
        columns.push(col(
            &format!("accuracy, T = {}", cfg.lengths[l]),
            Format::Percent(1),
        ));
    }
    let rows = cfg
        .cells
        .iter()
        .enumerate()
        .map(|(c, cell)| {
            let mut row = vec![
                Value::Text(cell.name()),
                Value::Num(cell.gates() as f64),
                Value::Num(cell.params(2, cfg.hidden) as f64),
                Value::Num(cell.flops_per_step(2, cfg.hidden) as f64),
            ];
            row.extend(
                longest
                    .iter()
                    .map(|&l| Value::Seeds(at(c, l).iter().map(|s| s.accuracy).collect())),
            );
            row
        })
        .collect();
    r.tables.push(Table {
        name: "cells".into(),
        caption: format!(
            "The three cells at hidden width {} on the adding problem's two inputs: \
             parameters (recurrent layer and read-out), forward FLOPs of one step of one \
             sequence in the recurrent layer (matrix products and biases), and accuracy; \
             {budget}. Measured speed is in the benchmark `dlbook bench --name rnn_cells`.",
            cfg.hidden
        ),
        columns,
        rows,
    });
    Ok(())
}
