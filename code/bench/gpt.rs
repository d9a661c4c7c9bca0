//! `dlbook bench --name gpt`: the GPT of section 11.3, timed.
//!
//! One run measures, side by side: the from-scratch model's training throughput in
//! tokens per second on `threads` threads, and its CPU seconds per 1,000 tokens on one
//! thread; the same model trained by candle (the twin of [`crate::gpt::candle_twin`],
//! candle's autograd and AdamW); generation speed with and without the KV cache; the
//! FLOPs per token counted from the sizes
//! ([`GptConfig::train_flops_per_token`](crate::gpt::GptConfig::train_flops_per_token))
//! and the GFLOP/s and fraction of the measured FMA peak they amount to; and a
//! per-operation profile of a training step (embedding, layer norms, the QKV product,
//! attention, the projections, the MLP, the head, the backward of each, clipping,
//! AdamW), timed from inside the model by [`rnn::profile`](crate::rnn::profile).
//! Medians of several runs, with the load average before and after; never asserted by
//! tests.
//!
//! `--name gpt_budget` trains the reference model for a fixed time budget (ten minutes
//! of two threads, counted as CPU time so that a shared machine does not shorten it;
//! the wall-clock time is recorded beside it),
//! once per seed, and records its validation loss over time: a time-budgeted result is a timing, not a
//! reproducible number, so it lives here and not in the experiment.

use std::time::Instant;

use std::path::Path;

