//! `dlbook bench`: how fast the from-scratch CNN trains and infers, against what the
//! machine can do.
//!
//! One run measures, side by side: the training throughput of the seed MNIST CNN
//! (images/s at batch 128: forward, loss, backward, Adam step), inference at batch 1 and
//! batch 256, a per-layer profile (forward and backward milliseconds per batch), the
//! FLOPs of a training step counted analytically and the GFLOP/s they amount to, the
//! FMA peak of the CPU measured on one and on all threads ([`peak`]), SGEMM at
//! $n = 2048$ with the matrix product the layers use, and the CPU time per 1,000
//! training images on one thread (a figure that other load on the machine barely moves).
//!
//! Each figure is the median of several runs, with its minimum and maximum, and the
//! 1-minute load average is recorded before and after: timings on a shared machine are
//! noisy, and the report says how noisy. Timings are never asserted by tests.
//!
//! **FLOP count.** A convolution with output $(C_o, H_o, W_o)$ and kernel
//! $(C_i, K_h, K_w)$ does $C_o H_o W_o C_i K_h K_w$ multiply-adds per image, a linear
//! layer $d_\text{in} d_\text{out}$; each is 2 FLOPs. The backward pass computes two
//! products of the same size (the weight gradient and the input gradient), so a
//! training step costs three times the forward FLOPs of these layers. Element-wise work
//! (ReLU, pooling, dropout, loss, Adam) is not counted: it is memory traffic, not
//! arithmetic, and it is why the achieved fraction of peak is below one.

use std::time::Instant;

use anyhow::Result;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::gemm;
use crate::models::{mnist_cnn, CnnConfig};
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::{Layer, Mode, Module, Named};
use crate::optim::{Adam, Optimizer};
use crate::report::{Column, Format, Report, Table, Value};

pub mod candle;
pub mod peak;

/// What to measure, and how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Training batch size.
    pub batch_size: usize,
    /// Training steps timed per run.
    pub steps: usize,
    /// Runs per figure (the median is reported).
    pub runs: usize,
    /// Batch sizes of the inference measurements.
    pub infer_batches: Vec<usize>,
    /// Images pushed through the model per inference run (at least one batch).
    pub infer_images: usize,
    /// Matrix size of the SGEMM measurement.
    pub gemm_n: usize,
    /// Rounds of the FMA peak kernel per thread.
    pub peak_iters: u64,
    /// Threads for the multi-threaded figures.
    pub threads: usize,
    /// Seed of the weights, the synthetic images and the dropout masks.
    pub seed: u64,
}

impl Config {
    /// A run of a few seconds that exercises every measurement (for tests).
    pub fn quick() -> Self {
        Config {
            batch_size: 16,
            steps: 2,
            runs: 2,
            infer_batches: vec![1, 8],
            infer_images: 16,
            gemm_n: 128,
            peak_iters: 100_000,
            threads: 2,
            seed: 0,
        }
    }

    /// The figures in the book.
    pub fn full() -> Self {
        Config {
            batch_size: 128,
            steps: 20,
            runs: 5,
            infer_batches: vec![1, 256],
            infer_images: 2048,
            gemm_n: 2048,
            peak_iters: 100_000_000,
            threads: 2,
            seed: 0,
        }
    }
}

/// The seed MNIST CNN of [`models`](crate::models), the model the book trains:
/// `reshape - conv1 - relu1 - pool1 - conv2 - relu2 - pool2 - flatten - fc1 - relu3 -
/// dropout - fc2`.
///
/// # Shapes
/// - input: `(n, 784)` or `(n, 1, 28, 28)`; output: logits `(n, 10)`.
pub fn seed_cnn(seed: u64) -> Named {
    mnist_cnn(&CnnConfig::default(), seed)
}

