//! `dlbook bench --name char_lstm_speed`: the character-level LSTM of section 9.3, timed.
//!
//! One run measures, side by side: the from-scratch model's training throughput in
//! characters (tokens) per second on `threads` threads and its CPU seconds per 1,000
//! tokens on one thread; the same model trained by candle (its LSTM twin unrolled in
//! candle ops, candle's autograd and AdamW with zero weight decay, clipping included);
//! the FLOPs per token counted from the model's sizes
//! ([`CharLstmConfig::train_flops_per_char`]) and the GFLOP/s and fraction of the
//! measured FMA peak they amount to; and a per-operation profile of a training step
//! (the input projection, the recurrent products, the gate arithmetic, the read-out,
//! the cross-entropy, the backward products, clipping, Adam), timed from inside the
//! layers by [`rnn::profile`](crate::rnn::profile). Medians of several runs, with the
//! load average before and after; never asserted by tests.
//!
//! `--name char_lstm_budget` trains the model for a fixed wall-clock budget instead and
//! records its validation loss over time: a time-budgeted result is a timing, not a
//! reproducible number, so it lives here and not in the experiment.

use std::time::Instant;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer as _, ParamsAdamW};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::steps::{
    fma_peaks, measuring, profile_steps, profile_table, time_steps, try_time_steps,
};
use super::tables::{summary_row as row, summary_table};
use super::{load_average, median_min_max, Clock};
use crate::data::{data_ref, DataDir};
use crate::nn::candle_twin::to_tensor;
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::{join, Embedding, Layer, Linear, Mode, Module, Param};
use crate::optim::{Adam, Optimizer};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::rnn::candle_twin::{sequence, CandleWeights, Cell};
use crate::rnn::profile;
use crate::rnn::Lstm;
use crate::seq::text::{
    random_batch, train_step, validation_batches, Batch, CharCorpus, CharLstm,
    CharLstmConfig, TINY_SHAKESPEARE,
};
use crate::train::{clip_grad_norm, ParamGroups};

/// The reference figures of the same model and training in PyTorch 2.15 on 2 threads of
/// a machine of this kind, as the task that set this section measured them: quoted in
/// the report's `reference` table, never measured by the book.
pub const PYTORCH_REFERENCE: [(&str, f64, &str); 3] = [
    ("PyTorch, training, 2 threads", 35_200.0, "tokens/s"),
    (
        "PyTorch, validation loss after 2,000 steps",
        1.583,
        "nats/char",
    ),
    (
        "PyTorch, validation loss after 10 minutes",
        1.564,
        "nats/char",
    ),
];

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CharLstmBenchConfig {
    /// Windows per batch.
    pub batch_size: usize,
    /// Characters per window.
    pub seq_len: usize,
    /// Embedding width.
    pub d_embed: usize,
    /// LSTM hidden width.
    pub hidden: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Gradient-norm clip.
    pub clip: f32,
    /// Training steps per timed run.
    pub steps: usize,
    /// Timed runs per figure (after one warm-up step).
    pub runs: usize,
    /// Steps of each per-operation profile.
    pub profile_steps: usize,
    /// Steps per timed run of the baseline.
    pub baseline_steps: usize,
    /// Steps per timed run of the candle twin.
    pub candle_steps: usize,
    /// Rounds of the FMA peak kernel per thread.
    pub peak_iters: u64,
    /// Threads for the multi-threaded figures.
    pub threads: usize,
    /// Wall-clock seconds of training of the budget run (`char_lstm_budget`).
    pub budget_secs: f64,
    /// Validation batches of the budget run.
    pub val_batches: usize,
    /// Seconds between two validations of the budget run.
    pub eval_every_secs: f64,
    /// Seed of the weights and the batches.
    pub seed: u64,
}

impl CharLstmBenchConfig {
    /// A run of seconds that exercises every measurement (for tests).
    pub fn quick() -> Self {
        CharLstmBenchConfig {
            batch_size: 4,
            seq_len: 16,
            d_embed: 8,
            hidden: 16,
            steps: 2,
            runs: 1,
            profile_steps: 2,
            candle_steps: 1,
            baseline_steps: 1,
            peak_iters: 100_000,
            budget_secs: 1.0,
            val_batches: 2,
            eval_every_secs: 0.5,
            ..Self::full()
        }
    }

