//! `dlbook bench --name depthwise`: the depthwise convolution at a size EfficientNet-Lite0
//! runs it (96 channels of 112 x 112, a 5 x 5 kernel), computed three ways: the
//! plane-by-plane [`GroupedConv2d`], the same convolution as im2col + a matrix product per
//! group ([`grouped_conv2d_im2col`]), and candle's `conv2d` with one group per channel.
//! Forward, and forward plus backward (input and weight gradients), in milliseconds per
//! batch: median, min and max over the runs, with the load average before and after.
//! Timings go to `generated/ch06/depthwise.{json,md}` and are never asserted by tests.

use anyhow::Result;
use candle_core::{DType, Var};
use ndarray::ArrayD;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::tables::{summary_row as row, summary_table};
use super::{load_average, time_runs};
use crate::cnn::candle_twin::grouped_conv;
use crate::cnn::depthwise::{grouped_conv2d_im2col, grouped_conv2d_im2col_backward};
use crate::cnn::GroupedConv2d;
use crate::nn::candle_twin::to_tensor;
use crate::nn::gradcheck::normal;
use crate::nn::{Layer, Mode};
use crate::progress;
use crate::report::Report;

/// The depthwise convolution to time, and how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthwiseConfig {
    /// Images per batch.
    pub batch: usize,
    /// Channels (one group each).
    pub channels: usize,
    /// Side of the square input maps.
    pub side: usize,
    /// Side of the kernel (stride 1, padding `kernel / 2`).
    pub kernel: usize,
    /// Timed runs per figure (after one warm-up run).
    pub runs: usize,
    /// Threads of the from-scratch layers.
    pub threads: usize,
    /// Seed of the weights and inputs.
    pub seed: u64,
}

impl DepthwiseConfig {
    /// A tiny run that exercises every measurement (for tests).
    pub fn quick() -> Self {
        DepthwiseConfig {
            batch: 1,
            channels: 4,
            side: 12,
            kernel: 5,
            runs: 1,
            threads: 2,
            seed: 0,
        }
    }

    /// The figures in the book: a batch of 4 at the size of Lite0's widest 5 x 5 maps.
    pub fn full() -> Self {
        DepthwiseConfig {
            batch: 4,
            channels: 96,
            side: 112,
            kernel: 5,
            runs: 5,
            threads: 2,
            seed: 0,
        }
    }

    /// Multiply-adds of one forward pass of the batch.
    pub fn macs(&self) -> f64 {
        (self.batch * self.channels * self.side * self.side * self.kernel * self.kernel)
            as f64
    }
}

/// Milliseconds of each of `runs` timed calls of `f` (after a warm-up).
fn time_ms(runs: usize, f: impl FnMut()) -> Vec<f64> {
    time_runs(runs, f).into_iter().map(|t| 1e3 * t).collect()
}

/// Times the three implementations and returns the report `name` (chapter `ch06`).
pub fn run(cfg: &DepthwiseConfig, name: &str) -> Result<Report> {
    let load_before = load_average();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (c, k) = (cfg.channels, cfg.kernel);
    let x = normal(&[cfg.batch, c, cfg.side, cfg.side], &mut rng);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()?;
    let spinner = progress::spinner("bench");
    let (planes, im2col) = pool.install(|| {
        let mut layer = GroupedConv2d::depthwise(c, k, 1, k / 2, &mut rng);
        let dy = normal(layer.forward(&x, Mode::Eval).shape(), &mut rng);
        spinner.set_message("depthwise, plane loops");
        let fwd = time_ms(cfg.runs, || {
            layer.forward(&x, Mode::Eval);
        });
        let both = time_ms(cfg.runs, || {
            layer.forward(&x, Mode::Train);
            layer.backward(&dy);
        });
        spinner.set_message("depthwise, im2col per group");
        let (w, b) = (layer.w(), layer.b());
        let x4 = x.view().into_dimensionality().expect("4-D");
        let dy4 = dy.view().into_dimensionality().expect("4-D");
        let fwd_i = time_ms(cfg.runs, || {
            grouped_conv2d_im2col(&x4, &w, &b.view(), 1, k / 2, c);
        });
        let both_i = time_ms(cfg.runs, || {
            grouped_conv2d_im2col(&x4, &w, &b.view(), 1, k / 2, c);
            grouped_conv2d_im2col_backward(&x4, &w, &dy4, 1, k / 2, c);
        });
        ((fwd, both, dy), (fwd_i, both_i))
    });
    let (fwd, both, dy) = planes;
    let (fwd_i, both_i) = im2col;
    spinner.set_message("depthwise, candle");
    // Candle on its own thread pool (all cores), in F32 like the layers.
    let w: ArrayD<f32> = normal(&[c, 1, k, k], &mut rng);
    let wv = Var::from_tensor(&to_tensor(&w, DType::F32)?)?;
    let xv = Var::from_tensor(&to_tensor(&x, DType::F32)?)?;
    let r = to_tensor(&dy, DType::F32)?;
    let mut err = None;
    let fwd_c = time_ms(cfg.runs, || {
        if let Err(e) = grouped_conv(xv.as_tensor(), wv.as_tensor(), None, 1, k / 2, c) {
            err = Some(e);
        }
    });
    let both_c = time_ms(cfg.runs, || {
        let step = || -> Result<()> {
            let y = grouped_conv(xv.as_tensor(), wv.as_tensor(), None, 1, k / 2, c)?;
            (y * &r)?.sum_all()?.backward()?;
            Ok(())
        };
        if let Err(e) = step() {
            err = Some(e);
        }
    });
    spinner.finish_and_clear();
    if let Some(e) = err {
        return Err(e);
    }
    let gmacs =
        |ms: &[f64]| -> Vec<f64> { ms.iter().map(|t| cfg.macs() / t / 1e6).collect() };
    let mut rep = Report::new(
        "ch06",
        name,
        "Depthwise convolution: plane loops, im2col per group and candle",
    );
    rep.config = serde_json::to_value(cfg)?;
    rep.seeds = vec![cfg.seed];
    let shape = format!(
        "batch {} x {c} x {} x {}, {k} x {k}",
        cfg.batch, cfg.side, cfg.side
    );
    let rows = vec![
        row("plane loops (GroupedConv2d), forward", &fwd, "ms"),
        row(
            "plane loops (GroupedConv2d), forward + backward",
            &both,
            "ms",
        ),
        row("im2col + GEMM per group, forward", &fwd_i, "ms"),
        row("im2col + GEMM per group, forward + backward", &both_i, "ms"),
        row("candle conv2d (groups = channels), forward", &fwd_c, "ms"),
        row(
            "candle conv2d (groups = channels), forward + backward",
            &both_c,
            "ms",
        ),
        row("plane loops, forward", &gmacs(&fwd), "GMAC/s"),
        row("im2col + GEMM per group, forward", &gmacs(&fwd_i), "GMAC/s"),
        row("candle conv2d, forward", &gmacs(&fwd_c), "GMAC/s"),
    ];
    let caption = format!(
        "Depthwise convolution ({shape}, stride 1), {} threads for the from-scratch \
             layers: median, min and max over {} runs. Load average {load_before:.1} \
             before, {:.1} after.",
        cfg.threads,
        cfg.runs,
        load_average()
    );
    rep.tables
        .push(summary_table("depthwise", caption, 2, rows));
    Ok(rep)
}