/// Multiply-adds per image of the seed CNN's convolutions and linear layers, by layer:
/// `(name, MACs)`.
pub fn seed_cnn_macs() -> Vec<(&'static str, u64)> {
    let conv = |co: u64, ho: u64, ci: u64, k: u64| co * ho * ho * ci * k * k;
    vec![
        ("conv1", conv(32, 26, 1, 3)),
        ("conv2", conv(64, 11, 32, 3)),
        ("fc1", 1600 * 128),
        ("fc2", 128 * 10),
    ]
}

/// FLOPs of one training image: forward plus the two backward products, `3 * 2 * MACs`.
pub fn train_flops_per_image() -> f64 {
    seed_cnn_macs().iter().map(|(_, m)| 6.0 * *m as f64).sum()
}

/// A synthetic batch: pixels uniform in `[0, 1]` and labels uniform in `0..10`.
///
/// # Shapes
/// - images: `(n, 1, 28, 28)`; labels: `n`.
pub fn synthetic_batch(n: usize, rng: &mut impl Rng) -> (ArrayD<f32>, Vec<usize>) {
    let x = ArrayD::from_shape_fn(IxDyn(&[n, 1, 28, 28]), |_| rng.random::<f32>());
    let y = (0..n).map(|_| rng.random_range(0..10)).collect();
    (x, y)
}

/// One training step: zero the gradients, forward, loss, backward, optimizer step.
/// Returns the loss.
pub fn train_step(
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    x: &ArrayD<f32>,
    labels: &[usize],
) -> f32 {
    model.zero_grad();
    let logits = model.forward(x, Mode::Train);
    let (loss, dlogits) = softmax_cross_entropy(&logits, labels);
    model.backward_params(dlogits);
    opt.step(model);
    loss
}

/// The median, minimum and maximum of `v` (which must not be empty).
pub fn median_min_max(v: &[f64]) -> (f64, f64, f64) {
    assert!(!v.is_empty(), "median_min_max: no values");
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len();
    let med = if m % 2 == 1 {
        s[m / 2]
    } else {
        (s[m / 2 - 1] + s[m / 2]) / 2.0
    };
    (med, s[0], s[m - 1])
}

/// CPU time (user + system) consumed by this process so far, in seconds.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time consumed by the calling thread so far, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    // SAFETY: clock_gettime only writes the struct we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// What a profile measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Elapsed time.
    Wall,
    /// CPU time of the calling thread: the work itself, whatever else runs on the
    /// machine, when everything runs on that thread (a one-thread pool).
    ThreadCpu,
}

impl Clock {
    /// The current reading, in seconds.
    pub fn now(self) -> f64 {
        match self {
            Clock::Wall => {
                static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                START.get_or_init(Instant::now).elapsed().as_secs_f64()
            }
            Clock::ThreadCpu => thread_cpu_seconds(),
        }
    }
}

/// The 1-minute load average from `/proc/loadavg` (`NaN` where there is none).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Training throughput, images/s, of `runs` runs of `steps` steps each (after one
/// warm-up step), and the CPU seconds per 1,000 images of each run.
pub fn time_training(
    model: &mut dyn Layer,
    opt: &mut dyn Optimizer,
    x: &ArrayD<f32>,
    labels: &[usize],
    steps: usize,
    runs: usize,
) -> (Vec<f64>, Vec<f64>) {
    train_step(model, opt, x, labels);
    let (mut rates, mut cpu) = (vec![], vec![]);
    for _ in 0..runs {
        let (t, c) = (Instant::now(), process_cpu_seconds());
        for _ in 0..steps {
            std::hint::black_box(train_step(model, opt, x, labels));
        }
        let images = (steps * labels.len()) as f64;
        rates.push(images / t.elapsed().as_secs_f64());
        cpu.push((process_cpu_seconds() - c) / images * 1000.0);
    }
    (rates, cpu)
}

