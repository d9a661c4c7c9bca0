//! Experiment `adding_ablation`: what each ingredient of the LSTM's result on the adding
//! problem is worth, at one sequence length, with the budget, batches and seeds of
//! `adding_problem`; one change per row.
//!
//! - **No forget gate**, the LSTM of 1997: $f = 1$ at every step. Implemented as a forget
//!   bias of 50: with $|W_{if} x + W_{hf} h| \le \lVert x\rVert_1/\sqrt h + \sqrt h < 30$
//!   under PyTorch's initialization, $\sigma(a^f)$ rounds to exactly 1 in `f32`, so
//!   $f(1 - f) = 0$, the forget gate's weights get exactly zero gradient and never move,
//!   and $f$ stays 1 (a test checks both).
//! - **Forget bias near 0** (PyTorch's initialization) instead of 1.
//! - **No gradient clipping.**
//! - **Truncated BPTT**: the sequence in chunks of $k$ steps with the state carried, the
//!   loss backpropagated through the last chunk only.
//! - **Hidden width** halved and doubled.
//! - **The GRU at the LSTM's parameter count**: its width chosen so that its parameters
//!   come closest to the LSTM's.

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use super::adding_problem::test_set;
use super::{Experiment, Preset};
use crate::data::DataDir;
use crate::report::{col, Format, Report, Table, Value};
use crate::rnn::memory::{memory_model, train_adding, AddingScore, AddingTrain, CellSpec};

/// Experiment `adding_ablation`, registered in [`super::all`].
pub struct AddingAblation;

impl Experiment for AddingAblation {
    const NAME: &'static str = "adding_ablation";
    const CHAPTER: &'static str = "ch08";
    const TITLE: &'static str =
        "The LSTM on the adding problem with one ingredient changed at a time";
    type Config = Config;

    fn run(cfg: &Config, _dir: &DataDir, r: &mut Report) -> Result<()> {
        run(cfg, r)
    }
}

/// The forget bias that fixes the LSTM's forget gate at exactly 1 (see the module docs).
pub const NO_FORGET_GATE_BIAS: f32 = 50.0;

/// One row: a cell, its width, and how it is trained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    /// Row name.
    pub name: String,
    /// The cell.
    pub cell: CellSpec,
    /// Hidden width.
    pub hidden: usize,
    /// Clip the global gradient norm to this.
    pub clip_norm: Option<f32>,
    /// Truncated BPTT chunk length.
    pub truncate: Option<usize>,
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Sequence length $T$.
    pub seq_len: usize,
    /// Steps, batch, learning rate (clipping and truncation come from the variant).
    pub train: AddingTrain,
    /// Test sequences.
    pub n_test: usize,
    /// The variants, the baseline first.
    pub variants: Vec<Variant>,
    /// Seeds.
    pub seeds: Vec<u64>,
}

/// The GRU width whose parameter count (on two inputs) comes closest to the LSTM's at
/// width `hidden`.
pub fn gru_width_matching_lstm(hidden: usize) -> usize {
    let target = CellSpec::LSTM.params(2, hidden) as i64;
    (1..=4 * hidden)
        .min_by_key(|&h| (CellSpec::GRU.params(2, h) as i64 - target).abs())
        .expect("a range of widths")
}

