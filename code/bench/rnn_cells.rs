//! `dlbook bench --name rnn_cells`: the training speed of the three recurrent layers at
//! one shape, forward and backward (BPTT, input gradient included) over a batch of
//! sequences, from scratch and in the candle twin (the cells written in candle ops,
//! [`rnn::candle_twin`](crate::rnn::candle_twin), in `F32`, its autograd doing the
//! backward pass), side by side in one run. Figures are tokens (sequence steps) per
//! second: median, min and max over the runs, with the load average before and after.
//! Timings go to `generated/ch08/rnn_cells.{json,md}` and are never asserted by tests.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::tables::{summary_row as row, summary_table};
use super::{load_average, time_runs};
use crate::nn::candle_twin::to_tensor;
use crate::nn::gradcheck::normal;
use crate::nn::{Layer, Mode};
use crate::progress;
use crate::report::Report;
use crate::rnn::candle_twin::{sequence, CandleWeights, Cell};
use crate::rnn::{Gru, Lstm, Rnn, Weights};

/// The shape to time, and how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RnnCellsConfig {
    /// Sequences per batch.
    pub batch: usize,
    /// Steps per sequence.
    pub seq_len: usize,
    /// Input width.
    pub d_in: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Timed runs per figure (after one warm-up run).
    pub runs: usize,
    /// Threads of the from-scratch layers.
    pub threads: usize,
    /// Seed of the weights and inputs.
    pub seed: u64,
}

impl RnnCellsConfig {
    /// A tiny run that exercises every measurement (for tests).
    pub fn quick() -> Self {
        RnnCellsConfig {
            batch: 2,
            seq_len: 5,
            d_in: 3,
            hidden: 4,
            runs: 1,
            threads: 2,
            seed: 0,
        }
    }

    /// The figures in the book: a character model's shape.
    pub fn full() -> Self {
        RnnCellsConfig {
            batch: 32,
            seq_len: 100,
            d_in: 64,
            hidden: 128,
            runs: 5,
            threads: 2,
            seed: 0,
        }
    }
}

/// Tokens per second of each of `runs` timed calls of `f`.
fn tokens_per_s(cfg: &RnnCellsConfig, f: impl FnMut()) -> Vec<f64> {
    let tokens = (cfg.batch * cfg.seq_len) as f64;
    time_runs(cfg.runs, f)
        .into_iter()
        .map(|t| tokens / t)
        .collect()
}

/// Forward and backward of a from-scratch layer on `x`, with `dy` as the output's
/// gradient.
fn scratch(
    cfg: &RnnCellsConfig,
    layer: &mut dyn Layer,
    x: &ArrayD<f32>,
    dy: &ArrayD<f32>,
) -> Vec<f64> {
    tokens_per_s(cfg, || {
        layer.zero_grad();
        let _ = layer.forward(x, Mode::Train);
        let _ = layer.backward(dy);
    })
}

/// Forward and backward of the candle twin with the weights `w`: the loss
/// $\langle y, r\rangle$, every gradient by autograd. The first error, if any.
fn twin(
    cfg: &RnnCellsConfig,
    cell: Cell,
    w: &Weights,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> Result<Vec<f64>> {
    let cw = CandleWeights::new(w, DType::F32)?;
    let xt = to_tensor(x, DType::F32)?;
    let rt = to_tensor(r, DType::F32)?;
    let init: Vec<Tensor> = (0..cell.n_states())
        .map(|_| Tensor::zeros((cfg.batch, cfg.hidden), DType::F32, &Device::Cpu))
        .collect::<candle_core::Result<_>>()?;
    let mut err = None;
    let v = tokens_per_s(cfg, || {
        let step = || -> Result<()> {
            let (y, _) = sequence(cell, &cw, &xt, &init)?;
            (y * &rt)?.sum_all()?.backward()?;
            Ok(())
        };
        if let Err(e) = step() {
            err = Some(e);
        }
    });
    err.map_or(Ok(v), Err)
}

/// Times the three layers both ways and returns the report `name` (chapter `ch08`).
pub fn run(cfg: &RnnCellsConfig, name: &str) -> Result<Report> {
    let load_before = load_average();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (b, t, d, h) = (cfg.batch, cfg.seq_len, cfg.d_in, cfg.hidden);
    let x = normal(&[b, t, d], &mut rng);
    let dy = normal(&[b, t, h], &mut rng);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let spinner = progress::spinner("bench");
    spinner.set_message("the layers from scratch");
    // The from-scratch layers on the bench's own pool; built inside it, as they are not
    // `Send` behind `dyn Layer`.
    let (scratch_rows, weights) = pool.install(|| {
        let mut rnn = Rnn::new(d, h, &mut rng);
        let mut lstm = Lstm::new(d, h, &mut rng);
        let mut gru = Gru::new(d, h, &mut rng);
        let rows = vec![
            row(
                "RNN, from scratch",
                &scratch(cfg, &mut rnn, &x, &dy),
                "tokens/s",
            ),
            row(
                "LSTM, from scratch",
                &scratch(cfg, &mut lstm, &x, &dy),
                "tokens/s",
            ),
            row(
                "GRU, from scratch",
                &scratch(cfg, &mut gru, &x, &dy),
                "tokens/s",
            ),
        ];
        let weights: [(Cell, Weights); 3] = [
            (Cell::Rnn, rnn.weights),
            (Cell::Lstm, lstm.weights),
            (Cell::Gru, gru.weights),
        ];
        (rows, weights)
    });
    let mut rows = vec![];
    for ((cell, w), scratch_row) in weights.iter().zip(scratch_rows) {
        let who = format!("{cell:?}").to_uppercase();
        spinner.set_message(format!("{who}, candle twin"));
        // Candle on its own thread pool (all cores), in F32 like the layers.
        let v = twin(cfg, *cell, w, &x, &dy)?;
        rows.push(scratch_row);
        rows.push(row(&format!("{who}, candle twin"), &v, "tokens/s"));
    }
    spinner.finish_and_clear();
    let mut rep = Report::new(
        "ch08",
        name,
        "Recurrent layers, forward and backward: from scratch and the candle twin",
    );
    rep.config = serde_json::to_value(cfg)?;
    rep.seeds = vec![cfg.seed];
    let caption = format!(
        "Training speed of one recurrent layer (forward, then BPTT with the input \
         gradient) on a batch of {b} sequences of {t} steps, {d} inputs, hidden width \
         {h}, in tokens (steps of one sequence) per second; the from-scratch layers on {} \
         threads, the candle twin (the same cells in candle ops, autograd for the \
         backward pass) in F32: median, min and max over {} runs. Load average \
         {load_before:.1} before, {:.1} after.",
        cfg.threads,
        cfg.runs,
        load_average()
    );
    rep.tables
        .push(summary_table("rnn_cells", caption, 0, rows));
    Ok(rep)
}