/// Inference throughput, images/s (evaluation mode, batch `batch`, at least
/// `images` images per run), of `runs` runs.
pub fn time_inference(
    model: &mut dyn Layer,
    batch: usize,
    images: usize,
    runs: usize,
    rng: &mut impl Rng,
) -> Vec<f64> {
    let (x, _) = synthetic_batch(batch, rng);
    let calls = images.div_ceil(batch).max(1);
    std::hint::black_box(model.forward(&x, Mode::Eval));
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(model.forward(&x, Mode::Eval));
            }
            (calls * batch) as f64 / t.elapsed().as_secs_f64()
        })
        .collect()
}

/// Per-layer timings of `steps` training steps on `clock`: for each layer its forward
/// and backward milliseconds per step, then `loss` and `adam` (the time in the forward
/// column), each the median over the steps.
pub fn profile(
    model: &mut Named,
    opt: &mut dyn Optimizer,
    x: &ArrayD<f32>,
    labels: &[usize],
    steps: usize,
    clock: Clock,
) -> Vec<(String, f64, f64)> {
    let nl = model.layers.len();
    let mut fwd = vec![vec![]; nl];
    let mut bwd = vec![vec![]; nl];
    let (mut loss_t, mut opt_t) = (vec![], vec![]);
    let ms = |t: f64| (clock.now() - t) * 1e3;
    let first = model.first_with_params().unwrap_or(0);
    for step in 0..=steps {
        model.zero_grad();
        let mut h = x.clone();
        let mut f_ms = vec![];
        for (_, layer) in model.layers.iter_mut() {
            let t = clock.now();
            h = layer.forward_owned(h, Mode::Train);
            f_ms.push(ms(t));
        }
        let t = clock.now();
        let (_, mut d) = softmax_cross_entropy(&h, labels);
        let l_ms = ms(t);
        // As `Named::backward_params`: nothing below the first layer with parameters,
        // and no dx from that one.
        let mut b_ms = vec![0.0; nl];
        for (i, (_, layer)) in model.layers.iter_mut().enumerate().rev() {
            let t = clock.now();
            if i > first {
                d = layer.backward_owned(d);
            } else {
                layer.backward_params(std::mem::take(&mut d));
                b_ms[i] = ms(t);
                break;
            }
            b_ms[i] = ms(t);
        }
        let t = clock.now();
        opt.step(model);
        let o_ms = ms(t);
        if step == 0 {
            continue; // warm-up
        }
        for i in 0..nl {
            fwd[i].push(f_ms[i]);
            bwd[i].push(b_ms[i]);
        }
        loss_t.push(l_ms);
        opt_t.push(o_ms);
    }
    let med = |v: &[f64]| median_min_max(v).0;
    let mut out: Vec<(String, f64, f64)> = (0..nl)
        .map(|i| (model.layers[i].0.clone(), med(&fwd[i]), med(&bwd[i])))
        .collect();
    out.push(("loss".into(), med(&loss_t), 0.0));
    out.push(("adam".into(), med(&opt_t), 0.0));
    out
}

/// The from-scratch training figures alone, as text: images/s and CPU seconds per
/// 1,000 images on `cfg.threads` threads and on one, and both per-layer profiles
/// (milliseconds per step, forward and backward). Writes nothing; `dlbook bench
/// --profile` prints it.
pub fn profile_text(cfg: &Config) -> Result<String> {
    use std::fmt::Write;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (x, labels) = synthetic_batch(cfg.batch_size, &mut rng);
    let mut out = String::new();
    let mut threads = vec![cfg.threads];
    if cfg.threads != 1 {
        threads.push(1);
    }
    for t in threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
        let clock = if t == 1 {
            Clock::ThreadCpu
        } else {
            Clock::Wall
        };
        let load = load_average();
        let (rates, cpu, prof) = pool.install(|| {
            let mut model = seed_cnn(cfg.seed);
            let mut opt = Adam::new(1e-3);
            let (m, o) = (&mut model, &mut opt);
            let (rates, cpu) = time_training(m, o, &x, &labels, cfg.steps, cfg.runs);
            let prof = profile(m, o, &x, &labels, cfg.steps, clock);
            (rates, cpu, prof)
        });
        let (med, lo, hi) = median_min_max(&rates);
        let (cpu_med, _, _) = median_min_max(&cpu);
        writeln!(
            out,
            "training, batch {}, {t} thread(s): {med:.0} images/s [{lo:.0}-{hi:.0}], \
             {cpu_med:.3} CPU-s per 1,000 images (load {load:.2})",
            cfg.batch_size
        )?;
        let what = if t == 1 { "thread CPU" } else { "wall" };
        writeln!(
            out,
            "  {:<10} {:>8} {:>8}   ms per step, {what}",
            "layer", "forward", "backward"
        )?;
        let mut total = 0.0;
        for (name, f, b) in &prof {
            writeln!(out, "  {name:<10} {f:>8.2} {b:>8.2}")?;
            total += f + b;
        }
        writeln!(out, "  {:<10} {total:>8.2}", "sum")?;
    }
    Ok(out)
}