use anyhow::{ensure, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::python;
use super::steps::{
    fma_peaks, measuring, profile_steps, profile_table, time_steps, try_time_steps,
};
use super::tables::{summary_row as row, summary_table};
use super::{load_average, median_min_max, process_cpu_seconds, Clock};
use crate::data::{data_ref, DataDir};
use crate::gpt::candle_twin::CandleTrainer;
use crate::gpt::{train_step, Gpt, GptConfig, GptOptimizer, Sampling};
use crate::progress;
use crate::report::{col, Figure, Format, Plot, Report, Scale, Series, Table, Value};
use crate::seq::text::{
    random_batch, validation_batches, Batch, CharCorpus, TINY_SHAKESPEARE,
};

/// The reference figures of the same model and training in PyTorch 2.15 on 2 threads of
/// a machine of this kind (nanoGPT-style), as the task that set this section measured
/// them: quoted in the report's `reference` table, never measured by the book.
pub const PYTORCH_REFERENCE: [(&str, f64, &str); 4] = [
    ("PyTorch, parameters", 812_288.0, "parameters"),
    ("PyTorch, training, 2 threads", 15_600.0, "tokens/s"),
    (
        "PyTorch, validation loss after 2,000 steps",
        1.659,
        "nats/char",
    ),
    (
        "PyTorch, validation loss after 10 minutes",
        1.634,
        "nats/char",
    ),
];

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptBenchConfig {
    /// The model.
    pub model: GptConfig,
    /// Windows per batch.
    pub batch_size: usize,
    /// Training steps per timed run.
    pub steps: usize,
    /// Timed runs per figure (after one warm-up step).
    pub runs: usize,
    /// Steps of each per-operation profile.
    pub profile_steps: usize,
    /// Steps per timed run of the candle twin.
    pub candle_steps: usize,
    /// Tokens generated per generation run (from a one-character prompt).
    pub gen_tokens: usize,
    /// Rounds of the FMA peak kernel per thread.
    pub peak_iters: u64,
    /// Threads for the multi-threaded figures.
    pub threads: usize,
    /// Seconds of training of the budget run (`gpt_budget`), on `budget_clock`.
    pub budget_secs: f64,
    /// How the budget run counts its seconds.
    pub budget_clock: BudgetClock,
    /// Validation batches of the budget run.
    pub val_batches: usize,
    /// Seconds between two validations of the budget run.
    pub eval_every_secs: f64,
    /// Seeds of the budget run (`seed`, `seed + 1`, ...), one full budget each.
    pub budget_seeds: usize,
    /// Timed steps of each run of the PyTorch twin (`code/bench/gpt_pytorch.py`, run by
    /// `python3` if PyTorch is installed; 0: not run).
    pub pytorch_steps: usize,
    /// Seed of the weights and the batches.
    pub seed: u64,
}

impl GptBenchConfig {
    /// A run of seconds that exercises every measurement (for tests).
    pub fn quick() -> Self {
        GptBenchConfig {
            model: GptConfig {
                n_layers: 1,
                d_model: 16,
                seq_len: 16,
                n_heads: 2,
                ..GptConfig::reference(65)
            },
            batch_size: 4,
            steps: 2,
            runs: 1,
            profile_steps: 2,
            candle_steps: 1,
            gen_tokens: 20,
            peak_iters: 100_000,
            budget_secs: 1.0,
            val_batches: 2,
            eval_every_secs: 0.5,
            budget_seeds: 1,
            pytorch_steps: 0,
            ..Self::full()
        }
    }

    /// The figures in the book: the reference model and batches.
    pub fn full() -> Self {
        GptBenchConfig {
            model: GptConfig::reference(65),
            batch_size: 32,
            steps: 10,
            runs: 5,
            profile_steps: 10,
            candle_steps: 3,
            gen_tokens: 256,
            peak_iters: 20_000_000,
            threads: 2,
            budget_secs: 600.0,
            budget_clock: BudgetClock::Cpu,
            val_batches: 20,
            eval_every_secs: 30.0,
            budget_seeds: 3,
            pytorch_steps: 30,
            seed: 0,
        }
    }

    fn tokens_per_step(&self) -> f64 {
        (self.batch_size * self.model.seq_len) as f64
    }
}

/// The PyTorch twin of the reference model (run by `python3 -c`).
const PYTORCH_SCRIPT: &str = include_str!("gpt_pytorch.py");

/// What the PyTorch twin measured.
struct PyTorchTimes {
    /// `torch.__version__`.
    version: String,
    /// Tokens/s on `threads` threads, one per run.
    rates: Vec<f64>,
    /// CPU-ms per 1,000 tokens on one thread, one per run.
    cpu_1: Vec<f64>,
}

/// One run of the PyTorch twin on `threads` threads: tokens/s, CPU-ms per 1,000 tokens
/// and its parameter count.
fn pytorch_run(cfg: &GptBenchConfig, text: &Path, threads: usize) -> Result<[f64; 3]> {
    let m = &cfg.model;
    let args = [
        threads.to_string(),
        cfg.pytorch_steps.to_string(),
        text.display().to_string(),
        m.n_layers.to_string(),
        m.n_heads.to_string(),
        m.d_model.to_string(),
        m.seq_len.to_string(),
        cfg.batch_size.to_string(),
    ];
    let stdout = python::run(PYTORCH_SCRIPT, &args, &[], None)?;
    let value =
        |key: &str| python::value(&stdout, key).context("the PyTorch twin's output");
    Ok([
        value("tokens_per_s")?,
        value("cpu_ms_per_1k")?,
        value("params")?,
    ])
}

/// `cfg.runs` runs of the PyTorch twin on `cfg.threads` threads and on one, or `None`
/// (with the reason on the terminal) where PyTorch is not installed or fails.
fn time_pytorch(cfg: &GptBenchConfig, text: &Path) -> Option<PyTorchTimes> {
    let attempt = || -> Result<PyTorchTimes> {
        let version = python::version("import torch; print(torch.__version__)", "torch")?;
        let (mut rates, mut cpu_1) = (vec![], vec![]);
        for _ in 0..cfg.runs {
            let [rate, _, params] = pytorch_run(cfg, text, cfg.threads)?;
            ensure!(
                params as usize == cfg.model.n_params(),
                "the PyTorch twin has {params} parameters, the model {}",
                cfg.model.n_params()
            );
            rates.push(rate);
            cpu_1.push(pytorch_run(cfg, text, 1)?[1]);
        }
        Ok(PyTorchTimes {
            version,
            rates,
            cpu_1,
        })
    };
    attempt()
        .map_err(|e| progress::println(format!("PyTorch not timed: {e:#}")))
        .ok()
}

/// Generated tokens per second, with the cache or without, over `cfg.runs` runs.
fn time_generation(cfg: &GptBenchConfig, cached: bool) -> Vec<f64> {
    let mut model = Gpt::new(&cfg.model, cfg.seed);
    let spec = Sampling {
        temperature: 1.0,
        top_k: None,
    };
    (0..cfg.runs)
        .map(|run| {
            let t = Instant::now();
            let out = if cached {
                model.generate(&[0], cfg.gen_tokens, spec, run as u64)
            } else {
                model.generate_uncached(&[0], cfg.gen_tokens, spec, run as u64)
            };
            std::hint::black_box(out);
            cfg.gen_tokens as f64 / t.elapsed().as_secs_f64()
        })
        .collect()
}

/// Runs the throughput benchmark on Tiny Shakespeare batches; the report is named
/// `name`.
pub fn run(cfg: &GptBenchConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let load_before = load_average();
    let corpus = CharCorpus::tiny_shakespeare(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let t_len = cfg.model.seq_len;
    let batches: Vec<Batch> = (0..cfg.steps.max(cfg.profile_steps).max(1))
        .map(|_| random_batch(&corpus.train, cfg.batch_size, t_len, &mut rng))
        .collect();
    let pool = |n: usize| rayon::ThreadPoolBuilder::new().num_threads(n).build();
    let (pool_n, pool_1) = (pool(cfg.threads)?, pool(1)?);
    let threads = cfg.threads;
    let train = |what: &str| {
        measuring(&format!("GPT, from scratch, {what}"), || {
            let mut model = Gpt::new(&cfg.model, cfg.seed);
            let mut opt = GptOptimizer::reference();
            time_steps(
                cfg.runs,
                cfg.steps,
                cfg.tokens_per_step(),
                &batches,
                &mut |b| {
                    std::hint::black_box(train_step(&mut model, &mut opt, b));
                },
            )
        })
    };
    let (rates, cpu_n) = pool_n.install(|| train(&format!("{threads} threads")));
    let (rates_1, cpu_1) = pool_1.install(|| train("1 thread"));
    let profile = |clock: Clock| {
        let mut model = Gpt::new(&cfg.model, cfg.seed);
        let mut opt = GptOptimizer::reference();
        profile_steps(cfg.profile_steps, &batches, clock, &mut |b| {
            train_step(&mut model, &mut opt, b);
        })
    };
    let prof_n = pool_n.install(|| profile(Clock::Wall));
    let prof_1 = pool_1.install(|| profile(Clock::ThreadCpu));
    let (candle_rates, candle_cpu) = measuring("GPT, candle", || -> Result<_> {
        let mut model = Gpt::new(&cfg.model, cfg.seed);
        let mut tr = CandleTrainer::new(&mut model, 1e-3, 0.99, 0.1, 1.0)?;
        let tokens = cfg.tokens_per_step();
        try_time_steps(cfg.runs, cfg.candle_steps, tokens, &batches, &mut |b| {
            std::hint::black_box(tr.train_step(b)?);
            Ok(())
        })
    })?;
    let pytorch = if cfg.pytorch_steps == 0 {
        None
    } else {
        let text = dir.verified(TINY_SHAKESPEARE)?;
        measuring("GPT, PyTorch", || time_pytorch(cfg, &text))
    };
    let gen_cached = pool_n
        .install(|| measuring("generation, KV cache", || time_generation(cfg, true)));
    let gen_full = pool_n
        .install(|| measuring("generation, no cache", || time_generation(cfg, false)));
    let (peak_n, peak_1) = fma_peaks(cfg.runs, cfg.threads, cfg.peak_iters);
    let load_after = load_average();

    let flops = cfg.model.train_flops_per_token(t_len);
    let gflops = |r: &[f64]| r.iter().map(|x| x * flops / 1e9).collect::<Vec<f64>>();
    let (g_n, g_1) = (gflops(&rates), gflops(&rates_1));
    let pct = |g: &[f64], p: &[f64]| {
        let p = median_min_max(p).0;
        g.iter().map(|x| 100.0 * x / p).collect::<Vec<f64>>()
    };
    let g_cpu: Vec<f64> = cpu_1.iter().map(|c| flops / (c / 1000.0) / 1e9).collect();
    let ms = |v: &[f64]| v.iter().map(|x| 1e3 * x).collect::<Vec<f64>>();
    const CPU_MS: &str = "CPU-ms per 1,000 tokens";
    let m = &cfg.model;
    let mut r = Report::new(
        "ch11",
        name,
        "Training and generation speed of the GPT, from scratch and in candle",
    );
    r.config = serde_json::to_value(cfg)?;
    r.seeds = vec![cfg.seed];
    r.data = vec![data_ref(TINY_SHAKESPEARE)];
    let load = format!("Load average {load_before:.1} before, {load_after:.1} after.");
    r.tables.push(summary_table(
        "speed",
        format!(
            "Training the GPT ({} blocks, {} heads, d = {}, batch {} windows of {} \
             characters, AdamW, clip 1): median, min and max over {} runs of {} steps \
             (candle: {} steps); generation of {} tokens from one character. {load}",
            m.n_layers,
            m.n_heads,
            m.d_model,
            cfg.batch_size,
            t_len,
            cfg.runs,
            cfg.steps,
            cfg.candle_steps,
            cfg.gen_tokens
        ),
        1,
        vec![
            row(
                &format!("from scratch, {threads} threads"),
                &rates,
                "tokens/s",
            ),
            row("from scratch, 1 thread", &rates_1, "tokens/s"),
            row(
                &format!("candle, {threads} threads"),
                &candle_rates,
                "tokens/s",
            ),
            row("from scratch, 1 thread, CPU time", &ms(&cpu_1), CPU_MS),
            row(
                &format!("from scratch, {threads} threads, CPU time of all threads"),
                &ms(&cpu_n),
                CPU_MS,
            ),
            row("candle, CPU time of all threads", &ms(&candle_cpu), CPU_MS),
            row("generation with the KV cache", &gen_cached, "tokens/s"),
            row("generation without a cache", &gen_full, "tokens/s"),
        ],
    ));
    if let Some(pt) = &pytorch {
        r.tables.push(summary_table(
            "pytorch",
            format!(
                "The same model and training in PyTorch {} (`code/bench/gpt_pytorch.py`, \
                 nanoGPT-style: fused causal attention, AdamW, clipping), run by this \
                 benchmark beside the from-scratch model: median, min and max over {} \
                 runs of {} steps after one warm-up step, and the from-scratch figures \
                 of the same run again. {load}",
                pt.version, cfg.runs, cfg.pytorch_steps
            ),
            1,
            vec![
                row(
                    &format!("PyTorch, {threads} threads"),
                    &pt.rates,
                    "tokens/s",
                ),
                row(
                    &format!("from scratch, {threads} threads"),
                    &rates,
                    "tokens/s",
                ),
                row("PyTorch, 1 thread, CPU time", &pt.cpu_1, CPU_MS),
                row("from scratch, 1 thread, CPU time", &ms(&cpu_1), CPU_MS),
            ],
        ));
        r.fact(
            "scratch_over_pytorch",
            median_min_max(&rates).0 / median_min_max(&pt.rates).0,
            Format::Fixed(2),
        );
        r.fact(
            "pytorch_tokens_per_s",
            median_min_max(&pt.rates).0,
            Format::Int,
        );
    }
    r.tables.push(summary_table(
        "compute",
        format!(
            "Arithmetic: {:.2} MFLOP per token of a training step (counted from the \
             sizes: forward and the two backward products of every weight matrix, the \
             head and the causal attention), the GFLOP/s the throughput amounts to, and \
             the fraction of the FMA peak measured in the same run; the per-CPU-second \
             row divides by the CPU time of the one-thread runs. {load}",
            flops / 1e6
        ),
        2,
        vec![
            row(&format!("FMA peak, {threads} threads"), &peak_n, "GFLOP/s"),
            row("FMA peak, 1 thread", &peak_1, "GFLOP/s"),
            row(&format!("training, {threads} threads"), &g_n, "GFLOP/s"),
            row("training, 1 thread", &g_1, "GFLOP/s"),
            row(
                &format!("fraction of peak, {threads} threads"),
                &pct(&g_n, &peak_n),
                "%",
            ),
            row("fraction of peak, 1 thread", &pct(&g_1, &peak_1), "%"),
            row("training, per CPU-second, 1 thread", &g_cpu, "GFLOP/s"),
        ],
    ));
    r.fact("flops_per_token", flops / 1e6, Format::Fixed(2));
    r.fact("tokens_per_s", median_min_max(&rates).0, Format::Int);
    r.fact(
        "candle_tokens_per_s",
        median_min_max(&candle_rates).0,
        Format::Int,
    );
    r.fact(
        "gen_cached_tokens_per_s",
        median_min_max(&gen_cached).0,
        Format::Int,
    );
    r.fact(
        "gen_uncached_tokens_per_s",
        median_min_max(&gen_full).0,
        Format::Int,
    );
    r.fact(
        "fraction_of_peak",
        median_min_max(&pct(&g_n, &peak_n)).0,
        Format::Fixed(1),
    );
    r.fact("load_before", load_before, Format::Fixed(1));
    r.fact("load_after", load_after, Format::Fixed(1));
    r.tables.push(profile_table(
        "profile", "the GPT", &prof_n, &prof_1, threads, &load,
    ));
    r.tables.push(Table {
        name: "reference".into(),
        caption: "The same model and training in PyTorch 2.15 (nanoGPT-style), measured \
                  on 2 threads of a machine of this kind when this section was planned: \
                  a reference, not a figure of this run."
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

/// Trains the model for `cfg.budget_secs` seconds of training (validation not counted)
/// on `cfg.threads` threads, counted on `cfg.budget_clock`, once per seed of
/// `cfg.budget_seeds`, and records the validation loss over time.
pub fn run_budget(cfg: &GptBenchConfig, dir: &DataDir, name: &str) -> Result<Report> {
    let load_before = load_average();
    let corpus = CharCorpus::tiny_shakespeare(dir)?;
    let t_len = cfg.model.seq_len;
    let val = validation_batches(&corpus.valid, cfg.batch_size, t_len, cfg.val_batches)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let seeds: Vec<u64> = (0..cfg.budget_seeds as u64).map(|s| cfg.seed + s).collect();
    let mut runs = vec![];
    for &seed in &seeds {
        let bar = progress::bar(
            cfg.budget_secs.ceil() as u64,
            &format!("GPT, time budget, seed {seed}"),
        );
        runs.push(pool.install(|| budget_run(cfg, &corpus, &val, seed, &bar)));
        bar.finish_and_clear();
    }
    let load_after = load_average();
    let mut r = Report::new("ch11", name, "The GPT trained for a fixed time budget");
    r.config = serde_json::to_value(cfg)?;
    r.seeds = seeds.clone();
    r.data = vec![data_ref(TINY_SHAKESPEARE)];
    let per_seed =
        |f: &dyn Fn(&BudgetRun) -> f64| Value::Seeds(runs.iter().map(f).collect());
    let tokens = |b: &BudgetRun| b.total_steps() * cfg.tokens_per_step();
    r.fact(
        "budget_val_loss",
        per_seed(&|b| *b.losses.last().expect("a validation")),
        Format::Fixed(3),
    );
    r.fact("budget_steps", per_seed(&|b| b.total_steps()), Format::Int);
    r.fact(
        "budget_tokens_per_s",
        per_seed(&|b| tokens(b) / b.wall),
        Format::Int,
    );
    r.fact(
        "budget_cpu_ms_per_1k_tokens",
        per_seed(&|b| 1e6 * b.cpu / tokens(b)),
        Format::Fixed(1),
    );
    r.fact("budget_minutes", cfg.budget_secs / 60.0, Format::Int);
    r.fact("budget_threads", cfg.threads as f64, Format::Int);
    r.fact(
        "budget_cpu_seconds",
        cfg.budget_secs * cfg.threads as f64,
        Format::Int,
    );
    r.fact("budget_load_before", load_before, Format::Fixed(1));
    r.fact("budget_load_after", load_after, Format::Fixed(1));
    let clock = match cfg.budget_clock {
        BudgetClock::Wall => "the budget is wall-clock seconds of training".to_string(),
        BudgetClock::Cpu => format!(
            "the budget is {} CPU-seconds of training ({} seconds of {} threads), \
             counted as CPU time so that other programs on a shared machine do not \
             shrink it",
            cfg.budget_secs * cfg.threads as f64,
            cfg.budget_secs,
            cfg.threads
        ),
    };
    r.tables.push(Table {
        name: "budget_seeds".into(),
        caption: format!(
            "Each seed's run on {} threads: training steps that fitted into the budget, \
             wall-clock and CPU seconds of training, tokens per wall-clock second, and \
             the final validation loss (nats per character, {} fixed batches); {clock}. \
             Load average {load_before:.1} before, {load_after:.1} after.",
            cfg.threads,
            val.len(),
        ),
        columns: vec![
            col("seed", Format::Int),
            col("steps", Format::Int),
            col("wall s", Format::Fixed(0)),
            col("CPU s", Format::Fixed(0)),
            col("tokens/s", Format::Int),
            col("validation loss", Format::Fixed(3)),
        ],
        rows: seeds
            .iter()
            .zip(&runs)
            .map(|(seed, b)| {
                vec![
                    Value::Num(*seed as f64),
                    Value::Num(b.total_steps()),
                    Value::Num(b.wall),
                    Value::Num(b.cpu),
                    Value::Num(tokens(b) / b.wall),
                    Value::Num(*b.losses.last().expect("a validation")),
                ]
            })
            .collect(),
    });
    let first = &runs[0];
    r.tables.push(Table {
        name: "budget".into(),
        caption: format!(
            "Validation loss (nats per character, {} fixed batches) against seconds of \
             budget used on {} threads, seed {}; {clock}.",
            val.len(),
            cfg.threads,
            seeds[0]
        ),
        columns: vec![
            col("seconds", Format::Fixed(0)),
            col("steps", Format::Int),
            col("validation loss", Format::Fixed(3)),
        ],
        rows: first
            .secs
            .iter()
            .zip(&first.steps)
            .zip(&first.losses)
            .map(|((s, n), l)| vec![Value::Num(*s), Value::Num(*n), Value::Num(*l)])
            .collect(),
    });
    r.figures.push(Figure {
        name: "budget".into(),
        title: "Validation loss against the time budget used".into(),
        plot: Plot::Lines {
            x_label: "seconds of budget used".into(),
            y_label: "validation loss (nats/char)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: seeds
                .iter()
                .zip(runs)
                .map(|(seed, b)| Series {
                    name: format!("seed {seed}"),
                    x: b.secs,
                    y: b.losses,
                    band: None,
                })
                .collect(),
        },
    });
    Ok(r)
}

/// How the budget run counts its seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BudgetClock {
    /// Wall-clock seconds of training.
    Wall,
    /// The process's CPU seconds of training divided by the threads: not shortened by
    /// other programs on a busy machine (they make each CPU-second do a little less
    /// work, a handicap), and a little longer than wall-clock time on an idle one
    /// (the threads are not both busy at every moment, so the report records both).
    Cpu,
}

/// One seed's budget run.
struct BudgetRun {
    /// Budget used at each validation (seconds on the run's clock).
    secs: Vec<f64>,
    /// Steps trained at each validation.
    steps: Vec<f64>,
    /// Validation loss at each validation.
    losses: Vec<f64>,
    /// Wall-clock seconds of training.
    wall: f64,
    /// CPU seconds of training.
    cpu: f64,
}

impl BudgetRun {
    fn total_steps(&self) -> f64 {
        *self.steps.last().expect("at least one validation")
    }
}

/// Trains one seed until its budget is used, validating every `cfg.eval_every_secs`.
fn budget_run(
    cfg: &GptBenchConfig,
    corpus: &CharCorpus,
    val: &[Batch],
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> BudgetRun {
    let t_len = cfg.model.seq_len;
    let mut model = Gpt::new(&cfg.model, seed);
    let mut opt = GptOptimizer::reference();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let mut b = BudgetRun {
        secs: vec![0.0],
        steps: vec![0.0],
        losses: vec![model.mean_loss(val)],
        wall: 0.0,
        cpu: 0.0,
    };
    let (mut n, mut next_eval) = (0usize, cfg.eval_every_secs);
    let used = |b: &BudgetRun| match cfg.budget_clock {
        BudgetClock::Wall => b.wall,
        BudgetClock::Cpu => b.cpu / cfg.threads as f64,
    };
    while used(&b) < cfg.budget_secs {
        let batch = random_batch(&corpus.train, cfg.batch_size, t_len, &mut rng);
        let (t, c) = (Instant::now(), process_cpu_seconds());
        train_step(&mut model, &mut opt, &batch);
        b.wall += t.elapsed().as_secs_f64();
        b.cpu += process_cpu_seconds() - c;
        n += 1;
        let u = used(&b);
        bar.set_position(u as u64);
        if u >= next_eval || u >= cfg.budget_secs {
            b.secs.push(u);
            b.steps.push(n as f64);
            b.losses.push(model.mean_loss(val));
            next_eval += cfg.eval_every_secs;
        }
    }
    b
}
