//! `dlbook bench --name mha`: the speed of multi-head attention, and what the lookup
//! models of section 10.3 cost per training step.
//!
//! Two tables from one run. First, [`MultiHeadAttention`] on a batch of sequences at
//! several lengths, forward and forward + backward: from scratch with the (batch, head)
//! pairs one after another ([`Schedule::Serial`], the "before") and spread over the
//! threads ([`Schedule::Parallel`], the "after"), and the candle twin
//! ([`CandleMha`], in `F32`, its autograd doing the
//! backward pass). Second, one training step (forward, loss, backward, clipping, Adam)
//! of the attention model, the LSTM and the GRU of the lookup comparison at each
//! sequence length: attention's work grows as $T^2$, recurrence's as $T$ but in $T$
//! steps that must run one after another. Figures are milliseconds: median, min and max
//! over the runs, with the load average before and after. Timings go to
//! `generated/ch10/mha.{json,md}` and are never asserted by tests.

use anyhow::Result;
use candle_core::{DType, Var};
use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::tables::{summary_row as row, summary_table};
use super::{load_average, time_runs};
use crate::attn::candle_twin::CandleMha;
use crate::attn::{MhaConfig, MultiHeadAttention, Schedule};
use crate::nn::candle_twin::to_tensor;
use crate::nn::gradcheck::normal;
use crate::nn::{Layer, Mode, Module};
use crate::optim::Adam;
use crate::progress;
use crate::report::Report;
use crate::rnn::memory::CellSpec;
use crate::seq::lookup::{
    book_cells, lookup_step, lookup_task, AttnSpec, LookupModel, LookupSpec,
};

/// What to time, and how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MhaBenchConfig {
    /// Sequences per batch.
    pub batch: usize,
    /// Sequence lengths of the attention layer.
    pub lengths: Vec<usize>,
    /// Model width.
    pub d_model: usize,
    /// Heads.
    pub n_heads: usize,
    /// The lookup task of the training-step table.
    pub task: LookupSpec,
    /// The attention model of the lookup comparison.
    pub attn: AttnSpec,
    /// Its recurrent cells (each at the width that meets the attention model's budget).
    pub cells: Vec<CellSpec>,
    /// Sequence lengths of the training-step table.
    pub lookup_lengths: Vec<usize>,
    /// Sequences per training step.
    pub lookup_batch: usize,
    /// Timed runs per figure (after one warm-up run).
    pub runs: usize,
    /// Threads of the from-scratch code.
    pub threads: usize,
    /// Seed of the weights and inputs.
    pub seed: u64,
}

impl MhaBenchConfig {
    /// A tiny run that exercises every measurement (for tests).
    pub fn quick() -> Self {
        MhaBenchConfig {
            batch: 2,
            lengths: vec![8, 16],
            d_model: 16,
            n_heads: 2,
            lookup_lengths: vec![12],
            lookup_batch: 4,
            runs: 1,
            ..Self::full()
        }
    }

    /// The figures in the book; the lookup models are those of section 10.3.
    pub fn full() -> Self {
        MhaBenchConfig {
            batch: 32,
            lengths: vec![64, 128, 256],
            d_model: 128,
            n_heads: 4,
            task: LookupSpec::BOOK,
            attn: AttnSpec::BOOK,
            cells: book_cells(),
            lookup_lengths: vec![16, 32, 64, 128],
            lookup_batch: 32,
            runs: 5,
            threads: 2,
            seed: 0,
        }
    }
}

/// Milliseconds of each of `runs` timed calls of `f`.
fn ms(runs: usize, f: impl FnMut()) -> Vec<f64> {
    time_runs(runs, f).into_iter().map(|s| 1e3 * s).collect()
}

/// Forward (and with `backward`, the backward pass) of the candle twin of `layer` on
/// `x`, the loss $\langle y, r\rangle$. The first error, if any.
fn twin(
    runs: usize,
    layer: &MultiHeadAttention,
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
    backward: bool,
) -> Result<Vec<f64>> {
    let tw = CandleMha::new(layer, DType::F32)?;
    let xv = Var::from_tensor(&to_tensor(x, DType::F32)?)?;
    let rt = to_tensor(r, DType::F32)?;
    let mut err = None;
    let v = ms(runs, || {
        let step = || -> Result<()> {
            let y = tw.forward(xv.as_tensor(), xv.as_tensor(), None)?;
            if backward {
                (y * &rt)?.sum_all()?.backward()?;
            }
            Ok(())
        };
        if let Err(e) = step() {
            err = Some(e);
        }
    });
    err.map_or(Ok(v), Err)
}