/// `a b` with the matrix product the layers use ([`gemm::matmul`]).
pub fn layer_gemm(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
    gemm::matmul(&a.view(), &b.view())
}

/// SGEMM GFLOP/s of `n x n` matrices with [`layer_gemm`], `runs` runs.
pub fn time_sgemm(n: usize, runs: usize, rng: &mut impl Rng) -> Vec<f64> {
    let a = Array2::from_shape_fn((n, n), |_| rng.random::<f32>() - 0.5);
    let b = Array2::from_shape_fn((n, n), |_| rng.random::<f32>() - 0.5);
    std::hint::black_box(layer_gemm(&a, &b));
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(layer_gemm(&a, &b));
            2.0 * (n as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9
        })
        .collect()
}

fn col(header: &str, format: Format) -> Column {
    Column {
        header: header.into(),
        format,
    }
}

/// A row `[what, median, min, max, unit]` of the summary table.
fn summary_row(what: &str, v: &[f64], unit: &str) -> Vec<Value> {
    let (med, lo, hi) = median_min_max(v);
    vec![
        what.into(),
        Value::Num(med),
        Value::Num(lo),
        Value::Num(hi),
        unit.into(),
    ]
}

/// Figures reported for this model on this machine kind (2 threads, batch 128, a quiet
/// machine) by other implementations: context for ours, not measured here.
pub const REFERENCE: [(&str, f64, &str); 4] = [
    ("PyTorch, training", 3300.0, "images/s"),
    ("Keras / TensorFlow, training", 3400.0, "images/s"),
    ("OpenBLAS SGEMM, n = 2048", 180.0, "GFLOP/s"),
    ("FMA peak", 200.0, "GFLOP/s"),
];

/// The median of row `what` of table `table` in `r`.
fn median_of(r: &Report, table: &str, what: &str) -> Option<f64> {
    let row = r
        .table(table)?
        .rows
        .iter()
        .find(|row| matches!(&row[0], Value::Text(t) if t.starts_with(what)))?;
    row[1].number()
}

