//! The measurements of `dlbook bench`: synthetic batches, the timing loops of training,
//! inference and SGEMM, the clocks they read, and the per-layer profile.

use std::time::Instant;

use anyhow::Result;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{seed_cnn, Config};
use crate::gemm;
use crate::nn::loss::softmax_cross_entropy;
use crate::nn::{Layer, Mode, Module, Named};
use crate::optim::{Adam, Optimizer};

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

/// Seconds of each of `runs` timed calls of `f`, after one untimed warm-up call (which
/// fills caches and grows buffers).
pub fn time_runs(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// CPU seconds of the process and wall seconds of each of `runs` calls of `f`, after one
/// untimed warm-up call: the measurement of the benchmarks that run a Python twin, whose
/// script times itself the same way.
pub fn time_cpu_wall(runs: usize, mut f: impl FnMut()) -> CpuWall {
    f();
    let (mut cpu, mut wall) = (vec![], vec![]);
    for _ in 0..runs {
        let (c, w) = (process_cpu_seconds(), std::time::Instant::now());
        f();
        cpu.push(process_cpu_seconds() - c);
        wall.push(w.elapsed().as_secs_f64());
    }
    CpuWall { cpu, wall }
}

/// CPU and wall seconds of several runs, as [`time_cpu_wall`] measures them and the Python
/// twins print them (`{"cpu": [..], "wall": [..]}`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct CpuWall {
    /// CPU seconds of the process, per run.
    pub cpu: Vec<f64>,
    /// Wall seconds, per run.
    pub wall: Vec<f64>,
}

impl CpuWall {
    /// The median CPU seconds.
    pub fn cpu_median(&self) -> f64 {
        median_min_max(&self.cpu).0
    }

    /// The median wall seconds.
    pub fn wall_median(&self) -> f64 {
        median_min_max(&self.wall).0
    }
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