/// The variants around an LSTM of width `h` with forget bias 1, clipping at `clip`, on
/// sequences of length `t`.
pub fn variants(t: usize, h: usize, clip: f32) -> Vec<Variant> {
    let lstm1 = CellSpec::Lstm {
        forget_bias: Some(1.0),
    };
    let v = |name: &str, cell, hidden, clip_norm, truncate| Variant {
        name: name.into(),
        cell,
        hidden,
        clip_norm,
        truncate,
    };
    let g = gru_width_matching_lstm(h);
    vec![
        v("LSTM (forget bias 1)", lstm1, h, Some(clip), None),
        v(
            "no forget gate (f = 1, the 1997 LSTM)",
            CellSpec::Lstm {
                forget_bias: Some(NO_FORGET_GATE_BIAS),
            },
            h,
            Some(clip),
            None,
        ),
        v("forget bias near 0 (PyTorch init)", CellSpec::LSTM, h, Some(clip), None),
        v("no gradient clipping", lstm1, h, None, None),
        v(
            &format!("truncated BPTT, chunks of {}", t / 2),
            lstm1,
            h,
            Some(clip),
            Some(t / 2),
        ),
        v(
            &format!("truncated BPTT, chunks of {}", t / 4),
            lstm1,
            h,
            Some(clip),
            Some(t / 4),
        ),
        v(&format!("hidden width {}", h / 2), lstm1, h / 2, Some(clip), None),
        v(&format!("hidden width {}", 2 * h), lstm1, 2 * h, Some(clip), None),
        v(
            &format!("GRU, width {g} (the LSTM's parameter count)"),
            CellSpec::GRU,
            g,
            Some(clip),
            None,
        ),
    ]
}

impl Preset for Config {
    /// The book's configuration: the LSTM of `adding_problem` at T = 100.
    fn full() -> Self {
        let base = super::adding_problem::Config::full();
        Config {
            seq_len: 100,
            variants: variants(100, base.hidden, 1.0),
            train: base.train,
            n_test: base.n_test,
            seeds: base.seeds,
        }
    }

    /// The test configuration.
    fn quick() -> Self {
        let base = super::adding_problem::Config::quick();
        Config {
            seq_len: 8,
            variants: variants(8, base.hidden, 1.0),
            train: base.train,
            n_test: base.n_test,
            seeds: base.seeds,
        }
    }
}

/// Runs the experiment: fills `r`, whose header and configuration are set.
pub fn run(cfg: &Config, r: &mut Report) -> Result<()> {
    r.seeds = cfg.seeds.clone();
    let test = test_set(cfg.n_test, cfg.seq_len);
    let n = cfg.seeds.len();
    let jobs: Vec<(usize, usize)> = (0..cfg.variants.len())
        .flat_map(|v| (0..n).map(move |s| (v, s)))
        .collect();
    let bar = crate::progress::bar(jobs.len() as u64, "adding ablation");
    let scores: Vec<AddingScore> = jobs
        .par_iter()
        .map(|&(v, s)| {
            let var = &cfg.variants[v];
            let seed = cfg.seeds[s];
            let train = AddingTrain {
                clip_norm: var.clip_norm,
                truncate: var.truncate,
                ..cfg.train.clone()
            };
            let mut model =
                memory_model(var.cell, 2, var.hidden, var.truncate.is_some(), seed);
            let score = train_adding(&mut model, &train, cfg.seq_len, seed, &test);
            bar.inc(1);
            score
        })
        .collect();
    bar.finish_and_clear();
    let rows = cfg
        .variants
        .iter()
        .zip(scores.chunks(n))
        .map(|(v, runs)| {
            vec![
                Value::Text(v.name.clone()),
                Value::Num(v.cell.params(2, v.hidden) as f64),
                Value::Seeds(runs.iter().map(|s| s.accuracy).collect()),
                Value::Seeds(runs.iter().map(|s| s.mse).collect()),
            ]
        })
        .collect();
    r.tables.push(Table {
        name: "ablation".into(),
        caption: format!(
            "The LSTM on the adding problem at T = {}, one change per row: {} Adam steps \
             (η = {}) of {} fresh sequences, gradient norm clipped at 1 unless the row \
             says otherwise, {} test sequences; mean ± std over {} seeds. The error of \
             always predicting 1 is 1/6.",
            cfg.seq_len,
            cfg.train.steps,
            cfg.train.lr,
            cfg.train.batch_size,
            cfg.n_test,
            n
        ),
        columns: vec![
            col("variant", Format::Int),
            col("parameters", Format::Int),
            col("accuracy", Format::Percent(1)),
            col("test MSE", Format::Fixed(4)),
        ],
        rows,
    });
    Ok(())
}