/// Runs every measurement of `cfg` and returns the report `name` (the file stem under
/// `chapters/generated/ch05/`). With a `baseline` report (the same measurements made
/// before the optimisations), a `before_after` table sets the two side by side.
pub fn run(cfg: &Config, name: &str, baseline: Option<&Report>) -> Result<Report> {
    let load_before = load_average();
    let pool = |n: usize| rayon::ThreadPoolBuilder::new().num_threads(n).build();
    let (pool_n, pool_1) = (pool(cfg.threads)?, pool(1)?);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (x, labels) = synthetic_batch(cfg.batch_size, &mut rng);
    let flops = train_flops_per_image();

    // The model is built inside each pool: its layers are not `Send`.
    let (train, cpu_n, prof, infer, sgemm) = pool_n.install(|| {
        let mut model = seed_cnn(cfg.seed);
        let (m, mut opt) = (&mut model, Adam::new(1e-3));
        let (train, cpu_n) = time_training(m, &mut opt, &x, &labels, cfg.steps, cfg.runs);
        let prof = profile(m, &mut opt, &x, &labels, cfg.steps, Clock::Wall);
        let infer: Vec<(usize, Vec<f64>)> = cfg
            .infer_batches
            .iter()
            .map(|&b| {
                (
                    b,
                    time_inference(m, b, cfg.infer_images, cfg.runs, &mut rng),
                )
            })
            .collect();
        let sgemm = time_sgemm(cfg.gemm_n, cfg.runs, &mut rng);
        (train, cpu_n, prof, infer, sgemm)
    });
    // The candle twin, same shapes (candle runs on its own thread pool, all cores).
    let candle_train = candle::time_training(&x, &labels, cfg.steps, cfg.runs, cfg.seed)?;
    let candle_infer = cfg
        .infer_batches
        .iter()
        .map(|&b| {
            let r =
                candle::time_inference(b, cfg.infer_images, cfg.runs, cfg.seed, &mut rng);
            r.map(|r| (b, r))
        })
        .collect::<Result<Vec<_>>>()?;
    // The load-insensitive figure: CPU time on one thread.
    let (cpu, prof_cpu) = pool_1.install(|| {
        let mut model = seed_cnn(cfg.seed);
        let mut opt = Adam::new(1e-3);
        let (_, cpu) =
            time_training(&mut model, &mut opt, &x, &labels, cfg.steps, cfg.runs);
        let clock = Clock::ThreadCpu;
        let prof = profile(&mut model, &mut opt, &x, &labels, cfg.steps, clock);
        (cpu, prof)
    });

    let isa = peak::Isa::detect();
    let peak1: Vec<f64> = (0..cfg.runs)
        .map(|_| peak::fma_gflops(isa, 1, cfg.peak_iters))
        .collect();
    let peak_n: Vec<f64> = (0..cfg.runs)
        .map(|_| peak::fma_gflops(isa, cfg.threads, cfg.peak_iters))
        .collect();
    let load_after = load_average();

    let gflops: Vec<f64> = train.iter().map(|r| r * flops / 1e9).collect();
    let peak_med = median_min_max(&peak_n).0;
    let frac: Vec<f64> = gflops.iter().map(|g| g / peak_med).collect();

    let mut r = Report::new(
        "ch05",
        name,
        "Throughput of the seed MNIST CNN from scratch, and the machine's peak",
    );
    r.config = serde_json::to_value(cfg)?;
    r.seeds = vec![cfg.seed];
    let cols = vec![
        col("measurement", Format::Int),
        col("median", Format::Fixed(2)),
        col("min", Format::Fixed(2)),
        col("max", Format::Fixed(2)),
        col("unit", Format::Int),
    ];
    let mut rows = vec![summary_row(
        &format!(
            "training, from scratch, batch {}, {} threads",
            cfg.batch_size, cfg.threads
        ),
        &train,
        "images/s",
    )];
    for (b, v) in &infer {
        rows.push(summary_row(
            &format!(
                "inference, from scratch, batch {b}, {} threads",
                cfg.threads
            ),
            v,
            "images/s",
        ));
    }
    rows.push(summary_row(
        &format!("training, candle, batch {}", cfg.batch_size),
        &candle_train,
        "images/s",
    ));
    for (b, v) in &candle_infer {
        rows.push(summary_row(
            &format!("inference, candle, batch {b}"),
            v,
            "images/s",
        ));
    }
    rows.push(summary_row(
        "CPU time per 1,000 training images, 1 thread",
        &cpu,
        "CPU-s",
    ));
    rows.push(summary_row(
        &format!(
            "CPU time per 1,000 training images, {} threads (all threads)",
            cfg.threads
        ),
        &cpu_n,
        "CPU-s",
    ));
    r.tables.push(Table {
        name: "throughput".into(),
        caption: "Throughput of the seed CNN (synthetic MNIST-shaped batches): median, \
                  min and max over the runs."
            .into(),
        columns: cols.clone(),
        rows,
    });
    let rows = vec![
        summary_row(
            &format!("FMA peak, 1 thread ({})", isa.name()),
            &peak1,
            "GFLOP/s",
        ),
        summary_row(
            &format!("FMA peak, {} threads ({})", cfg.threads, isa.name()),
            &peak_n,
            "GFLOP/s",
        ),
        summary_row(
            &format!("SGEMM n = {} (the layers' GEMM)", cfg.gemm_n),
            &sgemm,
            "GFLOP/s",
        ),
        summary_row(
            &format!("training step, from scratch, {} threads", cfg.threads),
            &gflops,
            "GFLOP/s",
        ),
        summary_row(
            &format!("training step / FMA peak, {} threads", cfg.threads),
            &frac.iter().map(|f| f * 100.0).collect::<Vec<_>>(),
            "%",
        ),
    ];
    r.tables.push(Table {
        name: "compute".into(),
        caption: "Arithmetic throughput: the measured FMA peak, SGEMM, and the training \
                  step's FLOPs (counted analytically) per second."
            .into(),
        columns: cols,
        rows,
    });
    r.tables.push(Table {
        name: "profile".into(),
        caption: format!(
            "Where a training step's time goes (batch {}, {} threads): median \
             milliseconds per batch of each layer's forward and backward pass, the loss \
             and the Adam step; then the same in CPU time with everything on one \
             thread (insensitive to other load on the machine).",
            cfg.batch_size, cfg.threads
        ),
        columns: vec![
            col("layer", Format::Int),
            col("forward ms", Format::Fixed(2)),
            col("backward ms", Format::Fixed(2)),
            col("forward CPU-ms, 1 thread", Format::Fixed(2)),
            col("backward CPU-ms, 1 thread", Format::Fixed(2)),
        ],
        rows: prof
            .iter()
            .zip(&prof_cpu)
            .map(|((n, f, b), (_, fc, bc))| {
                vec![
                    n.as_str().into(),
                    Value::Num(*f),
                    Value::Num(*b),
                    Value::Num(*fc),
                    Value::Num(*bc),
                ]
            })
            .collect(),
    });
    r.tables.push(Table {
        name: "flops".into(),
        caption: "FLOPs per training image (2 per multiply-add; forward, then the \
                  weight-gradient and input-gradient products of the backward pass)."
            .into(),
        columns: vec![
            col("layer", Format::Int),
            col("forward MFLOP", Format::Fixed(3)),
            col("training MFLOP", Format::Fixed(3)),
        ],
        rows: seed_cnn_macs()
            .iter()
            .map(|(n, m)| {
                let f = 2.0 * *m as f64 / 1e6;
                vec![(*n).into(), Value::Num(f), Value::Num(3.0 * f)]
            })
            .chain(std::iter::once(vec![
                "total".into(),
                Value::Num(flops / 3e6),
                Value::Num(flops / 1e6),
            ]))
            .collect(),
    });
    if let Some(base) = baseline {
        let mut rows = vec![];
        let pairs = [
            ("throughput", "training, from scratch", "training images/s"),
            (
                "throughput",
                "inference, from scratch, batch 1",
                "inference images/s, batch 1",
            ),
            (
                "throughput",
                "inference, from scratch, batch 256",
                "inference images/s, batch 256",
            ),
            (
                "throughput",
                "CPU time per 1,000",
                "CPU-s per 1,000 training images, 1 thread",
            ),
            ("compute", "SGEMM", "SGEMM GFLOP/s (the layers' GEMM)"),
            (
                "compute",
                "training step, from scratch",
                "training step GFLOP/s",
            ),
        ];
        for (table, what, label) in pairs {
            let (Some(b), Some(a)) =
                (median_of(base, table, what), median_of(&r, table, what))
            else {
                continue;
            };
            rows.push(vec![
                label.into(),
                Value::Num(b),
                Value::Num(a),
                Value::Num(a / b),
            ]);
        }
        r.tables.push(Table {
            name: "before_after".into(),
            caption:
                "Before (the first implementation, measured by the same harness) and \
                      after: medians, and their ratio."
                    .into(),
            columns: vec![
                col("measurement", Format::Int),
                col("before", Format::Fixed(2)),
                col("after", Format::Fixed(2)),
                col("after / before", Format::Fixed(2)),
            ],
            rows,
        });
        // Per layer: before, on one thread (the first implementation had no threads),
        // and after, in CPU time on one thread and in elapsed time on all threads.
        if let (Some(before), Some(after)) = (base.table("profile"), r.table("profile")) {
            let rows = before
                .rows
                .iter()
                .filter_map(|b| {
                    let a = after.rows.iter().find(|a| a[0] == b[0])?;
                    Some(vec![
                        b[0].clone(),
                        b[1].clone(),
                        b[2].clone(),
                        a[3].clone(),
                        a[4].clone(),
                        a[1].clone(),
                        a[2].clone(),
                    ])
                })
                .collect();
            r.tables.push(Table {
                name: "profile_before_after".into(),
                caption: format!(
                    "Milliseconds per batch of {}, per layer: before (one thread), after \
                     in CPU time on one thread, and after in elapsed time on {} threads.",
                    cfg.batch_size, cfg.threads
                ),
                columns: vec![
                    col("layer", Format::Int),
                    col("before fwd", Format::Fixed(2)),
                    col("before bwd", Format::Fixed(2)),
                    col("after fwd, 1 thread CPU", Format::Fixed(2)),
                    col("after bwd, 1 thread CPU", Format::Fixed(2)),
                    col(
                        &format!("after fwd, {} threads", cfg.threads),
                        Format::Fixed(2),
                    ),
                    col(
                        &format!("after bwd, {} threads", cfg.threads),
                        Format::Fixed(2),
                    ),
                ],
                rows,
            });
        }
        if let (Some(b), Some(a)) = (
            median_of(base, "throughput", "training, from scratch"),
            median_of(&r, "throughput", "training, from scratch"),
        ) {
            r.fact("train_speedup", a / b, Format::Fixed(1));
        }
    }
    r.tables.push(Table {
        name: "reference".into(),
        caption:
            "Reported for the same model on this machine kind (2 threads, batch 128, \
                  quiet machine): context, not measured by this book."
                .into(),
        columns: vec![
            col("implementation", Format::Int),
            col("reported", Format::Int),
            col("unit", Format::Int),
        ],
        rows: REFERENCE
            .iter()
            .map(|(what, v, unit)| vec![(*what).into(), Value::Num(*v), (*unit).into()])
            .collect(),
    });
    r.fact("train_images_per_s", median_min_max(&train).0, Format::Int);
    r.fact("load_before", load_before, Format::Fixed(2));
    r.fact("load_after", load_after, Format::Fixed(2));
    r.fact("runs", cfg.runs as f64, Format::Int);
    Ok(r)
}

// ANCHOR: keep_freed_memory
/// Tells the C allocator to keep freed memory for the next batch instead of giving it
/// back to the kernel. Called once by the `dlbook` command before any work.
///
/// A training step allocates and frees the same large activations every batch (the
/// output of `conv1` is 11 MB at batch 128). glibc serves blocks that large with
/// `mmap` and returns them with `munmap` when they are freed, so the next batch gets
/// fresh pages, and the kernel zeroes each 4 KiB page on its first touch: a page fault
/// per page, every batch, on every thread. Raising the `mmap` threshold (to its maximum,
/// 32 MiB) and the trim threshold makes freed blocks stay in the process, where the next
/// batch reuses them. Other platforms and allocators are left as they are.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
// ANCHOR_END: keep_freed_memory