    /// The figures in the book: the model and batches of section 9.3.
    pub fn full() -> Self {
        CharLstmBenchConfig {
            batch_size: 32,
            seq_len: 100,
            d_embed: 64,
            hidden: 256,
            lr: 2e-3,
            clip: 1.0,
            steps: 10,
            runs: 5,
            profile_steps: 10,
            candle_steps: 3,
            baseline_steps: 5,
            peak_iters: 20_000_000,
            threads: 2,
            budget_secs: 600.0,
            val_batches: 34,
            eval_every_secs: 30.0,
            seed: 0,
        }
    }

    fn model(&self, vocab_size: usize) -> CharLstmConfig {
        CharLstmConfig {
            vocab_size,
            d_embed: self.d_embed,
            hidden: self.hidden,
        }
    }

    fn tokens_per_step(&self) -> f64 {
        (self.batch_size * self.seq_len) as f64
    }
}

/// The model before this section's optimisations: the layers of chapter 8 composed as
/// they are (the LSTM's exact path, the [`Linear`] layer, the library's
/// [`softmax_cross_entropy`] and [`clip_grad_norm`]), with the same starting weights as
/// [`CharLstm::new`].
pub struct Baseline {
    embed: Embedding,
    lstm: Lstm,
    head: Linear,
}

impl Baseline {
    /// The baseline twin of `CharLstm::new(cfg, seed)`.
    pub fn new(cfg: &CharLstmConfig, seed: u64) -> Self {
        let m = CharLstm::new(cfg, seed);
        let mut lstm = m.lstm;
        lstm.fast_gates = false;
        Baseline {
            embed: m.embed,
            lstm,
            head: m.head,
        }
    }

    /// One training step, each part timed by [`profile::time`].
    pub fn train_step(&mut self, opt: &mut Adam, batch: &Batch, clip: f32) -> f32 {
        profile::time("zero gradients", || self.zero_grad());
        let e = profile::time("embedding", || self.embed.forward(&batch.x, Mode::Train));
        let h = self.lstm.forward(&e, Mode::Train);
        let logits =
            profile::time("read-out GEMM", || self.head.forward(&h, Mode::Train));
        let (b, t, v) = (h.shape()[0], h.shape()[1], self.head.d_out());
        let (loss, d) = profile::time("softmax + cross-entropy", || {
            let rows = logits.into_shape_with_order((b * t, v)).expect("(b, t, V)");
            softmax_cross_entropy(&rows.into_dyn(), &batch.targets)
        });
        let d = d
            .into_shape_with_order(vec![b, t, v])
            .expect("rows of (b, t)");
        let dh = profile::time("read-out backward GEMMs", || self.head.backward(&d));
        let de = self.lstm.backward(&dh);
        profile::time("embedding backward", || self.embed.backward_params(de));
        profile::time("gradient clipping", || {
            clip_grad_norm(self, &ParamGroups::default(), clip)
        });
        profile::time("Adam", || opt.step(self));
        loss
    }
}

impl Module for Baseline {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.embed.visit_params(&join(prefix, "embed"), f);
        self.lstm.visit_params(&join(prefix, "lstm"), f);
        self.head.visit_params(&join(prefix, "head"), f);
    }
}

/// Everything measured of one model in one thread pool.
struct Measured {
    rates: Vec<f64>,
    cpu: Vec<f64>,
    profile: Vec<(String, f64)>,
}

/// Times and profiles the optimised model (`fast`) or the baseline in the current pool.
fn measure(
    cfg: &CharLstmBenchConfig,
    mcfg: &CharLstmConfig,
    batches: &[Batch],
    fast: bool,
    clock: Clock,
) -> Measured {
    let mut opt = Adam::new(cfg.lr);
    let (steps, what) = if fast {
        (cfg.steps, "optimised")
    } else {
        (cfg.baseline_steps, "baseline")
    };
    let mut model = CharLstm::new(mcfg, cfg.seed);
    let mut base = Baseline::new(mcfg, cfg.seed);
    let mut step = |b: &Batch| {
        if fast {
            std::hint::black_box(train_step(&mut model, &mut opt, b, Some(cfg.clip)));
        } else {
            std::hint::black_box(base.train_step(&mut opt, b, cfg.clip));
        }
    };
    let threads = rayon::current_num_threads();
    let (rates, cpu) =
        measuring(&format!("char LSTM, {what}, {threads} threads"), || {
            time_steps(cfg.runs, steps, cfg.tokens_per_step(), batches, &mut step)
        });
    let profile = measuring(
        &format!("char LSTM profile, {what}, {threads} threads"),
        || profile_steps(cfg.profile_steps, batches, clock, &mut step),
    );
    Measured {
        rates,
        cpu,
        profile,
    }
}