/// Times everything and returns the report `name` (chapter `ch10`).
pub fn run(cfg: &MhaBenchConfig, name: &str) -> Result<Report> {
    let load_before = load_average();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let spinner = progress::spinner("bench");
    let (b, d, h) = (cfg.batch, cfg.d_model, cfg.n_heads);
    let mut mha_rows = vec![];
    for &t in &cfg.lengths {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let x = normal(&[b, t, d], &mut rng);
        let dy = normal(&[b, t, d], &mut rng);
        let mut layer = MultiHeadAttention::new(MhaConfig::new(d, h), &mut rng);
        for (what, schedule) in [
            ("pairs in turn", Schedule::Serial),
            ("pairs in parallel", Schedule::Parallel),
        ] {
            spinner.set_message(format!("T = {t}, from scratch, {what}"));
            layer.schedule = schedule;
            let (fwd, both) = pool.install(|| {
                let fwd = ms(cfg.runs, || {
                    let _ = layer.forward(&x, Mode::Train);
                });
                let both = ms(cfg.runs, || {
                    layer.zero_grad();
                    let _ = layer.forward(&x, Mode::Train);
                    let _ = layer.backward(&dy);
                });
                (fwd, both)
            });
            mha_rows.push(row(
                &format!("T = {t}, forward, from scratch, {what}"),
                &fwd,
                "ms",
            ));
            mha_rows.push(row(
                &format!("T = {t}, forward + backward, from scratch, {what}"),
                &both,
                "ms",
            ));
        }
        spinner.set_message(format!("T = {t}, candle twin"));
        // Candle on its own thread pool (all cores), in F32 like the layer.
        let fwd = twin(cfg.runs, &layer, &x, &dy, false)?;
        let both = twin(cfg.runs, &layer, &x, &dy, true)?;
        mha_rows.push(row(&format!("T = {t}, forward, candle twin"), &fwd, "ms"));
        mha_rows.push(row(
            &format!("T = {t}, forward + backward, candle twin"),
            &both,
            "ms",
        ));
    }
    let models = LookupModel::at_budget(cfg.attn, &cfg.cells, &cfg.task);
    let max_len = cfg.lookup_lengths.iter().copied().max().unwrap_or(1);
    let mut step_rows = vec![];
    for m in &models {
        for &t in &cfg.lookup_lengths {
            spinner.set_message(format!("{}, T = {t}, training step", m.name()));
            let v = pool.install(|| {
                let (mut net, _) = m.build(&cfg.task, max_len, cfg.seed);
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                let batch = lookup_task(cfg.lookup_batch, t, &cfg.task, &mut rng).data;
                let mut opt = Adam::new(1e-3);
                ms(cfg.runs, || {
                    lookup_step(&mut net, &mut opt, &batch, Some(1.0));
                })
            });
            step_rows.push(row(&format!("{}, T = {t}", m.name()), &v, "ms"));
        }
    }
    spinner.finish_and_clear();
    let mut rep = Report::new(
        "ch10",
        name,
        "Multi-head attention from scratch and in candle; a training step of the lookup models",
    );
    rep.config = serde_json::to_value(cfg)?;
    rep.seeds = vec![cfg.seed];
    let load_after = load_average();
    rep.tables.push(summary_table(
        "mha",
        format!(
            "Multi-head self-attention (d_model {d}, {h} heads, batch {b}, no mask) by \
             sequence length T, in milliseconds per batch: the from-scratch layer on {} \
             threads with its (batch, head) pairs computed in turn or in parallel, and the \
             candle twin (the same layer in candle ops, autograd for the backward pass) \
             in F32: median, min and max over {} runs. Load average {load_before:.1} \
             before, {load_after:.1} after.",
            cfg.threads, cfg.runs
        ),
        2,
        mha_rows,
    ));
    let widths: Vec<String> = models
        .iter()
        .map(|m| format!("{} of width {}", m.name(), m.width()))
        .collect();
    rep.tables.push(summary_table(
        "lookup_step",
        format!(
            "One training step (forward, cross-entropy, backward, gradient clipping, Adam) \
             of the lookup models of section 10.3 ({}) on a batch of {} sequences, by \
             sequence length T, in milliseconds, on {} threads: median, min and max over \
             {} runs. Load average {load_before:.1} before, {load_after:.1} after.",
            widths.join(", "),
            cfg.lookup_batch,
            cfg.threads,
            cfg.runs
        ),
        2,
        step_rows,
    ));
    Ok(rep)
}