/// The model trained by candle: the same starting weights as [`CharLstm::new`], the
/// embedding as a row lookup, the LSTM as the twin's unrolled steps
/// ([`sequence`]), the read-out as one product, candle's cross-entropy and autograd,
/// the global-norm clip, and AdamW with zero weight decay.
pub struct CandleCharLstm {
    embed: Var,
    lstm: CandleWeights,
    head_w: Var,
    head_b: Var,
    opt: AdamW,
    hidden: usize,
}

impl CandleCharLstm {
    /// The twin of `model` in `dtype`, trained with learning rate `lr`.
    pub fn new(model: &CharLstm, lr: f64, dtype: DType) -> Result<Self> {
        let var = |a: &ndarray::ArrayD<f32>| -> Result<Var> {
            Ok(Var::from_tensor(&to_tensor(a, dtype)?)?)
        };
        let embed = var(&model.embed.weight.value)?;
        let lstm = CandleWeights::new(&model.lstm.weights, dtype)?;
        let head_w = var(&model.head.weight.value)?;
        let head_b = var(&model.head.bias.value)?;
        let vars = vec![
            embed.clone(),
            lstm.w_ih.clone(),
            lstm.w_hh.clone(),
            lstm.b_ih.clone(),
            lstm.b_hh.clone(),
            head_w.clone(),
            head_b.clone(),
        ];
        let params = ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        };
        Ok(CandleCharLstm {
            embed,
            lstm,
            head_w,
            head_b,
            opt: AdamW::new(vars, params)?,
            hidden: model.lstm.hidden(),
        })
    }

    /// The variables, in the order and with the names of [`CharLstm`]'s parameters.
    pub fn named_vars(&self) -> Vec<(&'static str, &Var)> {
        let names = [
            "embed.weight",
            "lstm.weight_ih",
            "lstm.weight_hh",
            "lstm.bias_ih",
            "lstm.bias_hh",
            "head.weight",
            "head.bias",
        ];
        names.into_iter().zip(self.vars()).collect()
    }

    /// The logits rows `(b t, V)` of ids `(b, t)`, every window from a zero state.
    pub fn logits(&self, x: &ndarray::ArrayD<f32>) -> Result<Tensor> {
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let dev = Device::Cpu;
        let ids: Vec<u32> = x.iter().map(|&v| v as u32).collect();
        let ids = Tensor::from_vec(ids, b * t, &dev)?;
        let e = self
            .embed
            .as_tensor()
            .index_select(&ids, 0)?
            .reshape((b, t, ()))?;
        let zeros = Tensor::zeros((b, self.hidden), e.dtype(), &dev)?;
        let (h, _) = sequence(Cell::Lstm, &self.lstm, &e, &[zeros.clone(), zeros])?;
        Ok(h.reshape((b * t, self.hidden))?
            .matmul(&self.head_w.as_tensor().t()?)?
            .broadcast_add(self.head_b.as_tensor())?)
    }

    fn vars(&self) -> [&Var; 7] {
        [
            &self.embed,
            &self.lstm.w_ih,
            &self.lstm.w_hh,
            &self.lstm.b_ih,
            &self.lstm.b_hh,
            &self.head_w,
            &self.head_b,
        ]
    }

    /// One training step on a batch; returns the loss.
    pub fn train_step(&mut self, batch: &Batch, clip: f32) -> Result<f32> {
        let n = batch.targets.len();
        let targets: Vec<u32> = batch.targets.iter().map(|&v| v as u32).collect();
        let targets = Tensor::from_vec(targets, n, &Device::Cpu)?;
        let logits = self.logits(&batch.x)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let mut grads = loss.backward()?;
        let mut sq = 0.0f64;
        for v in self.vars() {
            let g = grads.get(v).ok_or_else(|| anyhow!("no gradient"))?;
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        let norm = sq.sqrt();
        if norm > f64::from(clip) {
            let k = f64::from(clip) / norm;
            for v in self.vars() {
                let g = grads.get(v).ok_or_else(|| anyhow!("no gradient"))?;
                let scaled = (g * k)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
        self.opt.step(&grads)?;
        Ok(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?)
    }
}

/// Candle's tokens/s and CPU seconds per 1,000 tokens (all its threads).
fn time_candle(
    cfg: &CharLstmBenchConfig,
    model: &CharLstm,
    batches: &[Batch],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut twin = CandleCharLstm::new(model, f64::from(cfg.lr), DType::F32)?;
    let tokens = cfg.tokens_per_step();
    try_time_steps(cfg.runs, cfg.candle_steps, tokens, batches, &mut |b| {
        std::hint::black_box(twin.train_step(b, cfg.clip)?);
        Ok(())
    })
}

/// Runs the throughput benchmark on Tiny Shakespeare batches; the report is named
/// `name`.
pub fn run(cfg: &CharLstmBenchConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let load_before = load_average();
    let corpus = CharCorpus::tiny_shakespeare(dir)?;
    let mcfg = cfg.model(corpus.vocab.len());
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let batches: Vec<Batch> = (0..cfg.steps.max(cfg.profile_steps).max(1))
        .map(|_| random_batch(&corpus.train, cfg.batch_size, cfg.seq_len, &mut rng))
        .collect();
    let pool = |n: usize| rayon::ThreadPoolBuilder::new().num_threads(n).build();
    let (pool_n, pool_1) = (pool(cfg.threads)?, pool(1)?);
    let [fast_n, fast_1, base_n, base_1] = [
        (&pool_n, true, Clock::Wall),
        (&pool_1, true, Clock::ThreadCpu),
        (&pool_n, false, Clock::Wall),
        (&pool_1, false, Clock::ThreadCpu),
    ]
    .map(|(pool, fast, clock)| {
        pool.install(|| measure(cfg, &mcfg, &batches, fast, clock))
    });
    let (rates, rates_1, cpu_n, cpu_1) = (
        fast_n.rates.clone(),
        fast_1.rates.clone(),
        fast_n.cpu.clone(),
        fast_1.cpu.clone(),
    );
    let (candle_rates, candle_cpu) = measuring("char LSTM, candle", || {
        time_candle(cfg, &CharLstm::new(&mcfg, cfg.seed), &batches)
    })?;
    let (peak_n, peak_1) = fma_peaks(cfg.runs, cfg.threads, cfg.peak_iters);
    let load_after = load_average();

    let flops = mcfg.train_flops_per_char();
    let gflops = |r: &[f64]| r.iter().map(|x| x * flops / 1e9).collect::<Vec<f64>>();
    let (g_n, g_1) = (gflops(&rates), gflops(&rates_1));
    let frac = |g: &[f64], p: &[f64]| {
        let p = median_min_max(p).0;
        g.iter().map(|x| x / p).collect::<Vec<f64>>()
    };
    // FLOPs per CPU-second of the one-thread runs: what the work itself achieves, however
    // much of the core other programs took; against the least disturbed peak run.
    let g_cpu: Vec<f64> = cpu_1.iter().map(|c| flops / (c / 1000.0) / 1e9).collect();
    let best_1 = peak_1.iter().copied().fold(f64::NAN, f64::max);
    let (t, b) = (cfg.threads, cfg.batch_size);
    const CPU_MS: &str = "CPU-ms per 1,000 tokens";
    let ms = |v: &[f64]| v.iter().map(|x| 1e3 * x).collect::<Vec<f64>>();
    let mut r = Report::new(
        "ch09",
        name,
        "Training speed of the character-level LSTM, from scratch and in candle",
    );
    r.config = serde_json::to_value(cfg)?;
    r.seeds = vec![cfg.seed];
    r.data = vec![data_ref(TINY_SHAKESPEARE)];
    let load = format!("Load average {load_before:.1} before, {load_after:.1} after.");
    r.tables.push(summary_table(
        "speed",
        format!(
            "Training the character LSTM (embedding {}, hidden {}, batch {b} windows of {} \
             characters, Adam, clip {}): median, min and max over {} runs of {} steps \
             (candle: {} steps). {load}",
            cfg.d_embed, cfg.hidden, cfg.seq_len, cfg.clip, cfg.runs, cfg.steps,
            cfg.candle_steps
        ),
        1,
        vec![
            row(&format!("from scratch, {t} threads"), &rates, "tokens/s"),
            row("from scratch, 1 thread", &rates_1, "tokens/s"),
            row(&format!("baseline, {t} threads"), &base_n.rates, "tokens/s"),
            row("baseline, 1 thread", &base_1.rates, "tokens/s"),
            row(&format!("candle, {t} threads"), &candle_rates, "tokens/s"),
            row("from scratch, 1 thread, CPU time", &ms(&cpu_1), CPU_MS),
            row("baseline, 1 thread, CPU time", &ms(&base_1.cpu), CPU_MS),
            row(
                &format!("from scratch, {t} threads, CPU time of all threads"),
                &ms(&cpu_n),
                CPU_MS,
            ),
            row("candle, CPU time of all threads", &ms(&candle_cpu), CPU_MS),
        ],
    ));
    r.tables.push(summary_table(
        "compute",
        format!(
            "Arithmetic: {:.2} MFLOP per token of a training step (counted from the \
             sizes: forward and the two backward products of the input projection, the \
             recurrent product and the read-out), the GFLOP/s the throughput amounts to, \
             and the fraction of the FMA peak measured in the same run; the per-CPU-second \
             row divides by the CPU time of the one-thread runs instead of the elapsed \
             time, which other programs on the machine move much less. {load}",
            flops / 1e6
        ),
        2,
        vec![
            row(&format!("FMA peak, {t} threads"), &peak_n, "GFLOP/s"),
            row("FMA peak, 1 thread", &peak_1, "GFLOP/s"),
            row(
                &format!("training, from scratch, {t} threads"),
                &g_n,
                "GFLOP/s",
            ),
            row("training, from scratch, 1 thread", &g_1, "GFLOP/s"),
            row(
                &format!("training, baseline, {t} threads"),
                &gflops(&base_n.rates),
                "GFLOP/s",
            ),
            row(
                &format!("fraction of peak, {t} threads"),
                &frac(&g_n, &peak_n)
                    .iter()
                    .map(|x| 100.0 * x)
                    .collect::<Vec<_>>(),
                "%",
            ),
            row(
                "fraction of peak, 1 thread",
                &frac(&g_1, &peak_1)
                    .iter()
                    .map(|x| 100.0 * x)
                    .collect::<Vec<_>>(),
                "%",
            ),
            row("training, from scratch, per CPU-second, 1 thread", &g_cpu, "GFLOP/s"),
            row(
                "the same / best 1-thread peak run",
                &g_cpu.iter().map(|g| 100.0 * g / best_1).collect::<Vec<_>>(),
                "%",
            ),
        ],
    ));
    r.fact("flops_per_token", flops / 1e6, Format::Fixed(2));
    r.fact("tokens_per_s", median_min_max(&rates).0, Format::Int);
    r.fact(
        "candle_tokens_per_s",
        median_min_max(&candle_rates).0,
        Format::Int,
    );
    r.fact("load_before", load_before, Format::Fixed(1));
    r.fact("load_after", load_after, Format::Fixed(1));
    r.fact(
        "baseline_tokens_per_s",
        median_min_max(&base_n.rates).0,
        Format::Int,
    );
    r.tables.push(profile_table(
        "profile",
        "the optimised model",
        &fast_n.profile,
        &fast_1.profile,
        t,
        &load,
    ));
    r.tables.push(profile_table(
        "profile_baseline",
        "the baseline (chapter 8's layers composed as they are, before the optimisations)",
        &base_n.profile,
        &base_1.profile,
        t,
        &load,
    ));
    r.tables.push(Table {
        name: "reference".into(),
        caption:
            "The same model and training in PyTorch 2.15, measured on 2 threads of a \
                  machine of this kind when this section was planned: a reference, not a \
                  figure of this run."
                .into(),
        columns: vec![
            col("measurement", Format::Int),
            col("value", Format::Fixed(3)),
            col("unit", Format::Int),
        ],
        rows: PYTORCH_REFERENCE
            .iter()
            .map(|(what, v, unit)| vec![(*what).into(), Value::Num(*v), (*unit).into()])
            .collect(),
    });
    Ok(r)
}

/// Trains the model for `cfg.budget_secs` seconds of wall-clock training (validation
/// not counted) on `cfg.threads` threads and records the validation loss over time.
pub fn run_budget(
    cfg: &CharLstmBenchConfig,
    dir: &DataDir,
    name: &str,
) -> Result<Report> {
    let load_before = load_average();
    let corpus = CharCorpus::tiny_shakespeare(dir)?;
    let mcfg = cfg.model(corpus.vocab.len());
    let val =
        validation_batches(&corpus.valid, cfg.batch_size, cfg.seq_len, cfg.val_batches)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let bar = progress::bar(cfg.budget_secs.ceil() as u64, "char LSTM, time budget");
    let (secs, steps, losses, train) = pool.install(|| {
        let mut model = CharLstm::new(&mcfg, cfg.seed);
        let mut opt = Adam::new(cfg.lr);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let (mut secs, mut steps, mut losses) = (vec![0.0], vec![0.0], vec![]);
        losses.push(model.mean_loss(&val));
        // Mean training loss over each interval between two validations.
        let (mut train, mut sum, mut count) = (vec![f64::NAN], 0.0f64, 0usize);
        let (mut trained, mut n, mut next_eval) = (0.0f64, 0usize, cfg.eval_every_secs);
        while trained < cfg.budget_secs {
            let batch =
                random_batch(&corpus.train, cfg.batch_size, cfg.seq_len, &mut rng);
            let t = Instant::now();
            let stats = train_step(&mut model, &mut opt, &batch, Some(cfg.clip));
            trained += t.elapsed().as_secs_f64();
            (sum, count) = (sum + f64::from(stats.loss), count + 1);
            n += 1;
            bar.set_position(trained as u64);
            if trained >= next_eval || trained >= cfg.budget_secs {
                secs.push(trained);
                steps.push(n as f64);
                losses.push(model.mean_loss(&val));
                train.push(sum / count as f64);
                (sum, count) = (0.0, 0);
                next_eval += cfg.eval_every_secs;
            }
        }
        (secs, steps, losses, train)
    });
    bar.finish_and_clear();
    let load_after = load_average();
    let mut r = Report::new(
        "ch09",
        name,
        "The character LSTM trained for a fixed wall-clock budget",
    );
    r.config = serde_json::to_value(cfg)?;
    r.seeds = vec![cfg.seed];
    r.data = vec![data_ref(TINY_SHAKESPEARE)];
    let last = *losses.last().expect("at least one validation");
    r.fact("budget_val_loss", last, Format::Fixed(3));
    // The lowest validation loss, and when it was reached.
    let best = (0..losses.len())
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
        .expect("at least one validation");
    r.fact("budget_best_val_loss", losses[best], Format::Fixed(3));
    r.fact("budget_best_secs", secs[best], Format::Int);
    r.fact("budget_best_steps", steps[best], Format::Int);
    let first_train = train.iter().copied().find(|v| v.is_finite());
    r.fact(
        "budget_train_loss_first",
        first_train.unwrap_or(f64::NAN),
        Format::Fixed(3),
    );
    r.fact(
        "budget_train_loss_last",
        *train.last().expect("intervals"),
        Format::Fixed(3),
    );
    r.fact("budget_steps", *steps.last().expect("steps"), Format::Int);
    r.fact(
        "budget_tokens_per_s",
        steps.last().expect("steps") * cfg.tokens_per_step() / secs.last().expect("secs"),
        Format::Int,
    );
    r.fact("budget_load_before", load_before, Format::Fixed(1));
    r.fact("budget_load_after", load_after, Format::Fixed(1));
    r.tables.push(Table {
        name: "budget".into(),
        caption: format!(
            "Validation loss (nats per character, {} fixed batches) against seconds of \
             training on {} threads, seed {}. Load average {load_before:.1} before, \
             {load_after:.1} after.",
            val.len(),
            cfg.threads,
            cfg.seed
        ),
        columns: vec![
            col("seconds", Format::Fixed(0)),
            col("steps", Format::Int),
            col("validation loss", Format::Fixed(3)),
            col("training loss, interval mean", Format::Fixed(3)),
        ],
        rows: secs
            .iter()
            .zip(&steps)
            .zip(&losses)
            .zip(&train)
            .map(|(((s, n), l), tr)| {
                vec![
                    Value::Num(*s),
                    Value::Num(*n),
                    Value::Num(*l),
                    if tr.is_finite() {
                        Value::Num(*tr)
                    } else {
                        Value::from("—")
                    },
                ]
            })
            .collect(),
    });
    r.figures.push(Figure {
        name: "budget".into(),
        title: "Validation and training loss against training time".into(),
        plot: Plot::Lines {
            x_label: "seconds of training".into(),
            y_label: "validation loss (nats/char)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: vec![
                Series {
                    name: "validation".into(),
                    x: secs.clone(),
                    y: losses,
                    band: None,
                },
                Series {
                    name: "training (mean over the interval)".into(),
                    x: secs[1..].to_vec(),
                    y: train[1..].to_vec(),
                    band: None,
                },
            ],
        },
    });
    Ok(r)
}
